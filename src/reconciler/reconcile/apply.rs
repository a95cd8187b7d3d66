//! The observe step (9 of the order): observe the cloud resource, then create it, wait
//! for a create on its way, or bring it in line (update the delta), publishing the
//! credentials it needs first.

use std::collections::BTreeSet;

use kube::{
    ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tether_api::{
    ErrorClass,
    conditions::{self, ConditionUpdate, READY, reasons},
    external::{Connector, Context, Delta, ExternalClient, Observation, ObservedOf, Readiness},
    managed::{
        APPLIED_TAGS_ANNOTATION, CREATE_PENDING_ANNOTATION, EXTERNAL_NAME_ANNOTATION, Managed,
        ManagementPolicy,
    },
};

use super::{
    super::{
        error::{Error, Phase},
        ownership::{self, CREATE_GRACE, CREATE_RETRY_AFTER, WhenMissing, Whose},
        references,
    },
    CloudWrites, NO_TAGS, ObjectReconcile, announce_failure, fails, freshness,
};
use crate::{FIELD_MANAGER, connection_secret::Publisher};

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// The object exists: bring its cloud resource in line and publish its Secret.
    pub(super) async fn apply(&self, object: &M) -> Result<Action, Error> {
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
        let secrets = super::super::secret_keys::read(kube, object)
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

    /// Creates the resource; `repeat` is the time of the first attempt when this
    /// sends that create again (the cloud did not show its result yet).
    pub(super) async fn create(
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
    pub(super) async fn keep(
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
            Some(due) if settled && due < self.poll_interval() => Action::requeue(due),
            _ if settled => self.requeue_poll(),
            _ => self.requeue_wait(),
        })
    }

    /// Publishes credentials the provider wants in place before a create or update,
    /// marked pending; returns whether it did. The reconcile then ends: the Secret's
    /// watch event starts the next one, which makes the cloud call with the published
    /// credentials (`context.credentials_pending` set). Calling now as well would call twice
    /// whenever the call fails.
    pub(super) async fn prepare(
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

    pub(super) async fn connect(&self, object: &M) -> Result<C::Client, Error> {
        self.shared
            .connector
            .connect(object)
            .await
            .map_err(Error::provider(Phase::Connect))
    }

    pub(super) fn external_name(&self, object: &M) -> Option<String> {
        self.annotations
            .external_name
            .clone()
            .or_else(|| object.default_external_name())
    }

    /// The annotation recording the keys of the spec's tags, now applied, when it does
    /// not say so already; empty otherwise.
    pub(super) fn tags_to_record(&self, object: &M) -> serde_json::Map<String, serde_json::Value> {
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
}
