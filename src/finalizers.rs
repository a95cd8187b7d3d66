//! Adding and removing one finalizer on any object, the one place tether does it. Added
//! by server-side apply under a field manager named after the finalizer: the list is a
//! set, so others' finalizers stay, adding it again while a cache is behind changes
//! nothing, and no other apply of tether's removes it by leaving it out. Added together
//! with annotations (a create's marks, which must be durable in the same write) by a
//! merge patch on condition that the object is still the version read. Removed by a
//! JSON patch that checks it is still where it was read. Either way a concurrent change
//! is never overwritten.

use kube::{Api, Resource, ResourceExt, api::Patch};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

/// Adds `finalizer` to `object` unless the object shows it, by server-side apply under
/// a field manager of the finalizer's name; returns whether it wrote.
pub async fn add<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": object.name_any(), "finalizers": [finalizer]},
    });
    api.patch(
        &object.name_any(),
        &kube::api::PatchParams::apply(finalizer),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// Adds `finalizer` to `object` and sets (or, for `null` values, removes) `annotations`,
/// in one write: a merge patch of the whole finalizer list, on condition that the
/// object is still the version read (a list merge would drop others' finalizers added
/// since; a newer version fails with a conflict instead).
pub async fn add_with_annotations<K>(
    api: &Api<K>,
    object: &K,
    finalizer: &str,
    annotations: serde_json::Map<String, serde_json::Value>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers = object.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_owned());
    }
    let metadata = json!({
        "resourceVersion": object.resource_version(),
        "finalizers": finalizers,
        "annotations": annotations,
    });
    crate::merge_metadata(api, &object.name_any(), metadata).await?;
    Ok(())
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
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]))
    .map_err(kube::Error::SerdeError)?;
    api.patch::<K>(
        &object.name_any(),
        &crate::patch_params(),
        &Patch::Json(patch),
    )
    .await?;
    Ok(true)
}
