//! Adding and removing one finalizer on any object, by JSON patches that check the
//! list is as it was read, so a concurrent change is never overwritten; an addition
//! may carry annotations in the same write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Resource, ResourceExt, api::Patch};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

/// Adds `finalizer` to `object` unless it is there; returns whether it wrote.
pub async fn add<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(false);
    }
    add_with_annotations(api, object, finalizer, &serde_json::Map::new()).await?;
    Ok(true)
}

/// Adds `finalizer` (unless it is there) and sets `annotations` (a `null` value
/// removes the key) in one write. The list is checked to be as it was read, so a
/// finalizer someone else added meanwhile is never overwritten; the annotations are
/// set key by key, so others' keys stay.
pub async fn add_with_annotations<K>(
    api: &Api<K>,
    object: &K,
    finalizer: &str,
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    patch(
        api,
        object,
        operations(object.meta(), finalizer, annotations),
    )
    .await
}

/// The JSON patch of [`add_with_annotations`] for an object with metadata `meta`.
fn operations(
    meta: &ObjectMeta,
    finalizer: &str,
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let mut operations = Vec::new();
    let present = meta.finalizers.as_deref().unwrap_or_default();
    if !present.iter().any(|f| f == finalizer) {
        if meta.finalizers.is_none() {
            operations.push(json!({"op": "test", "path": "/metadata/finalizers", "value": null}));
            operations
                .push(json!({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}));
        } else {
            operations
                .push(json!({"op": "test", "path": "/metadata/finalizers", "value": present}));
            operations
                .push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}));
        }
    }
    match &meta.annotations {
        None => {
            let set: serde_json::Map<_, _> = annotations
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            if !set.is_empty() {
                operations
                    .push(json!({"op": "test", "path": "/metadata/annotations", "value": null}));
                operations
                    .push(json!({"op": "add", "path": "/metadata/annotations", "value": set}));
            }
        }
        Some(current) => {
            for (key, value) in annotations {
                // RFC 6901: `~` and `/` escaped in a path segment.
                let path = format!(
                    "/metadata/annotations/{}",
                    key.replace('~', "~0").replace('/', "~1")
                );
                if !value.is_null() {
                    operations.push(json!({"op": "add", "path": path, "value": value}));
                } else if current.contains_key(key) {
                    operations.push(json!({"op": "remove", "path": path}));
                }
            }
        }
    }
    serde_json::Value::Array(operations)
}

/// Removes `finalizer` from `object` if it is there, checking it is still where it
/// was read; returns whether it wrote.
pub async fn remove<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let Some(index) = object.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(false);
    };
    let path = format!("/metadata/finalizers/{index}");
    patch(
        api,
        object,
        json!([
            {"op": "test", "path": path, "value": finalizer},
            {"op": "remove", "path": path},
        ]),
    )
    .await?;
    Ok(true)
}

async fn patch<K>(
    api: &Api<K>,
    object: &K,
    operations: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let patch: json_patch::Patch =
        serde_json::from_value(operations).map_err(kube::Error::SerdeError)?;
    api.patch::<K>(
        &object.name_any(),
        &crate::patch_params(),
        &Patch::Json(patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(finalizers: Option<&[&str]>, annotations: Option<&[(&str, &str)]>) -> ObjectMeta {
        ObjectMeta {
            finalizers: finalizers.map(|list| list.iter().map(|f| (*f).to_owned()).collect()),
            annotations: annotations.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..ObjectMeta::default()
        }
    }

    fn map(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_new_object_gets_its_finalizer_and_annotations_in_one_patch_that_checks_both_are_absent() {
        let patch = operations(
            &meta(None, None),
            "tether.dev/finalizer",
            &map(&[
                ("tether.dev/create-pending", json!("t")),
                ("gone", json!(null)),
            ]),
        );
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["tether.dev/finalizer"]},
                {"op": "test", "path": "/metadata/annotations", "value": null},
                {"op": "add", "path": "/metadata/annotations", "value": {"tether.dev/create-pending": "t"}},
            ])
        );
    }

    #[test]
    fn others_finalizers_and_annotations_are_checked_and_kept() {
        let patch = operations(
            &meta(
                Some(&["theirs"]),
                Some(&[("theirs", "x"), ("tether.dev/create-pending", "t")]),
            ),
            "tether.dev/finalizer",
            &map(&[
                ("tether.dev/external-name", json!("db-1")),
                ("tether.dev/create-pending", json!(null)),
                ("never-set", json!(null)),
            ]),
        );
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["theirs"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "tether.dev/finalizer"},
                {"op": "add", "path": "/metadata/annotations/tether.dev~1external-name", "value": "db-1"},
                {"op": "remove", "path": "/metadata/annotations/tether.dev~1create-pending"},
            ])
        );
    }

    #[test]
    fn a_finalizer_already_there_is_not_added_again() {
        let patch = operations(
            &meta(Some(&["tether.dev/finalizer"]), Some(&[])),
            "tether.dev/finalizer",
            &map(&[("a~b", json!("1"))]),
        );
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations/a~0b", "value": "1"}])
        );
    }
}
