//! One reconcile of one managed object: the step `decision` picks, carried out, and
//! the record (conditions, Events, next look) of how it went. This file holds the
//! order; its parts live beside it:
//! - `apply`: step 9, observe then create, wait or update, credentials first;
//! - `refusal`: a resource that is not the object's, left alone and said so;
//! - `deletion`: deleting per policy, and letting go when the CRD goes;
//! - `rotation`: the password rotation a DBInstance asks for;
//! - `record`: failures, marks, finalizer, status writes, Events and the next look.

mod apply;
mod deletion;
mod record;
mod refusal;
mod rotation;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kube::{Api, ResourceExt, runtime::controller::Action};
use tether_api::{
    conditions::{self, ConditionUpdate, READY, SYNCED, reasons},
    external::Connector,
    managed::{ControlAnnotations, Managed, PAUSED_ANNOTATION},
    snapshot::Freshness,
};
use tracing::Instrument;

use super::{
    Shared,
    decision::{self, Known, Step},
    error::Error,
    pacing::jitter,
    status::{self, StatusUpdate},
};
use crate::{crds, telemetry};
use record::{announce_failure, fails, publish_event, record_failure};

/// The finalizer that keeps an object until its cloud resource is dealt with.
pub const FINALIZER: &str = "tether.dev/finalizer";

/// `Context::applied_tags` before tether recorded any.
static NO_TAGS: BTreeSet<String> = BTreeSet::new();

/// When to look at a resource right after creating it: many (subnet groups, security
/// groups) are usable at once, and the objects waiting for them should not wait a
/// whole wait interval. Also when to come back after adding a new object's finalizer.
const FIRST_LOOK_AFTER_CREATE: Duration = Duration::from_secs(2);

/// Reconciles `object` inside its span ([`telemetry::reconcile_span`]); every outcome
/// the object can show is recorded on it, so only a failure to record reaches the
/// controller's error policy.
pub async fn reconcile<M, C>(object: Arc<M>, shared: Arc<Shared<C>>) -> Result<Action, Error>
where
    M: Managed,
    C: Connector<M>,
{
    let span = telemetry::reconcile_span(&*object);
    measured(object, shared).instrument(span).await
}

/// Reconciles `object` and records the outcome in the metrics.
async fn measured<M, C>(object: Arc<M>, shared: Arc<Shared<C>>) -> Result<Action, Error>
where
    M: Managed,
    C: Connector<M>,
{
    let api: Api<M> = Api::namespaced(shared.kube.clone(), &object.namespace().unwrap_or_default());
    let started = std::time::Instant::now();
    let kind = M::kind(&());
    let uid = object.uid().unwrap_or_default();
    let metrics = &shared.settings.metrics;
    if object.meta().deletion_timestamp.is_some() {
        metrics.object_ready(&kind, &uid, None);
    } else {
        metrics.object_ready(
            &kind,
            &uid,
            Some(conditions::is_true(object.conditions(), READY)),
        );
    }
    // The class of the failure the reconcile ended with, if it did (waiting is none).
    let (outcome, failure) = match attempt(&api, object.clone(), &shared).await {
        Ok(action) => {
            shared.pacing.succeeded(&uid);
            (Ok(action), None)
        }
        Err(error) => {
            let failure = error.is_failure().then(|| error.class());
            match record_failure(&api, &object, &shared, error).await {
                Ok(action) => (Ok(action), failure),
                Err(unrecorded) => {
                    let failure = Some(unrecorded.class());
                    (Err(unrecorded), failure)
                }
            }
        }
    };
    metrics.reconciled(&kind, failure, started.elapsed());
    outcome
}

/// Gathers what is known of the object, decides the next step (see `decision` for
/// the order) and carries it out.
async fn attempt<M, C>(api: &Api<M>, object: Arc<M>, shared: &Shared<C>) -> Result<Action, Error>
where
    M: Managed,
    C: Connector<M>,
{
    let deleting = object.meta().deletion_timestamp.is_some();
    let has_finalizer = object.finalizers().iter().any(|f| f == FINALIZER);
    let uid = object.uid().unwrap_or_default();
    let annotations = ControlAnnotations::parse(object.annotations());
    let known = Known {
        deleting,
        has_finalizer,
        crd_deleting: deleting && has_finalizer && crds::being_deleted::<M>(&shared.kube).await?,
        paused: annotations
            .as_ref()
            .ok()
            .map(|annotations| annotations.paused),
        throttled_for: shared
            .pacing
            .throttled_for(&object.managed_fields().provider_config_ref.name),
        finalizer_in_flight: !has_finalizer && shared.pacing.finalizer_in_flight(&uid),
    };
    if has_finalizer {
        shared.pacing.finalizer_seen(&uid);
    }
    let object_reconcile = |mut annotations: ControlAnnotations, cloud_writes| {
        // The mark this process wrote with the finalizer, for a create it has not sent
        // yet: that create is to be sent, not waited for.
        let planned_create = annotations
            .create_sent
            .filter(|marked| shared.pacing.planned_create(&uid) == Some(*marked));
        if planned_create.is_some() {
            annotations.create_sent = None;
        } else if let Some(sent) = shared.pacing.create_in_flight(&uid) {
            // This process sent a create the cache may not show the record of yet:
            // without it, the resource the cloud does not show yet would look missing.
            annotations.create_sent = Some(sent.attempt);
            annotations.external_name = annotations.external_name.or(sent.external_name);
        }
        annotations.create_sent = annotations
            .create_sent
            .filter(|sent| !seen_ready_since(&*object, *sent));
        ObjectReconcile {
            api,
            shared,
            annotations,
            planned_create,
            waiting_for_references: std::sync::OnceLock::new(),
            cloud_writes,
            finalizer_added: std::sync::atomic::AtomicBool::new(false),
        }
    };
    match decision::next_step(&known) {
        Step::LetGo => deletion::let_go_with_crd(api, &object, shared).await,
        Step::Unreadable => Err(annotations
            .expect_err("the decision saw the annotations unreadable")
            .into()),
        Step::Paused { deleting } => paused(api, &*object, deleting).await,
        Step::Throttled { wait } => {
            tracing::debug!(provider_config = %object.managed_fields().provider_config_ref.name, ?wait, "holding back while the cloud throttles");
            Ok(Action::requeue(wait + jitter(Duration::from_secs(1))))
        }
        Step::Delete => {
            let action = object_reconcile(annotations?, CloudWrites::Allowed)
                .cleanup(&object)
                .await?;
            deletion::remove_finalizer(api, &*object).await?;
            Ok(action)
        }
        Step::Released => Ok(Action::await_change()),
        // Woken (by its Secret's watch event) before the cache shows the finalizer this
        // controller added: the finalizer's own event brings the object back.
        Step::AwaitFinalizer => Ok(Action::requeue(jitter(FIRST_LOOK_AFTER_CREATE))),
        Step::AddFinalizer => {
            // A new object: its finalizer goes on in the reconcile that publishes the
            // Secret a create needs, in one patch with the create's marks, or after
            // recording what it found. That reconcile makes no cloud write: the
            // finalizer's watch event brings the object straight back, and a refused
            // call would then be sent twice.
            let reconcile = object_reconcile(annotations?, CloudWrites::Withheld);
            let action = reconcile.apply(&object).await?;
            if !reconcile
                .finalizer_added
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                reconcile.add_finalizer(&object).await?;
            }
            shared.pacing.finalizer_added(&uid);
            Ok(action)
        }
        Step::Observe => {
            object_reconcile(annotations?, CloudWrites::Allowed)
                .apply(&object)
                .await
        }
    }
}

/// Says on the object that it is paused, and that its deletion waits when it is being
/// deleted; nothing else happens until the annotation changes.
async fn paused<M: Managed>(api: &Api<M>, object: &M, deleting: bool) -> Result<Action, Error> {
    let (reason, message) = if deleting {
        (
            reasons::DELETION_PAUSED,
            format!(
                "the object is being deleted, but {PAUSED_ANNOTATION} is \"true\": remove \
                 the annotation to let tether act on deletionPolicy {:?}",
                object.deletion_policy()
            ),
        )
    } else {
        (
            reasons::RECONCILE_PAUSED,
            format!("{PAUSED_ANNOTATION} is \"true\": tether makes no cloud call for this object"),
        )
    };
    status::write(
        api,
        object,
        StatusUpdate::conditions(vec![ConditionUpdate::fails(SYNCED, reason, message)]),
    )
    .await?;
    Ok(Action::await_change())
}

/// How a shared snapshot may answer when `object` is observed: from a listing up to
/// the poll interval old for a Ready, up-to-date object (a routine check: one listing
/// answers every such object of the kind); up to the wait interval while it or its
/// resource changes; from the object's own recent reads only while its resource was
/// never seen and no create is on its way (no listing holds it, so such objects must
/// not make one). The snapshot never says a resource is missing from a listing, and
/// never answers for a resource written since. Deletion reads directly (it builds its
/// context with [`Context::named`]).
fn freshness<M: Managed>(
    object: &M,
    annotations: &ControlAnnotations,
    settings: &super::Settings,
) -> Freshness {
    let generation = object.meta().generation;
    let current_and_true = |type_: &str| {
        conditions::find(object.conditions(), type_).is_some_and(|condition| {
            condition.observed_generation == generation && condition.status == "True"
        })
    };
    let seen = conditions::find(object.conditions(), SYNCED).is_some()
        || annotations.create_sent.is_some();
    if current_and_true(READY) && current_and_true(SYNCED) {
        Freshness::Shared(annotations.poll_interval.unwrap_or(settings.poll_interval))
    } else if seen {
        Freshness::Shared(settings.wait_interval)
    } else {
        Freshness::Reads(settings.wait_interval)
    }
}

/// Whether `object`'s `Ready` turned True at or after `sent` (to the second, the
/// precision a condition's time is kept to): the resource that create made was seen
/// Ready, so the create is no longer on its way. Its mark then stays on the object,
/// void, until a create sends a new one: removing it would cost a write per object.
fn seen_ready_since<M: Managed>(object: &M, sent: k8s_openapi::jiff::Timestamp) -> bool {
    conditions::find(object.conditions(), READY).is_some_and(|ready| {
        ready.status == "True" && ready.last_transition_time.0.as_second() >= sent.as_second()
    })
}

/// The poll interval of `object`: its annotation's, or the controller's (read from
/// the annotations again: for a reconcile that failed before it parsed them; one that
/// has them asks [`ObjectReconcile::poll_interval`]).
fn poll_interval<M: Managed>(object: &M, settings: &super::Settings) -> Duration {
    ControlAnnotations::parse(object.annotations())
        .ok()
        .and_then(|annotations| annotations.poll_interval)
        .unwrap_or(settings.poll_interval)
}

/// One reconcile of an object that is observed or deleted (steps 5, 8 and 9 of the
/// order), with what it needs at hand.
struct ObjectReconcile<'a, M, C> {
    api: &'a Api<M>,
    shared: &'a Shared<C>,
    annotations: ControlAnnotations,
    /// The attempt whose mark this process wrote with the finalizer and has not sent
    /// yet (see [`Pacing::create_planned`](super::pacing::Pacing::create_planned)).
    planned_create: Option<k8s_openapi::jiff::Timestamp>,
    /// Why references not needed to create are not resolved yet, once known: the
    /// reconcile goes on without them, and `Synced` says what it waits for.
    waiting_for_references: std::sync::OnceLock<String>,
    /// Whether this reconcile may write to the cloud.
    cloud_writes: CloudWrites,
    /// Whether this reconcile added the finalizer (with a create's marks).
    finalizer_added: std::sync::atomic::AtomicBool,
}

/// Whether a reconcile may write to the cloud: not the one that adds a new object's
/// finalizer (step 8 of the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloudWrites {
    Allowed,
    Withheld,
}
