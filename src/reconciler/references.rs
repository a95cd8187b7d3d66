//! Resolves a managed object's references to other managed objects: each must exist,
//! be `Ready` and carry its external name; the names go to the provider.

use std::collections::BTreeMap;

use kube::{
    Api,
    core::{DynamicObject, ObjectMeta},
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

/// Resolves `references` of an object in `namespace` into reference field → external
/// name. A reference [`ObjectReference::needed_to_create`] that does not resolve fails
/// the whole when `wait` is true; any other is left out (and said in `waiting`). When
/// `wait` is false (the object is being deleted) every unresolvable one is left out.
pub async fn resolve(
    kube: &kube::Client,
    namespace: &str,
    references: &[ObjectReference],
    wait: bool,
) -> Result<Resolved, Error> {
    let mut resolved = Resolved::default();
    for reference in references {
        let api: Api<DynamicObject> =
            Api::namespaced_with(kube.clone(), namespace, &reference.resource);
        let object = api.get_opt(&reference.name).await?;
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
