//! One watch of the Secrets in a scope (a namespace, or all), shared by the controllers
//! of every kind: metadata only (`PartialObjectMetadata`, so no Secret value is ever
//! streamed or held), kept in one cache of what tether reads (names, owners,
//! versions), each change handed to every controller.
//!
//! kube-runtime's own shared stores (`reflector::store_shared`) hand on applied
//! objects only, not deletions; a connection Secret deleted by hand must reach its
//! owner, so the changes are fanned out here, deletions included, with backpressure
//! (no change is dropped for a slow controller).

use std::{future::Future, sync::Arc};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, watcher},
    },
};

use crate::health::Health;

/// The metadata of one Secret, as the shared watch sees it.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// How many changes wait for the slowest controller before the watch waits for it.
const BUFFER: usize = 1024;

/// The shared Secret watch of one scope: its cache and its subscriptions.
#[derive(Clone)]
pub struct SecretWatch {
    store: Store<SecretMeta>,
    changes: async_broadcast::InactiveReceiver<Arc<SecretMeta>>,
}

impl SecretWatch {
    /// The watch of the Secrets in `namespace` (all when `None`), and the future that
    /// runs it (until dropped). Subscribe before running it to see every change.
    pub fn new(
        kube: &kube::Client,
        namespace: Option<&str>,
        health: &Arc<Health>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let api = match namespace {
            // kube sends `Accept: …;as=PartialObjectMetadata` for this type.
            Some(namespace) => Api::<SecretMeta>::namespaced(kube.clone(), namespace),
            None => Api::all(kube.clone()),
        };
        let (store, writer) = reflector::store::<SecretMeta>();
        let (mut sender, changes) = async_broadcast::broadcast(BUFFER);
        // Nobody subscribed (or every controller stopped): changes go nowhere.
        sender.set_await_active(false);
        let cache = health.cache();
        let running = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .inspect(cache.on_first_list())
            .touched_objects()
            .for_each(move |change| {
                let sender = sender.clone();
                async move {
                    match change {
                        Ok(secret) => {
                            let _ = sender.broadcast_direct(Arc::new(secret)).await;
                        }
                        Err(error) => tracing::debug!(%error, "watching Secrets"),
                    }
                }
            });
        let watch = Self {
            store,
            changes: changes.deactivate(),
        };
        (watch, running)
    }

    /// The cached metadata of every Secret in scope: names, owners and versions (see
    /// [`slim`]).
    pub fn store(&self) -> &Store<SecretMeta> {
        &self.store
    }

    /// Every change from now on (applied or deleted Secrets, and each Secret again
    /// after a relist), as a controller's trigger stream takes it.
    pub fn subscribe(&self) -> impl Stream<Item = Result<SecretMeta, watcher::Error>> + use<> {
        self.changes
            .activate_cloned()
            .map(|secret| Ok(Arc::unwrap_or_clone(secret)))
    }
}

/// Keeps of a Secret's metadata what tether reads: its name, namespace, UID, version
/// and owners; the labels, annotations and managed fields of thousands of unrelated
/// Secrets stay out of memory.
fn slim(secret: &mut SecretMeta) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.metadata.labels = None;
}
