//! One watch of the namespaces in a scope (every namespace, or the one a controller
//! reconciles), shared by the controllers of every kind: metadata only, and of that
//! only names and labels. The connectors read the labels from its cache (a
//! ProviderConfig's `namespaceSelector`), and a namespace whose labels change
//! reconciles the objects in it, so an object refused for its namespace goes on as
//! soon as a label admits it.
//!
//! A watch costs one list and one open request per scope, however many objects are
//! reconciled; reading the labels on each reconcile instead would cost a request per
//! object per poll interval, and would not notice a change until the next poll.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::Arc,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::watcher::{self, Event},
};

use crate::{health::Health, shared_watch::SharedWatch};

/// The metadata of one namespace, as the shared watch keeps it (name and labels).
pub type NamespaceMeta = PartialObjectMeta<Namespace>;

/// The shared namespace watch of one scope: its cache, and the namespaces whose labels
/// change.
pub type NamespaceWatch = SharedWatch<Namespace>;

/// The watch of every namespace, or of `namespace` only (by name, which a Role rule
/// naming the namespace allows), and the future that runs it (until dropped). Only a
/// namespace whose labels change reaches the subscribers.
pub fn watch(
    kube: &kube::Client,
    namespace: Option<&str>,
    health: &Arc<Health>,
) -> (NamespaceWatch, impl Future<Output = ()> + Send + 'static) {
    // kube sends `Accept: …;as=PartialObjectMetadata` for this type.
    let api = Api::<NamespaceMeta>::all(kube.clone());
    let config = match namespace {
        Some(namespace) => watcher::Config::default().fields(&format!("metadata.name={namespace}")),
        None => watcher::Config::default(),
    };
    let mut seen = LabelsSeen::default();
    SharedWatch::new(api, config, slim, move |event| seen.changed(event), health)
}

/// Keeps of a namespace's metadata its name and labels.
fn slim(namespace: &mut NamespaceMeta) {
    namespace.metadata.managed_fields = None;
    namespace.metadata.annotations = None;
    namespace.metadata.owner_references = None;
}

/// The labels each namespace had when last seen, to tell a change of labels from a
/// namespace seen again (after a relist, or another change of its metadata).
#[derive(Default)]
struct LabelsSeen(HashMap<String, BTreeMap<String, String>>);

impl LabelsSeen {
    /// The namespaces `event` shows with other labels than they had. A namespace seen
    /// for the first time is no change: nothing in it was refused for its labels.
    fn changed(&mut self, event: Event<NamespaceMeta>) -> Vec<NamespaceMeta> {
        match event {
            Event::Apply(namespace) | Event::InitApply(namespace) => {
                let previous = self
                    .0
                    .insert(namespace.name_any(), namespace.labels().clone());
                match previous {
                    Some(labels) if labels != *namespace.labels() => vec![namespace],
                    _ => Vec::new(),
                }
            }
            Event::Delete(namespace) => {
                self.0.remove(&namespace.name_any());
                Vec::new()
            }
            Event::Init | Event::InitDone => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str, labels: &[(&str, &str)]) -> NamespaceMeta {
        let mut namespace = NamespaceMeta::default();
        namespace.metadata.name = Some(name.to_owned());
        namespace.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        namespace
    }

    fn names(changed: Vec<NamespaceMeta>) -> Vec<String> {
        changed.iter().map(ResourceExt::name_any).collect()
    }

    #[test]
    fn only_a_change_of_labels_counts_not_a_namespace_seen_again() {
        let mut seen = LabelsSeen::default();
        let shop = namespace("shop", &[("team", "shop")]);
        assert!(seen.changed(Event::InitApply(shop.clone())).is_empty());
        // Seen again with the same labels (a relist, an annotation changed).
        assert!(seen.changed(Event::Init).is_empty());
        assert!(seen.changed(Event::InitApply(shop.clone())).is_empty());
        assert!(seen.changed(Event::Apply(shop)).is_empty());
        let labelled = namespace("shop", &[("team", "shop"), ("tier", "prod")]);
        assert_eq!(
            names(seen.changed(Event::Apply(labelled.clone()))),
            ["shop"]
        );
        // Deleted and made again: a new namespace.
        assert!(seen.changed(Event::Delete(labelled)).is_empty());
        let again = namespace("shop", &[]);
        assert!(seen.changed(Event::Apply(again)).is_empty());
    }
}
