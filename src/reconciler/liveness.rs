//! Whether the object that a cloud resource's UID tag names still exists (DESIGN rule
//! 7: such a resource is that object's alone). Answered from the managed kinds' caches
//! when they can tell, else by listing every managed kind's objects (metadata only)
//! across the cluster; when tether may not list them, the owner counts as alive.

use kube::{
    Api,
    api::{ListParams, PartialObjectMeta},
    core::DynamicObject,
};

use super::{error::Error, references::Registry};

/// Whether an object of a managed kind, in any namespace, has `uid`. The caches answer
/// when one holds it, or when this controller watches every namespace and all have
/// listed; otherwise (a controller of some namespaces only, or a cache still listing)
/// each kind is listed across the cluster. An owner tether cannot look for (the list
/// is forbidden) counts as alive: a resource is adopted only on proof that its owner is
/// gone.
pub async fn owner_is_live(
    kube: &kube::Client,
    registry: &Registry,
    uid: &str,
    watches_every_namespace: bool,
) -> Result<bool, Error> {
    match registry.cached_uid(uid) {
        Some(true) => return Ok(true),
        Some(false) if watches_every_namespace => return Ok(false),
        _ => {}
    }
    for kind in registry.kinds() {
        let api: Api<DynamicObject> = Api::all_with(kube.clone(), &kind);
        let listed = match api.list_metadata(&ListParams::default()).await {
            Ok(listed) => listed,
            Err(kube::Error::Api(status)) if status.is_forbidden() => {
                tracing::debug!(kind = %kind.kind, "may not list every namespace: the owner of a tagged resource counts as alive");
                return Ok(true);
            }
            Err(error) => return Err(error.into()),
        };
        if listed
            .items
            .iter()
            .any(|object: &PartialObjectMeta<_>| object.metadata.uid.as_deref() == Some(uid))
        {
            return Ok(true);
        }
    }
    Ok(false)
}
