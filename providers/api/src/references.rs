//! References from one Kubernetes object to another, as they appear in CRD specs, and
//! as a managed object declares them to the runtime.

use kube::core::ApiResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a Secret by namespace and name.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl std::fmt::Display for SecretReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A reference from a managed object to another managed object in its namespace,
/// which must be Ready before the referring object is created or updated, unless the
/// reference is not [`ObjectReference::needed_to_create`].
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectReference {
    /// The spec field holding the reference, e.g. `dbSubnetGroupRef`, or
    /// `securityGroupRefs[1]` for one entry of a list; the key of the resolved name in
    /// `Context::references`.
    pub field: String,
    /// The referenced kind.
    pub resource: ApiResource,
    /// Name of the referenced object.
    pub name: String,
    /// Whether the referring resource cannot be created or changed without it (the DB
    /// subnet group of a database). A reference that is not (the peer group of a
    /// security group rule) is resolved when it can be: until then the resource is
    /// created and kept without what depends on it, `Synced=False` names the
    /// reference, and the provider finds it missing from `Context::references`. Two
    /// security groups that allow each other's traffic need this to both exist.
    pub needed_to_create: bool,
}

/// A key of a Secret in the managed object's namespace whose value the object's spec
/// supplies (a `secretKeyRef`), as the object declares it to the runtime
/// ([`Managed::secret_key_refs`]). The runtime reads it; the provider gets the value in
/// `Context::secrets` under [`SecretKeyRef::field`].
///
/// [`Managed::secret_key_refs`]: crate::managed::Managed::secret_key_refs
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// The spec field holding the reference, as the user writes it (e.g.
    /// `masterPassword.secretKeyRef`): messages name it, and it is the key of the value
    /// in `Context::secrets`.
    pub field: String,
    /// Name of the Secret.
    pub name: String,
    /// The key within the Secret.
    pub key: String,
}

/// A reference to another object in the same namespace, by name, as CRD specs hold it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalReference {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
