//! Resolves a managed object's references to other managed objects: each must exist,
//! be `Ready` and carry its external name; the names go to the provider.
//!
//! Each kind is watched once. Its controller publishes its object cache and its changes
//! in the [`Registry`]; the controllers of kinds that refer to it read references from
//! that cache and are reconciled on its changes (a referenced object becoming Ready
//! reconciles the objects waiting for it at once). Only while a cache has not listed
//! yet is a reference read from the API server. The same caches and changes tell the
//! ProviderConfig in-use controller which objects name a ProviderConfig.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, ResourceExt,
    core::{ApiResource, DynamicObject, ObjectMeta},
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tether_api::{
    ObjectReference,
    conditions::{self, READY},
    managed::{EXTERNAL_NAME_ANNOTATION, Managed},
};

use super::error::Error;

/// The references of an object, resolved as far as they can be.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Reference field → the referenced object's external name.
    pub names: BTreeMap<String, String>,
    /// Why each reference not needed to create is not resolved yet, in words.
    pub waiting: Vec<String>,
}

/// What resolving a reference reads of the referenced object.
#[derive(Debug)]
struct Referenced {
    external_name: Option<String>,
    ready: bool,
}

impl Referenced {
    fn of(metadata: &ObjectMeta, conditions: &[Condition]) -> Self {
        Self {
            external_name: external_name(metadata),
            ready: conditions::is_true(conditions, READY),
        }
    }

    /// Read from an object fetched from the API server.
    fn of_dynamic(object: &DynamicObject) -> Self {
        let conditions: Vec<Condition> = object
            .data
            .pointer("/status/conditions")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        Self::of(&object.metadata, &conditions)
    }
}

/// One kind's object cache, as resolving reads it.
trait View: Send + Sync {
    /// The object named `name` in `namespace` (`Some(None)`: it does not exist), or
    /// `None` while the cache has not had its first complete list.
    fn get(&self, namespace: &str, name: &str) -> Option<Option<Referenced>>;

    /// Whether the cache holds an object with `uid`, or `None` while the cache has
    /// not had its first complete list.
    fn holds_uid(&self, uid: &str) -> Option<bool>;

    /// The objects (namespace, name) that name ProviderConfig `provider_config`, or
    /// `None` while the cache has not had its first complete list.
    fn users(&self, provider_config: &str) -> Option<Vec<(String, String)>>;
}

impl<M: Managed> View for Store<M> {
    fn get(&self, namespace: &str, name: &str) -> Option<Option<Referenced>> {
        self.wait_until_ready().now_or_never()?.ok()?;
        let object = Store::get(self, &ObjectRef::<M>::new(name).within(namespace));
        Some(object.map(|object| Referenced::of(object.meta(), object.conditions())))
    }

    fn holds_uid(&self, uid: &str) -> Option<bool> {
        self.wait_until_ready().now_or_never()?.ok()?;
        Some(
            self.find(|object| object.meta().uid.as_deref() == Some(uid))
                .is_some(),
        )
    }

    fn users(&self, provider_config: &str) -> Option<Vec<(String, String)>> {
        self.wait_until_ready().now_or_never()?.ok()?;
        Some(
            self.state()
                .iter()
                .filter(|object| {
                    object.managed_fields().provider_config_ref.name == provider_config
                })
                .map(|object| (object.namespace().unwrap_or_default(), object.name_any()))
                .collect(),
        )
    }
}

/// How many changes of one kind wait for the slowest referring controller before the
/// kind's watch waits for it.
const BUFFER: usize = 1024;

/// The managed kinds' caches and changes, shared by every controller (see the module
/// description): one watch per kind, however many kinds refer to it. A kind gets its
/// entry from whichever comes first, its controller publishing or a referrer asking.
#[derive(Clone)]
pub struct Registry(Arc<Kinds>);

struct Kinds {
    entries: Mutex<Vec<Arc<Entry>>>,
    /// The changes of every published kind, for the ProviderConfig in-use controller.
    every: async_broadcast::Sender<Arc<DynamicObject>>,
    every_changes: async_broadcast::InactiveReceiver<Arc<DynamicObject>>,
}

impl Default for Registry {
    fn default() -> Self {
        let (mut every, every_changes) = async_broadcast::broadcast(BUFFER);
        // Nobody subscribed: changes go nowhere.
        every.set_await_active(false);
        Self(Arc::new(Kinds {
            entries: Mutex::default(),
            every,
            every_changes: every_changes.deactivate(),
        }))
    }
}

struct Entry {
    kind: ApiResource,
    /// The kind's cache, once its controller has published it.
    view: OnceLock<Box<dyn View>>,
    /// The sending end of the kind's changes, until its controller takes it.
    sender: Mutex<Option<async_broadcast::Sender<Arc<DynamicObject>>>>,
    changes: async_broadcast::InactiveReceiver<Arc<DynamicObject>>,
}

impl Registry {
    /// The entry of `kind`, made on first use.
    fn entry(&self, kind: &ApiResource) -> Arc<Entry> {
        let mut entries = self.entries();
        if let Some(entry) = entries.iter().find(|entry| entry.kind == *kind) {
            return entry.clone();
        }
        let (mut sender, changes) = async_broadcast::broadcast(BUFFER);
        // Nobody subscribed (nothing refers to the kind): changes go nowhere.
        sender.set_await_active(false);
        let entry = Arc::new(Entry {
            kind: kind.clone(),
            view: OnceLock::new(),
            sender: Mutex::new(Some(sender)),
            changes: changes.deactivate(),
        });
        entries.push(entry.clone());
        entry
    }

    /// Publishes the cache of kind `M` (from its controller's watch), and hands out the
    /// sender of its changes: `None` when `M` was published before.
    pub fn publish<M: Managed>(&self, store: Store<M>) -> Option<Changes> {
        let kind = ApiResource::erase::<M>(&());
        let entry = self.entry(&kind);
        entry.view.set(Box::new(store)).ok()?;
        let sender = entry.sender.lock().ok()?.take()?;
        Some(Changes {
            sender,
            every: self.0.every.clone(),
            kind,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Entry>>> {
        self.0
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every change to objects of `kind` from now on (each as its name, namespace and
    /// owners), as a controller's trigger stream takes it.
    pub fn subscribe(
        &self,
        kind: &ApiResource,
    ) -> impl Stream<Item = Result<DynamicObject, watcher::Error>> + use<> {
        let changes = self.entry(kind).changes.activate_cloned();
        changes.map(|object| Ok(Arc::unwrap_or_clone(object)))
    }

    /// Whether an object of a managed kind with `uid` is in the caches: `Some(true)`
    /// when one holds it, `Some(false)` when every kind's cache has listed and none
    /// does, `None` when that cannot be told from the caches (one has not listed yet).
    /// The caches hold the namespaces this controller watches only.
    pub fn cached_uid(&self, uid: &str) -> Option<bool> {
        let entries = self.entries().clone();
        let mut complete = true;
        for entry in &entries {
            match entry.view.get().and_then(|view| view.holds_uid(uid)) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => complete = false,
            }
        }
        complete.then_some(false)
    }

    /// The managed kinds the registry knows of.
    pub fn kinds(&self) -> Vec<ApiResource> {
        self.entries()
            .iter()
            .map(|entry| entry.kind.clone())
            .collect()
    }

    /// Every change to objects of every published kind from now on, each as its kind,
    /// name, namespace, owners and `spec.providerConfigRef`.
    pub fn subscribe_every(&self) -> impl Stream<Item = Arc<DynamicObject>> + use<> {
        self.0.every_changes.activate_cloned()
    }

    /// The objects of every kind that name ProviderConfig `provider_config`, as
    /// `Kind namespace/name`, sorted; `None` until every kind in the registry has
    /// published its cache and that cache has listed (before then, an object in use
    /// could be missed).
    pub fn users_of(&self, provider_config: &str) -> Option<Vec<String>> {
        let entries = self.entries().clone();
        if entries.is_empty() {
            return None;
        }
        let mut users = Vec::new();
        for entry in entries {
            let named = entry.view.get()?.users(provider_config)?;
            users.extend(
                named
                    .into_iter()
                    .map(|(namespace, name)| format!("{} {namespace}/{name}", entry.kind.kind)),
            );
        }
        users.sort();
        Some(users)
    }

    /// The referenced object as cached (`Some(None)`: it does not exist), or `None`
    /// when its kind's cache is not published or has no complete list yet.
    fn lookup(&self, namespace: &str, reference: &ObjectReference) -> Option<Option<Referenced>> {
        self.entry(&reference.resource)
            .view
            .get()?
            .get(namespace, &reference.name)
    }
}

/// The sending end of one kind's changes, fed by its controller's watch.
#[derive(Clone)]
pub struct Changes {
    sender: async_broadcast::Sender<Arc<DynamicObject>>,
    /// The registry's sender of every kind's changes.
    every: async_broadcast::Sender<Arc<DynamicObject>>,
    kind: ApiResource,
}

impl Changes {
    /// Hands each object `event` touches (applied or deleted) to every referring
    /// controller and to the subscribers of every kind's changes, waiting for the
    /// slowest when its buffer is full.
    pub async fn send<M: Managed>(&self, event: &watcher::Event<M>) {
        let touched = match event {
            watcher::Event::Apply(object)
            | watcher::Event::Delete(object)
            | watcher::Event::InitApply(object) => object,
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let mut key = DynamicObject::new(&touched.name_any(), &self.kind);
        key.metadata.namespace = touched.meta().namespace.clone();
        key.metadata.owner_references = touched.meta().owner_references.clone();
        key.data = serde_json::json!({"spec": {"providerConfigRef": {
            "name": touched.managed_fields().provider_config_ref.name,
        }}});
        let key = Arc::new(key);
        let _ = self.sender.broadcast_direct(key.clone()).await;
        let _ = self.every.broadcast_direct(key).await;
    }
}

/// Resolves `references` of an object in `namespace` into reference field → external
/// name. A reference [`ObjectReference::needed_to_create`] that does not resolve fails
/// the whole when `wait` is true; any other is left out (and said in `waiting`). When
/// `wait` is false (the object is being deleted) every unresolvable one is left out.
pub async fn resolve(
    kube: &kube::Client,
    registry: &Registry,
    namespace: &str,
    references: &[ObjectReference],
    wait: bool,
) -> Result<Resolved, Error> {
    let mut resolved = Resolved::default();
    for reference in references {
        let object = match registry.lookup(namespace, reference) {
            Some(cached) => cached,
            None => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(kube.clone(), namespace, &reference.resource);
                api.get_opt(&reference.name)
                    .await?
                    .map(|object| Referenced::of_dynamic(&object))
            }
        };
        match external_name_if_ready(reference, object.as_ref()) {
            Ok(name) => {
                resolved.names.insert(reference.field.to_owned(), name);
            }
            Err(error) if wait && reference.needed_to_create => return Err(error),
            Err(error) => resolved.waiting.push(error.to_string()),
        }
    }
    Ok(resolved)
}

/// The external name of the referenced `object`, if it exists and is Ready.
fn external_name_if_ready(
    reference: &ObjectReference,
    object: Option<&Referenced>,
) -> Result<String, Error> {
    let kind = &reference.resource.kind;
    let name = &reference.name;
    let Some(object) = object else {
        return Err(Error::ReferenceNotReady(format!(
            "{}: {kind} {name} does not exist",
            reference.field
        )));
    };
    match &object.external_name {
        Some(external_name) if object.ready => Ok(external_name.clone()),
        _ => Err(Error::ReferenceNotReady(format!(
            "{}: {kind} {name} is not Ready",
            reference.field
        ))),
    }
}

fn external_name(metadata: &ObjectMeta) -> Option<String> {
    metadata
        .annotations
        .as_ref()?
        .get(EXTERNAL_NAME_ANNOTATION)
        .filter(|name| !name.is_empty())
        .cloned()
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use serde_json::json;

    use super::*;
    use crate::reconciler::fake::FakeKind;

    fn reference() -> ObjectReference {
        ObjectReference {
            field: "fakeRef".to_owned(),
            resource: ApiResource::erase::<FakeKind>(&()),
            name: "orders".into(),
            needed_to_create: true,
        }
    }

    fn object(ready: &str, external_name: Option<&str>) -> DynamicObject {
        let mut object = DynamicObject::new("orders", &reference().resource)
            .within("shop")
            .data(json!({
                "spec": {"size": 1},
                "status": {"conditions": [{
                    "type": "Ready", "status": ready, "reason": "r", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"
                }]}
            }));
        if let Some(name) = external_name {
            object.metadata.annotations =
                Some([(EXTERNAL_NAME_ANNOTATION.to_owned(), name.to_owned())].into());
        }
        object
    }

    fn resolve(object: &DynamicObject) -> Result<String, Error> {
        external_name_if_ready(&reference(), Some(&Referenced::of_dynamic(object)))
    }

    #[test]
    fn a_ready_reference_resolves_to_its_external_name() {
        assert_eq!(
            resolve(&object("True", Some("shop-orders"))).unwrap(),
            "shop-orders"
        );
    }

    #[test]
    fn missing_or_unready_references_say_which_and_why() {
        let missing = external_name_if_ready(&reference(), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "fakeRef: FakeKind orders does not exist"
        );
        let bare = DynamicObject::new("orders", &reference().resource);
        for object in [
            object("False", Some("shop-orders")),
            object("True", None),
            bare,
        ] {
            let error = resolve(&object).unwrap_err();
            assert_eq!(error.to_string(), "fakeRef: FakeKind orders is not Ready");
            assert_eq!(error.reason(), "ReferenceNotReady");
        }
    }

    #[tokio::test]
    async fn references_are_read_from_the_published_cache_of_their_kind_once_it_has_listed() {
        let registry = Registry::default();
        let mut subscription = registry.subscribe(&reference().resource);
        assert!(registry.lookup("shop", &reference()).is_none());
        let (store, mut writer) = reflector::store::<FakeKind>();
        let changes = registry.publish(store.clone()).expect("first publish");
        assert!(
            registry.publish(store).is_none(),
            "a kind is published once"
        );
        let group: FakeKind = serde_json::from_value(
            serde_json::to_value(object("True", Some("shop-orders"))).unwrap(),
        )
        .unwrap();
        // Listed but not complete: still not answered from the cache.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(group.clone()),
        ] {
            writer.apply_watcher_event(&event);
            changes.send(&event).await;
        }
        assert!(registry.lookup("shop", &reference()).is_none());
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let found = registry.lookup("shop", &reference()).unwrap();
        assert_eq!(
            external_name_if_ready(&reference(), found.as_ref()).unwrap(),
            "shop-orders"
        );
        let elsewhere = registry.lookup("other", &reference()).unwrap();
        assert!(elsewhere.is_none(), "the same name in another namespace");
        // Each touched object reaches subscribers as its name, namespace and owners.
        let touched = subscription.next().await.unwrap().unwrap();
        assert_eq!(
            (touched.name_any(), touched.namespace()),
            ("orders".to_owned(), Some("shop".to_owned()))
        );
        assert!(touched.metadata.annotations.is_none());
    }

    #[tokio::test]
    async fn the_users_of_a_provider_config_are_counted_once_every_cache_has_listed() {
        let registry = Registry::default();
        assert_eq!(registry.users_of("team-a"), None, "no kind published yet");
        let mut every = registry.subscribe_every();
        let (store, mut writer) = reflector::store::<FakeKind>();
        let changes = registry.publish(store).expect("first publish");
        let group = |name: &str, provider_config: &str| -> FakeKind {
            let mut group = object("True", None);
            group.metadata.name = Some(name.to_owned());
            group.data["spec"]["providerConfigRef"] = json!({"name": provider_config});
            serde_json::from_value(serde_json::to_value(group).unwrap()).unwrap()
        };
        writer.apply_watcher_event(&watcher::Event::Init);
        assert_eq!(registry.users_of("team-a"), None, "not listed yet");
        for event in [
            watcher::Event::InitApply(group("orders", "team-a")),
            watcher::Event::InitApply(group("billing", "team-b")),
            watcher::Event::InitApply(group("archive", "team-a")),
        ] {
            writer.apply_watcher_event(&event);
            changes.send(&event).await;
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(
            registry.users_of("team-a"),
            Some(vec![
                "FakeKind shop/archive".to_owned(),
                "FakeKind shop/orders".to_owned()
            ])
        );
        assert_eq!(registry.users_of("nobody"), Some(Vec::new()));
        // Every change reaches the in-use controller with the ProviderConfig it names.
        let first = every.next().await.unwrap();
        assert_eq!(
            first.data.pointer("/spec/providerConfigRef/name"),
            Some(&json!("team-a"))
        );
    }
}
