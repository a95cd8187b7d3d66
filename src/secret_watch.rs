//! One watch of the Secrets in a scope (a namespace, or all), shared by the controllers
//! of every kind: metadata only (`PartialObjectMetadata`, so no Secret value is ever
//! streamed or held), kept in one cache of what tether reads (names, owners,
//! versions), each change (deletions included) handed to every controller.

use std::{future::Future, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    core::PartialObjectMeta,
    runtime::watcher::{self, Event},
};

use crate::{health::Health, shared_watch::SharedWatch};

/// The metadata of one Secret, as the shared watch sees it.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// The shared Secret watch of one scope: its cache and its subscriptions.
pub type SecretWatch = SharedWatch<Secret>;

/// The watch of the Secrets in `namespace` (all when `None`), and the future that runs
/// it (until dropped); every Secret applied or deleted (and each again after a
/// relist) reaches the subscribers. Subscribe before running it to see every change.
pub fn watch(
    kube: &kube::Client,
    namespace: Option<&str>,
    health: &Arc<Health>,
) -> (SecretWatch, impl Future<Output = ()> + Send + 'static) {
    let api = match namespace {
        // kube sends `Accept: …;as=PartialObjectMetadata` for this type.
        Some(namespace) => Api::<SecretMeta>::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    };
    let touched = |event| match event {
        Event::Apply(secret) | Event::Delete(secret) | Event::InitApply(secret) => vec![secret],
        Event::Init | Event::InitDone => Vec::new(),
    };
    SharedWatch::new(api, watcher::Config::default(), slim, touched, health)
}

/// Keeps of a Secret's metadata what tether reads: its name, namespace, UID, version
/// and owners; the labels, annotations and managed fields of thousands of unrelated
/// Secrets stay out of memory.
fn slim(secret: &mut SecretMeta) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.metadata.labels = None;
}
