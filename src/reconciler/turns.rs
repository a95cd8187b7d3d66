//! First come, first served: the reconciles of one kind take turns, at most
//! `--concurrency` at a time, in the order they fell due.
//!
//! kube-runtime's own limit (`controller::Config::concurrency`) is not fair: while
//! every slot is busy, the objects that fall due wait in a `HashSet`, and a freed slot
//! goes to the first of them in hash order (kube-runtime 5.0.0,
//! `scheduler::Scheduler::poll_pop_queue_message`), so some objects wait for ever
//! while others are reconciled again and again (docs/kube-rs-fair-scheduling.md). So
//! the controller runs with kube-runtime's limit off, and each reconcile first waits
//! for a turn from a FIFO semaphore (tokio's is fair), then reads its object again from
//! the cache: a copy held while waiting may be stale.

use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The turns of one kind's reconciles.
#[derive(Debug)]
pub struct Turns(Semaphore);

impl Turns {
    /// At most `concurrency` reconciles at a time (at least one).
    pub fn new(concurrency: u16) -> Self {
        Self(Semaphore::new(usize::from(concurrency.max(1))))
    }

    /// Waits for `object`'s turn, after every reconcile that asked before it; then
    /// returns the object as `store` holds it now, with the turn (held until dropped).
    /// `None` when the object left the cache meanwhile: nothing to reconcile.
    pub async fn take<'a, K>(
        &'a self,
        object: Arc<K>,
        store: &Store<K>,
    ) -> Option<(Arc<K>, SemaphorePermit<'a>)>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let reference = ObjectRef::from_obj(&*object);
        // The copy that waited is dropped before the wait ends: only the reference and
        // one `Arc` wait, never a copy of the object.
        drop(object);
        let turn = self.0.acquire().await.ok()?;
        let current = store.get(&reference)?;
        Some((current, turn))
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        api::ObjectMeta,
        runtime::{reflector, watcher},
    };

    use super::*;

    fn config_map(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("shop".to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[tokio::test]
    async fn turns_go_in_the_order_they_were_asked_for_whatever_the_names() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        // Names whose hash order is not their order here.
        let names: Vec<String> = (0..40)
            .map(|i| format!("object-{}", (i * 7919) % 1000))
            .collect();
        for name in &names {
            writer.apply_watcher_event(&watcher::Event::Apply(config_map(name, "1")));
        }
        let turns = Arc::new(Turns::new(2));
        let order = Arc::new(Mutex::new(Vec::new()));
        // Both turns busy while every object asks.
        let busy = (
            turns.0.acquire().await.unwrap(),
            turns.0.acquire().await.unwrap(),
        );
        let mut waiting = Vec::new();
        for name in &names {
            let (turns, store, order) = (turns.clone(), store.clone(), order.clone());
            let object = Arc::new(config_map(name, "1"));
            waiting.push(tokio::spawn(async move {
                let (object, _turn) = turns.take(object, &store).await.unwrap();
                order
                    .lock()
                    .unwrap()
                    .push(object.metadata.name.clone().unwrap());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            // Each asks before the next one does.
            tokio::task::yield_now().await;
        }
        drop(busy);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), names);
    }

    #[tokio::test]
    async fn a_turn_brings_the_object_as_the_cache_holds_it_then() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&watcher::Event::Apply(config_map("orders", "1")));
        let turns = Turns::new(1);
        let busy = turns.0.acquire().await.unwrap();
        let waiting = turns.take(Arc::new(config_map("orders", "1")), &store);
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        writer.apply_watcher_event(&watcher::Event::Apply(config_map("orders", "2")));
        drop(busy);
        let (object, turn) = waiting.await.unwrap();
        assert_eq!(object.metadata.resource_version.as_deref(), Some("2"));
        drop(turn);

        writer.apply_watcher_event(&watcher::Event::Delete(config_map("orders", "3")));
        assert!(
            turns
                .take(Arc::new(config_map("orders", "2")), &store)
                .await
                .is_none(),
            "an object gone from the cache has nothing to reconcile"
        );
    }
}
