//! Resolves a managed object's references to other managed objects: each must exist,
//! be `Ready` and carry its external name; the names go to the provider. They are read
//! from the caches of the controller's watches of the referenced kinds (each change
//! there reconciles the objects that refer to it), and from the API server only while
//! a cache has not listed yet.

use std::{collections::BTreeMap, sync::Arc};

use futures::FutureExt;
use kube::{
    Api,
    core::{ApiResource, DynamicObject, ObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};
use tether_api::{
    ObjectReference,
    conditions::{self, READY},
    managed::EXTERNAL_NAME_ANNOTATION,
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

/// The caches of the kinds an object may refer to, holding of each object what
/// resolving reads (see [`slim`]).
#[derive(Clone, Default)]
pub struct Cache(Vec<(ApiResource, Store<DynamicObject>)>);

impl Cache {
    /// Adds the cache of the referenced `kind`.
    pub fn add(&mut self, kind: ApiResource, store: Store<DynamicObject>) {
        self.0.push((kind, store));
    }

    /// The referenced object as cached (`Some(None)`: it does not exist), or `None`
    /// when no cache of its kind has its first complete list yet.
    fn lookup(
        &self,
        namespace: &str,
        reference: &ObjectReference,
    ) -> Option<Option<Arc<DynamicObject>>> {
        let (kind, store) = self
            .0
            .iter()
            .find(|(kind, _)| *kind == reference.resource)?;
        store.wait_until_ready().now_or_never()?.ok()?;
        let key = ObjectRef::new_with(&reference.name, kind.clone()).within(namespace);
        Some(store.get(&key))
    }
}

/// Keeps of a referenced object only what resolving reads: its metadata (without
/// managed fields) and its conditions.
pub fn slim(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    object.data = match object.data.pointer("/status/conditions") {
        Some(conditions) => serde_json::json!({"status": {"conditions": conditions}}),
        None => serde_json::json!({}),
    };
}

/// Resolves `references` of an object in `namespace` into reference field → external
/// name. A reference [`ObjectReference::needed_to_create`] that does not resolve fails
/// the whole when `wait` is true; any other is left out (and said in `waiting`). When
/// `wait` is false (the object is being deleted) every unresolvable one is left out.
pub async fn resolve(
    kube: &kube::Client,
    cache: &Cache,
    namespace: &str,
    references: &[ObjectReference],
    wait: bool,
) -> Result<Resolved, Error> {
    let mut resolved = Resolved::default();
    for reference in references {
        let object = match cache.lookup(namespace, reference) {
            Some(cached) => cached,
            None => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(kube.clone(), namespace, &reference.resource);
                api.get_opt(&reference.name).await?.map(Arc::new)
            }
        };
        match external_name_if_ready(reference, object.as_deref()) {
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
    object: Option<&DynamicObject>,
) -> Result<String, Error> {
    let kind = &reference.resource.kind;
    let name = &reference.name;
    let Some(object) = object else {
        return Err(Error::ReferenceNotReady(format!(
            "{}: {kind} {name} does not exist",
            reference.field
        )));
    };
    let conditions: Vec<_> = object
        .data
        .pointer("/status/conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let external_name = external_name(&object.metadata);
    match external_name {
        Some(external_name) if conditions::is_true(&conditions, READY) => Ok(external_name),
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
    use kube::core::ApiResource;
    use serde_json::json;

    use super::*;

    fn reference() -> ObjectReference {
        ObjectReference {
            field: "dbSubnetGroupRef".to_owned(),
            resource: ApiResource {
                group: "rds.tether.dev".into(),
                version: "v1alpha1".into(),
                api_version: "rds.tether.dev/v1alpha1".into(),
                kind: "DBSubnetGroup".into(),
                plural: "dbsubnetgroups".into(),
            },
            name: "orders".into(),
            needed_to_create: true,
        }
    }

    fn object(ready: &str, external_name: Option<&str>) -> DynamicObject {
        let mut object = DynamicObject::new("orders", &reference().resource).data(json!({
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

    #[test]
    fn a_ready_reference_resolves_to_its_external_name() {
        let resolved =
            external_name_if_ready(&reference(), Some(&object("True", Some("shop-orders"))));
        assert_eq!(resolved.unwrap(), "shop-orders");
    }

    #[test]
    fn a_slimmed_object_still_resolves_and_keeps_nothing_else() {
        let mut full = object("True", Some("shop-orders"));
        full.data["spec"] = json!({"description": "a long spec"});
        full.data["status"]["atProvider"] = json!({"arn": "arn:aws:rds:…"});
        slim(&mut full);
        assert_eq!(
            full.data.pointer("/status/conditions/0/type"),
            Some(&json!("Ready"))
        );
        assert!(full.data.get("spec").is_none());
        assert!(full.data.pointer("/status/atProvider").is_none());
        assert_eq!(
            external_name_if_ready(&reference(), Some(&full)).unwrap(),
            "shop-orders"
        );
        let mut bare = DynamicObject::new("orders", &reference().resource);
        slim(&mut bare);
        assert!(external_name_if_ready(&reference(), Some(&bare)).is_err());
    }

    #[test]
    fn missing_or_unready_references_say_which_and_why() {
        let missing = external_name_if_ready(&reference(), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "dbSubnetGroupRef: DBSubnetGroup orders does not exist"
        );
        for object in [object("False", Some("shop-orders")), object("True", None)] {
            let error = external_name_if_ready(&reference(), Some(&object)).unwrap_err();
            assert_eq!(
                error.to_string(),
                "dbSubnetGroupRef: DBSubnetGroup orders is not Ready"
            );
            assert_eq!(error.reason(), "ReferenceNotReady");
        }
    }
}
