//! Why a reconcile did not finish, sorted into the classes that pick what happens next
//! and the reasons that conditions and Events show.

use tether_api::{
    ErrorClass, conditions::reasons, external::ProviderError, managed::AnnotationError,
};

use crate::connection_secret;

/// The call to the cloud that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Observe,
    Prepare,
    Create,
    Update,
    Delete,
    /// Rotating the login in the connection Secret, inside the database.
    Rotate,
}

impl Phase {
    fn verb(self) -> &'static str {
        match self {
            Self::Connect => "connecting to the cloud",
            Self::Observe => "observing",
            Self::Prepare => "preparing credentials",
            Self::Create => "creating",
            Self::Update => "updating",
            Self::Delete => "deleting",
            Self::Rotate => "rotating the login",
        }
    }
}

/// Why one reconcile of a managed object stopped short.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error("{0}")]
    ReferenceNotReady(String),
    #[error("{} failed: {}", .phase.verb(), describe(.source))]
    Provider {
        phase: Phase,
        #[source]
        source: ProviderError,
    },
    /// A Secret key the spec names has no usable value: part of observing the object.
    #[error("{verb} failed: {0}", verb = Phase::Observe.verb())]
    SecretKey(#[from] Box<super::secret_keys::Error>),
    #[error(transparent)]
    ConnectionSecret(#[from] connection_secret::Error),
    #[error("writing to the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Crd(#[from] crate::crds::Error),
    /// Not a failure: the cloud is still deleting the resource, so the finalizer stays.
    #[error("waiting for the cloud to finish deleting")]
    StillDeleting,
}

fn describe(error: &ProviderError) -> String {
    match &error.code {
        Some(code) => format!("{code}: {}", error.message),
        None => error.message.clone(),
    }
}

impl Error {
    /// Wraps a provider error from `phase`.
    pub fn provider(phase: Phase) -> impl FnOnce(ProviderError) -> Self {
        move |source| Self::Provider { phase, source }
    }

    /// What the runtime should do next.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Annotation(_) => ErrorClass::Terminal,
            Self::ReferenceNotReady(_) | Self::StillDeleting => ErrorClass::Waiting,
            Self::Provider { source, .. } => source.class,
            Self::SecretKey(error) => error.class(),
            Self::ConnectionSecret(connection_secret::Error::Kube { .. })
            | Self::Kube(_)
            | Self::Crd(_) => ErrorClass::Transient,
            Self::ConnectionSecret(_) => ErrorClass::Terminal,
        }
    }

    /// The CamelCase reason for the `Synced` condition and the Event. A connector's
    /// refusal brings its own (its error's code, e.g. `ProviderConfigNotPermitted`):
    /// connecting makes no cloud call, so the code is never the cloud's. So does a
    /// failed rotation (e.g. `DatabaseUnreachable`): it is the database's, not AWS's.
    pub fn reason(&self) -> &str {
        match self {
            Self::Annotation(_) => reasons::INVALID_ANNOTATION,
            Self::ReferenceNotReady(_) => reasons::REFERENCE_NOT_READY,
            Self::Provider {
                phase: Phase::Connect | Phase::Rotate,
                source: ProviderError {
                    code: Some(code), ..
                },
            } => code,
            Self::Provider { phase, .. } => match phase {
                Phase::Connect => reasons::CONNECT_FAILED,
                Phase::Observe => reasons::OBSERVE_FAILED,
                Phase::Prepare => reasons::PREPARE_FAILED,
                Phase::Create => reasons::CREATE_FAILED,
                Phase::Update => reasons::UPDATE_FAILED,
                Phase::Delete => reasons::DELETE_FAILED,
                Phase::Rotate => reasons::ROTATE_FAILED,
            },
            Self::SecretKey(_) => reasons::OBSERVE_FAILED,
            Self::ConnectionSecret(connection_secret::Error::NotOwned { .. }) => {
                reasons::SECRET_CONFLICT
            }
            Self::ConnectionSecret(_) => reasons::SECRET_WRITE_FAILED,
            Self::Kube(_) | Self::Crd(_) => reasons::KUBERNETES_ERROR,
            Self::StillDeleting => reasons::DELETING,
        }
    }

    /// Whether the failure deserves a Warning Event (waiting is not a failure).
    pub fn is_failure(&self) -> bool {
        self.class() != ErrorClass::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_error_keeps_the_cloud_code_and_message() {
        let error = Error::provider(Phase::Create)(
            ProviderError::terminal("Invalid DB engine: oracle-xe")
                .with_code("InvalidParameterValue"),
        );
        assert_eq!(
            error.to_string(),
            "creating failed: InvalidParameterValue: Invalid DB engine: oracle-xe"
        );
        assert_eq!(error.reason(), "CreateFailed");
        assert_eq!(error.class(), ErrorClass::Terminal);
        assert!(error.is_failure());
    }

    #[test]
    fn a_connectors_refusal_brings_its_own_reason() {
        let refused = Error::provider(Phase::Connect)(
            ProviderError::terminal("ProviderConfig team-a may not be used in namespace web")
                .with_code("ProviderConfigNotPermitted"),
        );
        assert_eq!(refused.reason(), "ProviderConfigNotPermitted");
        let failed = Error::provider(Phase::Connect)(ProviderError::transient(
            "ProviderConfig team-a does not exist",
        ));
        assert_eq!(failed.reason(), "ConnectFailed");
    }

    #[test]
    fn waiting_is_pending_and_not_a_failure() {
        for error in [
            Error::StillDeleting,
            Error::ReferenceNotReady("DBSubnetGroup a does not exist".into()),
        ] {
            assert_eq!(error.class(), ErrorClass::Waiting);
            assert!(!error.is_failure());
        }
    }
}
