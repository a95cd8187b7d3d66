//! The external-client contract: how the runtime asks a provider to observe, create,
//! update and delete the cloud resource behind a managed object.
//!
//! Observe comes first and is the only call in `ObserveOnly` mode; the runtime picks
//! create, update or nothing from what it returns.

use std::{collections::BTreeMap, fmt, future::Future};

use crate::{ErrorClass, managed::DeletionPolicy};

/// Values an application needs to connect (host, port, username, password, …).
/// `Debug` prints the keys only, so the values never reach a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionDetails(pub BTreeMap<String, Vec<u8>>);

impl fmt::Debug for ConnectionDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Whether the cloud resource can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Usable.
    Ready,
    /// Not usable yet or any more; `reason` is CamelCase (e.g. `Creating`), `message`
    /// is AWS's state in words.
    NotReady { reason: String, message: String },
}

/// What the provider saw of the cloud resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<A> {
    /// There is no such resource.
    Missing,
    /// The resource exists.
    Exists(Observed<A>),
}

/// An existing cloud resource, as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed<A> {
    /// The fields where the resource differs from the spec; empty when up to date.
    pub differences: Vec<String>,
    /// Whether it can be used.
    pub readiness: Readiness,
    /// What AWS reports, for `status.atProvider`.
    pub at_provider: A,
    /// What an application needs to connect, for the connection Secret.
    pub connection: ConnectionDetails,
}

impl<A> Observed<A> {
    /// Whether the resource matches the spec.
    pub fn is_up_to_date(&self) -> bool {
        self.differences.is_empty()
    }
}

/// A failed cloud call: its class, AWS's error code when there is one, and a message
/// that names no secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What the runtime should do next.
    pub class: ErrorClass,
    /// The cloud's error code, e.g. `InvalidParameterValue`.
    pub code: Option<String>,
    /// What went wrong, in the cloud's words where it gave some.
    pub message: String,
}

/// The calls the runtime makes on one kind's cloud resources. `external_name` is the
/// resource's cloud name or id (from `tether.dev/external-name`, or derived).
pub trait ExternalClient<M>: Send + Sync {
    /// What the cloud resource looks like now.
    type AtProvider: Send;

    /// Reads the resource. A missing resource is `Observation::Missing`, not an error.
    fn observe(
        &self,
        object: &M,
        external_name: &str,
    ) -> impl Future<Output = Result<Observation<Self::AtProvider>, ProviderError>> + Send;

    /// Creates the resource as the spec says.
    fn create(
        &self,
        object: &M,
        external_name: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Brings an existing resource in line with the spec; `observed` is the latest
    /// observation.
    fn update(
        &self,
        object: &M,
        external_name: &str,
        observed: &Observed<Self::AtProvider>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Starts deleting the resource per `policy` (never called for `Retain`). Done
    /// once a later observe says `Missing`.
    fn delete(
        &self,
        object: &M,
        external_name: &str,
        policy: DeletionPolicy,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_details_never_print_their_values() {
        let details = ConnectionDetails(BTreeMap::from([(
            "password".to_owned(),
            b"canary-7f3c".to_vec(),
        )]));
        let printed = format!("{details:?}");
        assert_eq!(printed, r#"{"password"}"#);
        assert!(!printed.contains("canary"));
    }
}
