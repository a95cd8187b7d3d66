//! Adding and removing one finalizer on any object, by JSON patches that check the
//! list is as it was read, so a concurrent change is never overwritten; or adding it
//! by server-side apply under a field manager of its own, where others add the same
//! finalizer the same way (the list is a set: no conflict, no lost write).

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
    let operations = if object.meta().finalizers.is_none() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    };
    patch(api, object, operations).await?;
    Ok(true)
}

/// Adds `finalizer` to `object` unless the object shows it, by server-side apply under
/// the field manager `manager`; returns whether it wrote. Applying it again when a
/// cache is behind changes nothing.
pub async fn apply<K>(
    api: &Api<K>,
    object: &K,
    finalizer: &str,
    manager: &str,
) -> Result<bool, kube::Error>
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
        &kube::api::PatchParams::apply(manager),
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
