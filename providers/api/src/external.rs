//! The external-client contract: how the runtime asks a provider to observe, create,
//! update and delete the cloud resource behind a managed object.
//!
//! Observe comes first and is the only call in `ObserveOnly` mode; the runtime picks
//! create, update or nothing from what it returns.
//!
//! A provider gives each kind a [`Connector`] (which builds a client per object, from
//! its ProviderConfig) and an [`ExternalClient`] (the cloud calls), which touches only
//! the cloud. The runtime owns the rest: finalizers, conditions, Events, the connection
//! Secret, the Secret keys a spec names (read into [`Context::secrets`]), the write
//! guard of the kind's shared snapshot around every write
//! ([`ExternalClient::write_guard`]), ownership checks, pacing and retries. A client reports failures as a [`ProviderError`] whose class
//! says what the runtime does next: [`ProviderError::terminal`] waits for a change,
//! [`ProviderError::transient`] backs off and tries again, [`ProviderError::waiting`]
//! comes back later.
//!
//! A toy provider whose cloud is a map of bucket sizes:
//!
//! ```
//! use std::{collections::BTreeMap, sync::Mutex};
//!
//! use kube::CustomResource;
//! use serde::{Deserialize, Serialize};
//! use tether_api::{
//!     delta::Delta,
//!     external::{
//!         ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf,
//!         Observed, ObservedOf, ProviderError, Readiness,
//!     },
//!     managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus},
//!     snapshot::WriteGuard,
//! };
//!
//! /// A bucket of some size.
//! #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
//! #[kube(group = "toy.example.com", version = "v1", kind = "Bucket", namespaced)]
//! #[kube(status = "ManagedStatus<BucketAtProvider>", schema = "disabled")]
//! pub struct BucketSpec {
//!     #[serde(flatten)]
//!     pub managed: ManagedFields,
//!     pub size: u32,
//! }
//!
//! /// What the toy cloud reports.
//! #[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
//! pub struct BucketAtProvider {
//!     pub size: u32,
//! }
//!
//! /// The size to set, when the bucket has another.
//! #[derive(Clone, Debug, Default, PartialEq)]
//! pub struct BucketDelta(Option<u32>);
//!
//! impl Delta for BucketDelta {
//!     fn is_empty(&self) -> bool {
//!         self.0.is_none()
//!     }
//!     fn describe(&self) -> Vec<String> {
//!         self.0.iter().map(|_| "size".to_owned()).collect()
//!     }
//! }
//!
//! impl Managed for Bucket {
//!     type AtProvider = BucketAtProvider;
//!     type Delta = BucketDelta;
//!     const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;
//!     fn managed_fields(&self) -> &ManagedFields {
//!         &self.spec.managed
//!     }
//!     fn status(&self) -> Option<&ManagedStatus<BucketAtProvider>> {
//!         self.status.as_ref()
//!     }
//!     fn default_external_name(&self) -> Option<String> {
//!         self.metadata.name.clone()
//!     }
//! }
//!
//! /// The toy cloud: bucket name → size.
//! #[derive(Default)]
//! struct ToyCloud(Mutex<BTreeMap<String, u32>>);
//!
//! impl ExternalClient<Bucket> for ToyCloud {
//!     // The toy reads its map directly: no shared snapshot to guard.
//!     fn write_guard(&self, _bucket: &Bucket, _context: Context<'_>) -> Option<WriteGuard> {
//!         None
//!     }
//!
//!     async fn observe(
//!         &self,
//!         bucket: &Bucket,
//!         context: Context<'_>,
//!     ) -> Result<ObservationOf<Bucket>, ProviderError> {
//!         let name = context.require_external_name()?;
//!         let Some(&size) = self.0.lock().expect("not poisoned").get(name) else {
//!             return Ok(Observation::Missing);
//!         };
//!         Ok(Observation::Exists(Observed {
//!             external_name: None,
//!             owner_uid: None,
//!             delta: BucketDelta((size != bucket.spec.size).then_some(bucket.spec.size)),
//!             readiness: Readiness::Ready,
//!             at_provider: BucketAtProvider { size },
//!             connection: ConnectionDetails::default(),
//!         }))
//!     }
//!
//!     async fn create(
//!         &self,
//!         bucket: &Bucket,
//!         context: Context<'_>,
//!     ) -> Result<Created, ProviderError> {
//!         if bucket.spec.size == 0 {
//!             return Err(ProviderError::terminal("size must be at least 1")
//!                 .with_code("InvalidSize"));
//!         }
//!         let name = context.require_external_name()?.to_owned();
//!         self.0.lock().expect("not poisoned").insert(name, bucket.spec.size);
//!         Ok(Created::default())
//!     }
//!
//!     async fn update(
//!         &self,
//!         bucket: &Bucket,
//!         context: Context<'_>,
//!         _observed: &ObservedOf<Bucket>,
//!     ) -> Result<(), ProviderError> {
//!         self.create(bucket, context).await.map(drop)
//!     }
//!
//!     async fn delete(
//!         &self,
//!         _bucket: &Bucket,
//!         context: Context<'_>,
//!         _policy: DeletionPolicy,
//!     ) -> Result<Option<String>, ProviderError> {
//!         let name = context.require_external_name()?;
//!         self.0.lock().expect("not poisoned").remove(name);
//!         Ok(None)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ProviderError> {
//! let cloud = ToyCloud::default();
//! let mut bucket = Bucket::new("logs", BucketSpec { size: 2, ..BucketSpec::default() });
//! let context = Context::named(Some("logs"));
//! assert_eq!(cloud.observe(&bucket, context).await?, Observation::Missing);
//! cloud.create(&bucket, context).await?;
//! let Observation::Exists(observed) = cloud.observe(&bucket, context).await? else {
//!     panic!("the bucket was made");
//! };
//! assert!(observed.is_up_to_date());
//!
//! bucket.spec.size = 0;
//! let refused = cloud.update(&bucket, context, &observed).await.unwrap_err();
//! assert_eq!(refused.code.as_deref(), Some("InvalidSize"));
//! # Ok(())
//! # }
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    future::Future,
};

pub use crate::delta::Delta;
use crate::{
    ErrorClass,
    managed::{DeletionPolicy, Managed},
    rotation::Login,
    snapshot::{Freshness, WriteGuard},
};

/// Values an application needs to connect (host, port, username, password, …).
/// `Debug` prints the keys only, so the values never reach a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionDetails(pub BTreeMap<String, Vec<u8>>);

impl fmt::Debug for ConnectionDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A secret text: the value of a Secret key the object's spec names
/// ([`crate::SecretKeyRef`]), which the runtime never hands over empty, or a password a
/// provider holds. `Debug` never shows it; [`SecretValue::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value itself, for the cloud call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The values of an object's Secret keys, by the spec field that names each
/// ([`crate::SecretKeyRef::field`]).
pub type SecretValues = BTreeMap<String, SecretValue>;

/// Whether the cloud resource can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Usable.
    Ready,
    /// Not usable yet or any more; `reason` is CamelCase (e.g. `Creating`), `message`
    /// is AWS's state in words.
    NotReady {
        /// Why, in CamelCase, for the `Ready` condition.
        reason: String,
        /// AWS's state in words.
        message: String,
    },
}

/// What the provider saw of the cloud resource, with `A` its `status.atProvider` and
/// `D` its [`Delta`].
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<A, D> {
    /// There is no such resource.
    Missing,
    /// The resource exists.
    Exists(Observed<A, D>),
}

/// The observation of kind `M`'s cloud resource.
pub type ObservationOf<M> = Observation<<M as Managed>::AtProvider, <M as Managed>::Delta>;
/// An existing cloud resource of kind `M`, as observed.
pub type ObservedOf<M> = Observed<<M as Managed>::AtProvider, <M as Managed>::Delta>;

/// An existing cloud resource, as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed<A, D> {
    /// The resource's name or id, for kinds whose cloud picks it (EC2 ids); the
    /// runtime records it in `tether.dev/external-name` when that says otherwise. This
    /// is how a resource found by the object's UID tag (after a create whose answer was
    /// lost) gets its id recorded. `None` for kinds named before create.
    pub external_name: Option<String>,
    /// The UID of the Kubernetes object that created the resource, as the resource
    /// records it (for AWS, its `tether.dev/uid` tag); `None` when it records none.
    /// The runtime changes or deletes a resource only when this is the object's own
    /// UID, or when the user adopted the resource explicitly.
    pub owner_uid: Option<String>,
    /// Where the resource differs from the spec; empty when up to date.
    pub delta: D,
    /// Whether it can be used.
    pub readiness: Readiness,
    /// What AWS reports, for `status.atProvider`.
    pub at_provider: A,
    /// What an application needs to connect, for the connection Secret.
    pub connection: ConnectionDetails,
}

impl<A, D: Delta> Observed<A, D> {
    /// Whether the resource matches the spec.
    pub fn is_up_to_date(&self) -> bool {
        self.delta.is_empty()
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

impl ProviderError {
    /// An error of `class` with no code.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            code: None,
            message: message.into(),
        }
    }

    /// The request or configuration is wrong: the runtime records it and waits for a
    /// change.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Terminal, message)
    }

    /// A passing fault: the runtime backs off and tries again.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }

    /// The resource is busy or not visible yet: the runtime comes back later.
    pub fn waiting(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Waiting, message)
    }

    /// The same error, carrying the cloud's (or tether's) error code `code`.
    #[must_use]
    pub fn with_code(self, code: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            ..self
        }
    }

    /// The same error, carrying `code` when there is one.
    #[must_use]
    pub fn with_optional_code(self, code: Option<&str>) -> Self {
        Self {
            code: code.map(str::to_owned),
            ..self
        }
    }

    /// The same error (its code) with another class and message, for an error that
    /// means something else where it was met.
    #[must_use]
    pub fn reclassed(self, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            ..self
        }
    }
}

/// What a provider gets to know about the object besides its spec.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The cloud resource's name or id: from `tether.dev/external-name`, or derived
    /// from the object. `None` until the cloud assigns one (EC2 ids); the provider then
    /// finds the resource by the object's UID tag.
    pub external_name: Option<&'a str>,
    /// The referenced objects, resolved: reference field → the referenced object's
    /// external name. Every reference of [`Managed::references`] is here, except while
    /// the object is being deleted.
    ///
    /// [`Managed::references`]: crate::managed::Managed::references
    pub references: &'a BTreeMap<String, String>,
    /// The values of the Secret keys the spec names ([`Managed::secret_key_refs`]),
    /// read by the runtime in the object's namespace for this reconcile: field → value.
    /// Every key is here, except while the object is being deleted (nothing is read
    /// then: a Secret that went with its namespace must not hold up the deletion).
    ///
    /// [`Managed::secret_key_refs`]: crate::managed::Managed::secret_key_refs
    pub secrets: &'a SecretValues,
    /// What the object's connection Secret holds now (empty when it has none). The
    /// record of credentials already applied, such as the master password.
    pub published: &'a ConnectionDetails,
    /// Whether `published` holds credentials from [`ExternalClient::prepare`] that no
    /// create or update has applied yet.
    pub credentials_pending: bool,
    /// When the create now being made was first attempted. A create repeated because
    /// the cloud did not show the first one yet carries the first one's time, so a
    /// provider derives idempotency tokens from it (EC2's `ClientToken`): the repeat
    /// then returns what the first made instead of making another. `None` outside
    /// `create`.
    pub create_attempt: Option<k8s_openapi::jiff::Timestamp>,
    /// The keys of the spec's tags tether applied before (`tether.dev/applied-tags`):
    /// one the spec no longer has is to be removed from the resource. Empty when
    /// unknown.
    pub applied_tags: &'a BTreeSet<String>,
    /// How a shared snapshot of the cloud may answer this observation
    /// ([`crate::snapshot`]): from a listing up to the poll interval old for the routine
    /// check of a Ready, up-to-date object, up to the wait interval while the object or
    /// its resource changes; from the object's own recent reads only while its
    /// resource was never seen; directly while it is deleted.
    pub freshness: Freshness,
}

static NOTHING_RESOLVED: BTreeMap<String, String> = BTreeMap::new();
static NO_SECRETS: SecretValues = BTreeMap::new();
static NOTHING_PUBLISHED: ConnectionDetails = ConnectionDetails(BTreeMap::new());
static NO_TAGS: BTreeSet<String> = BTreeSet::new();

impl<'a> Context<'a> {
    /// A context with an external name only: no references, nothing published.
    pub fn named(external_name: Option<&'a str>) -> Self {
        Self {
            external_name,
            references: &NOTHING_RESOLVED,
            secrets: &NO_SECRETS,
            published: &NOTHING_PUBLISHED,
            credentials_pending: false,
            create_attempt: None,
            applied_tags: &NO_TAGS,
            freshness: Freshness::Direct,
        }
    }

    /// The same context with `references` resolved (reference field to name).
    pub fn with_references(self, references: &'a BTreeMap<String, String>) -> Self {
        Self { references, ..self }
    }

    /// The external name, for kinds whose name is always known before create.
    pub fn require_external_name(&self) -> Result<&str, ProviderError> {
        self.external_name
            .ok_or_else(|| ProviderError::terminal("the object has no external name"))
    }

    /// The resolved external name of the object referenced by `field`.
    pub fn reference(&self, field: &str) -> Option<&str> {
        self.references.get(field).map(String::as_str)
    }

    /// The value of the Secret key that the spec's `field` names, as the runtime read
    /// it.
    pub fn secret(&self, field: &str) -> Option<&SecretValue> {
        self.secrets.get(field)
    }
}

/// What a create call reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// The name or id the cloud gave the resource, when it picks one (EC2 ids). The
    /// runtime records it in `tether.dev/external-name` at once.
    pub external_name: Option<String>,
}

/// The calls the runtime makes on one kind's cloud resources.
pub trait ExternalClient<M: Managed>: Send + Sync {
    /// Reads the resource. A missing resource is `Observation::Missing`, not an error.
    fn observe(
        &self,
        object: &M,
        context: Context<'_>,
    ) -> impl Future<Output = Result<ObservationOf<M>, ProviderError>> + Send;

    /// Credentials that must reach the connection Secret before the next create or
    /// update call (a generated password, a new SSH key), or `None` when the published
    /// ones will do. The runtime writes them into the Secret, marked pending, before it
    /// calls `create` or `update` (whose `context.published` then holds them), and
    /// clears the mark once that call succeeds. A crash in between leaves credentials
    /// the user holds and a mark that tells `observe` to apply them again.
    fn prepare(
        &self,
        _object: &M,
        _context: Context<'_>,
    ) -> impl Future<Output = Result<Option<ConnectionDetails>, ProviderError>> + Send {
        async { Ok(None) }
    }

    /// The guard that marks `object`'s resource as being written in the shared
    /// snapshot the client observes from ([`crate::snapshot`]), under the key the
    /// snapshot has for it; `None` for a client that keeps no snapshot. The runtime
    /// takes it right before every `create`, `update` and `delete` and drops it once
    /// the call returns, so that no listing or read that started before the write
    /// ended answers for the resource afterwards; a client never takes it itself.
    /// (Logins inside the resource are not what a snapshot lists, and take none.)
    fn write_guard(&self, object: &M, context: Context<'_>) -> Option<WriteGuard>;

    /// Creates the resource as the spec says.
    fn create(
        &self,
        object: &M,
        context: Context<'_>,
    ) -> impl Future<Output = Result<Created, ProviderError>> + Send;

    /// Brings an existing resource in line with the spec; `observed` is the latest
    /// observation.
    fn update(
        &self,
        object: &M,
        context: Context<'_>,
        observed: &ObservedOf<M>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// New credentials for the provider's own login (a generated master password),
    /// to replace the `published` ones at a scheduled rotation; `None` when the kind
    /// keeps none of its own. The runtime publishes them marked pending, as it does
    /// what [`ExternalClient::prepare`] returns, and the next update applies them.
    fn renew_credentials(
        &self,
        _object: &M,
        _published: &ConnectionDetails,
    ) -> impl Future<Output = Result<Option<ConnectionDetails>, ProviderError>> + Send {
        async { Ok(None) }
    }

    /// Gives the application login `login` inside the resource (a database user) a
    /// new password, creating the login when it does not exist, and returns the
    /// connection details an application uses with it. `master` holds the provider's
    /// own credentials as published (see [`Managed::credentials_secret`]); `observed`
    /// is the latest observation of the Ready resource. Called only for objects whose
    /// spec asks for `passwordRotation`; the runtime decides when (see
    /// [`crate::rotation`]).
    ///
    /// [`Managed::credentials_secret`]: crate::managed::Managed::credentials_secret
    fn activate_login(
        &self,
        _object: &M,
        _master: &ConnectionDetails,
        _observed: &ObservedOf<M>,
        _login: Login,
    ) -> impl Future<Output = Result<ConnectionDetails, ProviderError>> + Send {
        async { Err(rotation_unsupported::<M>()) }
    }

    /// Changes the password of the application login `login` to one nobody knows, so
    /// that it is refused from now on (connections already open stay).
    fn retire_login(
        &self,
        _object: &M,
        _master: &ConnectionDetails,
        _observed: &ObservedOf<M>,
        _login: Login,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send {
        async { Err(rotation_unsupported::<M>()) }
    }

    /// Starts deleting the resource per `policy` (never called for `Retain`). Done
    /// once a later observe says `Missing`. Returns a note for the deletion Event,
    /// such as the name of the final snapshot.
    fn delete(
        &self,
        object: &M,
        context: Context<'_>,
        policy: DeletionPolicy,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
}

/// The error of a kind that has no logins to rotate.
fn rotation_unsupported<M: Managed>() -> ProviderError {
    ProviderError::terminal(format!(
        "{} has no logins that tether can rotate",
        M::kind(&())
    ))
    .with_code("RotationUnsupported")
}

/// Builds the external client for an object: resolves its ProviderConfig into
/// credentials and an endpoint. Implementations cache what they build per
/// ProviderConfig generation, so a reconcile costs no extra cloud call.
pub trait Connector<M: Managed>: Send + Sync + 'static {
    /// The client for `M`.
    type Client: ExternalClient<M> + Send + Sync + 'static;

    /// The client for `object`'s ProviderConfig.
    fn connect(
        &self,
        object: &M,
    ) -> impl Future<Output = Result<Self::Client, ProviderError>> + Send;
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

    #[test]
    fn secret_values_never_print_not_even_inside_a_context() {
        let secrets = SecretValues::from([(
            "masterPassword.secretKeyRef".to_owned(),
            SecretValue::from("canary-7f3c".to_owned()),
        )]);
        let context = Context {
            secrets: &secrets,
            ..Context::named(Some("orders"))
        };
        let printed = format!("{context:?}");
        assert!(printed.contains("masterPassword.secretKeyRef"), "{printed}");
        assert!(!printed.contains("canary"), "{printed}");
        assert_eq!(
            context
                .secret("masterPassword.secretKeyRef")
                .map(SecretValue::expose),
            Some("canary-7f3c")
        );
    }
}
