//! A metadata-only watch shared by the controllers of every kind (of the Secrets, or
//! the namespaces, in a scope): one cache, slimmed to what tether reads, and the
//! changes that matter handed to every controller.
//!
//! kube-runtime's own shared stores (`reflector::store_shared`) hand on applied
//! objects only, not deletions; a connection Secret deleted by hand must reach its
//! owner, so the changes are fanned out here, deletions included, with backpressure
//! (no change is dropped for a slow controller).

use std::{future::Future, sync::Arc};

use futures::{Stream, StreamExt};
use kube::{
    Api, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, watcher},
    },
};

use crate::health::Health;

/// How many changes wait for the slowest controller before the watch waits for it.
const BUFFER: usize = 1024;

/// The shared watch of the metadata of kind `K` in one scope: its cache and its
/// subscriptions.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static> {
    store: Store<PartialObjectMeta<K>>,
    changes: async_broadcast::InactiveReceiver<Arc<PartialObjectMeta<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for SharedWatch<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    /// The watch of the objects `api` and `config` list, each `slim`med before it is
    /// cached, and the future that runs it (until dropped). `changed` picks from each
    /// event the objects to hand to the subscribers. Subscribe before running it to
    /// see every change.
    pub fn new(
        api: Api<PartialObjectMeta<K>>,
        config: watcher::Config,
        slim: fn(&mut PartialObjectMeta<K>),
        mut changed: impl FnMut(watcher::Event<PartialObjectMeta<K>>) -> Vec<PartialObjectMeta<K>>
        + Send
        + 'static,
        health: &Arc<Health>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (store, writer) = reflector::store::<PartialObjectMeta<K>>();
        let (mut sender, changes) = async_broadcast::broadcast(BUFFER);
        // Nobody subscribed (or every controller stopped): changes go nowhere.
        sender.set_await_active(false);
        let cache = health.cache();
        let running = watcher(api, config)
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .inspect(cache.on_first_list())
            .for_each(move |event| {
                let touched = match event {
                    Ok(event) => changed(event),
                    Err(error) => {
                        tracing::debug!(%error, kind = %K::kind(&()), "watching");
                        Vec::new()
                    }
                };
                let sender = sender.clone();
                async move {
                    for object in touched {
                        let _ = sender.broadcast_direct(Arc::new(object)).await;
                    }
                }
            });
        let watch = Self {
            store,
            changes: changes.deactivate(),
        };
        (watch, running)
    }

    /// The cached metadata of every object in scope.
    pub fn store(&self) -> &Store<PartialObjectMeta<K>> {
        &self.store
    }

    /// Every change from now on, as a controller's trigger stream takes it.
    pub fn subscribe(
        &self,
    ) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + use<K> {
        self.changes
            .activate_cloned()
            .map(|object| Ok(Arc::unwrap_or_clone(object)))
    }
}
