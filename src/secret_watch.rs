//! One watch of the Secrets in a scope (a namespace, or all), shared by the controllers
//! of every kind: metadata only (`PartialObjectMetadata`, so no Secret value is ever
//! streamed or held), kept in one cache of what tether reads (names, owners,
//! versions), each change (deletions included) handed to every controller.

use std::{future::Future, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    core::{ObjectMeta, PartialObjectMeta},
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

/// Keeps of a Secret's metadata what tether reads: its name, namespace, version and
/// owners. The labels, annotations, managed fields, UID and times of thousands of
/// unrelated Secrets stay out of memory (so does the type, the same for every one).
fn slim(secret: &mut SecretMeta) {
    secret.types = None;
    let metadata = std::mem::take(&mut secret.metadata);
    secret.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        resource_version: metadata.resource_version,
        owner_references: metadata.owner_references,
        ..ObjectMeta::default()
    };
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    #[test]
    fn the_cache_keeps_names_versions_and_owners_only() {
        let owner = OwnerReference {
            api_version: "rds.tether.dev/v1alpha1".into(),
            kind: "DBInstance".into(),
            name: "orders".into(),
            uid: "7d3f".into(),
            ..OwnerReference::default()
        };
        let mut secret = SecretMeta {
            types: Some(kube::core::TypeMeta {
                api_version: "meta.k8s.io/v1".into(),
                kind: "PartialObjectMetadata".into(),
            }),
            metadata: ObjectMeta {
                name: Some("orders-db".into()),
                namespace: Some("shop".into()),
                resource_version: Some("42".into()),
                uid: Some("5c1e".into()),
                labels: Some([("team".into(), "shop".into())].into()),
                annotations: Some([("note".into(), "x".into())].into()),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            ..SecretMeta::default()
        };
        slim(&mut secret);
        assert_eq!(secret.types, None);
        assert_eq!(
            secret.metadata,
            ObjectMeta {
                name: Some("orders-db".into()),
                namespace: Some("shop".into()),
                resource_version: Some("42".into()),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            }
        );
    }
}
