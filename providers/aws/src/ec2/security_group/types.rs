//! The `SecurityGroup` custom resource: its spec with the CEL rules, its rules and
//! their protocols, its status, what the runtime needs to know of it (its references
//! to peer groups), its name in AWS and the tags it asks for.

use std::{collections::BTreeMap, fmt};

use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    ObjectReference,
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus, derived_name},
    references::LocalReference,
};

use super::SecurityGroupDelta;

/// The longest security group name EC2 accepts.
const MAX_GROUP_NAME_LENGTH: usize = 255;

/// An EC2 security group with its exact rule set.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "ec2.tether.dev",
    version = "v1alpha1",
    kind = "SecurityGroup",
    namespaced,
    status = "SecurityGroupStatus",
    doc = "An EC2 security group whose rules tether keeps exactly as declared; Ready once it exists.",
    category = "tether",
    shortname = "sg",
    validation = kube::core::Rule::new("(!has(self.spec.ingress) || self.spec.ingress.all(r, !has(r.securityGroupRefs) || r.securityGroupRefs.all(g, g.name != self.metadata.name))) && (!has(self.spec.egress) || self.spec.egress.all(r, !has(r.securityGroupRefs) || r.securityGroupRefs.all(g, g.name != self.metadata.name)))")
        .message("a security group cannot reference itself in securityGroupRefs"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.conditions[?(@.type==\"Synced\")].status"),
    printcolumn(name = "Group", type_ = "string", json_path = ".status.atProvider.groupId"),
    printcolumn(name = "VPC", type_ = "string", json_path = ".status.atProvider.vpcId"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Snapshot'")
    .message("a security group has no snapshot: use Delete or Retain")
    .field_path(".deletionPolicy")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,

    /// The group's name in AWS, unique within its VPC; default `<namespace>-<name>-<first
    /// 10 hex digits of the object's UID>`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[ -~]+$"))]
    #[x_kube(
        validation = kube::core::Rule::new("self == oldSelf")
            .message("groupName is immutable: AWS cannot rename a security group")
            .reason(kube::core::Reason::FieldValueInvalid),
        validation = kube::core::Rule::new("!self.startsWith('sg-')")
            .message("groupName must not start with sg-")
            .reason(kube::core::Reason::FieldValueInvalid)
    )]
    pub group_name: Option<String>,

    /// What the group is for. Immutable: AWS cannot change a group's description.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[ -~]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("description is immutable: AWS cannot change a security group's description")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub description: String,

    /// The VPC (`vpc-…`) the group belongs to; default: the region's default VPC.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^vpc-[0-9a-f]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("vpcId is immutable: a security group cannot move to another VPC")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub vpc_id: Option<String>,

    /// Inbound rules. tether keeps exactly these: rules added by hand are removed,
    /// rules removed by hand are put back. Default: none (nothing may come in).
    #[serde(default)]
    #[schemars(length(max = 60))]
    pub ingress: Vec<SecurityGroupRule>,

    /// Outbound rules, kept exactly like `ingress`. Default: everything may go out
    /// to `0.0.0.0/0` (AWS's default); `[]` allows nothing out.
    #[serde(default = "allow_all_outbound")]
    #[schemars(length(max = 60))]
    pub egress: Vec<SecurityGroupRule>,

    /// Tags for the group. tether adds `tether.dev/uid`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
}

/// AWS's default outbound rule: any protocol to anywhere in IPv4.
pub(super) fn allow_all_outbound() -> Vec<SecurityGroupRule> {
    vec![SecurityGroupRule {
        protocol: Protocol::All,
        from_port: None,
        to_port: None,
        cidr_blocks: vec!["0.0.0.0/0".to_owned()],
        ipv6_cidr_blocks: Vec::new(),
        security_group_ids: Vec::new(),
        security_group_refs: Vec::new(),
    }]
}

/// The protocols a rule can name.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Every protocol and port.
    All,
}

impl Protocol {
    /// The name EC2 uses (`-1` for all).
    pub fn aws_name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
            Self::All => "-1",
        }
    }
}

/// One rule: a protocol and port range, and the sources (ingress) or destinations
/// (egress) it applies to.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("!(self.protocol in ['tcp', 'udp']) || (has(self.fromPort) && has(self.toPort) && self.fromPort >= 0 && self.fromPort <= self.toPort)")
    .message("tcp and udp rules need fromPort and toPort, with 0 <= fromPort <= toPort <= 65535")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("!(self.protocol in ['icmp', 'icmpv6']) || (has(self.fromPort) && has(self.toPort) && self.fromPort <= 255 && self.toPort <= 255)")
    .message("icmp and icmpv6 rules need fromPort (the ICMP type) and toPort (the code), each -1 (any) to 255")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("self.protocol != 'all' || (!has(self.fromPort) && !has(self.toPort))")
    .message("a rule for protocol all covers every port: leave out fromPort and toPort")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("(has(self.cidrBlocks) ? size(self.cidrBlocks) : 0) + (has(self.ipv6CidrBlocks) ? size(self.ipv6CidrBlocks) : 0) + (has(self.securityGroupIds) ? size(self.securityGroupIds) : 0) + (has(self.securityGroupRefs) ? size(self.securityGroupRefs) : 0) > 0")
    .message("a rule needs at least one of cidrBlocks, ipv6CidrBlocks, securityGroupIds or securityGroupRefs")
    .reason(kube::core::Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or `all`.
    pub protocol: Protocol,

    /// First port of the range (tcp, udp), or the ICMP type (-1 for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 65535))]
    pub from_port: Option<i32>,

    /// Last port of the range (tcp, udp), or the ICMP code (-1 for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 65535))]
    pub to_port: Option<i32>,

    /// IPv4 ranges such as `10.0.0.0/16`, without host bits.
    #[serde(default)]
    #[schemars(length(max = 50), inner(length(max = 18)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c) && cidr(c).ip().family() == 4 && cidr(c) == cidr(c).masked())")
        .message("cidrBlocks: each entry must be an IPv4 CIDR without host bits, such as 10.0.0.0/16")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub cidr_blocks: Vec<String>,

    /// IPv6 ranges such as `2001:db8::/32`, without host bits.
    #[serde(default)]
    #[schemars(length(max = 50), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c) && cidr(c).ip().family() == 6 && cidr(c) == cidr(c).masked())")
        .message("ipv6CidrBlocks: each entry must be an IPv6 CIDR without host bits, such as 2001:db8::/32")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub ipv6_cidr_blocks: Vec<String>,

    /// Ids of security groups (`sg-…`) not managed by tether.
    #[serde(default)]
    #[schemars(length(max = 50), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,

    /// `SecurityGroup` objects in this namespace; tether waits until they are Ready.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub security_group_refs: Vec<LocalReference>,
}

/// What tether and AWS report about the group.
pub type SecurityGroupStatus = ManagedStatus<SecurityGroupObservation>;

/// The group as AWS reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupObservation {
    /// The group's id (`sg-…`).
    pub group_id: String,
    /// ARN of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// The VPC it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The inbound rules in AWS, one entry per protocol, port range and source.
    #[serde(default)]
    pub ingress: Vec<ObservedRule>,
    /// The outbound rules in AWS, one entry per protocol, port range and destination.
    #[serde(default)]
    pub egress: Vec<ObservedRule>,
}

/// One rule as AWS holds it, with a single source or destination.
#[derive(
    Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRule {
    /// EC2's protocol name or number (`tcp`, `udp`, `icmp`, `-1` for all, …).
    pub protocol: String,
    /// First port, or ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    /// Last port, or ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    /// The IPv4 or IPv6 range, or the security group id.
    pub peer: String,
}

impl Managed for SecurityGroup {
    type AtProvider = SecurityGroupObservation;
    type Delta = SecurityGroupDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&ManagedStatus<SecurityGroupObservation>> {
        self.status.as_ref()
    }

    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.spec.tags)
    }

    /// None: AWS picks the group id.
    fn default_external_name(&self) -> Option<String> {
        None
    }

    fn references(&self) -> Vec<ObjectReference> {
        self.rules()
            .flat_map(|(direction, index, rule)| {
                rule.security_group_refs
                    .iter()
                    .enumerate()
                    .map(move |(position, reference)| ObjectReference {
                        field: rule_reference_field(direction, index, position),
                        resource: ApiResource::erase::<SecurityGroup>(&()),
                        name: reference.name.clone(),
                        // The group exists without its peers: two groups that allow
                        // each other's traffic are each created first.
                        needed_to_create: false,
                    })
            })
            .collect()
    }

    fn referenced_kinds() -> Vec<ApiResource> {
        vec![ApiResource::erase::<SecurityGroup>(&())]
    }
}

/// Inbound or outbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// The reference field of the `position`th group reference of rule `index`.
pub(super) fn rule_reference_field(direction: Direction, index: usize, position: usize) -> String {
    format!("{direction}[{index}].securityGroupRefs[{position}]")
}

impl SecurityGroup {
    /// Every rule of the spec, with its direction and index.
    pub(super) fn rules(&self) -> impl Iterator<Item = (Direction, usize, &SecurityGroupRule)> {
        let ingress = self.spec.ingress.iter().enumerate();
        let egress = self.spec.egress.iter().enumerate();
        ingress
            .map(|(index, rule)| (Direction::Ingress, index, rule))
            .chain(egress.map(|(index, rule)| (Direction::Egress, index, rule)))
    }

    /// The group's name in AWS: `spec.groupName`, else derived from the namespace,
    /// name and UID (see [`derived_name`]).
    pub fn group_name(&self) -> String {
        self.spec.group_name.clone().unwrap_or_else(|| {
            derived_name(
                &self.namespace().unwrap_or_default(),
                &self.name_any(),
                &self.uid().unwrap_or_default(),
                MAX_GROUP_NAME_LENGTH,
            )
        })
    }

    /// The tags tether wants on the group: the spec's, plus the UID tag.
    pub(super) fn desired_tags(&self) -> BTreeMap<String, String> {
        crate::tags::desired_tags(&self.spec.tags, self.uid())
    }
}
