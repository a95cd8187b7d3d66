//! Writes `status.conditions` and `status.atProvider` with server-side apply under
//! tether's field manager, and only when they change, so a steady object costs no
//! writes.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tether_api::{
    conditions::{ConditionUpdate, set_condition},
    managed::Managed,
};

use crate::FIELD_MANAGER;

/// The status a reconcile wants to record.
#[derive(Debug)]
pub struct StatusUpdate<A> {
    /// Conditions to set; others keep their value.
    pub conditions: Vec<ConditionUpdate>,
    /// `status.atProvider`; `None` keeps the recorded one.
    pub at_provider: Option<A>,
}

impl<A> StatusUpdate<A> {
    /// An update of conditions only.
    pub fn conditions(conditions: Vec<ConditionUpdate>) -> Self {
        Self {
            conditions,
            at_provider: None,
        }
    }
}

/// Applies `update` to `object`'s status; returns whether anything was written.
pub async fn write<M: Managed>(
    api: &Api<M>,
    object: &M,
    update: StatusUpdate<M::AtProvider>,
) -> Result<bool, kube::Error> {
    let mut conditions = object.conditions().to_vec();
    let now = k8s_openapi::jiff::Timestamp::now();
    for condition in update.conditions {
        set_condition(&mut conditions, condition, object.meta().generation, now);
    }
    let at_provider = update.at_provider.as_ref().or(object.at_provider());
    let unchanged =
        conditions.as_slice() == object.conditions() && at_provider == object.at_provider();
    if unchanged {
        return Ok(false);
    }
    let mut status = json!({ "conditions": conditions });
    if let Some(at_provider) = at_provider {
        status["atProvider"] =
            serde_json::to_value(at_provider).map_err(kube::Error::SerdeError)?;
    }
    let patch = json!({
        "apiVersion": M::api_version(&()),
        "kind": M::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
