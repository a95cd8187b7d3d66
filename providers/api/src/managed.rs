//! The fields and annotations every managed resource shares: which ProviderConfig it
//! uses, what happens on deletion, whether tether may write, where the connection
//! Secret goes, and the `tether.dev/*` annotations for adoption, pausing and polling.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    str::FromStr,
    time::Duration,
};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::references::{ObjectReference, SecretKeyRef};

/// Annotation naming the cloud resource to manage (RDS identifier, instance id, group
/// id); set by tether after a create, or by a user to adopt an existing resource.
pub const EXTERNAL_NAME_ANNOTATION: &str = "tether.dev/external-name";
/// Annotation that stops every cloud call for the object while it is `"true"`.
pub const PAUSED_ANNOTATION: &str = "tether.dev/paused";
/// Annotation overriding the poll interval, as a Go duration such as `10m`.
pub const POLL_INTERVAL_ANNOTATION: &str = "tether.dev/poll-interval";
/// Annotation tether sets (to an RFC 3339 time) before it asks the cloud to create the
/// resource, and removes once it has seen the resource, unless its status then turns
/// `Ready` True: a `Ready` that turned True at or after the mark's time makes the
/// mark void (it is left, to save a write per object). While it holds and is young, a
/// resource the cloud does not show yet counts as on its way, not as missing: cloud
/// reads lag behind writes, and creating again would make a second one.
pub const CREATE_PENDING_ANNOTATION: &str = "tether.dev/create-pending";
/// Annotation tether sets to the keys (a JSON array) of the spec's tags it last
/// applied to the cloud resource: a key there that the spec no longer has is removed
/// from the resource, and tags that others put on it are left alone.
pub const APPLIED_TAGS_ANNOTATION: &str = "tether.dev/applied-tags";
/// Annotations tether keeps for itself: a change to them starts no reconcile.
pub const BOOKKEEPING_ANNOTATIONS: [&str; 2] = [CREATE_PENDING_ANNOTATION, APPLIED_TAGS_ANNOTATION];

/// The shortest poll interval an annotation may ask for, to keep AWS calls bounded.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A reference to a cluster-scoped ProviderConfig.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ProviderConfigReference {
    /// Name of the ProviderConfig.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl Default for ProviderConfigReference {
    fn default() -> Self {
        Self {
            name: "default".into(),
        }
    }
}

/// The schema of a kind's `tags`: a map of strings whose keys never start with `aws:`,
/// a prefix AWS reserves for itself and refuses (refused at `kubectl apply` instead).
pub fn tags_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<std::collections::BTreeMap<String, String>>();
    schema.insert(
        "x-kubernetes-validations".to_owned(),
        serde_json::json!([{
            "rule": "self.all(key, !key.startsWith('aws:'))",
            "message": "tag keys starting with aws: are reserved by AWS",
            "reason": "FieldValueInvalid",
        }]),
    );
    schema
}

/// A reference to a Secret in the object's own namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What happens to the cloud resource when the Kubernetes object is deleted.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the cloud resource.
    Delete,
    /// Leave the cloud resource untouched.
    Retain,
    /// Take a final snapshot, then delete (databases only).
    Snapshot,
}

/// Whether tether may change the cloud resource.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ManagementPolicy {
    /// Create, update and delete the cloud resource.
    #[default]
    Full,
    /// Only read it: report its state and publish its connection Secret.
    ObserveOnly,
}

/// The fields every managed resource's spec has; each kind flattens them into its spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFields {
    /// The ProviderConfig that says where and how to reach the cloud (default `default`).
    /// Immutable: another ProviderConfig is another account or region, where the
    /// resource does not exist; to move, delete with `deletionPolicy: Retain` and adopt.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "providerConfigRef is immutable: another ProviderConfig is another account or region, where this resource does not exist; delete the object with deletionPolicy Retain and adopt the resource instead",
        "reason": "FieldValueInvalid",
    }]))]
    pub provider_config_ref: ProviderConfigReference,

    /// What happens to the cloud resource when this object is deleted: `Delete`,
    /// `Retain`, or (databases only, and their default) `Snapshot`. Other kinds
    /// default to `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// `Full` (default): tether creates, updates and deletes the cloud resource.
    /// `ObserveOnly`: tether only reads it and publishes its connection Secret.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Secret in this object's namespace that receives the connection details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalSecretReference>,
}

// Every managed kind's status; each kind names it for its own observation type, as in
// `pub type DBInstanceStatus = ManagedStatus<DBInstanceObservation>`.
/// What tether and the cloud report about the resource.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus<A> {
    /// `Ready` (the cloud resource can be used; the kind's description says when) and
    /// `Synced` (the last reconcile succeeded), each with a reason, a message and the
    /// generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// What the cloud reports about the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<A>,
    /// When the cloud resource was first Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ready_time: Option<Time>,
    /// The rotation of the login the connection Secret holds, when the spec asks for
    /// `passwordRotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<crate::rotation::RotationStatus>,
}

impl<A> Default for ManagedStatus<A> {
    fn default() -> Self {
        Self {
            conditions: Vec::new(),
            at_provider: None,
            first_ready_time: None,
            password_rotation: None,
        }
    }
}

/// A custom resource that tether keeps in line with a cloud resource. The runtime
/// reconciles every kind that implements it the same way.
pub trait Managed:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope> + crate::CustomObject
{
    /// What the cloud reports about the resource, written to `status.atProvider`.
    type AtProvider: Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + Send + Sync;

    /// How the cloud resource can differ from the spec.
    type Delta: crate::delta::Delta;

    /// The deletion policy when the spec names none.
    const DEFAULT_DELETION_POLICY: DeletionPolicy;

    /// The fields every managed spec has.
    fn managed_fields(&self) -> &ManagedFields;

    /// The object's status, if it has one yet.
    fn status(&self) -> Option<&ManagedStatus<Self::AtProvider>>;

    /// `status.conditions`, empty when there is no status yet.
    fn conditions(&self) -> &[Condition] {
        self.status().map_or(&[], |status| &status.conditions)
    }

    /// `status.atProvider`, if recorded.
    fn at_provider(&self) -> Option<&Self::AtProvider> {
        self.status()?.at_provider.as_ref()
    }

    /// `status.firstReadyTime`, if the resource was ever Ready.
    fn first_ready_time(&self) -> Option<&Time> {
        self.status()?.first_ready_time.as_ref()
    }

    /// The cloud name tether gives the resource when no `tether.dev/external-name` is
    /// set; `None` when the cloud picks it (EC2 ids).
    fn default_external_name(&self) -> Option<String>;

    /// Other managed objects this one needs Ready first (same namespace).
    fn references(&self) -> Vec<ObjectReference> {
        Vec::new()
    }

    /// Every kind [`Managed::references`] can name; the runtime watches them, so an
    /// object waiting for a reference goes on as soon as it is Ready.
    fn referenced_kinds() -> Vec<kube::core::ApiResource> {
        Vec::new()
    }

    /// Whether objects of this kind read Secrets (see [`Managed::secret_key_refs`]);
    /// only then does the runtime watch Secrets for them.
    const READS_SECRETS: bool = false;

    /// The Secret keys the spec names for values the provider needs (a user-supplied
    /// password). The runtime reads them in the object's namespace before it observes
    /// the object, and hands their values to the provider in `Context::secrets`; a
    /// Secret or key that is missing, or a value that is empty or not UTF-8 text, stops
    /// the reconcile with `Synced=False` saying which. A change to one of these Secrets
    /// reconciles the object. The provider itself never reads Kubernetes.
    fn secret_key_refs(&self) -> Vec<SecretKeyRef> {
        Vec::new()
    }

    /// Names of the Secrets [`Managed::secret_key_refs`] reads, each once.
    fn secret_references(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secret_key_refs()
            .into_iter()
            .map(|reference| reference.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The tags (labels) the spec asks for, for kinds whose cloud resource has them;
    /// the runtime records their keys so that a tag removed from the spec is removed
    /// from the resource.
    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// The spec's `passwordRotation`, for kinds whose resource hands out logins that
    /// the runtime rotates (see [`crate::rotation`]); `None` when off.
    fn password_rotation(&self) -> Option<&crate::rotation::PasswordRotation> {
        None
    }

    /// The Secret the provider's own credentials (a master password) are published
    /// to: the connection Secret; with `passwordRotation` on, `<its name>-master`,
    /// which applications do not mount, while the connection Secret holds a rotated
    /// login.
    fn credentials_secret(&self) -> Option<LocalSecretReference> {
        let target = self
            .managed_fields()
            .write_connection_secret_to_ref
            .clone()?;
        Some(match self.password_rotation() {
            Some(_) => LocalSecretReference {
                name: crate::rotation::master_secret_name(&target.name),
            },
            None => target,
        })
    }

    /// `status.passwordRotation`, if recorded.
    fn rotation_status(&self) -> Option<&crate::rotation::RotationStatus> {
        self.status()?.password_rotation.as_ref()
    }

    /// The deletion policy in force.
    fn deletion_policy(&self) -> DeletionPolicy {
        self.managed_fields()
            .deletion_policy
            .unwrap_or(Self::DEFAULT_DELETION_POLICY)
    }
}

/// The tether annotations of an object, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlAnnotations {
    /// The cloud resource's name or id, when known.
    pub external_name: Option<String>,
    /// Whether reconciling is paused.
    pub paused: bool,
    /// The poll interval asked for, if any.
    pub poll_interval: Option<Duration>,
    /// When tether last asked the cloud to create the resource without having seen
    /// it since (see [`CREATE_PENDING_ANNOTATION`]).
    pub create_sent: Option<Timestamp>,
    /// The keys of the spec's tags tether last applied (see
    /// [`APPLIED_TAGS_ANNOTATION`]); `None` before it recorded any.
    pub applied_tags: Option<BTreeSet<String>>,
}

/// Why the tether annotations of an object could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    /// `tether.dev/poll-interval` is not a duration.
    #[error(
        "annotation {POLL_INTERVAL_ANNOTATION}: {value:?} is not a duration such as 30s or 10m"
    )]
    PollIntervalFormat {
        /// The annotation's value as found.
        value: String,
    },
    /// `tether.dev/poll-interval` is below the minimum.
    #[error("annotation {POLL_INTERVAL_ANNOTATION}: {value:?} is shorter than the minimum of 10s")]
    PollIntervalTooShort {
        /// The annotation's value as found.
        value: String,
    },
    /// `tether.dev/paused` is neither `true` nor `false`.
    #[error("annotation {PAUSED_ANNOTATION}: {value:?} is neither \"true\" nor \"false\"")]
    PausedValue {
        /// The annotation's value as found.
        value: String,
    },
    /// The create-pending annotation is not an RFC 3339 time.
    #[error(
        "annotation {CREATE_PENDING_ANNOTATION}: {value:?} is not an RFC 3339 time; tether sets it, remove it only when no create is on its way"
    )]
    CreatePendingFormat {
        /// The annotation's value as found.
        value: String,
    },
    /// `tether.dev/applied-tags` is not a JSON array of tag keys.
    #[error(
        "annotation {APPLIED_TAGS_ANNOTATION}: {value:?} is not a JSON array of tag keys; tether sets it, remove it to reset"
    )]
    AppliedTagsFormat {
        /// The annotation's value as found.
        value: String,
    },
}

impl ControlAnnotations {
    /// Reads the tether annotations out of an object's annotations.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, AnnotationError> {
        let paused = match annotations.get(PAUSED_ANNOTATION).map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(AnnotationError::PausedValue {
                    value: other.to_owned(),
                });
            }
        };
        let poll_interval = annotations
            .get(POLL_INTERVAL_ANNOTATION)
            .map(|value| parse_poll_interval(value))
            .transpose()?;
        let external_name = annotations
            .get(EXTERNAL_NAME_ANNOTATION)
            .filter(|name| !name.is_empty())
            .cloned();
        let create_sent = annotations
            .get(CREATE_PENDING_ANNOTATION)
            .map(|value| {
                value
                    .parse::<Timestamp>()
                    .map_err(|_| AnnotationError::CreatePendingFormat {
                        value: value.clone(),
                    })
            })
            .transpose()?;
        let applied_tags = annotations
            .get(APPLIED_TAGS_ANNOTATION)
            .map(|value| {
                serde_json::from_str(value).map_err(|_| AnnotationError::AppliedTagsFormat {
                    value: value.clone(),
                })
            })
            .transpose()?;
        Ok(Self {
            external_name,
            paused,
            poll_interval,
            create_sent,
            applied_tags,
        })
    }
}

/// How many hex digits of the object's UID a derived cloud name carries: 40 random
/// bits, so two objects practically never share a name.
const UID_DIGITS_IN_NAMES: usize = 10;

/// The cloud name tether derives for the object `namespace/name` with `uid`:
/// `<namespace>-<name>-<first 10 hex digits of the UID>`, in lower-case letters, digits
/// and single hyphens, starting with a letter, at most `max_len` characters (the
/// readable part is cut to fit). The UID part makes it unique per object: `a-b/c` and
/// `a/b-c`, or an object deleted and created again, never share a name. Fits RDS
/// identifiers, DB subnet group names and EC2 security group names alike.
pub fn derived_name(namespace: &str, name: &str, uid: &str, max_len: usize) -> String {
    let suffix: String = uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(UID_DIGITS_IN_NAMES)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut readable = String::new();
    for c in format!("{namespace}-{name}").chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        let repeated_hyphen = c == '-' && (readable.is_empty() || readable.ends_with('-'));
        if !repeated_hyphen {
            readable.push(c);
        }
    }
    if !readable.starts_with(|c: char| c.is_ascii_alphabetic()) {
        readable.insert_str(0, "t-");
    }
    readable.truncate(max_len.saturating_sub(suffix.len() + 1));
    let readable = readable.trim_end_matches('-');
    format!("{readable}-{suffix}")
}

fn parse_poll_interval(value: &str) -> Result<Duration, AnnotationError> {
    let parsed = kube::core::Duration::from_str(value)
        .ok()
        .filter(|duration| !duration.is_negative())
        .ok_or_else(|| AnnotationError::PollIntervalFormat {
            value: value.to_owned(),
        })?;
    let interval = Duration::from(parsed);
    if interval < MIN_POLL_INTERVAL {
        return Err(AnnotationError::PollIntervalTooShort {
            value: value.to_owned(),
        });
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_mean_defaults() {
        assert_eq!(
            ControlAnnotations::parse(&BTreeMap::new()),
            Ok(ControlAnnotations::default())
        );
    }

    #[test]
    fn all_annotations_are_read() {
        let parsed = ControlAnnotations::parse(&annotations(&[
            (EXTERNAL_NAME_ANNOTATION, "db-orders"),
            (PAUSED_ANNOTATION, "true"),
            (POLL_INTERVAL_ANNOTATION, "1h30m"),
        ]))
        .unwrap();
        assert_eq!(parsed.external_name.as_deref(), Some("db-orders"));
        assert!(parsed.paused);
        assert_eq!(parsed.poll_interval, Some(Duration::from_secs(5400)));
    }

    #[test]
    fn bad_values_are_refused_with_the_annotation_named() {
        let error = ControlAnnotations::parse(&annotations(&[(POLL_INTERVAL_ANNOTATION, "often")]))
            .unwrap_err();
        assert!(
            error.to_string().contains(POLL_INTERVAL_ANNOTATION),
            "{error}"
        );
        assert_eq!(
            ControlAnnotations::parse(&annotations(&[(POLL_INTERVAL_ANNOTATION, "1s")])),
            Err(AnnotationError::PollIntervalTooShort { value: "1s".into() })
        );
        assert_eq!(
            ControlAnnotations::parse(&annotations(&[(PAUSED_ANNOTATION, "yes")])),
            Err(AnnotationError::PausedValue {
                value: "yes".into()
            })
        );
    }

    #[test]
    fn a_create_pending_time_is_read_and_a_malformed_one_refused() {
        let parsed = ControlAnnotations::parse(&annotations(&[(
            CREATE_PENDING_ANNOTATION,
            "2026-11-30T12:00:00Z",
        )]))
        .unwrap();
        assert_eq!(
            parsed.create_sent,
            Some("2026-11-30T12:00:00Z".parse().unwrap())
        );
        let error = ControlAnnotations::parse(&annotations(&[(CREATE_PENDING_ANNOTATION, "soon")]))
            .unwrap_err();
        assert!(
            error.to_string().contains(CREATE_PENDING_ANNOTATION),
            "{error}"
        );
    }

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";

    #[test]
    fn derived_names_are_readable_and_carry_the_uid() {
        assert_eq!(
            derived_name("shop", "orders", UID, 63),
            "shop-orders-0c9f3a1e5b"
        );
        assert_eq!(
            derived_name("Team.A", "my_db..x", UID, 63),
            "team-a-my-db-x-0c9f3a1e5b"
        );
        assert_eq!(derived_name("1st", "db", UID, 63), "t-1st-db-0c9f3a1e5b");
    }

    #[test]
    fn names_that_collided_before_differ_by_their_uid() {
        let other = "7d2e4b1a-0000-4000-8000-000000000000";
        let first = derived_name("a-b", "c", UID, 63);
        let second = derived_name("a", "b-c", other, 63);
        assert_ne!(first, second);
        assert!(first.starts_with("a-b-c-") && second.starts_with("a-b-c-"));
    }

    #[test]
    fn derived_names_fit_rds_rules_at_any_length() {
        let long = "x".repeat(253);
        for (namespace, name) in [("n", long.as_str()), (&*"a-".repeat(40), "b")] {
            let derived = derived_name(namespace, name, UID, 63);
            assert!(derived.len() <= 63, "{derived}");
            assert!(derived.starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(
                !derived.contains("--") && !derived.ends_with('-'),
                "{derived}"
            );
            assert!(derived.ends_with("-0c9f3a1e5b"), "{derived}");
            assert!(
                derived
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }

    #[test]
    fn applied_tags_are_a_json_array_of_keys() {
        let parsed = ControlAnnotations::parse(&annotations(&[(
            APPLIED_TAGS_ANNOTATION,
            r#"["env","team"]"#,
        )]))
        .unwrap();
        assert_eq!(
            parsed.applied_tags,
            Some(BTreeSet::from(["env".to_owned(), "team".to_owned()]))
        );
        assert!(matches!(
            ControlAnnotations::parse(&annotations(&[(APPLIED_TAGS_ANNOTATION, "env,team")])),
            Err(AnnotationError::AppliedTagsFormat { .. })
        ));
    }

    #[test]
    fn an_empty_external_name_counts_as_none() {
        let parsed =
            ControlAnnotations::parse(&annotations(&[(EXTERNAL_NAME_ANNOTATION, "")])).unwrap();
        assert_eq!(parsed.external_name, None);
    }
}
