//! The `Instance` custom resource: its spec with the CEL rules, its status (and EC2's
//! instance states), what the runtime needs to know of it (its references to security
//! groups), and the key pair, login user, tags and security groups it asks for.

use std::collections::{BTreeMap, BTreeSet};

use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    LocalReference, ObjectReference,
    external::{Context, ProviderError},
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus},
};

use super::InstanceDelta;
use crate::ec2::SecurityGroup;

/// The tag AWS consoles show as the instance's name.
const NAME_TAG: &str = "Name";
/// The longest tag value EC2 accepts.
const MAX_TAG_VALUE_CHARS: usize = 256;

/// The login user when `sshKey.username` is not set (Amazon Linux's).
pub(super) const DEFAULT_USERNAME: &str = "ec2-user";

/// EC2 instance states.
pub(super) const PENDING: &str = "pending";
pub(super) const RUNNING: &str = "running";
pub(super) const STOPPING: &str = "stopping";
pub(super) const STOPPED: &str = "stopped";
pub(super) const SHUTTING_DOWN: &str = "shutting-down";
pub(super) const TERMINATED: &str = "terminated";

/// An EC2 instance; tether writes its addresses (and, when it generates the SSH key,
/// the private key) to the connection Secret.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "ec2.tether.dev",
    version = "v1alpha1",
    kind = "Instance",
    namespaced,
    status = "InstanceStatus",
    doc = "An EC2 instance; Ready while it is running.",
    category = "tether",
    shortname = "ec2instance",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".status.atProvider.instanceId"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.atProvider.state"
    ),
    printcolumn(
        name = "Public IP",
        type_ = "string",
        json_path = ".status.atProvider.publicIp"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Snapshot'")
    .message("an instance has no snapshot: use Delete or Retain")
    .field_path(".deletionPolicy")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.sshKey) || !has(self.sshKey.generate) || !self.sshKey.generate || has(self.writeConnectionSecretToRef)")
    .message("writeConnectionSecretToRef is required when sshKey.generate is true: that Secret is the only place the private key is kept")
    .field_path(".writeConnectionSecretToRef")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::Rule::new("has(self.subnetId) == has(oldSelf.subnetId)")
    .message("subnetId cannot be added or removed after creation: an instance stays in the subnet it was launched in")
    .field_path(".subnetId")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("has(self.sshKey) == has(oldSelf.sshKey)")
    .message("sshKey cannot be added or removed after creation: an instance keeps the key pair it was launched with")
    .field_path(".sshKey")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("has(self.userData) == has(oldSelf.userData)")
    .message("userData cannot be added or removed after creation: it only runs at the instance's first boot")
    .field_path(".userData")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,

    /// The AMI (`ami-…`) to launch. Immutable.
    #[schemars(regex(pattern = r"^ami-[0-9a-f]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("imageId is immutable: an instance keeps the image it was launched from")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub image_id: String,

    /// The instance type, e.g. `t3.micro`. Changing it needs the instance stopped:
    /// tether does that only with `allowStop: true`.
    #[schemars(regex(pattern = r"^[a-z0-9-]+\.[a-z0-9-]+$"))]
    pub instance_type: String,

    /// The subnet (`subnet-…`) to launch in. Default: AWS picks one in the default
    /// VPC. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-[0-9a-f]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("subnetId is immutable: an instance stays in the subnet it was launched in")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub subnet_id: Option<String>,

    /// Ids of security groups (`sg-…`) not managed by tether. The instance gets these
    /// and those of `securityGroupRefs`; when both are empty, AWS gives it the VPC's
    /// default group and tether leaves its groups alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,

    /// `SecurityGroup` objects in this namespace whose groups the instance gets;
    /// tether waits until they are Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_refs: Vec<LocalReference>,

    /// The SSH key pair to launch with: one tether generates, or an existing EC2 key
    /// pair. Default: none. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("sshKey is immutable: an instance keeps the key pair it was launched with")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub ssh_key: Option<SshKey>,

    /// A script or cloud-init configuration, as plain text (tether encodes it in
    /// base64), run at the instance's first boot. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("userData is immutable: it only runs at the instance's first boot")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub user_data: Option<String>,

    /// Whether tether may stop the instance, and start it again, to apply a change
    /// that needs it stopped (a new `instanceType`). Default `false`: such a change is
    /// refused with `Synced=False`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_stop: bool,

    /// Tags for the instance and its volumes. tether adds `tether.dev/uid`, and a
    /// `Name` tag `<namespace>/<name>` unless one is given here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
}

/// The SSH key pair of an instance.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("has(self.keyName) != (has(self.generate) && self.generate)")
    .message("sshKey: set exactly one of generate: true and keyName")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct SshKey {
    /// `true`: tether generates an ed25519 key, imports its public half into EC2 as
    /// the key pair `tether-<uid>`, and writes the private key to the connection
    /// Secret (`ssh-privatekey`), which is then required.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,

    /// Name of an existing EC2 key pair, not managed by tether.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub key_name: Option<String>,

    /// The login user the connection Secret names (`username`); default `ec2-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub username: Option<String>,
}

/// What tether and AWS report about the instance.
pub type InstanceStatus = ManagedStatus<InstanceObservation>;

/// The instance as AWS reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceObservation {
    /// The instance id (`i-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// EC2's state of the instance: `pending`, `running`, `stopping`, `stopped` or
    /// `shutting-down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The instance type in use now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The AMI the instance was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The subnet the instance is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// The VPC the instance is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The private IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// The public IPv4 address, while the instance has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// The private DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
    /// The public DNS name, while the instance has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_dns_name: Option<String>,
    /// The EC2 key pair the instance was launched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The security groups of the instance, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_ids: Vec<String>,
    /// When the instance was last launched or started, in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<String>,
    /// tether stopped the instance to change its type and will start it again (the
    /// instance carries the `tether.dev/restart-after-stop` tag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_after_stop: bool,
}

impl Managed for Instance {
    type AtProvider = InstanceObservation;
    type Delta = InstanceDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&ManagedStatus<InstanceObservation>> {
        self.status.as_ref()
    }

    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.spec.tags)
    }

    /// None: AWS assigns the instance id.
    fn default_external_name(&self) -> Option<String> {
        None
    }

    fn references(&self) -> Vec<ObjectReference> {
        self.spec
            .security_group_refs
            .iter()
            .enumerate()
            .map(|(index, reference)| ObjectReference {
                field: security_group_ref_field(index),
                resource: ApiResource::erase::<SecurityGroup>(&()),
                name: reference.name.clone(),
                needed_to_create: true,
            })
            .collect()
    }

    fn referenced_kinds() -> Vec<ApiResource> {
        vec![ApiResource::erase::<SecurityGroup>(&())]
    }
}

/// The reference field of the `index`th entry of `securityGroupRefs`; the key of its
/// resolved group id in `Context::references`.
fn security_group_ref_field(index: usize) -> String {
    format!("securityGroupRefs[{index}]")
}

impl Instance {
    /// The name of the EC2 key pair tether imports for this instance, `tether-<uid>`;
    /// `None` unless `sshKey.generate` is true.
    pub fn key_pair_name(&self) -> Option<String> {
        let generate = self.spec.ssh_key.as_ref().is_some_and(|key| key.generate);
        let uid = self.uid().filter(|_| generate)?;
        Some(format!("tether-{uid}"))
    }

    /// The key pair the instance is launched with: the generated one or `keyName`.
    pub(super) fn launch_key_name(&self) -> Option<String> {
        self.key_pair_name().or_else(|| {
            self.spec
                .ssh_key
                .as_ref()
                .and_then(|key| key.key_name.clone())
        })
    }

    /// The tags tether wants on the instance, its volumes and its key pair: the
    /// spec's, the UID tag, and `Name` = `<namespace>/<name>` unless the spec names it.
    pub(super) fn desired_tags(&self) -> BTreeMap<String, String> {
        let mut tags = crate::tags::desired_tags(&self.spec.tags, self.uid());
        tags.entry(NAME_TAG.to_owned()).or_insert_with(|| {
            format!(
                "{}/{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            )
            .chars()
            .take(MAX_TAG_VALUE_CHARS)
            .collect()
        });
        tags
    }

    /// The login user of the connection Secret, when the instance has an SSH key.
    pub(super) fn username(&self) -> Option<&str> {
        self.spec
            .ssh_key
            .as_ref()
            .map(|key| key.username.as_deref().unwrap_or(DEFAULT_USERNAME))
    }

    /// The security groups the instance should have (sorted): `securityGroupIds` and
    /// the resolved `securityGroupRefs`; `None` when the spec names none. Waiting while
    /// a reference is not resolved.
    pub(super) fn desired_security_groups(
        &self,
        context: &Context<'_>,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        if self.spec.security_group_ids.is_empty() && self.spec.security_group_refs.is_empty() {
            return Ok(None);
        }
        let mut groups: BTreeSet<String> = self.spec.security_group_ids.iter().cloned().collect();
        for (index, reference) in self.spec.security_group_refs.iter().enumerate() {
            let field = security_group_ref_field(index);
            let id = context.reference(&field).ok_or_else(|| {
                ProviderError::waiting(format!(
                    "the SecurityGroup {} of {field} is not resolved yet",
                    reference.name
                ))
            })?;
            groups.insert(id.to_owned());
        }
        Ok(Some(groups.into_iter().collect()))
    }
}
