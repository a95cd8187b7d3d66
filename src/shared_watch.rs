//! A metadata-only watch shared by the controllers of every kind (of the Secrets, or
//! the namespaces, in a scope): one cache of what tether reads, and the changes that
//! matter handed to every controller.
//!
//! kube-runtime's own shared stores (`reflector::store_shared`) hand on applied
//! objects only, not deletions; a connection Secret deleted by hand must reach its
//! owner, so the changes are fanned out here, deletions included, with backpressure
//! (no change is dropped for a slow controller).

use std::{future::Future, hash::Hash, sync::Arc};

use futures::{Stream, StreamExt};
use kube::{
    Api, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Lookup, Store, store::Writer},
        watcher::{self, watcher},
    },
};

use crate::health::Health;

/// How many changes wait for the slowest controller before the watch waits for it.
const BUFFER: usize = 1024;

/// What a shared watch keeps of the objects `O` it sees: the half the controllers read,
/// made with the half the watch writes.
pub trait Cache<O>: Clone + Send + Sync + 'static {
    /// The half the watch writes.
    type Writer: Send + 'static;

    /// An empty cache, not listed yet, and its writer.
    fn new() -> (Self, Self::Writer);

    /// Applies one event of the watch, the way kube-runtime's reflector does (a relist
    /// replaces everything once it completes).
    fn apply(writer: &mut Self::Writer, event: &watcher::Event<O>);
}

/// kube-runtime's cache: every object whole (as slimmed).
impl<O> Cache<O> for Store<O>
where
    O: Lookup + Clone + Send + Sync + 'static,
    O::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    type Writer = Writer<O>;

    fn new() -> (Self, Self::Writer) {
        reflector::store()
    }

    fn apply(writer: &mut Self::Writer, event: &watcher::Event<O>) {
        writer.apply_watcher_event(event);
    }
}

/// The shared watch of the metadata of kind `K` in one scope: its cache `C` (by
/// default kube-runtime's `Store`) and its subscriptions.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static, C = Store<PartialObjectMeta<K>>> {
    cache: C,
    changes: async_broadcast::InactiveReceiver<Arc<PartialObjectMeta<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static, C: Clone> Clone for SharedWatch<K, C> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K, C> SharedWatch<K, C>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    C: Cache<PartialObjectMeta<K>>,
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
        let (cache, mut writer) = C::new();
        let (mut sender, changes) = async_broadcast::broadcast(BUFFER);
        // Nobody subscribed (or every controller stopped): changes go nowhere.
        sender.set_await_active(false);
        let synced = health.cache();
        let running = watcher(api, config)
            .default_backoff()
            .modify(slim)
            .inspect(move |event| {
                if let Ok(event) = event {
                    C::apply(&mut writer, event);
                }
            })
            .inspect(synced.on_first_list())
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
            cache,
            changes: changes.deactivate(),
        };
        (watch, running)
    }

    /// What is cached of every object in scope.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// Every change from now on, as a controller's trigger stream takes it.
    pub fn subscribe(
        &self,
    ) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + use<K, C> {
        self.changes
            .activate_cloned()
            .map(|object| Ok(Arc::unwrap_or_clone(object)))
    }
}
