//! Writes `status.conditions`, `status.atProvider`, `status.firstReadyTime` and
//! `status.passwordRotation` with server-side apply under tether's field manager, and
//! only when they change, so a steady object costs no writes.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tether_api::{
    conditions::{self, ConditionUpdate, READY, set_condition},
    managed::Managed,
    rotation::RotationStatus,
};

use crate::FIELD_MANAGER;

/// The status a reconcile wants to record.
#[derive(Debug)]
pub struct StatusUpdate<A> {
    /// Conditions to set; others keep their value.
    pub conditions: Vec<ConditionUpdate>,
    /// `status.atProvider`; `None` keeps the recorded one.
    pub at_provider: Option<A>,
    /// `status.passwordRotation`; `None` keeps the recorded one.
    pub password_rotation: Option<RotationStatus>,
}

impl<A> StatusUpdate<A> {
    /// An update of conditions only.
    pub fn conditions(conditions: Vec<ConditionUpdate>) -> Self {
        Self {
            conditions,
            at_provider: None,
            password_rotation: None,
        }
    }
}

/// Applies `update` to `object`'s status; returns whether the resource is Ready for the
/// first time (it is now, and `status.firstReadyTime` was not set). An object that was
/// Ready before tether recorded that time gets its Ready condition's time, and does
/// not count as Ready for the first time.
pub async fn write<M: Managed>(
    api: &Api<M>,
    object: &M,
    update: StatusUpdate<M::AtProvider>,
) -> Result<bool, kube::Error> {
    let mut conditions = object.conditions().to_vec();
    let now = k8s_openapi::jiff::Timestamp::now();
    let was_ready = conditions::is_true(&conditions, READY);
    for condition in update.conditions {
        set_condition(&mut conditions, condition, object.meta().generation, now);
    }
    let ready = conditions::find(&conditions, READY).filter(|c| c.status == "True");
    let first_ready = ready.is_some() && object.first_ready_time().is_none() && !was_ready;
    let first_ready_time = object
        .first_ready_time()
        .cloned()
        .or_else(|| ready.map(|ready| ready.last_transition_time.clone()));
    let at_provider = update.at_provider.as_ref().or(object.at_provider());
    let password_rotation = update
        .password_rotation
        .as_ref()
        .or(object.rotation_status());
    let unchanged = conditions.as_slice() == object.conditions()
        && at_provider == object.at_provider()
        && first_ready_time.as_ref() == object.first_ready_time()
        && password_rotation == object.rotation_status();
    if unchanged {
        return Ok(false);
    }
    let mut status = json!({ "conditions": conditions });
    if let Some(at_provider) = at_provider {
        status["atProvider"] =
            serde_json::to_value(at_provider).map_err(kube::Error::SerdeError)?;
    }
    if let Some(rotation) = password_rotation {
        status["passwordRotation"] =
            serde_json::to_value(rotation).map_err(kube::Error::SerdeError)?;
    }
    if let Some(time) = first_ready_time {
        status["firstReadyTime"] = serde_json::to_value(time).map_err(kube::Error::SerdeError)?;
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
    Ok(first_ready)
}
