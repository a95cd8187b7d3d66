//! The deletion side of a reconcile: acting on the deletion policy, letting go of
//! what is not the object's to delete (someone else's resource, everything when the
//! CRD itself is going), and keeping the connection Secret of what stays.

use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tether_api::{
    conditions::{self, READY, reasons},
    external::{Connector, Context, ExternalClient, Observation},
    managed::{DeletionPolicy, EXTERNAL_NAME_ANNOTATION, Managed, ManagementPolicy},
};

use super::{
    super::{
        Shared,
        error::{Error, Phase},
        ownership, references,
    },
    FINALIZER, ObjectReconcile, fails, publish_event,
};
use crate::connection_secret;

/// The object's CustomResourceDefinition is being deleted, and the API server is
/// deleting every object of the kind with it: that is uninstalling, not a request to
/// delete cloud resources. The cloud resource is left alone, the connection Secret
/// loses its owner reference so that the credentials survive, and the finalizer goes.
pub(super) async fn let_go_with_crd<M, C>(
    api: &Api<M>,
    object: &M,
    shared: &Shared<C>,
) -> Result<Action, Error>
where
    M: Managed,
{
    let secret = orphan_connection_secret(&shared.kube, object).await?;
    let kind = M::kind(&());
    let external_name = object
        .annotations()
        .get(EXTERNAL_NAME_ANNOTATION)
        .map_or("(not recorded)", String::as_str);
    let message = format!(
        "the CustomResourceDefinition of {kind} is being deleted: {kind} {external_name} is left in the cloud{}",
        kept_secret(secret.as_deref())
    );
    tracing::warn!("{message}");
    publish_event(
        shared,
        object,
        EventType::Warning,
        reasons::LEFT_IN_CLOUD,
        message,
    )
    .await;
    remove_finalizer(api, object).await?;
    Ok(Action::await_change())
}

/// Drops the object's owner reference from its connection Secret, if it has one, and
/// from the Secret of its master credentials when that is another (with
/// `passwordRotation`), so that they outlive the object (an object adopting the same
/// cloud resource later takes them over); returns the connection Secret's name.
pub(super) async fn orphan_connection_secret<M: Managed>(
    kube: &kube::Client,
    object: &M,
) -> Result<Option<String>, Error> {
    let Some(target) = &object.managed_fields().write_connection_secret_to_ref else {
        return Ok(None);
    };
    let external_name = object
        .annotations()
        .get(EXTERNAL_NAME_ANNOTATION)
        .cloned()
        .or_else(|| object.default_external_name())
        .unwrap_or_default();
    let retained_from = format!("{}/{external_name}", M::kind(&()));
    if let Some(credentials) = object.credentials_secret()
        && credentials.name != target.name
    {
        connection_secret::orphan(kube, object, &credentials.name, &retained_from).await?;
    }
    Ok(connection_secret::orphan(kube, object, &target.name, &retained_from).await?)
}

/// ", and Secret <name> keeps its credentials", or nothing.
pub(super) fn kept_secret(secret: Option<&str>) -> String {
    secret.map_or_else(String::new, |name| {
        format!("; Secret {name} is kept with the credentials")
    })
}

/// Removes tether's finalizer, checking it is where it was.
pub(super) async fn remove_finalizer<M: Managed>(api: &Api<M>, object: &M) -> Result<(), Error> {
    crate::finalizers::remove(api, object, FINALIZER).await?;
    Ok(())
}

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// The object is being deleted: act per deletion policy, and let the finalizer go
    /// only when the cloud says the resource is gone (or it is to be kept).
    pub(super) async fn cleanup(&self, object: &M) -> Result<Action, Error> {
        let kind = M::kind(&());
        let external_name = self.external_name(object);
        let shown_name = external_name.as_deref().unwrap_or("(never created)");
        let policy = object.deletion_policy();
        let observe_only =
            object.managed_fields().management_policy == ManagementPolicy::ObserveOnly;
        if policy == DeletionPolicy::Retain || observe_only {
            let why = if observe_only {
                "managementPolicy ObserveOnly"
            } else {
                "deletionPolicy Retain"
            };
            let secret = orphan_connection_secret(&self.shared.kube, object).await?;
            let message = format!(
                "{why}: {kind} {shown_name} is left in the cloud{}",
                kept_secret(secret.as_deref())
            );
            tracing::info!("{message}");
            self.event(object, EventType::Normal, reasons::RETAINED, message)
                .await;
            return Ok(Action::await_change());
        }
        let namespace = object.namespace().unwrap_or_default();
        let references = references::resolve(
            &self.shared.kube,
            &self.shared.references,
            &namespace,
            &object.references(),
            false,
        )
        .await?
        .names;
        let client = self.connect(object).await?;
        // The connection Secret is not read: a foreign Secret must not block deletion.
        let context = Context {
            references: &references,
            ..Context::named(external_name.as_deref())
        };
        // The delete was sent: `Ready` says `Deleting` only once it was (before, while a
        // create the cloud does not show yet is awaited, it says `WaitingToDelete`).
        let deletion_started = conditions::find(object.conditions(), READY)
            .filter(|ready| ready.reason == reasons::DELETING);
        let observed = match client
            .observe(object, context)
            .await
            .map_err(Error::provider(Phase::Observe))?
        {
            Observation::Missing => {
                let now = k8s_openapi::jiff::Timestamp::now();
                let create_sent = self.annotations.create_sent;
                if !ownership::deletion_may_finish(create_sent, deletion_started.is_some(), now) {
                    // Letting go now would leave behind what the create made.
                    let message = format!(
                        "the {kind} created at {} is not visible yet; deleting it once the cloud \
                         shows it",
                        create_sent.map(|sent| sent.to_string()).unwrap_or_default()
                    );
                    self.write_status(
                        object,
                        fails(READY, reasons::WAITING_TO_DELETE, message),
                        None,
                    )
                    .await?;
                    return Err(Error::StillDeleting);
                }
                if deletion_started.is_none()
                    && let Some(sent) = create_sent
                {
                    let message = format!(
                        "the cloud never showed the {kind} created at {sent}, by its name nor by \
                         this object's UID tag: letting the object go"
                    );
                    tracing::warn!("{message}");
                    self.event(
                        object,
                        EventType::Warning,
                        reasons::NOT_FOUND_AFTER_CREATE,
                        message,
                    )
                    .await;
                }
                self.shared
                    .pacing
                    .create_settled(&object.uid().unwrap_or_default());
                tracing::info!("gone from the cloud");
                self.event(
                    object,
                    EventType::Normal,
                    reasons::DELETED,
                    format!("{kind} {shown_name} is gone from the cloud"),
                )
                .await;
                return Ok(Action::await_change());
            }
            Observation::Exists(observed) => observed,
        };
        if !self.whose(object, &observed).await?.is_ours_to_act_on() {
            let name = self.shown_name(object, &observed);
            let message =
                format!("{kind} {name} was not created by this object and is left in the cloud");
            tracing::info!("{message}");
            self.event(object, EventType::Normal, reasons::RETAINED, message)
                .await;
            return Ok(Action::await_change());
        }
        let found_name = observed.external_name.as_deref();
        let context = Context {
            external_name: context.external_name.or(found_name),
            ..context
        };
        let message = if let Some(ready) = deletion_started {
            ready.message.clone()
        } else {
            let note = client
                .delete(object, context, policy)
                .await
                .map_err(Error::provider(Phase::Delete))?;
            let message = match note {
                Some(note) => format!("deleting {kind} {shown_name}, {note}"),
                None => format!("deleting {kind} {shown_name}"),
            };
            tracing::info!(?policy, "{message}");
            self.event(
                object,
                EventType::Normal,
                reasons::DELETION_STARTED,
                message.clone(),
            )
            .await;
            message
        };
        self.write_status(
            object,
            fails(READY, reasons::DELETING, message),
            Some((String::new(), observed.at_provider)),
        )
        .await?;
        Err(Error::StillDeleting)
    }
}
