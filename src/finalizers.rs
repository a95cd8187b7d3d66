//! Adding and removing one finalizer on any object, the one way tether does it. Added
//! by server-side apply under a field manager named after the finalizer: the list is a
//! set, so others' finalizers stay, adding it again while a cache is behind changes
//! nothing, and no other apply of tether's removes it by leaving it out. Removed by a
//! JSON patch that checks it is still where it was read, so a concurrent change is
//! never overwritten.

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
