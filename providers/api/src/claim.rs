//! The self-service contract, on the StorageClass → PersistentVolumeClaim model: a
//! platform team writes a cluster-scoped class (fixed settings, choices with a default
//! and bounds, who may use it, per-namespace limits); an application team writes a
//! claim in its namespace; the runtime turns each admitted claim into one managed
//! object of the provider's kind and reports its state on the claim.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::managed::{DeletionPolicy, Managed};

/// Annotation with which a team accepts a class's changes that are not safe to apply
/// in place (a new engine version, another subnet): set it to the class's generation
/// (`kubectl annotate … tether.dev/class-generation=7 --overwrite`).
pub const CLASS_GENERATION_ANNOTATION: &str = "tether.dev/class-generation";

/// Condition type of a claim: the class changed in a way that waits for the team.
pub const CLASS_CHANGED: &str = "ClassChanged";

/// A value a claim may choose, with the class's default and the other values allowed.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
#[schemars(bound = "T: JsonSchema")]
pub struct Choice<T> {
    /// The value a claim gets when it names none.
    pub default: T,
    /// Further values a claim may name; the default is always allowed. Empty: only
    /// the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<T>,
}

impl<T: PartialEq + Clone + fmt::Display> Choice<T> {
    /// The claim's `wanted` value if the class allows it, else why not (naming the
    /// field, the value and what is allowed).
    pub fn pick(&self, field: &str, wanted: Option<&T>) -> Result<T, String> {
        match wanted {
            None => Ok(self.default.clone()),
            Some(value) if *value == self.default || self.allowed.contains(value) => {
                Ok(value.clone())
            }
            Some(value) => Err(format!(
                "{field} {value} is not allowed; the class allows {}",
                self.values()
            )),
        }
    }

    /// The allowed values, the default first, for messages.
    fn values(&self) -> String {
        std::iter::once(&self.default)
            .chain(self.allowed.iter().filter(|value| **value != self.default))
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The deletion policies a class offers its claims.
pub type DeletionPolicyChoice = Choice<DeletionPolicy>;

impl fmt::Display for DeletionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::Retain => "Retain",
            DeletionPolicy::Snapshot => "Snapshot",
        })
    }
}

/// What tether reports on a claim, so that a team never needs to read another object.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "S: Deserialize<'de>", serialize = "S: Serialize"))]
#[schemars(bound = "S: JsonSchema")]
pub struct ClaimStatus<S> {
    /// `Ready` and `Synced` with the reason and message of the resource behind the
    /// claim (AWS's own message included), or why the claim is refused (`ClassNotFound`,
    /// `NotAllowed`, `QuotaExceeded`); `ClassChanged` when the class changed in a way
    /// that waits for the team.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` of the class the resource was last built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_generation: Option<i64>,
    /// The settings the resource was built with; a class change that cannot be
    /// applied in place leaves them as they are until the team accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<S>,
    /// Name of the managed object tether keeps for the claim (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Name of the Secret with the connection details (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<String>,
    /// Where applications connect, e.g. `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl<S> Default for ClaimStatus<S> {
    fn default() -> Self {
        Self {
            conditions: Vec::new(),
            class_generation: None,
            settings: None,
            resource_name: None,
            connection_secret: None,
            endpoint: None,
        }
    }
}

/// A cluster-scoped class a platform team writes.
pub trait Class:
    kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope> + crate::CustomObject
{
    /// The namespaces whose claims may use the class; all when `None`.
    fn namespace_selector(&self) -> Option<&LabelSelector>;
    /// At most this many claims of the class per namespace.
    fn claims_per_namespace(&self) -> Option<u32>;
    /// At most this much storage (GiB) for the class's claims per namespace.
    fn storage_gib_per_namespace(&self) -> Option<u64> {
        None
    }
}

/// A namespaced claim an application team writes; the runtime keeps one managed
/// object of kind [`Claim::Managed`] for it.
pub trait Claim:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope> + crate::CustomObject
{
    /// The class kind.
    type Class: Class;
    /// The managed kind the claim becomes.
    type Managed: Managed;
    /// The settings that a change would replace or restart the resource for, resolved
    /// from class and claim: recorded in `status.settings`, so that a class change
    /// reaches an existing resource only when the team accepts it.
    type Settings: Clone
        + fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;

    /// Name of the class the claim uses.
    fn class_name(&self) -> &str;

    /// The claim's status, if it has one yet.
    fn claim_status(&self) -> Option<&ClaimStatus<Self::Settings>>;

    /// The settings `class` gives the claim: the claim's choices where it made them
    /// and the class allows them, else why not, one message per refused choice, each
    /// naming the bound.
    fn settings(&self, class: &Self::Class) -> Result<Self::Settings, Vec<String>>;

    /// The settings the existing resource keeps when `class` changed since it was
    /// built with `built`: the claim's own choices (`wanted`) and changes safe in place
    /// apply; any other change of the class is left out and named in the list returned.
    fn keep_unsafe_changes(
        &self,
        wanted: &Self::Settings,
        built: &Self::Settings,
    ) -> (Self::Settings, Vec<&'static str>);

    /// The settings the existing resource gets when the team accepted the class's
    /// changes (see [`CLASS_GENERATION_ANNOTATION`]): `wanted`, but for what the
    /// resource can never change (an engine, an image), which stays as `built`.
    fn accept_changes(&self, wanted: &Self::Settings, built: &Self::Settings) -> Self::Settings;

    /// The storage (GiB) the claim counts against the class's per-namespace limit.
    fn storage_gib(_settings: &Self::Settings) -> u64 {
        0
    }

    /// The managed object for the claim: named and specified; the runtime adds the
    /// namespace, the owner reference and the labels.
    fn compose(&self, class: &Self::Class, settings: &Self::Settings) -> Self::Managed;

    /// Where applications connect, from the managed object's status.
    fn endpoint(managed: &Self::Managed) -> Option<String>;

    /// Name of the Secret the managed object writes its connection details to.
    fn connection_secret_name(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Choice<String> {
        Choice {
            default: "16".to_owned(),
            allowed: vec!["15".to_owned(), "16".to_owned()],
        }
    }

    #[test]
    fn no_choice_gets_the_default() {
        assert_eq!(versions().pick("engineVersion", None), Ok("16".to_owned()));
    }

    #[test]
    fn an_allowed_choice_is_taken() {
        assert_eq!(
            versions().pick("engineVersion", Some(&"15".to_owned())),
            Ok("15".to_owned())
        );
    }

    #[test]
    fn a_choice_outside_the_list_is_refused_naming_what_is_allowed() {
        assert_eq!(
            versions().pick("engineVersion", Some(&"14".to_owned())),
            Err("engineVersion 14 is not allowed; the class allows 16, 15".to_owned())
        );
    }

    #[test]
    fn with_an_empty_list_only_the_default_is_allowed() {
        let only = Choice {
            default: DeletionPolicy::Snapshot,
            allowed: Vec::new(),
        };
        assert_eq!(
            only.pick("deletionPolicy", Some(&DeletionPolicy::Snapshot)),
            Ok(DeletionPolicy::Snapshot)
        );
        assert!(
            only.pick("deletionPolicy", Some(&DeletionPolicy::Delete))
                .is_err()
        );
    }
}
