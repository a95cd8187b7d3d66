//! Rotation of the login a connection Secret holds (`passwordRotation`): reads what the
//! Secret records of the last rotation, carries out the step that
//! [`tether_api::rotation::decide`] says is due, records it on the Secret in the same
//! write as the credentials, and reports it (Event, metric, status).
//!
//! The Secret is the record, so that a controller killed at any point resumes where it
//! stopped: a login given a new password but not yet published is idle (nobody knows
//! the password), so the switch is simply made again; a retirement not yet recorded is
//! made again, and changes nothing more.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{ResourceExt, runtime::events::EventType};
use tether_api::{
    conditions::reasons,
    external::{ConnectionDetails, Connector, ExternalClient, ObservedOf, ProviderError},
    managed::{LocalSecretReference, Managed},
    rotation::{
        self, LastRotation, Login, ROTATE_NOW_ANNOTATION, RotationSchedule, RotationStatus,
        RotationStep,
    },
};

use super::ObjectReconcile;
use crate::{
    connection_secret::Publisher,
    reconciler::error::{Error, Phase},
};

/// Annotation on the connection Secret: when it was switched to the login it holds.
pub const ROTATED_AT_ANNOTATION: &str = "tether.dev/rotated-at";
/// Annotation on the connection Secret: the `tether.dev/rotate-now` value that the
/// last switch answered.
pub const ANSWERED_ANNOTATION: &str = "tether.dev/rotate-now-answered";
/// Annotation on the connection Secret, `true` once the login it held before the last
/// switch was retired.
pub const PREVIOUS_RETIRED_ANNOTATION: &str = "tether.dev/previous-login-retired";

/// Annotation on the Secret of the master credentials: when tether last wrote a new
/// master password there (applied by the update that follows, as a pending
/// credential).
pub const RENEWED_AT_ANNOTATION: &str = "tether.dev/renewed-at";

/// The rotation's state after this reconcile.
pub(super) struct Rotation {
    /// What `status.passwordRotation` shows.
    pub status: RotationStatus,
    /// When the next step falls due.
    pub next_step_in: Duration,
}

/// The annotations of a connection Secret that record rotations.
const ROTATION_RECORD: [&str; 3] = [
    ROTATED_AT_ANNOTATION,
    ANSWERED_ANNOTATION,
    PREVIOUS_RETIRED_ANNOTATION,
];

/// What the connection Secret records of the last rotation; `None` when it records
/// none, or holds no login of the master user `master_user`.
fn last_rotation(secret: &Publisher, master_user: &str) -> Option<LastRotation> {
    let annotations = secret.annotations();
    let username = secret
        .published()
        .0
        .get("username")
        .and_then(|name| std::str::from_utf8(name).ok())?;
    Some(LastRotation {
        login: Login::of(username, master_user)?,
        at: annotations.get(ROTATED_AT_ANNOTATION)?.parse().ok()?,
        answered: annotations.get(ANSWERED_ANNOTATION).cloned(),
        previous_retired: annotations
            .get(PREVIOUS_RETIRED_ANNOTATION)
            .is_some_and(|value| value == "true"),
    })
}

/// `details`' `key` as text.
fn text<'a>(details: &'a ConnectionDetails, key: &str) -> Option<&'a str> {
    details
        .0
        .get(key)
        .and_then(|value| std::str::from_utf8(value).ok())
}

fn invalid(message: String) -> Error {
    Error::provider(Phase::Rotate)(
        ProviderError::terminal(message).with_code("InvalidPasswordRotation"),
    )
}

impl<M, C> ObjectReconcile<'_, M, C>
where
    M: Managed,
    C: Connector<M>,
{
    /// Moves the master credentials into `credentials` (the Secret they are
    /// published to, just loaded) when `passwordRotation` was turned on or off since
    /// the last reconcile: turned on, the connection Secret holds them still (no
    /// rotated login yet) and the master Secret is new; turned off, the master Secret
    /// holds them and the connection Secret a rotated login. So the master password
    /// stays what it is, and applications keep credentials that work.
    pub(super) async fn carry_over_credentials(
        &self,
        object: &M,
        credentials: &mut Publisher,
    ) -> Result<(), Error> {
        let Some(connection) = &object.managed_fields().write_connection_secret_to_ref else {
            return Ok(());
        };
        let rotating = object.password_rotation().is_some();
        let source = if rotating {
            if !credentials.published().0.is_empty() {
                return Ok(());
            }
            connection.name.clone()
        } else {
            if !credentials
                .annotations()
                .contains_key(ROTATED_AT_ANNOTATION)
            {
                return Ok(());
            }
            rotation::master_secret_name(&connection.name)
        };
        let source = Publisher::load(
            &self.shared.kube,
            object,
            Some(&LocalSecretReference { name: source }),
            None,
            &self.shared.secrets,
        )
        .await?;
        let holds_master = !source.published().0.is_empty()
            && (!rotating || !source.annotations().contains_key(ROTATED_AT_ANNOTATION));
        if !holds_master {
            return Ok(());
        }
        let forget_rotations = ROTATION_RECORD
            .iter()
            .map(|key| ((*key).to_owned(), None))
            .collect();
        credentials
            .publish_recorded(object, source.published(), false, &forget_rotations)
            .await?;
        tracing::info!(
            rotating,
            "moved the master credentials to the Secret they are kept in now"
        );
        Ok(())
    }

    /// Carries out the rotation step due for `object`, whose resource is Ready as
    /// `observed` and whose master credentials are `master`; `None` when its spec asks
    /// for no rotation.
    pub(super) async fn rotate(
        &self,
        object: &M,
        client: &C::Client,
        credentials: &mut Publisher,
        observed: &ObservedOf<M>,
    ) -> Result<Option<Rotation>, Error> {
        let Some(spec) = object.password_rotation() else {
            return Ok(None);
        };
        let master = &credentials.published().clone();
        let schedule = spec
            .schedule()
            .map_err(|error| invalid(error.to_string()))?;
        let master_user = text(master, "username")
            .ok_or_else(|| invalid("the master Secret holds no username yet".to_owned()))?;
        let mut secret = Publisher::load(
            &self.shared.kube,
            object,
            object
                .managed_fields()
                .write_connection_secret_to_ref
                .as_ref(),
            None,
            &self.shared.secrets,
        )
        .await?;
        let asked = object
            .annotations()
            .get(ROTATE_NOW_ANNOTATION)
            .map(String::as_str);
        let last = last_rotation(&secret, master_user);
        let now = Timestamp::now();
        let step = rotation::decide(now, schedule, last.as_ref(), asked);
        if let (RotationStep::Switch { .. }, Some(previous)) = (&step, &last)
            && renewed_before(credentials, previous.at)
            && self.renew(object, client, credentials).await?
        {
            // The update that applies the new master password comes first; the
            // Secret's watch event starts the reconcile that makes it, and the switch
            // follows once the resource is Ready again.
            return Ok(Some(Rotation {
                status: status_of(previous, master_user, schedule),
                next_step_in: Duration::from_secs(1),
            }));
        }
        let last = match step {
            RotationStep::Switch { to, why } => {
                let activated = client.activate_login(object, master, observed, to).await;
                let details = self.counted("switch", activated)?;
                self.switch(object, &mut secret, &details, why, schedule.grace_period)
                    .await?;
                LastRotation {
                    login: to,
                    at: now,
                    answered: asked.map(str::to_owned).or(last.and_then(|l| l.answered)),
                    previous_retired: false,
                }
            }
            RotationStep::Retire(login) => {
                let retired = client.retire_login(object, master, observed, login).await;
                self.counted("retire", retired)?;
                self.record_retired(object, &mut secret, login.name(master_user))
                    .await?;
                LastRotation {
                    previous_retired: true,
                    ..last.expect("a retirement follows a switch")
                }
            }
            RotationStep::Wait { .. } => last.expect("a wait follows a switch"),
        };
        Ok(Some(Rotation {
            status: status_of(&last, master_user, schedule),
            next_step_in: next_step_in(schedule, &last, asked),
        }))
    }

    /// Publishes a new master password to `credentials`, marked pending (the update
    /// that follows applies it); returns whether the kind keeps one to renew.
    async fn renew(
        &self,
        object: &M,
        client: &C::Client,
        credentials: &mut Publisher,
    ) -> Result<bool, Error> {
        let renewed = client
            .renew_credentials(object, credentials.published())
            .await;
        let Some(details) = self.counted("renew", renewed)? else {
            return Ok(false);
        };
        let record = BTreeMap::from([(
            RENEWED_AT_ANNOTATION.to_owned(),
            Some(Timestamp::now().to_string()),
        )]);
        credentials
            .publish_recorded(object, &details, true, &record)
            .await?;
        let message = "a new master password is in the master Secret, to be applied \
                       before the login switches"
            .to_owned();
        self.announce(object, reasons::MASTER_PASSWORD_RENEWED, message)
            .await;
        Ok(true)
    }

    /// Logs `message` and publishes it as a Normal Event with `reason`.
    async fn announce(&self, object: &M, reason: &str, message: String) {
        tracing::info!("{message}");
        self.event(object, EventType::Normal, reason, message).await;
    }

    /// Switches the Secret to the login `details` (just given a new password), whose
    /// predecessor keeps working for `grace_period`.
    async fn switch(
        &self,
        object: &M,
        secret: &mut Publisher,
        details: &ConnectionDetails,
        why: &str,
        grace_period: Duration,
    ) -> Result<(), Error> {
        let answered = object.annotations().get(ROTATE_NOW_ANNOTATION).cloned();
        let mut record = BTreeMap::from([
            (
                ROTATED_AT_ANNOTATION.to_owned(),
                Some(Timestamp::now().to_string()),
            ),
            (PREVIOUS_RETIRED_ANNOTATION.to_owned(), None),
        ]);
        if answered.is_some() {
            record.insert(ANSWERED_ANNOTATION.to_owned(), answered);
        }
        secret
            .publish_recorded(object, details, false, &record)
            .await?;
        let login = text(details, "username").unwrap_or_default().to_owned();
        let grace = grace_period.as_secs();
        let message = format!(
            "the connection Secret holds the login {login} now, with a new password ({why}); \
             the login it held before keeps working for {grace} s"
        );
        self.announce(object, reasons::PASSWORD_ROTATED, message)
            .await;
        Ok(())
    }

    /// Counts a rotation's `step` and how it ended; a failure becomes the reconcile's.
    fn counted<T>(&self, step: &str, result: Result<T, ProviderError>) -> Result<T, Error> {
        let metrics = &self.shared.settings.metrics;
        metrics.rotation_step(&M::kind(&()), step, result.is_ok());
        result.map_err(Error::provider(Phase::Rotate))
    }

    /// Records on the Secret that the login it held before, `name`, was given a
    /// password nobody knows.
    async fn record_retired(
        &self,
        object: &M,
        secret: &mut Publisher,
        name: String,
    ) -> Result<(), Error> {
        let record = BTreeMap::from([(
            PREVIOUS_RETIRED_ANNOTATION.to_owned(),
            Some("true".to_owned()),
        )]);
        secret
            .publish_recorded(object, &ConnectionDetails::default(), false, &record)
            .await?;
        let message = format!(
            "the login {name} no longer logs in: its grace period after the last rotation ended"
        );
        self.announce(object, reasons::LOGIN_RETIRED, message).await;
        Ok(())
    }
}

/// Whether the master credentials were last renewed before `at` (or never).
fn renewed_before(credentials: &Publisher, at: Timestamp) -> bool {
    credentials
        .annotations()
        .get(RENEWED_AT_ANNOTATION)
        .and_then(|renewed| renewed.parse::<Timestamp>().ok())
        .is_none_or(|renewed| renewed < at)
}

/// What `status.passwordRotation` shows after `last`.
fn status_of(last: &LastRotation, master_user: &str, schedule: RotationSchedule) -> RotationStatus {
    RotationStatus {
        login: Some(last.login.name(master_user)),
        last_rotation: Some(Time(last.at)),
        next_rotation: Some(Time(last.after(schedule.every))),
    }
}

/// How long until the step after `last` falls due (at least a second).
fn next_step_in(schedule: RotationSchedule, last: &LastRotation, asked: Option<&str>) -> Duration {
    let now = Timestamp::now();
    match rotation::decide(now, schedule, Some(last), asked) {
        RotationStep::Wait { until } => Duration::try_from(until - now)
            .unwrap_or_default()
            .max(Duration::from_secs(1)),
        RotationStep::Switch { .. } | RotationStep::Retire(_) => Duration::from_secs(1),
    }
}
