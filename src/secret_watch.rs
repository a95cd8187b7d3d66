//! One watch of the Secrets in a scope (a namespace, or all), shared by the controllers
//! of every kind: metadata only (`PartialObjectMetadata`, so no Secret value is ever
//! streamed or held), cached as the names of the Secrets in scope and no more, each
//! change (deletions included, with the owners) handed to every controller.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    core::{ObjectMeta, PartialObjectMeta},
    runtime::watcher::{self, Event},
};

use crate::{
    health::Health,
    shared_watch::{Cache, SharedWatch},
};

/// The metadata of one Secret, as the shared watch sees it.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// The shared Secret watch of one scope: its cache and its subscriptions.
pub type SecretWatch = SharedWatch<Secret, SecretNames>;

/// The names of the Secrets in scope, once they have been listed: all that tether
/// reads from the cache, to skip the GET of a connection Secret that does not exist
/// (see `connection_secret::Publisher::load`).
///
/// Not kube-runtime's `Store`, which cannot hold less than a whole object: a watched
/// `Resource` carries a whole `ObjectMeta` (424 bytes, most of it empty here), behind
/// an `Arc`, keyed by an `ObjectRef` (96 bytes) with copies of the name, namespace and
/// version, about 1 KiB a Secret once allocated; even a type of tether's own (through
/// kube's `Lookup`) would still be kept behind an `Arc` and keyed by an `ObjectRef`,
/// some 270 bytes. This holds one boxed name a Secret and each namespace once (47
/// bytes a Secret allocated for 5,000 Secrets, 658 in a `Store`: see the test below),
/// and follows a watch's events the way the `Store` does.
#[derive(Clone, Debug, Default)]
pub struct SecretNames(Arc<RwLock<Listed>>);

/// The Secret names as last listed and changed since, and whether a list completed.
#[derive(Debug, Default)]
struct Listed {
    names: Names,
    listed: bool,
}

/// Secret names by namespace: a namespace's name is held once for all its Secrets.
#[derive(Debug, Default)]
struct Names(HashMap<Box<str>, HashSet<Box<str>>>);

impl Names {
    /// Adds `secret`'s name.
    fn insert(&mut self, secret: &SecretMeta) {
        let (namespace, name) = namespace_and_name(secret);
        match self.0.get_mut(namespace) {
            Some(names) => {
                // A Secret seen again (changed, or relisted) allocates nothing.
                if !names.contains(name) {
                    names.insert(name.into());
                }
            }
            None => {
                self.0
                    .insert(namespace.into(), HashSet::from([name.into()]));
            }
        }
    }

    /// Removes `secret`'s name, and its namespace with the last one.
    fn remove(&mut self, secret: &SecretMeta) {
        let (namespace, name) = namespace_and_name(secret);
        if let Some(names) = self.0.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.0.remove(namespace);
            }
        }
    }

    /// Whether Secret `namespace`/`name` is here.
    fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0
            .get(namespace)
            .is_some_and(|names| names.contains(name))
    }
}

/// The namespace and name of `secret` (empty when missing, as kube's `ObjectRef` has
/// them).
fn namespace_and_name(secret: &SecretMeta) -> (&str, &str) {
    let metadata = &secret.metadata;
    (
        metadata.namespace.as_deref().unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default(),
    )
}

impl SecretNames {
    /// Whether the Secret `namespace`/`name` is known not to exist: the Secrets in
    /// scope have been listed, and it was neither among them nor made since (as far
    /// as the watch has seen). Before the first list, nothing is known absent.
    pub fn known_absent(&self, namespace: &str, name: &str) -> bool {
        let listed = self.0.read().unwrap_or_else(PoisonError::into_inner);
        listed.listed && !listed.names.contains(namespace, name)
    }
}

/// The writing half of [`SecretNames`]: the names a relist has shown so far, swapped in
/// when it completes.
#[derive(Debug)]
pub struct SecretNamesWriter {
    cache: SecretNames,
    relisted: Names,
}

impl Cache<SecretMeta> for SecretNames {
    type Writer = SecretNamesWriter;

    fn new() -> (Self, Self::Writer) {
        let cache = Self::default();
        let writer = SecretNamesWriter {
            cache: cache.clone(),
            relisted: Names::default(),
        };
        (cache, writer)
    }

    fn apply(writer: &mut Self::Writer, event: &Event<SecretMeta>) {
        let write = || {
            writer
                .cache
                .0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        match event {
            Event::Apply(secret) => write().names.insert(secret),
            Event::Delete(secret) => write().names.remove(secret),
            Event::Init => writer.relisted = Names::default(),
            Event::InitApply(secret) => writer.relisted.insert(secret),
            Event::InitDone => {
                let mut listed = write();
                listed.names = std::mem::take(&mut writer.relisted);
                listed.listed = true;
            }
        }
    }
}

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

/// Keeps of a Secret's metadata what a change hands the controllers: its name,
/// namespace, version and owners. The labels, annotations, managed fields, UID and
/// times of thousands of unrelated Secrets stay out of the changes waiting for a slow
/// controller (so does the type, the same for every one).
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
    use kube::runtime::reflector::Store;

    use super::*;
    use crate::memory::counted;

    /// Secret `name` in `namespace`, as the slimmed watch hands it on.
    fn secret(namespace: &str, name: &str) -> SecretMeta {
        let mut secret = SecretMeta::default();
        secret.metadata.namespace = Some(namespace.to_owned());
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.resource_version = Some("1234567".to_owned());
        secret
    }

    /// A cache of kind `C` that has listed `secrets`.
    fn listed<C: Cache<SecretMeta>>(secrets: &[SecretMeta]) -> (C, C::Writer) {
        let (cache, mut writer) = C::new();
        C::apply(&mut writer, &Event::Init);
        for secret in secrets {
            C::apply(&mut writer, &Event::InitApply(secret.clone()));
        }
        C::apply(&mut writer, &Event::InitDone);
        (cache, writer)
    }

    #[test]
    fn a_secret_is_known_absent_once_listed_and_until_applied_and_again_once_deleted() {
        let (names, mut writer) = SecretNames::new();
        let apply = |writer: &mut SecretNamesWriter, event| SecretNames::apply(writer, &event);
        assert!(!names.known_absent("shop", "admin"), "nothing listed yet");
        apply(&mut writer, Event::Init);
        apply(&mut writer, Event::InitApply(secret("shop", "admin")));
        assert!(!names.known_absent("shop", "other"), "still listing");
        apply(&mut writer, Event::InitDone);
        assert!(!names.known_absent("shop", "admin"));
        assert!(names.known_absent("shop", "orders-db"));
        assert!(names.known_absent("billing", "admin"), "another namespace");

        apply(&mut writer, Event::Apply(secret("shop", "orders-db")));
        assert!(!names.known_absent("shop", "orders-db"), "made since");
        apply(&mut writer, Event::Delete(secret("shop", "admin")));
        assert!(names.known_absent("shop", "admin"), "deleted");

        // A relist replaces everything once it completes: a Secret deleted while the
        // watch was down goes, one made meanwhile comes.
        apply(&mut writer, Event::Init);
        apply(&mut writer, Event::InitApply(secret("billing", "admin")));
        assert!(
            !names.known_absent("shop", "orders-db"),
            "until the relist completes"
        );
        assert!(names.known_absent("billing", "admin"));
        apply(&mut writer, Event::InitDone);
        assert!(
            names.known_absent("shop", "orders-db"),
            "gone from the relist"
        );
        assert!(!names.known_absent("billing", "admin"));
    }

    #[test]
    fn a_cached_secret_costs_its_name_not_a_kibibyte() {
        let secrets: Vec<_> = (0..5_000)
            .map(|i| secret("shop", &format!("app-{i:04}-credentials")))
            .collect();
        let (names, compact) = counted::held(|| listed::<SecretNames>(&secrets));
        let (store, whole) = counted::held(|| listed::<Store<SecretMeta>>(&secrets));
        let (compact, whole) = (compact / secrets.len(), whole / secrets.len());
        eprintln!("a cached Secret holds {compact} bytes; in kube-runtime's Store, {whole}");
        assert!(compact <= 64, "a cached Secret holds {compact} bytes");
        assert!(compact * 8 <= whole, "{compact} bytes, {whole} in a Store");
        drop((names, store));
    }

    #[test]
    fn a_change_keeps_names_versions_and_owners_only() {
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
