//! Refusing a resource that is not the object's: whose a resource is (its UID tag
//! against live objects, adoption asked for), and the conditions and Events that say
//! why tether leaves it alone.

use kube::{
    ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tether_api::{
    conditions::{READY, SYNCED, reasons},
    external::{Connector, ObservedOf},
    managed::{EXTERNAL_NAME_ANNOTATION, Managed, ManagementPolicy},
};

use super::{
    super::{
        error::Error,
        liveness,
        ownership::{self, Owner, Whose},
        status::{self, StatusUpdate},
    },
    ObjectReconcile, fails,
};
use crate::FIELD_MANAGER;

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// Whose the observed resource is, for this object: whether the UID it records is
    /// this object's, another live object's or a gone one's, and whether the user asked
    /// to adopt it.
    pub(super) async fn whose(&self, object: &M, observed: &ObservedOf<M>) -> Result<Whose, Error> {
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
    pub(super) async fn refuse_foreign(
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
    pub(super) async fn refuse_owned_by_another(
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
    pub(super) async fn refuse(
        &self,
        object: &M,
        reason: &str,
        message: String,
    ) -> Result<Action, Error> {
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
    pub(super) fn shown_name(&self, object: &M, observed: &ObservedOf<M>) -> String {
        observed
            .external_name
            .clone()
            .or_else(|| self.external_name(object))
            .unwrap_or_else(|| "(unnamed)".to_owned())
    }
}
