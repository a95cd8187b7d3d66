//! One reconcile of one managed object: the step `decision` picks, carried out, and
//! the record (conditions, Events, next look) of how it went.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::Patch,
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tether_api::{
    ErrorClass,
    conditions::{self, ConditionUpdate, READY, SYNCED, reasons},
    external::{Connector, Context, Delta, ExternalClient, Observation, ObservedOf, Readiness},
    managed::{
        APPLIED_TAGS_ANNOTATION, CREATE_PENDING_ANNOTATION, ControlAnnotations,
        EXTERNAL_NAME_ANNOTATION, Managed, ManagementPolicy, PAUSED_ANNOTATION,
    },
    rotation::RotationStatus,
    snapshot::Freshness,
};

use super::{
    Shared,
    decision::{self, Known, Step},
    error::{Error, Phase},
    liveness,
    ownership::{self, CREATE_GRACE, CREATE_RETRY_AFTER, Owner, WhenMissing, Whose},
    pacing::jitter,
    references,
    status::{self, StatusUpdate},
};
mod deletion;
mod rotation;
#[cfg(test)]
mod tests;

use tracing::Instrument;

use crate::{FIELD_MANAGER, connection_secret::Publisher, crds, telemetry};

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

/// Records a reconcile that stopped short and picks when to try again: Terminal waits
/// for a change (or the next poll), Transient and Throttled back off per object, and
/// Throttled also holds back every object of the same ProviderConfig.
async fn record_failure<M, C>(
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
async fn announce_failure<M, C>(object: &M, shared: &Shared<C>, error: &Error) -> Duration
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
        Freshness::Shared(poll_interval(object, settings))
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

/// The poll interval of `object`: its annotation's, or the controller's.
fn poll_interval<M: Managed>(object: &M, settings: &super::Settings) -> Duration {
    ControlAnnotations::parse(object.annotations())
        .ok()
        .and_then(|annotations| annotations.poll_interval)
        .unwrap_or(settings.poll_interval)
}

async fn publish_event<M: Managed, C>(
    shared: &Shared<C>,
    object: &M,
    type_: EventType,
    reason: &str,
    note: String,
) {
    crate::events::publish(&shared.recorder, object, type_, reason, "Reconcile", note).await;
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

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// The object exists: bring its cloud resource in line and publish its Secret.
    async fn apply(&self, object: &M) -> Result<Action, Error> {
        let kube = &self.shared.kube;
        let namespace = object.namespace().unwrap_or_default();
        let resolved = references::resolve(
            kube,
            &self.shared.references,
            &namespace,
            &object.references(),
            true,
        )
        .await?;
        if !resolved.waiting.is_empty() {
            let _ = self.waiting_for_references.set(resolved.waiting.join("; "));
        }
        let references = resolved.names;
        let client = self.connect(object).await?;
        let external_name = self.external_name(object);
        // A resource a user adopted may come with the Secret its last object left.
        let adopted = ownership::annotation_set_by_user(
            object.meta(),
            EXTERNAL_NAME_ANNOTATION,
            FIELD_MANAGER,
        )
        .then(|| {
            format!(
                "{}/{}",
                M::kind(&()),
                external_name.as_deref().unwrap_or_default()
            )
        });
        let mut publisher = Publisher::load(
            kube,
            object,
            object.credentials_secret().as_ref(),
            adopted.as_deref(),
            &self.shared.secrets,
        )
        .await?;
        self.carry_over_credentials(object, &mut publisher).await?;
        let published = publisher.published().clone();
        let secrets = super::secret_keys::read(kube, object)
            .await
            .map_err(Box::new)?;
        let context = Context {
            external_name: external_name.as_deref(),
            references: &references,
            secrets: &secrets,
            published: &published,
            // Credentials marked pending while a create is on its way are the ones that
            // create sent: they are applied once the resource is seen.
            credentials_pending: publisher.credentials_pending()
                && self.annotations.create_sent.is_none(),
            create_attempt: None,
            applied_tags: self.annotations.applied_tags.as_ref().unwrap_or(&NO_TAGS),
            freshness: freshness(object, &self.annotations, &self.shared.settings),
        };
        let observe_only =
            object.managed_fields().management_policy == ManagementPolicy::ObserveOnly;
        match client
            .observe(object, context)
            .await
            .map_err(Error::provider(Phase::Observe))?
        {
            Observation::Missing if observe_only => {
                let message = format!(
                    "{} {} does not exist in the cloud; ObserveOnly never creates it",
                    M::kind(&()),
                    external_name.as_deref().unwrap_or("(no external name)")
                );
                self.write_status(object, fails(READY, reasons::NOT_FOUND, message), None)
                    .await?;
                Ok(self.requeue_poll())
            }
            Observation::Missing => match WhenMissing::decide(
                self.annotations.create_sent,
                external_name.is_some(),
                k8s_openapi::jiff::Timestamp::now(),
            ) {
                WhenMissing::Wait(sent) => {
                    let message = format!(
                        "asked the cloud to create it at {sent}; waiting for the cloud to show it \
                         (reads lag behind writes), and creating nothing more until then"
                    );
                    tracing::debug!("{message}");
                    self.write_status(object, fails(READY, reasons::CREATING, message), None)
                        .await?;
                    Ok(self.requeue_wait())
                }
                WhenMissing::Repeat(sent)
                    if self.shared.pacing.create_repeat_due(
                        &object.uid().unwrap_or_default(),
                        CREATE_RETRY_AFTER,
                    ) =>
                {
                    tracing::info!(%sent, "the cloud does not show the resource yet: sending the same create again, in case the first never arrived");
                    self.create(object, &client, &mut publisher, context, Some(sent))
                        .await
                }
                WhenMissing::Repeat(_) => Ok(self.requeue_wait()),
                WhenMissing::Gone(sent) => {
                    let message = format!(
                        "the cloud shows neither the {kind} {name} created at {sent} nor any \
                         resource with this object's UID tag, {grace} s later: it is gone; \
                         creating it anew",
                        kind = M::kind(&()),
                        name = external_name.as_deref().unwrap_or_default(),
                        grace = CREATE_GRACE.as_secs()
                    );
                    tracing::warn!("{message}");
                    self.event(
                        object,
                        EventType::Warning,
                        reasons::GONE_AFTER_CREATE,
                        message,
                    )
                    .await;
                    self.create(object, &client, &mut publisher, context, None)
                        .await
                }
                WhenMissing::Missing => {
                    self.create(object, &client, &mut publisher, context, None)
                        .await
                }
            },
            Observation::Exists(observed) => {
                match self.whose(object, &observed).await? {
                    Whose::Ours | Whose::Adopted => {}
                    Whose::OwnedByAnother => {
                        return self.refuse_owned_by_another(object, &observed).await;
                    }
                    Whose::NotOurs { orphaned } => {
                        return self.refuse_foreign(object, &observed, orphaned).await;
                    }
                }
                self.keep(
                    object,
                    &client,
                    &mut publisher,
                    context,
                    observed,
                    observe_only,
                )
                .await
            }
        }
    }

    /// Whose the observed resource is, for this object: whether the UID it records is
    /// this object's, another live object's or a gone one's, and whether the user asked
    /// to adopt it.
    async fn whose(&self, object: &M, observed: &ObservedOf<M>) -> Result<Whose, Error> {
        let object_uid = object.uid();
        let recorded = observed.owner_uid.as_deref();
        let other_is_live = match recorded {
            Some(recorded) if object_uid.as_deref() != Some(recorded) => {
                liveness::owner_is_live(
                    &self.shared.kube,
                    &self.shared.references,
                    recorded,
                    self.shared.settings.namespace.is_none(),
                )
                .await?
            }
            _ => false,
        };
        let observe_only =
            object.managed_fields().management_policy == ManagementPolicy::ObserveOnly;
        let named_by_user = ownership::annotation_set_by_user(
            object.meta(),
            EXTERNAL_NAME_ANNOTATION,
            FIELD_MANAGER,
        );
        Ok(Whose::of(
            Owner::of(object_uid.as_deref(), recorded, other_is_live),
            observe_only || named_by_user,
        ))
    }

    /// The resource exists but was not created by this object, and no user adopted it:
    /// tether writes nothing to it and says so.
    async fn refuse_foreign(
        &self,
        object: &M,
        observed: &ObservedOf<M>,
        orphaned: bool,
    ) -> Result<Action, Error> {
        let kind = M::kind(&());
        let name = self.shown_name(object, observed);
        let carries = if orphaned {
            "it carries the UID of a tether object that no longer exists"
        } else {
            "it carries no tether UID"
        };
        let message = format!(
            "{kind} {name} exists in the cloud and was not created by this object ({carries}): \
             tether will neither change nor delete it. To manage it, set the annotation \
             {EXTERNAL_NAME_ANNOTATION}: {name}; for a new one, choose another name"
        );
        self.refuse(object, reasons::NOT_OWNED, message).await
    }

    /// The resource belongs to another object that still exists (in any namespace):
    /// this object gets nothing of it, not even its credentials, whatever it asks. The
    /// message names no other object: it may be another team's.
    async fn refuse_owned_by_another(
        &self,
        object: &M,
        observed: &ObservedOf<M>,
    ) -> Result<Action, Error> {
        let kind = M::kind(&());
        let name = self.shown_name(object, observed);
        let message = format!(
            "{kind} {name} exists in the cloud and belongs to another tether object that still \
             exists: tether will not adopt, observe, change or delete it for this object. Choose \
             another name; a resource moves to a new object only after its owner is deleted \
             with deletionPolicy Retain"
        );
        self.refuse(object, reasons::OWNED_BY_ANOTHER, message)
            .await
    }

    /// Says on the object, in a Warning Event and both conditions, why tether leaves
    /// the resource alone, and looks again at the next poll.
    async fn refuse(&self, object: &M, reason: &str, message: String) -> Result<Action, Error> {
        tracing::warn!(reason, "{message}");
        self.event(object, EventType::Warning, reason, message.clone())
            .await;
        status::write(
            self.api,
            object,
            StatusUpdate::conditions(vec![
                fails(READY, reason, message.clone()),
                fails(SYNCED, reason, message),
            ]),
        )
        .await?;
        Ok(self.requeue_poll())
    }

    /// The name to show for the observed resource.
    fn shown_name(&self, object: &M, observed: &ObservedOf<M>) -> String {
        observed
            .external_name
            .clone()
            .or_else(|| self.external_name(object))
            .unwrap_or_else(|| "(unnamed)".to_owned())
    }

    /// Creates the resource; `repeat` is the time of the first attempt when this
    /// sends that create again (the cloud did not show its result yet).
    async fn create(
        &self,
        object: &M,
        client: &C::Client,
        publisher: &mut Publisher,
        context: Context<'_>,
        repeat: Option<k8s_openapi::jiff::Timestamp>,
    ) -> Result<Action, Error> {
        // Published credentials come back with the Secret's watch event, a new object
        // with its finalizer's (added below, with the create's marks).
        let published = self.prepare(object, client, publisher, context).await?;
        if published && self.cloud_writes == CloudWrites::Allowed {
            return Ok(self.requeue_wait());
        }
        // Recorded in one patch before the call: the name, so that a later derivation
        // never looks elsewhere; the time of the attempt, so that a resource the cloud
        // does not show yet is waited for instead of created again; and the keys of
        // the tags the create applies. Its watch event triggers nothing (see
        // `annotations_but_bookkeeping`). A planned create's marks are written already.
        let uid = object.uid().unwrap_or_default();
        let planned = self.planned_create.filter(|_| repeat.is_none());
        let attempt = repeat
            .or(planned)
            .unwrap_or_else(k8s_openapi::jiff::Timestamp::now);
        let mut before_create = serde_json::Map::new();
        if planned.is_none() {
            before_create = self.tags_to_record(object);
            if self.annotations.external_name.is_none()
                && let Some(name) = context.external_name
            {
                before_create.insert(EXTERNAL_NAME_ANNOTATION.to_owned(), json!(name));
            }
            if repeat.is_none() {
                before_create.insert(
                    CREATE_PENDING_ANNOTATION.to_owned(),
                    json!(attempt.to_string()),
                );
            }
        }
        if self.cloud_writes == CloudWrites::Withheld {
            // A new object: the finalizer goes on with the marks, and the create waits
            // for the next reconcile, which the finalizer's watch event starts at once.
            // When the cache was behind and the finalizer was already there, no event
            // comes: hence a first look soon.
            self.annotate_and_finalize(object, before_create).await?;
            self.shared.pacing.create_planned(&uid, attempt);
            return Ok(self.requeue_soon());
        }
        if !before_create.is_empty() {
            self.annotate(object, before_create).await?;
        }
        self.shared.pacing.create_sent(&uid, attempt);
        let context = Context {
            create_attempt: Some(attempt),
            ..context
        };
        let created = match client.create(object, context).await {
            Ok(created) => created,
            Err(error) => {
                // A first attempt refused or throttled made nothing, so nothing is to be
                // waited for, and the next is a new attempt. A refused repeat says
                // nothing of the first, which may have made the resource the cloud does
                // not show yet: its mark stays, and so does its idempotency token.
                if repeat.is_none()
                    && matches!(error.class, ErrorClass::Terminal | ErrorClass::Throttled)
                {
                    self.shared.pacing.create_settled(&uid);
                    let cleared = serde_json::Map::from_iter([(
                        CREATE_PENDING_ANNOTATION.to_owned(),
                        serde_json::Value::Null,
                    )]);
                    if let Err(clear_error) = self.annotate(object, cleared).await {
                        tracing::debug!(error = %clear_error, "could not clear the create-pending mark");
                    }
                }
                return Err(Error::provider(Phase::Create)(error));
            }
        };
        if let Some(name) = &created.external_name {
            self.shared.pacing.create_answered(&uid, name);
            let named =
                serde_json::Map::from_iter([(EXTERNAL_NAME_ANNOTATION.to_owned(), json!(name))]);
            self.annotate(object, named).await?;
        }
        // Credentials published pending stay so until the resource is seen: that write
        // completes the Secret too.
        let name = created
            .external_name
            .as_deref()
            .or(context.external_name)
            .unwrap_or_default();
        tracing::info!(external_name = name, "created in the cloud");
        self.event(
            object,
            EventType::Normal,
            reasons::CREATED,
            format!("created {} {name}", M::kind(&())),
        )
        .await;
        // No status write: the first look, soon, writes what the cloud shows.
        Ok(self.requeue_soon())
    }

    /// The resource exists: update what differs (unless ObserveOnly), publish the
    /// connection Secret and report what the cloud says.
    async fn keep(
        &self,
        object: &M,
        client: &C::Client,
        publisher: &mut Publisher,
        context: Context<'_>,
        observed: ObservedOf<M>,
        observe_only: bool,
    ) -> Result<Action, Error> {
        let mut annotations = serde_json::Map::new();
        if let Some(name) = observed.external_name.as_deref().or(context.external_name)
            && self.annotations.external_name.as_deref() != Some(name)
        {
            // Found by its UID tag: after a create whose answer never came back, or in
            // place of a resource that is gone.
            tracing::info!(
                external_name = name,
                "found the cloud resource this object created"
            );
            annotations.insert(EXTERNAL_NAME_ANNOTATION.to_owned(), json!(name));
        }
        self.shared
            .pacing
            .create_settled(&object.uid().unwrap_or_default());
        // The mark of the create that made it goes, unless this reconcile's status
        // write turns Ready True, which makes it void (see `seen_ready_since`).
        let turns_ready = observed.readiness == Readiness::Ready
            && !conditions::is_true(object.conditions(), READY);
        if self.annotations.create_sent.is_some() && !turns_ready {
            annotations.insert(
                CREATE_PENDING_ANNOTATION.to_owned(),
                serde_json::Value::Null,
            );
        }
        if !annotations.is_empty() {
            self.annotate(object, annotations).await?;
        }
        let must_update = !observe_only && !observed.is_up_to_date();
        if must_update && self.cloud_writes == CloudWrites::Withheld {
            // Back with the finalizer's watch event, to update then.
            return Ok(self.requeue_wait());
        }
        // Credentials still marked pending on a resource that matches the spec were
        // applied (the create that used them succeeded, but clearing the mark did not).
        let mut pending = context.credentials_pending && !observed.is_up_to_date();
        if must_update {
            if self.prepare(object, client, publisher, context).await? {
                return Ok(self.requeue_wait());
            }
            client
                .update(object, context, &observed)
                .await
                .map_err(Error::provider(Phase::Update))?;
            pending = false;
            tracing::info!(fields = ?observed.delta.describe(), "updated in the cloud");
            self.event(
                object,
                EventType::Normal,
                reasons::UPDATED,
                format!("updated {}", observed.delta.describe().join(", ")),
            )
            .await;
        }
        let applied = self.tags_to_record(object);
        if !observe_only && !applied.is_empty() {
            self.annotate(object, applied).await?;
        }
        publisher
            .publish(object, &observed.connection, pending)
            .await?;
        let rotation = if observed.readiness == Readiness::Ready
            && !observe_only
            && !must_update
            && object.meta().deletion_timestamp.is_none()
        {
            self.rotate(object, client, publisher, &observed).await
        } else {
            Ok(None)
        };
        let synced_message = if observe_only && !observed.is_up_to_date() {
            format!(
                "ObserveOnly: the cloud resource differs from the spec in {}",
                observed.delta.describe().join(", ")
            )
        } else {
            String::new()
        };
        let ready = match &observed.readiness {
            Readiness::Ready => ConditionUpdate::holds(
                READY,
                reasons::AVAILABLE,
                "the cloud resource is ready to use",
            ),
            Readiness::NotReady { reason, message } => fails(READY, reason, message),
        };
        let settled = observed.readiness == Readiness::Ready
            && !must_update
            && self.waiting_for_references.get().is_none();
        let (rotation_status, next_rotation_step, rotation_failed) = match rotation {
            Ok(Some(rotation)) => (Some(rotation.status), Some(rotation.next_step_in), None),
            Ok(None) => (None, None, None),
            // The resource is Ready all the same; `Synced` says what failed.
            Err(error) => (None, None, Some(error)),
        };
        let retry_in = match &rotation_failed {
            Some(error) => Some(announce_failure(object, self.shared, error).await),
            None => None,
        };
        self.write_status_with(
            object,
            ready,
            Some((synced_message, observed.at_provider)),
            rotation_status,
            rotation_failed.as_ref(),
        )
        .await?;
        if let Some(delay) = retry_in {
            return Ok(Action::requeue(delay));
        }
        Ok(match next_rotation_step {
            // A rotation step falls due before the next poll: back then.
            Some(due) if settled && due < poll_interval(object, &self.shared.settings) => {
                Action::requeue(due)
            }
            _ if settled => self.requeue_poll(),
            _ => self.requeue_wait(),
        })
    }

    /// Publishes credentials the provider wants in place before a create or update,
    /// marked pending; returns whether it did. The reconcile then ends: the Secret's
    /// watch event starts the next one, which makes the cloud call with the published
    /// credentials (`context.credentials_pending` set). Calling now as well would call twice
    /// whenever the call fails.
    async fn prepare(
        &self,
        object: &M,
        client: &C::Client,
        publisher: &mut Publisher,
        context: Context<'_>,
    ) -> Result<bool, Error> {
        match client
            .prepare(object, context)
            .await
            .map_err(Error::provider(Phase::Prepare))?
        {
            Some(details) => Ok(publisher.publish(object, &details, true).await?),
            None => Ok(false),
        }
    }

    async fn connect(&self, object: &M) -> Result<C::Client, Error> {
        self.shared
            .connector
            .connect(object)
            .await
            .map_err(Error::provider(Phase::Connect))
    }

    fn external_name(&self, object: &M) -> Option<String> {
        self.annotations
            .external_name
            .clone()
            .or_else(|| object.default_external_name())
    }

    /// The annotation recording the keys of the spec's tags, now applied, when it does
    /// not say so already; empty otherwise.
    fn tags_to_record(&self, object: &M) -> serde_json::Map<String, serde_json::Value> {
        let Some(tags) = object.spec_tags() else {
            return serde_json::Map::new();
        };
        let keys: BTreeSet<String> = tags.keys().cloned().collect();
        if self.annotations.applied_tags.as_ref() == Some(&keys) {
            return serde_json::Map::new();
        }
        let keys = serde_json::to_string(&keys).expect("tag keys serialize");
        serde_json::Map::from_iter([(APPLIED_TAGS_ANNOTATION.to_owned(), json!(keys))])
    }

    /// Sets (or, for `null` values, removes) tether's annotations on the object.
    async fn annotate(
        &self,
        object: &M,
        annotations: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Error> {
        self.patch_metadata(object, json!({"annotations": annotations}))
            .await
    }

    /// Adds the finalizer and sets `annotations`, in one patch on condition that the
    /// object is still the version read (a list merge would drop others' finalizers
    /// added since).
    async fn annotate_and_finalize(
        &self,
        object: &M,
        annotations: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Error> {
        let mut finalizers = object.finalizers().to_vec();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            finalizers.push(FINALIZER.to_owned());
        }
        self.patch_metadata(
            object,
            json!({
                "resourceVersion": object.resource_version(),
                "finalizers": finalizers,
                "annotations": annotations,
            }),
        )
        .await?;
        self.finalizer_added
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Merges `metadata` into the object's, under tether's field manager.
    async fn patch_metadata(&self, object: &M, metadata: serde_json::Value) -> Result<(), Error> {
        let patch = json!({ "metadata": metadata });
        self.api
            .patch(
                &object.name_any(),
                &crate::patch_params(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Writes `ready` and a successful `Synced` (with `synced` message and
    /// `atProvider`, when given).
    async fn write_status(
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
    async fn write_status_with(
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
    async fn add_finalizer(&self, object: &M) -> Result<(), Error> {
        crate::finalizers::add(self.api, object, FINALIZER).await?;
        Ok(())
    }

    async fn event(&self, object: &M, type_: EventType, reason: &str, note: String) {
        publish_event(self.shared, object, type_, reason, note).await;
    }

    fn requeue_poll(&self) -> Action {
        let interval = self
            .annotations
            .poll_interval
            .unwrap_or(self.shared.settings.poll_interval);
        Action::requeue(jitter(interval))
    }

    /// A look soon: right after a create, or after adding the finalizer.
    fn requeue_soon(&self) -> Action {
        Action::requeue(jitter(
            FIRST_LOOK_AFTER_CREATE.min(self.shared.settings.wait_interval),
        ))
    }

    fn requeue_wait(&self) -> Action {
        Action::requeue(jitter(self.shared.settings.wait_interval))
    }
}

fn fails(type_: &'static str, reason: &str, message: impl Into<String>) -> ConditionUpdate {
    ConditionUpdate::fails(type_, reason, message)
}
