//! One reconcile of a claim. Before anything is made, the claim is checked against
//! its class (does it exist, is the namespace selected, are the choices allowed, do
//! the per-namespace limits leave room); a refused claim says why in `Synced=False`
//! and nothing is made. What an admitted claim was granted goes into its status
//! first (the limits count it from there; see `admission`), then its managed object
//! is written by server-side apply, forced, so a hand edit of it is put back. Its
//! state (AWS's messages included) is copied to the claim. Deleting a claim deletes the object, whose own
//! deletion policy then acts, and the claim stays until the object is gone.

use std::sync::Arc;

use k8s_openapi::{
    api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tether_api::{
    claim::{CLASS_CHANGED, CLASS_GENERATION_ANNOTATION, Claim, ClaimStatus, Class},
    conditions::{self, ConditionUpdate, READY, SYNCED, reasons, set_condition},
    managed::Managed,
    provider_config,
};

use super::{
    CLAIM_FINALIZER, Error, Shared,
    admission::{Holding, Limits},
};
use tracing::Instrument;

use crate::{FIELD_MANAGER, crds, finalizers, telemetry};

#[cfg(test)]
mod tests;

/// Reconciles one claim: build or keep its managed object, or delete it. The claim's
/// finalizer goes on first (its watch event brings the claim back), and comes off once
/// the cleanup of a claim being deleted succeeds.
pub(super) async fn reconcile<C: Claim>(
    claim: Arc<C>,
    shared: Arc<Shared<C>>,
) -> Result<Action, Error> {
    let span = telemetry::reconcile_span(&*claim);
    reconcile_in_span(claim, shared).instrument(span).await
}

/// [`reconcile`], inside the claim's span.
async fn reconcile_in_span<C: Claim>(
    claim: Arc<C>,
    shared: Arc<Shared<C>>,
) -> Result<Action, Error> {
    let api: Api<C> = Api::namespaced(shared.kube.clone(), &namespace(&*claim));
    let deleting = claim.meta().deletion_timestamp.is_some();
    let has_finalizer = claim.finalizers().iter().any(|f| f == CLAIM_FINALIZER);
    match (deleting, has_finalizer) {
        (false, false) => {
            finalizers::add(&api, &*claim, CLAIM_FINALIZER).await?;
            Ok(Action::await_change())
        }
        (false, true) => ClaimReconcile::new(&*claim, &*shared).apply().await,
        (true, true) => {
            let action = ClaimReconcile::new(&*claim, &*shared).cleanup().await?;
            finalizers::remove(&api, &*claim, CLAIM_FINALIZER).await?;
            Ok(action)
        }
        (true, false) => Ok(Action::await_change()),
    }
}

/// Why a claim gets no (new) resource: a condition reason and a message.
struct Refusal {
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The reconcile of one claim, with what it needs at hand.
struct ClaimReconcile<'a, C: Claim> {
    claim: &'a C,
    shared: &'a Shared<C>,
    claims: Api<C>,
    managed: Api<C::Managed>,
}

impl<'a, C: Claim> ClaimReconcile<'a, C> {
    fn new(claim: &'a C, shared: &'a Shared<C>) -> Self {
        let namespace = namespace(claim);
        Self {
            claim,
            shared,
            claims: Api::namespaced(shared.kube.clone(), &namespace),
            managed: Api::namespaced(shared.kube.clone(), &namespace),
        }
    }

    /// The managed object of the claim's name, and whether it is this claim's.
    async fn managed_object(&self) -> Result<Option<(C::Managed, bool)>, Error> {
        let object = self.managed.get_opt(&self.claim.name_any()).await?;
        Ok(object.map(|object| {
            let ours = controlled_by(&object, self.claim);
            (object, ours)
        }))
    }

    async fn apply(&self) -> Result<Action, Error> {
        let (mine, refusal) = match self.managed_object().await? {
            Some((_, false)) => (
                None,
                Some(Refusal::new(
                    "Conflict",
                    format!(
                        "{} {} already exists and is not this claim's; tether does not take it over",
                        C::Managed::kind(&()),
                        self.claim.name_any()
                    ),
                )),
            ),
            Some((object, true)) => (Some(object), None),
            None => (None, None),
        };
        if let Some(refusal) = refusal {
            return self.refuse(mine.as_ref(), refusal).await;
        }
        let classes: Api<C::Class> = Api::all(self.shared.kube.clone());
        let class_kind = C::Class::kind(&());
        let class_name = self.claim.class_name();
        let class = match classes.get_opt(class_name).await? {
            None => {
                let refusal = Refusal::new(
                    reasons::CLASS_NOT_FOUND,
                    format!("{class_kind} {class_name} does not exist"),
                );
                return self.refuse(mine.as_ref(), refusal).await;
            }
            Some(class) if class.meta().deletion_timestamp.is_some() && mine.is_none() => {
                let refusal = Refusal::new(
                    reasons::CLASS_NOT_FOUND,
                    format!("{class_kind} {class_name} is being deleted"),
                );
                return self.refuse(mine.as_ref(), refusal).await;
            }
            Some(class) => class,
        };
        let built = match self.check(&class, mine.is_some()).await? {
            Ok(built) => built,
            Err(refusal) => return self.refuse(mine.as_ref(), refusal).await,
        };
        if class.meta().deletion_timestamp.is_none() {
            finalizers::add(&classes, &class, &self.shared.class_finalizer).await?;
        }
        self.record_grant(&built).await?;
        let mut object = self.claim.compose(&class, &built.settings);
        let meta = object.meta_mut();
        meta.namespace = self.claim.namespace();
        meta.owner_references = self
            .claim
            .controller_owner_ref(&())
            .map(|owner| vec![owner]);
        let applied = self
            .managed
            .patch(
                &self.claim.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        if mine.is_none() {
            self.publish(
                EventType::Normal,
                reasons::CREATED,
                format!(
                    "created {} {} from {class_kind} {class_name} (generation {})",
                    C::Managed::kind(&()),
                    applied.name_any(),
                    class.meta().generation.unwrap_or_default()
                ),
            )
            .await;
        }
        self.report(&class, &applied, built).await?;
        Ok(Action::requeue(self.shared.settings.poll_interval))
    }

    /// The class's checks, in the order a team would fix them: the namespace, the
    /// choices, the limits. Returns the settings to build with.
    async fn check(
        &self,
        class: &C::Class,
        admitted: bool,
    ) -> Result<Result<Built<C>, Refusal>, Error> {
        let namespace = namespace(self.claim);
        let class_kind = C::Class::kind(&());
        let class_name = class.name_any();
        let labels = Api::<Namespace>::all(self.shared.kube.clone())
            .get_metadata(&namespace)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        match provider_config::namespace_selected(class.namespace_selector(), &labels) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Err(Refusal::new(
                    reasons::NOT_ALLOWED,
                    format!(
                        "namespace {namespace} may not use {class_kind} {class_name}: its labels do not match the class's namespaceSelector"
                    ),
                )));
            }
            Err(error) => {
                return Ok(Err(Refusal::new(
                    reasons::NOT_ALLOWED,
                    format!("{class_kind} {class_name}'s {error}"),
                )));
            }
        }
        let wanted = match self.claim.settings(class) {
            Ok(wanted) => wanted,
            Err(refusals) => {
                return Ok(Err(Refusal::new(
                    reasons::NOT_ALLOWED,
                    format!("{class_kind} {class_name}: {}", refusals.join("; ")),
                )));
            }
        };
        let previous = self.claim.claim_status();
        let built_with = previous.and_then(|status| status.settings.as_ref());
        let generation = class.meta().generation;
        let accepted = self
            .claim
            .annotations()
            .get(CLASS_GENERATION_ANNOTATION)
            .and_then(|value| value.parse::<i64>().ok())
            .is_some_and(|accepted| Some(accepted) >= generation);
        let (settings, waiting, class_generation) = match built_with.filter(|_| admitted) {
            Some(built) if accepted => (
                self.claim.accept_changes(&wanted, built),
                Vec::new(),
                generation,
            ),
            Some(built) => {
                let (settings, waiting) = self.claim.keep_unsafe_changes(&wanted, built);
                let built_from = if waiting.is_empty() {
                    generation
                } else {
                    previous.and_then(|status| status.class_generation)
                };
                (settings, waiting, built_from)
            }
            None => (wanted, Vec::new(), generation),
        };
        let grows =
            built_with.is_some_and(|built| C::storage_gib(&settings) > C::storage_gib(built));
        let me = Holding {
            uid: self.claim.uid().unwrap_or_default(),
            admitted,
            created: created(self.claim),
            name: self.claim.name_any(),
            storage_gib: C::storage_gib(&settings),
        };
        let limits = Limits {
            claims: class.claims_per_namespace(),
            storage_gib: class.storage_gib_per_namespace(),
        };
        // Under the lock: what the other claims hold, the decision, and the grant.
        let refusal = {
            let mut grants = self.shared.grants();
            grants.admit(&me, grows, &self.others(class), limits)
        };
        if let Some(message) = refusal {
            return Ok(Err(Refusal::new(
                reasons::QUOTA_EXCEEDED,
                format!("{class_kind} {class_name}: {message}"),
            )));
        }
        Ok(Ok(Built {
            settings,
            waiting,
            class_generation,
        }))
    }

    /// The other claims of the class in the claim's namespace that hold or may get a
    /// resource (from the controller's cache).
    fn others(&self, class: &C::Class) -> Vec<Holding> {
        let namespace = self.claim.namespace();
        self.shared
            .claims
            .state()
            .into_iter()
            .filter(|other| {
                other.namespace() == namespace
                    && other.class_name() == self.claim.class_name()
                    && other.uid() != self.claim.uid()
            })
            .filter_map(|other| {
                let recorded = other
                    .claim_status()
                    .filter(|status| status.resource_name.is_some());
                let storage = match recorded.and_then(|status| status.settings.as_ref()) {
                    Some(settings) => C::storage_gib(settings),
                    // Deleted before it got anything, or refused by its choices: it
                    // takes no place.
                    None if other.meta().deletion_timestamp.is_some() => return None,
                    None => C::storage_gib(&other.settings(class).ok()?),
                };
                Some(Holding {
                    uid: other.uid().unwrap_or_default(),
                    admitted: recorded.is_some(),
                    created: created(&*other),
                    name: other.name_any(),
                    storage_gib: storage,
                })
            })
            .collect()
    }

    /// Writes what the claim was granted (its settings, and that it has a resource)
    /// into its status before the resource is made or changed, so that no process
    /// ever sees a resource larger than its claim's record: a restart between the two
    /// writes leaves a record ahead of the resource, which only errs on refusing.
    async fn record_grant(&self, built: &Built<C>) -> Result<(), Error> {
        let status = ClaimStatus {
            settings: Some(built.settings.clone()),
            resource_name: Some(self.claim.name_any()),
            ..self.claim.claim_status().cloned().unwrap_or_default()
        };
        self.write_status(status, Vec::new()).await
    }

    /// Records a refusal: `Synced=False` with its reason, a Warning Event when it is
    /// new; `Ready` follows the resource if the claim already has one.
    async fn refuse(&self, mine: Option<&C::Managed>, refusal: Refusal) -> Result<Action, Error> {
        let previous = self.claim.claim_status().cloned().unwrap_or_default();
        let already = conditions::find(&previous.conditions, SYNCED)
            .is_some_and(|c| c.reason == refusal.reason && c.message == refusal.message);
        if !already {
            tracing::info!(reason = refusal.reason, "{}", refusal.message);
            self.publish(EventType::Warning, refusal.reason, refusal.message.clone())
                .await;
        }
        let ready = match mine {
            Some(object) => mirrored::<C>(object, READY),
            None => ConditionUpdate::fails(READY, refusal.reason, refusal.message.clone()),
        };
        let status = ClaimStatus {
            endpoint: mine.and_then(C::endpoint),
            ..previous
        };
        let updates = vec![
            ready,
            ConditionUpdate::fails(SYNCED, refusal.reason, refusal.message),
        ];
        self.write_status(status, updates).await?;
        // The namespace's labels and the class are not all watched for this: look
        // again at the poll interval.
        Ok(Action::requeue(self.shared.settings.poll_interval))
    }

    /// Copies the managed object's state to the claim.
    async fn report(
        &self,
        class: &C::Class,
        applied: &C::Managed,
        built: Built<C>,
    ) -> Result<(), Error> {
        let class_kind = C::Class::kind(&());
        let generation = class.meta().generation.unwrap_or_default();
        let class_changed = if built.waiting.is_empty() {
            ConditionUpdate::fails(
                CLASS_CHANGED,
                reasons::UP_TO_DATE,
                format!(
                    "built from {class_kind} {} generation {generation}",
                    class.name_any()
                ),
            )
        } else {
            let message = format!(
                "{class_kind} {} changed {} (generation {generation}); that would restart or replace the resource, so it waits for you: to apply it, run `kubectl annotate {} {} {CLASS_GENERATION_ANNOTATION}={generation} --overwrite`",
                class.name_any(),
                built.waiting.join(", "),
                C::kind(&()).to_lowercase(),
                self.claim.name_any(),
            );
            let was_waiting = self
                .claim
                .claim_status()
                .and_then(|status| conditions::find(&status.conditions, CLASS_CHANGED))
                .is_some_and(|c| c.status == "True" && c.message == message);
            if !was_waiting {
                self.publish(EventType::Normal, reasons::CLASS_CHANGED, message.clone())
                    .await;
            }
            ConditionUpdate::holds(CLASS_CHANGED, reasons::CHANGES_WAITING, message)
        };
        let status = ClaimStatus {
            conditions: self
                .claim
                .claim_status()
                .map(|status| status.conditions.clone())
                .unwrap_or_default(),
            class_generation: built.class_generation,
            settings: Some(built.settings),
            resource_name: Some(applied.name_any()),
            connection_secret: Some(self.claim.connection_secret_name()),
            endpoint: C::endpoint(applied),
        };
        let updates = vec![
            mirrored::<C>(applied, READY),
            mirrored::<C>(applied, SYNCED),
            class_changed,
        ];
        self.write_status(status, updates).await
    }

    /// The claim is being deleted: delete its managed object (whose deletion policy
    /// then acts) and keep the claim until the object is gone. When the claim's CRD
    /// is being deleted (uninstalling), the object is left, without its owner.
    async fn cleanup(&self) -> Result<Action, Error> {
        let name = self.claim.name_any();
        let Some((object, true)) = self.managed_object().await? else {
            if let Some(uid) = self.claim.uid() {
                self.shared.grants().forget(&uid);
            }
            return Ok(Action::await_change());
        };
        let kind = C::Managed::kind(&());
        if crds::being_deleted::<C>(&self.shared.kube).await? {
            self.disown(&object).await?;
            let message = format!(
                "the CustomResourceDefinition of {} is being deleted: {kind} {name} is kept, no longer owned by the claim",
                C::kind(&())
            );
            tracing::warn!(object = %name, "{message}");
            self.publish(EventType::Warning, reasons::LEFT_IN_PLACE, message)
                .await;
            return Ok(Action::await_change());
        }
        if object.meta().deletion_timestamp.is_none() {
            self.managed.delete(&name, &DeleteParams::default()).await?;
            self.publish(
                EventType::Normal,
                reasons::DELETING,
                format!(
                    "deleting {kind} {name} (deletionPolicy {})",
                    object.deletion_policy()
                ),
            )
            .await;
        }
        let deleting = mirrored::<C>(&object, READY);
        let status = self.claim.claim_status().cloned().unwrap_or_default();
        self.write_status(
            status,
            vec![ConditionUpdate::fails(
                READY,
                reasons::DELETING,
                format!("{kind} {name} is being deleted: {}", deleting.message),
            )],
        )
        .await?;
        Err(Error::WaitingForDeletion)
    }

    /// Drops the claim's owner reference from `object`.
    async fn disown(&self, object: &C::Managed) -> Result<(), Error> {
        let owners: Vec<_> = object
            .owner_references()
            .iter()
            .filter(|owner| Some(&owner.uid) != self.claim.uid().as_ref())
            .cloned()
            .collect();
        let metadata = json!({
            "resourceVersion": object.resource_version(),
            "ownerReferences": owners,
        });
        crate::merge_metadata(&self.managed, &object.name_any(), metadata).await?;
        Ok(())
    }

    /// Writes `status` with `updates` applied to its conditions, when it changed.
    async fn write_status(
        &self,
        mut status: ClaimStatus<C::Settings>,
        updates: Vec<ConditionUpdate>,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        for update in updates {
            set_condition(
                &mut status.conditions,
                update,
                self.claim.meta().generation,
                now,
            );
        }
        if self.claim.claim_status() == Some(&status) {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": C::api_version(&()),
            "kind": C::kind(&()),
            "status": status,
        });
        self.claims
            .patch_status(
                &self.claim.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        self.shared
            .events
            .publish(self.claim, type_, reason, "Reconcile", note)
            .await;
    }
}

/// What a claim's resource is built with.
struct Built<C: Claim> {
    settings: C::Settings,
    /// The class's changes left out (not safe in place, not accepted yet).
    waiting: Vec<&'static str>,
    /// The class generation the resource reflects.
    class_generation: Option<i64>,
}

/// The managed object's condition `type_`, to be the claim's; a placeholder while the
/// object has not reported yet.
fn mirrored<C: Claim>(object: &C::Managed, type_: &'static str) -> ConditionUpdate {
    match conditions::find(object.conditions(), type_) {
        Some(Condition {
            status,
            reason,
            message,
            ..
        }) => ConditionUpdate {
            type_,
            status: status == "True",
            reason: reason.clone(),
            message: message.clone(),
        },
        None => ConditionUpdate::fails(
            type_,
            reasons::CREATING,
            format!(
                "waiting for {} {} to report",
                C::Managed::kind(&()),
                object.name_any()
            ),
        ),
    }
}

/// Whether `claim` is `object`'s controller.
fn controlled_by<C: Claim>(object: &C::Managed, claim: &C) -> bool {
    object
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && Some(&owner.uid) == claim.uid().as_ref())
}

fn namespace<K: Resource>(object: &K) -> String {
    object.meta().namespace.clone().unwrap_or_default()
}

fn created<K: Resource>(object: &K) -> Option<Timestamp> {
    object.meta().creation_timestamp.as_ref().map(|time| time.0)
}
