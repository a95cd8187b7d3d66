//! The record of a reconcile: failures as a `Synced` condition, a Warning Event and a
//! back-off; tether's marks and finalizer on the object; status writes; Events; when
//! to look again.

use std::time::Duration;

use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tether_api::{
    ErrorClass,
    conditions::{ConditionUpdate, SYNCED, reasons},
    external::Connector,
    managed::Managed,
    rotation::RotationStatus,
};

use super::{
    super::{
        Shared,
        error::Error,
        pacing::jitter,
        status::{self, StatusUpdate},
    },
    FINALIZER, FIRST_LOOK_AFTER_CREATE, ObjectReconcile, poll_interval,
};

/// Records a reconcile that stopped short and picks when to try again: Terminal waits
/// for a change (or the next poll), Transient and Throttled back off per object, and
/// Throttled also holds back every object of the same ProviderConfig.
pub(super) async fn record_failure<M, C>(
    api: &Api<M>,
    object: &M,
    shared: &Shared<C>,
    error: Error,
) -> Result<Action, Error>
where
    M: Managed,
{
    let delay = announce_failure(object, shared, &error).await;
    if !matches!(error, Error::StillDeleting) {
        status::write(
            api,
            object,
            StatusUpdate::conditions(vec![ConditionUpdate::fails(
                SYNCED,
                error.reason(),
                error.to_string(),
            )]),
        )
        .await?;
    }
    Ok(Action::requeue(delay))
}

/// Logs `error`, publishes a Warning Event for a failure, and picks when to try
/// again (see [`record_failure`]).
pub(super) async fn announce_failure<M, C>(
    object: &M,
    shared: &Shared<C>,
    error: &Error,
) -> Duration
where
    M: Managed,
{
    let uid = object.uid().unwrap_or_default();
    let delay = match error.class() {
        ErrorClass::Waiting => jitter(shared.settings.wait_interval),
        ErrorClass::Terminal => jitter(poll_interval(object, &shared.settings)),
        ErrorClass::Transient => shared.pacing.failed(&uid, false),
        ErrorClass::Throttled => {
            let delay = shared.pacing.failed(&uid, true);
            shared
                .pacing
                .throttle(&object.managed_fields().provider_config_ref.name, delay);
            delay
        }
    };
    let message = error.to_string();
    if error.is_failure() {
        tracing::warn!(
            kind = %M::kind(&()), namespace = object.namespace(), name = object.name_any(),
            reason = error.reason(), class = ?error.class(), retry_in = ?delay, "{message}"
        );
        publish_event(
            shared,
            object,
            EventType::Warning,
            error.reason(),
            message.clone(),
        )
        .await;
    } else {
        tracing::debug!(retry_in = ?delay, "{message}");
    }
    delay
}

pub(super) async fn publish_event<M: Managed, C>(
    shared: &Shared<C>,
    object: &M,
    type_: EventType,
    reason: &str,
    note: String,
) {
    shared
        .events
        .publish(object, type_, reason, "Reconcile", note)
        .await;
}

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// Sets (or, for `null` values, removes) tether's annotations on the object.
    pub(super) async fn annotate(
        &self,
        object: &M,
        annotations: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Error> {
        let metadata = json!({ "annotations": annotations });
        crate::merge_metadata(self.api, &object.name_any(), metadata).await?;
        Ok(())
    }

    /// Adds the finalizer and sets `annotations`, in one write (see `finalizers`).
    pub(super) async fn annotate_and_finalize(
        &self,
        object: &M,
        annotations: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Error> {
        crate::finalizers::add_with_annotations(self.api, object, FINALIZER, annotations).await?;
        self.finalizer_added
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Writes `ready` and a successful `Synced` (with `synced` message and
    /// `atProvider`, when given).
    pub(super) async fn write_status(
        &self,
        object: &M,
        ready: ConditionUpdate,
        synced: Option<(String, M::AtProvider)>,
    ) -> Result<(), Error> {
        self.write_status_with(object, ready, synced, None, None)
            .await
    }

    /// [`ObjectReconcile::write_status`], and `status.passwordRotation` when given; `Synced` is
    /// False with `failed`'s reason when given (a rotation failed on a Ready resource).
    pub(super) async fn write_status_with(
        &self,
        object: &M,
        ready: ConditionUpdate,
        synced: Option<(String, M::AtProvider)>,
        password_rotation: Option<RotationStatus>,
        failed: Option<&Error>,
    ) -> Result<(), Error> {
        let (message, at_provider) = match synced {
            Some((message, at_provider)) => (message, Some(at_provider)),
            None => (String::new(), None),
        };
        let synced = match (failed, self.waiting_for_references.get()) {
            (Some(error), _) => fails(SYNCED, error.reason(), error.to_string()),
            (None, Some(waiting)) => fails(SYNCED, reasons::REFERENCE_NOT_READY, waiting.clone()),
            (None, None) => ConditionUpdate::holds(SYNCED, reasons::RECONCILE_SUCCESS, message),
        };
        let kind = M::kind(&());
        let metrics = &self.shared.settings.metrics;
        metrics.object_ready(&kind, &object.uid().unwrap_or_default(), Some(ready.status));
        let first_ready = status::write(
            self.api,
            object,
            StatusUpdate {
                conditions: vec![ready, synced],
                at_provider,
                password_rotation,
            },
        )
        .await?;
        if first_ready {
            let after = object
                .meta()
                .creation_timestamp
                .as_ref()
                .and_then(|created| {
                    Duration::try_from(k8s_openapi::jiff::Timestamp::now() - created.0).ok()
                })
                .unwrap_or_default();
            metrics.first_ready(&kind, after);
            // Logged, counted and in `status.firstReadyTime`; no Event: at one write
            // per object it would make a burst slower by a fifth (the `Created` Event
            // says what tether did).
            tracing::info!(
                "{kind} {} is Ready, {} s after the object was created",
                self.external_name(object).unwrap_or_default(),
                after.as_secs()
            );
        }
        Ok(())
    }

    /// Adds the finalizer (see `finalizers`: adding it again while the cache does not
    /// show it yet changes nothing).
    pub(super) async fn add_finalizer(&self, object: &M) -> Result<(), Error> {
        crate::finalizers::add(self.api, object, FINALIZER).await?;
        Ok(())
    }

    pub(super) async fn event(&self, object: &M, type_: EventType, reason: &str, note: String) {
        publish_event(self.shared, object, type_, reason, note).await;
    }

    pub(super) fn requeue_poll(&self) -> Action {
        Action::requeue(jitter(self.poll_interval()))
    }

    /// The object's poll interval: its annotation's, or the controller's.
    pub(super) fn poll_interval(&self) -> Duration {
        self.annotations
            .poll_interval
            .unwrap_or(self.shared.settings.poll_interval)
    }

    /// A look soon: right after a create, or after adding the finalizer.
    pub(super) fn requeue_soon(&self) -> Action {
        Action::requeue(jitter(
            FIRST_LOOK_AFTER_CREATE.min(self.shared.settings.wait_interval),
        ))
    }

    pub(super) fn requeue_wait(&self) -> Action {
        Action::requeue(jitter(self.shared.settings.wait_interval))
    }
}

pub(super) fn fails(
    type_: &'static str,
    reason: &str,
    message: impl Into<String>,
) -> ConditionUpdate {
    ConditionUpdate::fails(type_, reason, message)
}
