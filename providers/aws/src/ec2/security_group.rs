//! The SecurityGroup kind: an EC2 security group whose rule set tether keeps exactly
//! as declared, putting back rules removed by hand and removing rules added by hand.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use aws_sdk_ec2::{
    error::ProvideErrorMetadata,
    types::{
        Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, UserIdGroupPair,
    },
};
use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    ErrorClass, ObjectReference,
    external::{
        ConnectionDetails, Context, Created, Delta, ExternalClient, Observation, ObservationOf,
        Observed, ObservedOf, ProviderError, Readiness,
    },
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus, derived_name},
    references::LocalReference,
};

use super::{is_not_found, sync_tags, tag_map, tag_specification, uid_filter, without_retries};
use crate::{
    errors::{absent_if, provider_error},
    tags::{UID_TAG, tags_differ},
};

/// The longest security group name EC2 accepts.
const MAX_GROUP_NAME_LENGTH: usize = 255;
/// EC2's answer to a create whose group name is taken in the VPC.
const GROUP_DUPLICATE: &str = "InvalidGroup.Duplicate";

/// Where a security group differs from its spec: its tags, and the rules to add and
/// remove in each direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecurityGroupDelta {
    /// `tags`, tether's UID tag included.
    pub tags: bool,
    /// Inbound rules to add and remove.
    ingress: RuleChanges,
    /// Outbound rules to add and remove.
    egress: RuleChanges,
}

impl Delta for SecurityGroupDelta {
    fn is_empty(&self) -> bool {
        !self.tags && self.ingress.is_empty() && self.egress.is_empty()
    }

    /// `tags`, then each rule change in words (`ingress: add tcp 22 from 10.0.0.0/8`).
    fn describe(&self) -> Vec<String> {
        let tags = self.tags.then(|| "tags".to_owned());
        tags.into_iter()
            .chain(self.ingress.describe(Direction::Ingress))
            .chain(self.egress.describe(Direction::Egress))
            .collect()
    }
}

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
    pub tags: BTreeMap<String, String>,
}

/// AWS's default outbound rule: any protocol to anywhere in IPv4.
fn allow_all_outbound() -> Vec<SecurityGroupRule> {
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
fn rule_reference_field(direction: Direction, index: usize, position: usize) -> String {
    format!("{direction}[{index}].securityGroupRefs[{position}]")
}

impl SecurityGroup {
    /// Every rule of the spec, with its direction and index.
    fn rules(&self) -> impl Iterator<Item = (Direction, usize, &SecurityGroupRule)> {
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
}

impl SecurityGroup {
    /// The tags tether wants on the group: the spec's, plus the UID tag.
    fn desired_tags(&self) -> BTreeMap<String, String> {
        crate::tags::desired_tags(&self.spec.tags, self.uid())
    }

    /// The rules the spec declares in `direction`, one per peer, with references
    /// resolved through `context` (a reference not resolved, while the object is being
    /// deleted, is left out).
    /// Whether a rule's peer group is not resolved yet (its SecurityGroup is not Ready,
    /// or the object is being deleted): the desired rules then lack it, and rules with
    /// a peer group are not removed, since one of them may be that peer's.
    fn peers_unresolved(&self, context: &Context<'_>) -> bool {
        self.references()
            .iter()
            .any(|reference| context.reference(&reference.field).is_none())
    }

    fn desired_rules(&self, direction: Direction, context: &Context<'_>) -> BTreeSet<ObservedRule> {
        let mut desired = BTreeSet::new();
        for (rule_direction, index, rule) in self.rules() {
            if rule_direction != direction {
                continue;
            }
            let referenced = (0..rule.security_group_refs.len()).filter_map(|position| {
                context
                    .reference(&rule_reference_field(direction, index, position))
                    .map(str::to_owned)
            });
            let peers = rule
                .cidr_blocks
                .iter()
                .chain(&rule.ipv6_cidr_blocks)
                .chain(&rule.security_group_ids)
                .cloned()
                .chain(referenced);
            for peer in peers {
                desired.insert(ObservedRule::new(
                    rule.protocol.aws_name(),
                    rule.from_port,
                    rule.to_port,
                    peer,
                ));
            }
        }
        desired
    }
}

impl ObservedRule {
    /// A rule in the form tether compares: EC2's protocol name (numbers of the named
    /// protocols become names), and no ports for `-1`.
    fn new(protocol: &str, from_port: Option<i32>, to_port: Option<i32>, peer: String) -> Self {
        let protocol = match protocol {
            "all" | "-1" => "-1",
            "6" => "tcp",
            "17" => "udp",
            "1" => "icmp",
            "58" => "icmpv6",
            other => other,
        };
        let all = protocol == "-1";
        Self {
            protocol: protocol.to_owned(),
            from_port: from_port.filter(|_| !all),
            to_port: to_port.filter(|_| !all),
            peer,
        }
    }

    /// The rule as EC2's authorize and revoke calls take it.
    fn to_permission(&self) -> IpPermission {
        let permission = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        let peer = self.peer.clone();
        let permission = if peer.starts_with("sg-") {
            permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(peer).build())
        } else if peer.starts_with("pl-") {
            permission.prefix_list_ids(PrefixListId::builder().prefix_list_id(peer).build())
        } else if peer.contains(':') {
            permission.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(peer).build())
        } else {
            permission.ip_ranges(IpRange::builder().cidr_ip(peer).build())
        };
        permission.build()
    }

    /// The rules of one EC2 permission, one per peer.
    fn from_permission(permission: &IpPermission) -> impl Iterator<Item = ObservedRule> + '_ {
        let peers = permission
            .ip_ranges()
            .iter()
            .filter_map(|range| range.cidr_ip())
            .chain(
                permission
                    .ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6()),
            )
            .chain(
                permission
                    .user_id_group_pairs()
                    .iter()
                    .filter_map(|p| p.group_id()),
            )
            .chain(
                permission
                    .prefix_list_ids()
                    .iter()
                    .filter_map(|p| p.prefix_list_id()),
            );
        peers.map(|peer| {
            ObservedRule::new(
                permission.ip_protocol().unwrap_or("-1"),
                permission.from_port(),
                permission.to_port(),
                peer.to_owned(),
            )
        })
    }

    /// The rule in words, e.g. `tcp 22 from 10.0.0.0/8`.
    fn describe(&self, direction: Direction) -> String {
        let protocol = match self.protocol.as_str() {
            "-1" => "all traffic",
            other => other,
        };
        let ports = match (self.protocol.as_str(), self.from_port, self.to_port) {
            ("icmp" | "icmpv6", Some(kind), Some(code)) => format!(" type {kind} code {code}"),
            (_, Some(from), Some(to)) if from == to => format!(" {from}"),
            (_, Some(from), Some(to)) => format!(" {from}-{to}"),
            _ => String::new(),
        };
        let preposition = match direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        format!("{protocol}{ports} {preposition} {}", self.peer)
    }
}

/// What it takes to turn `actual` rules into `desired` ones.
#[derive(Clone, Debug, Default, PartialEq)]
struct RuleChanges {
    add: Vec<ObservedRule>,
    remove: Vec<ObservedRule>,
}

impl RuleChanges {
    /// The changes from `actual` to `desired`; with `keep_group_peers`, rules whose
    /// peer is a security group are never removed (`desired` lacks peers not yet
    /// resolved, and such a rule may be one of theirs).
    fn between(
        desired: &BTreeSet<ObservedRule>,
        actual: &[ObservedRule],
        keep_group_peers: bool,
    ) -> Self {
        let actual: BTreeSet<&ObservedRule> = actual
            .iter()
            .filter(|rule| {
                !(keep_group_peers && rule.peer.starts_with("sg-")) || desired.contains(*rule)
            })
            .collect();
        Self {
            add: desired
                .iter()
                .filter(|rule| !actual.contains(rule))
                .cloned()
                .collect(),
            remove: actual
                .into_iter()
                .filter(|rule| !desired.contains(*rule))
                .cloned()
                .collect(),
        }
    }

    /// Whether there is nothing to add or remove.
    fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// The changes in words, for the delta's description and so the `Updated` Event:
    /// `ingress: add tcp 22 from 10.0.0.0/8`.
    fn describe(&self, direction: Direction) -> impl Iterator<Item = String> + '_ {
        let add = self
            .add
            .iter()
            .map(move |rule| format!("{direction}: add {}", rule.describe(direction)));
        let remove = self
            .remove
            .iter()
            .map(move |rule| format!("{direction}: remove {}", rule.describe(direction)));
        add.chain(remove)
    }
}

/// Adding or removing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
}

impl Change {
    /// The error code that says the change was already made: a rule added that is
    /// there, or removed that is gone.
    fn already_done_code(self) -> &'static str {
        match self {
            Self::Add => "InvalidPermission.Duplicate",
            Self::Remove => "InvalidPermission.NotFound",
        }
    }
}

/// Observes and changes security groups through the EC2 API.
#[derive(Clone, Debug)]
pub struct SecurityGroupClient {
    ec2: aws_sdk_ec2::Client,
}

impl SecurityGroupClient {
    /// A client that calls EC2 through `ec2`.
    pub fn new(ec2: aws_sdk_ec2::Client) -> Self {
        Self { ec2 }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &aws_config::SdkConfig, _kube: kube::Client) -> Self {
        Self::new(aws_sdk_ec2::Client::new(config))
    }

    /// The group with id `external_name`, else the one tagged with the object's UID.
    /// The group `id`, unless EC2 has no such group.
    async fn by_id(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ProviderError> {
        let described = absent_if(
            self.ec2
                .describe_security_groups()
                .group_ids(id)
                .send()
                .await,
            is_not_found,
        )?;
        Ok(described.and_then(|d| d.security_groups().first().cloned()))
    }

    async fn find(
        &self,
        object: &SecurityGroup,
        external_name: Option<&str>,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ProviderError> {
        if let Some(id) = external_name
            && let Some(group) = self.by_id(id).await?
        {
            return Ok(Some(group));
        }
        let Some(uid) = object.uid() else {
            return Ok(None);
        };
        let described = self
            .ec2
            .describe_security_groups()
            .filters(uid_filter(&uid))
            .send()
            .await
            .map_err(provider_error)?;
        Ok(described.security_groups().first().cloned())
    }

    /// After `InvalidGroup.Duplicate`: the group named `group_name` in the object's VPC
    /// is this object's own (it carries the object's UID), found again; any other is
    /// someone else's, and the create fails with `error`'s code and a message that says
    /// so. A group not visible yet is Pending.
    async fn duplicate(
        &self,
        object: &SecurityGroup,
        group_name: &str,
        error: ProviderError,
    ) -> Result<Created, ProviderError> {
        let mut filters = vec![
            Filter::builder()
                .name("group-name")
                .values(group_name)
                .build(),
        ];
        if let Some(vpc) = &object.spec.vpc_id {
            filters.push(Filter::builder().name("vpc-id").values(vpc).build());
        }
        let described = self
            .ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(provider_error)?;
        let Some(group) = described.security_groups().first() else {
            return Err(ProviderError {
                class: ErrorClass::Pending,
                message: format!(
                    "security group {group_name} exists but DescribeSecurityGroups does not show it yet"
                ),
                ..error
            });
        };
        let ours = object.uid().is_some_and(|uid| {
            tag_map(group.tags()).get(UID_TAG).map(String::as_str) == Some(uid.as_str())
        });
        match group.group_id() {
            Some(id) if ours => Ok(Created {
                external_name: Some(id.to_owned()),
            }),
            id => Err(ProviderError {
                class: ErrorClass::Terminal,
                message: format!(
                    "security group {group_name} ({}) exists and was not created by this object; \
                     to manage it, set {}; for a new one, choose another groupName",
                    id.unwrap_or("no id"),
                    tether_api::managed::EXTERNAL_NAME_ANNOTATION
                ),
                ..error
            }),
        }
    }

    /// Makes the group's rules in `direction` the `desired` ones, given `actual`:
    /// adds first, then removes, so traffic allowed before and after never stops.
    async fn converge(
        &self,
        group_id: &str,
        direction: Direction,
        desired: &BTreeSet<ObservedRule>,
        actual: &[ObservedRule],
        keep_group_peers: bool,
    ) -> Result<(), ProviderError> {
        let changes = RuleChanges::between(desired, actual, keep_group_peers);
        self.change(group_id, direction, Change::Add, &changes.add)
            .await?;
        self.change(group_id, direction, Change::Remove, &changes.remove)
            .await
    }

    /// Adds or removes `rules`, in one call; when AWS says part of it was already
    /// done (our view of the rules was stale), one call per rule, skipping those.
    async fn change(
        &self,
        group_id: &str,
        direction: Direction,
        change: Change,
        rules: &[ObservedRule],
    ) -> Result<(), ProviderError> {
        if rules.is_empty() {
            return Ok(());
        }
        let permissions: Vec<IpPermission> =
            rules.iter().map(ObservedRule::to_permission).collect();
        let already_done =
            |error: &ProviderError| error.code.as_deref() == Some(change.already_done_code());
        match self
            .send(group_id, direction, change, permissions.clone())
            .await
        {
            Err(error) if already_done(&error) && permissions.len() > 1 => {
                for permission in permissions {
                    match self
                        .send(group_id, direction, change, vec![permission])
                        .await
                    {
                        Err(error) if !already_done(&error) => return Err(error),
                        _ => {}
                    }
                }
                Ok(())
            }
            Err(error) if already_done(&error) => Ok(()),
            result => result,
        }
    }

    async fn send(
        &self,
        group_id: &str,
        direction: Direction,
        change: Change,
        permissions: Vec<IpPermission>,
    ) -> Result<(), ProviderError> {
        let permissions = Some(permissions);
        match (direction, change) {
            (Direction::Ingress, Change::Add) => self
                .ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(provider_error),
            (Direction::Ingress, Change::Remove) => self
                .ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(provider_error),
            (Direction::Egress, Change::Add) => self
                .ec2
                .authorize_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(provider_error),
            (Direction::Egress, Change::Remove) => self
                .ec2
                .revoke_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(provider_error),
        }
    }
}

/// The group's rules in `direction` as AWS reports them.
fn observed_rules(
    group: &aws_sdk_ec2::types::SecurityGroup,
    direction: Direction,
) -> Vec<ObservedRule> {
    let permissions = match direction {
        Direction::Ingress => group.ip_permissions(),
        Direction::Egress => group.ip_permissions_egress(),
    };
    let rules: BTreeSet<ObservedRule> = permissions
        .iter()
        .flat_map(ObservedRule::from_permission)
        .collect();
    rules.into_iter().collect()
}

impl ExternalClient<SecurityGroup> for SecurityGroupClient {
    async fn observe(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
    ) -> Result<ObservationOf<SecurityGroup>, ProviderError> {
        let Some(group) = self.find(object, context.external_name).await? else {
            return Ok(Observation::Missing);
        };
        let at_provider = SecurityGroupObservation {
            group_id: group.group_id().unwrap_or_default().to_owned(),
            arn: group.security_group_arn().map(str::to_owned),
            group_name: group.group_name().map(str::to_owned),
            vpc_id: group.vpc_id().map(str::to_owned),
            ingress: observed_rules(&group, Direction::Ingress),
            egress: observed_rules(&group, Direction::Egress),
        };
        let tags = tag_map(group.tags());
        let changes = |direction, actual| {
            RuleChanges::between(
                &object.desired_rules(direction, &context),
                actual,
                object.peers_unresolved(&context),
            )
        };
        let delta = SecurityGroupDelta {
            tags: tags_differ(&object.desired_tags(), context.applied_tags, &tags),
            ingress: changes(Direction::Ingress, &at_provider.ingress),
            egress: changes(Direction::Egress, &at_provider.egress),
        };
        Ok(Observation::Exists(Observed {
            external_name: Some(at_provider.group_id.clone()),
            owner_uid: tags.get(UID_TAG).cloned(),
            delta,
            readiness: Readiness::Ready,
            at_provider,
            connection: ConnectionDetails::default(),
        }))
    }

    async fn create(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
    ) -> Result<Created, ProviderError> {
        let group_name = object.group_name();
        let created = self
            .ec2
            .create_security_group()
            .group_name(&group_name)
            .description(&object.spec.description)
            .set_vpc_id(object.spec.vpc_id.clone())
            .tag_specifications(tag_specification(
                ResourceType::SecurityGroup,
                &object.desired_tags(),
            ))
            .customize()
            .config_override(without_retries())
            .send()
            .await;
        let group_id = match created {
            Ok(created) => created.group_id().unwrap_or_default().to_owned(),
            Err(error) if error.code() == Some(GROUP_DUPLICATE) => {
                // The name is taken: by this object's own group, which a read right
                // after its create did not show, or by someone else's.
                return self
                    .duplicate(object, &group_name, provider_error(error))
                    .await;
            }
            Err(error) => return Err(provider_error(error)),
        };
        // A new group has AWS's default rules: all traffic out to 0.0.0.0/0, and to ::/0
        // in a VPC with IPv6. Read them rather than assume them; if the group cannot be
        // read yet, assume the IPv4 rule and let the next observe correct the rest.
        let (ingress, egress) = match self.by_id(&group_id).await? {
            Some(group) => (
                observed_rules(&group, Direction::Ingress),
                observed_rules(&group, Direction::Egress),
            ),
            None => (
                Vec::new(),
                vec![ObservedRule::new("-1", None, None, "0.0.0.0/0".to_owned())],
            ),
        };
        for (direction, actual) in [(Direction::Ingress, &ingress), (Direction::Egress, &egress)] {
            self.converge(
                &group_id,
                direction,
                &object.desired_rules(direction, &context),
                actual,
                object.peers_unresolved(&context),
            )
            .await?;
        }
        Ok(Created {
            external_name: Some(group_id),
        })
    }

    async fn update(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
        observed: &ObservedOf<SecurityGroup>,
    ) -> Result<(), ProviderError> {
        let group = &observed.at_provider;
        if observed.delta.tags {
            sync_tags(
                &self.ec2,
                &group.group_id,
                &object.desired_tags(),
                context.applied_tags,
            )
            .await?;
        }
        for (direction, actual) in [
            (Direction::Ingress, &group.ingress),
            (Direction::Egress, &group.egress),
        ] {
            self.converge(
                &group.group_id,
                direction,
                &object.desired_rules(direction, &context),
                actual,
                object.peers_unresolved(&context),
            )
            .await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        _object: &SecurityGroup,
        context: Context<'_>,
        _policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        let Some(group_id) = context.external_name else {
            return Ok(None);
        };
        absent_if(
            self.ec2
                .delete_security_group()
                .group_id(group_id)
                .send()
                .await,
            is_not_found,
        )?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! The rule arithmetic, and the EC2 calls (their contents, order and error codes)
    //! with the SDK's own mocks; and the CRD's rules.

    use aws_sdk_ec2::{
        error::ErrorMetadata,
        operation::{
            authorize_security_group_egress::AuthorizeSecurityGroupEgressOutput,
            authorize_security_group_ingress::{
                AuthorizeSecurityGroupIngressError, AuthorizeSecurityGroupIngressOutput,
            },
            create_security_group::{CreateSecurityGroupError, CreateSecurityGroupOutput},
            create_tags::CreateTagsOutput,
            delete_security_group::{DeleteSecurityGroupError, DeleteSecurityGroupOutput},
            describe_security_groups::{DescribeSecurityGroupsError, DescribeSecurityGroupsOutput},
            revoke_security_group_egress::{
                RevokeSecurityGroupEgressError, RevokeSecurityGroupEgressOutput,
            },
            revoke_security_group_ingress::RevokeSecurityGroupIngressOutput,
        },
        types::{SecurityGroup as Ec2Group, Tag},
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use kube::{CustomResourceExt, core::ObjectMeta};
    use tether_api::ErrorClass;

    use super::*;

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
    const GROUP: &str = "sg-0123456789abcdef0";
    const OLD_GROUP: &str = "sg-0fedcba9876543210";
    const ARN: &str = "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0123456789abcdef0";

    /// A rule of the spec with no peers yet.
    fn spec_rule(protocol: Protocol, ports: Option<(i32, i32)>) -> SecurityGroupRule {
        SecurityGroupRule {
            protocol,
            from_port: ports.map(|(from, _)| from),
            to_port: ports.map(|(_, to)| to),
            cidr_blocks: Vec::new(),
            ipv6_cidr_blocks: Vec::new(),
            security_group_ids: Vec::new(),
            security_group_refs: Vec::new(),
        }
    }

    /// A tcp rule of the spec for `port` from the IPv4 ranges `cidrs`.
    fn tcp_from(port: i32, cidrs: &[&str]) -> SecurityGroupRule {
        SecurityGroupRule {
            cidr_blocks: cidrs.iter().map(|c| c.to_string()).collect(),
            ..spec_rule(Protocol::Tcp, Some((port, port)))
        }
    }

    fn refs(names: &[&str]) -> Vec<LocalReference> {
        names
            .iter()
            .map(|name| LocalReference {
                name: name.to_string(),
            })
            .collect()
    }

    /// `shop/web`: ssh from 10.0.0.0/8 in, everything out.
    fn object() -> SecurityGroup {
        SecurityGroup {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some(UID.into()),
                ..ObjectMeta::default()
            },
            spec: SecurityGroupSpec {
                managed: ManagedFields::default(),
                group_name: None,
                description: "web servers".into(),
                vpc_id: Some("vpc-0a".into()),
                ingress: vec![tcp_from(22, &["10.0.0.0/8"])],
                egress: allow_all_outbound(),
                tags: BTreeMap::new(),
            },
            status: None,
        }
    }

    /// A rule as tether compares them.
    fn rule(protocol: &str, ports: Option<(i32, i32)>, peer: &str) -> ObservedRule {
        ObservedRule::new(
            protocol,
            ports.map(|(from, _)| from),
            ports.map(|(_, to)| to),
            peer.to_owned(),
        )
    }

    fn tcp(port: i32, peer: &str) -> ObservedRule {
        rule("tcp", Some((port, port)), peer)
    }

    fn all_traffic(peer: &str) -> ObservedRule {
        rule("-1", None, peer)
    }

    /// The rules an authorize or revoke request carries, sorted.
    fn carried(permissions: &[IpPermission]) -> Vec<ObservedRule> {
        let mut rules: Vec<ObservedRule> = permissions
            .iter()
            .flat_map(ObservedRule::from_permission)
            .collect();
        rules.sort();
        rules
    }

    /// A permission as EC2 reports it, for the IPv4 range `cidr`.
    fn permission(protocol: &str, from: Option<i32>, to: Option<i32>, cidr: &str) -> IpPermission {
        IpPermission::builder()
            .ip_protocol(protocol)
            .set_from_port(from)
            .set_to_port(to)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    }

    /// What EC2 reports for [`object`]'s ingress.
    fn declared_ingress() -> Vec<IpPermission> {
        vec![permission("tcp", Some(22), Some(22), "10.0.0.0/8")]
    }

    /// What EC2 reports for the default egress rule.
    fn all_out() -> Vec<IpPermission> {
        vec![permission("-1", None, None, "0.0.0.0/0")]
    }

    /// The group as DescribeSecurityGroups reports it, tagged with [`UID`].
    fn group(ingress: Vec<IpPermission>, egress: Vec<IpPermission>) -> Ec2Group {
        Ec2Group::builder()
            .group_id(GROUP)
            .group_name("shop-web")
            .description("web servers")
            .vpc_id("vpc-0a")
            .security_group_arn(ARN)
            .tags(Tag::builder().key(UID_TAG).value(UID).build())
            .set_ip_permissions(Some(ingress))
            .set_ip_permissions_egress(Some(egress))
            .build()
    }

    fn described(groups: Vec<Ec2Group>) -> DescribeSecurityGroupsOutput {
        DescribeSecurityGroupsOutput::builder()
            .set_security_groups(Some(groups))
            .build()
    }

    /// A DescribeSecurityGroups of the group `id` answering `groups`.
    fn by_id(id: &'static str, groups: Vec<Ec2Group>) -> Rule {
        mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(move |request| request.group_ids() == [id])
            .then_output(move || described(groups.clone()))
    }

    /// A DescribeSecurityGroups by the UID tag answering `groups`.
    fn by_uid(groups: Vec<Ec2Group>) -> Rule {
        mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|request| {
                request.group_ids().is_empty()
                    && request
                        .filters()
                        .iter()
                        .any(|f| f.name() == Some("tag:tether.dev/uid") && f.values() == [UID])
            })
            .then_output(move || described(groups.clone()))
    }

    fn error(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn client(rules: &[&Rule]) -> SecurityGroupClient {
        SecurityGroupClient::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            rules.iter().copied()
        ))
    }

    /// A client that answers `rules` in this order and no other.
    fn in_order(rules: &[&Rule]) -> SecurityGroupClient {
        SecurityGroupClient::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            rules.iter().copied()
        ))
    }

    fn exists(observation: ObservationOf<SecurityGroup>) -> ObservedOf<SecurityGroup> {
        match observation {
            Observation::Exists(observed) => observed,
            Observation::Missing => panic!("the group is observed"),
        }
    }

    async fn observe(object: &SecurityGroup, aws: Ec2Group) -> ObservedOf<SecurityGroup> {
        let describe = by_id(GROUP, vec![aws]);
        let client = client(&[&describe]);
        exists(
            client
                .observe(object, Context::named(Some(GROUP)))
                .await
                .unwrap(),
        )
    }

    fn observation(
        ingress: Vec<ObservedRule>,
        egress: Vec<ObservedRule>,
        tags: bool,
    ) -> ObservedOf<SecurityGroup> {
        Observed {
            external_name: Some(GROUP.into()),
            owner_uid: Some(UID.into()),
            delta: SecurityGroupDelta {
                tags,
                ..SecurityGroupDelta::default()
            },
            readiness: Readiness::Ready,
            at_provider: SecurityGroupObservation {
                group_id: GROUP.into(),
                ingress,
                egress,
                ..SecurityGroupObservation::default()
            },
            connection: ConnectionDetails::default(),
        }
    }

    // The rules, without AWS.

    #[test]
    fn protocol_numbers_become_names_and_all_traffic_has_no_ports() {
        let peer = || "10.0.0.0/8".to_owned();
        assert_eq!(
            ObservedRule::new("6", Some(22), Some(22), peer()),
            tcp(22, "10.0.0.0/8")
        );
        assert_eq!(
            ObservedRule::new("17", Some(53), Some(53), peer()).protocol,
            "udp"
        );
        assert_eq!(
            ObservedRule::new("1", Some(8), Some(-1), peer()).protocol,
            "icmp"
        );
        assert_eq!(
            ObservedRule::new("58", Some(128), Some(0), peer()).protocol,
            "icmpv6"
        );
        let icmp = ObservedRule::new("1", Some(8), Some(-1), peer());
        assert_eq!((icmp.from_port, icmp.to_port), (Some(8), Some(-1)));

        for (protocol, from, to) in [
            ("-1", Some(-1), Some(-1)),
            ("-1", None, None),
            ("all", Some(0), Some(65535)),
        ] {
            let all = ObservedRule::new(protocol, from, to, peer());
            assert_eq!(all, all_traffic("10.0.0.0/8"), "{protocol} {from:?} {to:?}");
            assert_eq!((all.from_port, all.to_port), (None, None));
        }

        let esp = ObservedRule::new("50", None, None, peer());
        assert_eq!(esp.protocol, "50", "other protocol numbers are kept");
    }

    #[test]
    fn rules_are_described_in_words() {
        assert_eq!(
            tcp(22, "10.0.0.0/8").describe(Direction::Ingress),
            "tcp 22 from 10.0.0.0/8"
        );
        assert_eq!(
            rule("tcp", Some((8000, 8080)), "sg-0aaa").describe(Direction::Egress),
            "tcp 8000-8080 to sg-0aaa"
        );
        assert_eq!(
            all_traffic("0.0.0.0/0").describe(Direction::Ingress),
            "all traffic from 0.0.0.0/0"
        );
        assert_eq!(
            rule("icmp", Some((8, -1)), "10.0.0.0/8").describe(Direction::Ingress),
            "icmp type 8 code -1 from 10.0.0.0/8"
        );
        assert_eq!(
            rule("icmpv6", Some((128, 0)), "::/0").describe(Direction::Egress),
            "icmpv6 type 128 code 0 to ::/0"
        );
    }

    #[test]
    fn a_rule_round_trips_through_an_ec2_permission_for_every_kind_of_peer() {
        let ipv4 = rule("udp", Some((53, 53)), "10.0.0.0/16");
        let permission = ipv4.to_permission();
        assert_eq!(permission.ip_protocol(), Some("udp"));
        assert_eq!(
            (permission.from_port(), permission.to_port()),
            (Some(53), Some(53))
        );
        assert_eq!(permission.ip_ranges()[0].cidr_ip(), Some("10.0.0.0/16"));
        assert!(permission.ipv6_ranges().is_empty() && permission.user_id_group_pairs().is_empty());

        let ipv6 = tcp(443, "2001:db8::/32");
        let permission = ipv6.to_permission();
        assert_eq!(
            permission.ipv6_ranges()[0].cidr_ipv6(),
            Some("2001:db8::/32")
        );
        assert!(permission.ip_ranges().is_empty());

        let group = rule("tcp", Some((5432, 5432)), "sg-0aaa");
        let permission = group.to_permission();
        assert_eq!(
            permission.user_id_group_pairs()[0].group_id(),
            Some("sg-0aaa")
        );
        assert!(permission.ip_ranges().is_empty());

        let prefix_list = tcp(443, "pl-0abc");
        let permission = prefix_list.to_permission();
        assert_eq!(
            permission.prefix_list_ids()[0].prefix_list_id(),
            Some("pl-0abc")
        );
        assert!(permission.ip_ranges().is_empty());

        let all = all_traffic("0.0.0.0/0");
        let permission = all.to_permission();
        assert_eq!(permission.ip_protocol(), Some("-1"));
        assert_eq!((permission.from_port(), permission.to_port()), (None, None));

        for rule in [ipv4, ipv6, group, prefix_list, all] {
            let back: Vec<ObservedRule> =
                ObservedRule::from_permission(&rule.to_permission()).collect();
            assert_eq!(back, std::slice::from_ref(&rule), "{rule:?}");
        }
    }

    #[test]
    fn a_permission_with_several_peers_is_one_rule_per_peer() {
        let permission = IpPermission::builder()
            .ip_protocol("6")
            .from_port(443)
            .to_port(443)
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
            .ip_ranges(IpRange::builder().cidr_ip("192.168.0.0/16").build())
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("2001:db8::/32").build())
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id("sg-0aaa")
                    .user_id("123456789012")
                    .build(),
            )
            .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-0abc").build())
            .build();
        let rules: BTreeSet<ObservedRule> = ObservedRule::from_permission(&permission).collect();
        let expected: BTreeSet<ObservedRule> = [
            "10.0.0.0/8",
            "192.168.0.0/16",
            "2001:db8::/32",
            "sg-0aaa",
            "pl-0abc",
        ]
        .into_iter()
        .map(|peer| tcp(443, peer))
        .collect();
        assert_eq!(rules, expected);
    }

    #[test]
    fn ingress_peers_come_from_cidrs_ids_and_resolved_references() {
        let mut object = object();
        object.spec.ingress = vec![
            SecurityGroupRule {
                cidr_blocks: vec!["10.0.0.0/16".into()],
                ipv6_cidr_blocks: vec!["2001:db8::/32".into()],
                security_group_ids: vec!["sg-0aaa".into()],
                security_group_refs: refs(&["lb", "gone"]),
                ..spec_rule(Protocol::Tcp, Some((443, 443)))
            },
            SecurityGroupRule {
                security_group_refs: refs(&["dns"]),
                ..spec_rule(Protocol::Udp, Some((53, 53)))
            },
        ];
        let references = BTreeMap::from([
            (
                "ingress[0].securityGroupRefs[0]".to_owned(),
                "sg-0bbb".to_owned(),
            ),
            (
                "ingress[1].securityGroupRefs[0]".to_owned(),
                "sg-0ccc".to_owned(),
            ),
            // Another direction's reference with the same position is not this one.
            (
                "egress[0].securityGroupRefs[1]".to_owned(),
                "sg-0eee".to_owned(),
            ),
        ]);
        let context = Context {
            references: &references,
            ..Context::named(Some(GROUP))
        };
        let ingress = object.desired_rules(Direction::Ingress, &context);
        let expected: BTreeSet<ObservedRule> = [
            tcp(443, "10.0.0.0/16"),
            tcp(443, "2001:db8::/32"),
            tcp(443, "sg-0aaa"),
            tcp(443, "sg-0bbb"),
            rule("udp", Some((53, 53)), "sg-0ccc"),
        ]
        .into_iter()
        .collect();
        assert_eq!(ingress, expected, "the unresolved `gone` is left out");
        assert_eq!(
            object.desired_rules(Direction::Egress, &context),
            BTreeSet::from([all_traffic("0.0.0.0/0")])
        );
    }

    #[test]
    fn without_egress_in_the_spec_everything_may_go_out() {
        let spec: SecurityGroupSpec = serde_json::from_value(serde_json::json!({
            "description": "web servers",
            "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                         "cidrBlocks": ["10.0.0.0/8"]}],
        }))
        .unwrap();
        assert_eq!(spec.egress, allow_all_outbound());
        let mut object = object();
        object.spec = spec;
        let context = Context::named(None);
        assert_eq!(
            object.desired_rules(Direction::Egress, &context),
            BTreeSet::from([all_traffic("0.0.0.0/0")])
        );
        assert_eq!(
            object.desired_rules(Direction::Ingress, &context),
            BTreeSet::from([tcp(22, "10.0.0.0/8")])
        );

        let spec: SecurityGroupSpec = serde_json::from_value(serde_json::json!({
            "description": "locked down",
            "egress": [],
        }))
        .unwrap();
        assert!(spec.egress.is_empty() && spec.ingress.is_empty());
        object.spec = spec;
        assert!(object.desired_rules(Direction::Egress, &context).is_empty());
    }

    #[test]
    fn each_group_reference_is_declared_with_its_rule_field() {
        let mut object = object();
        assert!(object.references().is_empty());
        assert_eq!(object.default_external_name(), None);
        assert_eq!(object.deletion_policy(), DeletionPolicy::Delete);

        object.spec.ingress = vec![
            tcp_from(22, &["10.0.0.0/8"]),
            SecurityGroupRule {
                security_group_refs: refs(&["lb", "bastion"]),
                ..spec_rule(Protocol::Tcp, Some((443, 443)))
            },
        ];
        object.spec.egress = vec![
            tcp_from(443, &["0.0.0.0/0"]),
            SecurityGroupRule {
                security_group_refs: refs(&["db"]),
                ..spec_rule(Protocol::Tcp, Some((5432, 5432)))
            },
        ];
        let references: Vec<(String, String, String)> = object
            .references()
            .into_iter()
            .map(|r| (r.field, r.name, r.resource.kind))
            .collect();
        let expected = [
            ("ingress[1].securityGroupRefs[0]", "lb"),
            ("ingress[1].securityGroupRefs[1]", "bastion"),
            ("egress[1].securityGroupRefs[0]", "db"),
        ]
        .map(|(field, name)| {
            (
                field.to_owned(),
                name.to_owned(),
                "SecurityGroup".to_owned(),
            )
        });
        assert_eq!(references, expected);
        assert_eq!(SecurityGroup::referenced_kinds()[0].kind, "SecurityGroup");
    }

    #[test]
    fn the_group_name_defaults_to_namespace_name_and_uid() {
        let mut object = object();
        assert_eq!(object.group_name(), "shop-web-0c9f3a1e5b");
        object.spec.group_name = Some("legacy-web".into());
        assert_eq!(object.group_name(), "legacy-web");
    }

    // Observe.

    #[tokio::test]
    async fn an_adopted_group_is_described_by_its_id() {
        let describe = by_id(GROUP, vec![group(declared_ingress(), all_out())]);
        let uid = by_uid(Vec::new());
        let client = client(&[&describe, &uid]);
        let observed = exists(
            client
                .observe(&object(), Context::named(Some(GROUP)))
                .await
                .unwrap(),
        );
        assert_eq!(observed.external_name.as_deref(), Some(GROUP));
        assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
        assert_eq!(observed.readiness, Readiness::Ready);
        let at = &observed.at_provider;
        assert_eq!(at.group_id, GROUP);
        assert_eq!(at.arn.as_deref(), Some(ARN));
        assert_eq!(at.group_name.as_deref(), Some("shop-web"));
        assert_eq!(at.vpc_id.as_deref(), Some("vpc-0a"));
        assert_eq!(at.ingress, [tcp(22, "10.0.0.0/8")]);
        assert_eq!(at.egress, [all_traffic("0.0.0.0/0")]);
        assert_eq!((describe.num_calls(), uid.num_calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_group_not_found_by_its_id_is_looked_up_by_the_uid_tag() {
        let gone = mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|request| request.group_ids() == [OLD_GROUP])
            .then_error(|| {
                DescribeSecurityGroupsError::generic(error(
                    "InvalidGroup.NotFound",
                    "The security group 'sg-0fedcba9876543210' does not exist",
                ))
            });
        let uid = by_uid(vec![group(declared_ingress(), all_out())]);
        let client = client(&[&gone, &uid]);
        let observed = exists(
            client
                .observe(&object(), Context::named(Some(OLD_GROUP)))
                .await
                .unwrap(),
        );
        assert_eq!(observed.external_name.as_deref(), Some(GROUP));
        assert_eq!((gone.num_calls(), uid.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn nothing_found_by_id_or_tag_is_missing() {
        let gone = mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|request| request.group_ids() == [OLD_GROUP])
            .then_error(|| {
                DescribeSecurityGroupsError::generic(error(
                    "InvalidGroup.NotFound",
                    "The security group 'sg-0fedcba9876543210' does not exist",
                ))
            });
        let none = by_uid(Vec::new());
        let client = client(&[&gone, &none]);
        let object = object();
        assert_eq!(
            client
                .observe(&object, Context::named(Some(OLD_GROUP)))
                .await,
            Ok(Observation::Missing)
        );
        assert_eq!(
            client.observe(&object, Context::named(None)).await,
            Ok(Observation::Missing)
        );
        assert_eq!(none.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_mistyped_group_id_is_an_error_not_a_missing_group() {
        let malformed = mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|request| request.group_ids() == ["sg-nope"])
            .then_error(|| {
                DescribeSecurityGroupsError::generic(error(
                    "InvalidGroupId.Malformed",
                    "Invalid id: \"sg-nope\"",
                ))
            });
        let uid = by_uid(Vec::new());
        let client = client(&[&malformed, &uid]);
        let error = client
            .observe(&object(), Context::named(Some("sg-nope")))
            .await
            .expect_err("malformed");
        assert_eq!(error.class, ErrorClass::Terminal);
        assert_eq!(error.code.as_deref(), Some("InvalidGroupId.Malformed"));
        assert_eq!(uid.num_calls(), 0, "no fallback that would create a group");
    }

    #[tokio::test]
    async fn a_rule_removed_by_hand_is_reported_as_ingress_add() {
        let observed = observe(&object(), group(Vec::new(), all_out())).await;
        assert_eq!(
            observed.delta.describe(),
            ["ingress: add tcp 22 from 10.0.0.0/8"]
        );
    }

    #[test]
    fn while_a_peer_is_unresolved_no_rule_with_a_peer_group_is_removed() {
        let desired = BTreeSet::from([tcp(443, "10.0.0.0/8"), tcp(5432, "sg-0aaa")]);
        let actual = [
            tcp(5432, "sg-0aaa"),
            tcp(8080, "sg-0bbb"),
            tcp(22, "0.0.0.0/0"),
        ];
        let complete = RuleChanges::between(&desired, &actual, false);
        assert_eq!(complete.add, [tcp(443, "10.0.0.0/8")]);
        assert_eq!(
            complete.remove,
            [tcp(22, "0.0.0.0/0"), tcp(8080, "sg-0bbb")]
        );
        // sg-0bbb may be the peer not resolved yet: it stays; the CIDR rule goes.
        let partial = RuleChanges::between(&desired, &actual, true);
        assert_eq!(partial.add, [tcp(443, "10.0.0.0/8")]);
        assert_eq!(partial.remove, [tcp(22, "0.0.0.0/0")]);
    }

    #[tokio::test]
    async fn rules_added_by_hand_are_reported_as_removals() {
        let mut ingress = declared_ingress();
        ingress.push(permission("tcp", Some(3389), Some(3389), "0.0.0.0/0"));
        let mut egress = all_out();
        egress.push(permission("udp", Some(53), Some(53), "8.8.8.8/32"));
        let observed = observe(&object(), group(ingress, egress)).await;
        assert_eq!(
            observed.delta.describe(),
            [
                "ingress: remove tcp 3389 from 0.0.0.0/0",
                "egress: remove udp 53 to 8.8.8.8/32",
            ]
        );
    }

    #[tokio::test]
    async fn an_emptied_egress_reports_the_default_rule_for_removal() {
        let mut object = object();
        object.spec.egress.clear();
        object.spec.ingress.clear();
        let observed = observe(&object, group(declared_ingress(), all_out())).await;
        assert_eq!(
            observed.delta.describe(),
            [
                "ingress: remove tcp 22 from 10.0.0.0/8",
                "egress: remove all traffic to 0.0.0.0/0",
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_tag_is_a_tags_difference_and_extra_tags_are_fine() {
        let mut object = object();
        object.spec.tags = BTreeMap::from([("team".into(), "shop".into())]);
        let observed = observe(&object, group(declared_ingress(), all_out())).await;
        assert_eq!(observed.delta.describe(), ["tags"]);

        let mut tagged = group(declared_ingress(), all_out());
        tagged.tags = Some(vec![
            Tag::builder().key(UID_TAG).value(UID).build(),
            Tag::builder().key("team").value("shop").build(),
            Tag::builder().key("aws:owner").value("x").build(),
        ]);
        let observed = observe(&object, tagged).await;
        assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    }

    #[tokio::test]
    async fn aws_spellings_of_all_traffic_and_icmp_match_the_spec() {
        let mut object = object();
        object.spec.ingress = vec![
            SecurityGroupRule {
                cidr_blocks: vec!["10.0.0.0/8".into()],
                ..spec_rule(Protocol::Icmp, Some((8, -1)))
            },
            SecurityGroupRule {
                security_group_ids: vec!["sg-0aaa".into()],
                ..spec_rule(Protocol::All, None)
            },
        ];
        object.spec.egress = vec![SecurityGroupRule {
            cidr_blocks: vec!["0.0.0.0/0".into()],
            ipv6_cidr_blocks: vec!["::/0".into()],
            ..spec_rule(Protocol::All, None)
        }];
        let ingress = vec![
            permission("1", Some(8), Some(-1), "10.0.0.0/8"),
            IpPermission::builder()
                .ip_protocol("-1")
                .from_port(-1)
                .to_port(-1)
                .user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id("sg-0aaa")
                        .user_id("123456789012")
                        .build(),
                )
                .build(),
        ];
        let egress = vec![
            permission("-1", Some(-1), Some(-1), "0.0.0.0/0"),
            IpPermission::builder()
                .ip_protocol("-1")
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        ];
        let observed = observe(&object, group(ingress, egress)).await;
        assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    }

    // Update.

    #[tokio::test]
    async fn update_adds_missing_rules_before_removing_extra_ones_and_sends_only_those() {
        let mut object = object();
        object.spec.ingress = vec![tcp_from(22, &["10.0.0.0/8"]), tcp_from(443, &["0.0.0.0/0"])];
        object.spec.egress = vec![
            tcp_from(443, &["0.0.0.0/0"]),
            SecurityGroupRule {
                security_group_refs: refs(&["db"]),
                ..spec_rule(Protocol::Tcp, Some((5432, 5432)))
            },
        ];
        let references = BTreeMap::from([(
            "egress[1].securityGroupRefs[0]".to_owned(),
            "sg-0db".to_owned(),
        )]);
        let context = Context {
            references: &references,
            ..Context::named(Some(GROUP))
        };
        let observed = observation(
            vec![tcp(22, "10.0.0.0/8"), tcp(3389, "0.0.0.0/0")],
            vec![tcp(443, "0.0.0.0/0"), all_traffic("0.0.0.0/0")],
            // update converges the rules from what AWS holds, whatever the delta says.
            false,
        );

        let authorize_in = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions()) == [tcp(443, "0.0.0.0/0")]
            })
            .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
        let revoke_in = mock!(aws_sdk_ec2::Client::revoke_security_group_ingress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions()) == [tcp(3389, "0.0.0.0/0")]
            })
            .then_output(|| RevokeSecurityGroupIngressOutput::builder().build());
        let authorize_out = mock!(aws_sdk_ec2::Client::authorize_security_group_egress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions()) == [tcp(5432, "sg-0db")]
            })
            .then_output(|| AuthorizeSecurityGroupEgressOutput::builder().build());
        let revoke_out = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions()) == [all_traffic("0.0.0.0/0")]
            })
            .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
        let client = in_order(&[&authorize_in, &revoke_in, &authorize_out, &revoke_out]);
        client.update(&object, context, &observed).await.unwrap();
        for (call, rule) in [
            ("authorize ingress", &authorize_in),
            ("revoke ingress", &revoke_in),
            ("authorize egress", &authorize_out),
            ("revoke egress", &revoke_out),
        ] {
            assert_eq!(rule.num_calls(), 1, "{call}");
        }
    }

    #[tokio::test]
    async fn tags_are_written_only_when_they_differ() {
        let mut object = object();
        object.spec.tags = BTreeMap::from([("team".into(), "shop".into())]);
        let tags = mock!(aws_sdk_ec2::Client::create_tags)
            .match_requests(|request| {
                let tags = tag_map(request.tags());
                request.resources() == [GROUP]
                    && tags.get(UID_TAG).map(String::as_str) == Some(UID)
                    && tags.get("team").map(String::as_str) == Some("shop")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let client = client(&[&tags]);
        let declared = || (vec![tcp(22, "10.0.0.0/8")], vec![all_traffic("0.0.0.0/0")]);

        let (ingress, egress) = declared();
        client
            .update(
                &object,
                Context::named(Some(GROUP)),
                &observation(ingress, egress, true),
            )
            .await
            .unwrap();
        assert_eq!(tags.num_calls(), 1);

        let (ingress, egress) = declared();
        client
            .update(
                &object,
                Context::named(Some(GROUP)),
                &observation(ingress, egress, false),
            )
            .await
            .unwrap();
        assert_eq!(tags.num_calls(), 1, "no tag call, and no rule call");
    }

    // Partly made changes.

    #[tokio::test]
    async fn a_duplicate_in_a_batch_is_retried_one_rule_at_a_time() {
        let duplicate = || {
            AuthorizeSecurityGroupIngressError::generic(error(
                "InvalidPermission.Duplicate",
                "the specified rule already exists",
            ))
        };
        let (ssh, https) = (tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0"));
        let carries = |rules: Vec<ObservedRule>| {
            move |request: &aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressInput| {
                request.group_id() == Some(GROUP) && carried(request.ip_permissions()) == rules
            }
        };
        let batch = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(carries(vec![ssh.clone(), https.clone()]))
            .then_error(duplicate);
        let ssh_alone = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(carries(vec![ssh.clone()]))
            .then_error(duplicate);
        let https_alone = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(carries(vec![https.clone()]))
            .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
        let client = client(&[&batch, &ssh_alone, &https_alone]);
        client
            .change(
                GROUP,
                Direction::Ingress,
                Change::Add,
                &[ssh.clone(), https.clone()],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                batch.num_calls(),
                ssh_alone.num_calls(),
                https_alone.num_calls()
            ),
            (1, 1, 1)
        );

        // A single rule that is already there is done.
        client
            .change(
                GROUP,
                Direction::Ingress,
                Change::Add,
                std::slice::from_ref(&ssh),
            )
            .await
            .unwrap();
        assert_eq!(ssh_alone.num_calls(), 2);
        assert_eq!(batch.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_rule_already_revoked_counts_as_removed() {
        let not_found = || {
            RevokeSecurityGroupEgressError::generic(error(
                "InvalidPermission.NotFound",
                "The specified rule does not exist in this security group.",
            ))
        };
        let (dns, all) = (
            rule("udp", Some((53, 53)), "8.8.8.8/32"),
            all_traffic("0.0.0.0/0"),
        );
        let batch = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
            .match_requests(|request| request.ip_permissions().len() == 2)
            .then_error(not_found);
        let dns_alone = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
            .match_requests(|request| {
                carried(request.ip_permissions()) == [rule("udp", Some((53, 53)), "8.8.8.8/32")]
            })
            .then_error(not_found);
        let all_alone = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
            .match_requests(|request| {
                carried(request.ip_permissions()) == [all_traffic("0.0.0.0/0")]
            })
            .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
        let client = client(&[&batch, &dns_alone, &all_alone]);
        client
            .change(
                GROUP,
                Direction::Egress,
                Change::Remove,
                &[dns.clone(), all],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                batch.num_calls(),
                dns_alone.num_calls(),
                all_alone.num_calls()
            ),
            (1, 1, 1)
        );
        client
            .change(GROUP, Direction::Egress, Change::Remove, &[dns])
            .await
            .unwrap();
        assert_eq!(dns_alone.num_calls(), 2);
    }

    #[tokio::test]
    async fn other_errors_are_returned_with_their_class() {
        let limit = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(|request| request.ip_permissions().len() == 2)
            .then_error(|| {
                AuthorizeSecurityGroupIngressError::generic(error(
                    "RulesPerSecurityGroupLimitExceeded",
                    "The maximum number of rules per security group has been reached.",
                ))
            });
        let client = client(&[&limit]);
        let error = client
            .change(
                GROUP,
                Direction::Ingress,
                Change::Add,
                &[tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0")],
            )
            .await
            .expect_err("over the limit");
        assert_eq!(error.class, ErrorClass::Terminal);
        assert_eq!(
            error.code.as_deref(),
            Some("RulesPerSecurityGroupLimitExceeded")
        );
        assert_eq!(
            error.message,
            "The maximum number of rules per security group has been reached."
        );
        assert_eq!(limit.num_calls(), 1, "no retry one rule at a time");

        // A revoke answered with an add's "already done" code is an error.
        let odd = mock!(aws_sdk_ec2::Client::revoke_security_group_egress).then_error(|| {
            RevokeSecurityGroupEgressError::generic(self::error(
                "InvalidPermission.Duplicate",
                "the specified rule already exists",
            ))
        });
        let client = self::client(&[&odd]);
        let refused = client
            .change(
                GROUP,
                Direction::Egress,
                Change::Remove,
                &[all_traffic("0.0.0.0/0")],
            )
            .await
            .expect_err("not a revoke's already done");
        assert_eq!(refused.code.as_deref(), Some("InvalidPermission.Duplicate"));
    }

    #[tokio::test]
    async fn an_error_while_retrying_one_rule_at_a_time_is_returned() {
        let batch = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(|request| request.ip_permissions().len() == 2)
            .then_error(|| {
                AuthorizeSecurityGroupIngressError::generic(error(
                    "InvalidPermission.Duplicate",
                    "the specified rule already exists",
                ))
            });
        let single = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(|request| request.ip_permissions().len() == 1)
            .then_error(|| {
                AuthorizeSecurityGroupIngressError::generic(error(
                    "InvalidGroup.NotFound",
                    "The security group does not exist",
                ))
            });
        let client = client(&[&batch, &single]);
        let error = client
            .change(
                GROUP,
                Direction::Ingress,
                Change::Add,
                &[tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0")],
            )
            .await
            .expect_err("the group is gone");
        assert_eq!(error.code.as_deref(), Some("InvalidGroup.NotFound"));
        assert_eq!(single.num_calls(), 1, "stops at the first real error");
    }

    // Create.

    /// CreateSecurityGroup answering that the name is taken.
    fn create_duplicate() -> Rule {
        mock!(aws_sdk_ec2::Client::create_security_group).then_error(|| {
            CreateSecurityGroupError::generic(error(
                "InvalidGroup.Duplicate",
                "The security group 'shop-web-0c9f3a1e5b' already exists for VPC 'vpc-0a'",
            ))
        })
    }

    /// DescribeSecurityGroups by the derived name in the object's VPC, answering `groups`.
    fn by_name(groups: Vec<Ec2Group>) -> Rule {
        mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|request| {
                let filter = |name: &str, value: &str| {
                    request
                        .filters()
                        .iter()
                        .any(|f| f.name() == Some(name) && f.values() == [value])
                };
                filter("group-name", "shop-web-0c9f3a1e5b") && filter("vpc-id", "vpc-0a")
            })
            .then_output(move || described(groups.clone()))
    }

    #[tokio::test]
    async fn a_duplicate_name_of_our_own_group_finds_it_instead_of_failing() {
        let (create, find) = (create_duplicate(), by_name(vec![group(vec![], all_out())]));
        let created = in_order(&[&create, &find])
            .create(&object(), Context::named(None))
            .await
            .expect("the group a lost read hid is this object's");
        assert_eq!(created.external_name.as_deref(), Some(GROUP));
    }

    #[tokio::test]
    async fn a_duplicate_name_of_someone_elses_group_is_refused_and_a_hidden_one_waited_for() {
        let mut theirs = group(vec![], all_out());
        theirs.tags = Some(vec![Tag::builder().key(UID_TAG).value("another").build()]);
        let (create, find) = (create_duplicate(), by_name(vec![theirs]));
        let refused = in_order(&[&create, &find])
            .create(&object(), Context::named(None))
            .await
            .expect_err("someone else's group");
        assert_eq!(refused.class, ErrorClass::Terminal);
        assert_eq!(refused.code.as_deref(), Some("InvalidGroup.Duplicate"));
        assert!(
            refused.message.contains("was not created by this object"),
            "{}",
            refused.message
        );

        let (create, find) = (create_duplicate(), by_name(vec![]));
        let hidden = in_order(&[&create, &find])
            .create(&object(), Context::named(None))
            .await
            .expect_err("not visible yet");
        assert_eq!(hidden.class, ErrorClass::Pending);
    }

    #[tokio::test]
    async fn create_names_describes_and_tags_the_group_then_authorizes_its_ingress() {
        let create = mock!(aws_sdk_ec2::Client::create_security_group)
            .match_requests(|request| {
                request.group_name() == Some("shop-web-0c9f3a1e5b")
                    && request.description() == Some("web servers")
                    && request.vpc_id() == Some("vpc-0a")
                    && request.tag_specifications().iter().any(|spec| {
                        spec.resource_type() == Some(&ResourceType::SecurityGroup)
                            && tag_map(spec.tags()).get(UID_TAG).map(String::as_str) == Some(UID)
                    })
            })
            .then_output(|| CreateSecurityGroupOutput::builder().group_id(GROUP).build());
        let authorize = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions()) == [tcp(22, "10.0.0.0/8")]
            })
            .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
        let fresh = by_id(
            GROUP,
            vec![group(
                Vec::new(),
                vec![all_traffic("0.0.0.0/0").to_permission()],
            )],
        );
        let client = in_order(&[&create, &fresh, &authorize]);
        let created = client
            .create(&object(), Context::named(None))
            .await
            .unwrap();
        assert_eq!(
            created,
            Created {
                external_name: Some(GROUP.into())
            }
        );
        assert_eq!(
            (create.num_calls(), authorize.num_calls()),
            (1, 1),
            "and no egress call: the default egress is AWS's"
        );
    }

    #[tokio::test]
    async fn create_with_a_group_name_and_no_egress_revokes_every_default_egress_rule() {
        let mut object = object();
        object.spec.group_name = Some("legacy-web".into());
        object.spec.vpc_id = None;
        object.spec.ingress.clear();
        object.spec.egress.clear();
        let create = mock!(aws_sdk_ec2::Client::create_security_group)
            .match_requests(|request| {
                request.group_name() == Some("legacy-web") && request.vpc_id().is_none()
            })
            .then_output(|| CreateSecurityGroupOutput::builder().group_id(GROUP).build());
        let revoke = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
            .match_requests(|request| {
                request.group_id() == Some(GROUP)
                    && carried(request.ip_permissions())
                        == [all_traffic("0.0.0.0/0"), all_traffic("::/0")]
            })
            .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
        // In a VPC with IPv6, AWS's default egress covers ::/0 too.
        let fresh = by_id(
            GROUP,
            vec![group(
                Vec::new(),
                vec![
                    all_traffic("0.0.0.0/0").to_permission(),
                    all_traffic("::/0").to_permission(),
                ],
            )],
        );
        let client = in_order(&[&create, &fresh, &revoke]);
        let created = client.create(&object, Context::named(None)).await.unwrap();
        assert_eq!(created.external_name.as_deref(), Some(GROUP));
        assert_eq!((create.num_calls(), revoke.num_calls()), (1, 1));
    }

    // Delete.

    #[tokio::test]
    async fn delete_deletes_the_group_by_id_and_a_group_already_gone_is_fine() {
        let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
            .match_requests(|request| request.group_id() == Some(GROUP))
            .then_output(|| DeleteSecurityGroupOutput::builder().build());
        let gone = mock!(aws_sdk_ec2::Client::delete_security_group)
            .match_requests(|request| request.group_id() == Some(OLD_GROUP))
            .then_error(|| {
                DeleteSecurityGroupError::generic(error(
                    "InvalidGroup.NotFound",
                    "The security group 'sg-0fedcba9876543210' does not exist",
                ))
            });
        let client = client(&[&delete, &gone]);
        let object = object();
        assert_eq!(
            client
                .delete(&object, Context::named(Some(GROUP)), DeletionPolicy::Delete)
                .await,
            Ok(None)
        );
        assert_eq!(
            client
                .delete(
                    &object,
                    Context::named(Some(OLD_GROUP)),
                    DeletionPolicy::Delete
                )
                .await,
            Ok(None)
        );
        assert_eq!((delete.num_calls(), gone.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_group_still_used_by_an_instance_is_pending() {
        let in_use = mock!(aws_sdk_ec2::Client::delete_security_group).then_error(|| {
            DeleteSecurityGroupError::generic(error(
                "DependencyViolation",
                "resource sg-0123456789abcdef0 has a dependent object",
            ))
        });
        let client = client(&[&in_use]);
        let error = client
            .delete(
                &object(),
                Context::named(Some(GROUP)),
                DeletionPolicy::Delete,
            )
            .await
            .expect_err("in use");
        assert_eq!(error.class, ErrorClass::Pending);
        assert_eq!(error.code.as_deref(), Some("DependencyViolation"));
    }

    #[tokio::test]
    async fn without_an_external_name_delete_calls_nothing() {
        let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
            .then_output(|| DeleteSecurityGroupOutput::builder().build());
        let client = client(&[&delete]);
        assert_eq!(
            client
                .delete(&object(), Context::named(None), DeletionPolicy::Delete)
                .await,
            Ok(None)
        );
        assert_eq!(delete.num_calls(), 0);
    }

    // The CRD.

    #[test]
    fn the_crd_carries_the_cel_rules() {
        let crd = serde_json::to_string(&SecurityGroup::crd()).unwrap();
        for message in [
            "a security group cannot reference itself in securityGroupRefs",
            "a security group has no snapshot: use Delete or Retain",
            "groupName is immutable: AWS cannot rename a security group",
            "groupName must not start with sg-",
            "description is immutable: AWS cannot change a security group's description",
            "vpcId is immutable: a security group cannot move to another VPC",
            "tcp and udp rules need fromPort and toPort, with 0 <= fromPort <= toPort <= 65535",
            "icmp and icmpv6 rules need fromPort (the ICMP type) and toPort (the code)",
            "a rule for protocol all covers every port: leave out fromPort and toPort",
            "a rule needs at least one of cidrBlocks, ipv6CidrBlocks, securityGroupIds or \
             securityGroupRefs",
            "cidrBlocks: each entry must be an IPv4 CIDR without host bits",
            "ipv6CidrBlocks: each entry must be an IPv6 CIDR without host bits",
        ] {
            assert!(crd.contains(message), "{message} is missing");
        }
        for column in ["Ready", "Synced", "Group", "VPC"] {
            assert!(crd.contains(&format!("\"name\":\"{column}\"")), "{column}");
        }
        assert!(crd.contains(r"^sg-[0-9a-f]+$"));
        assert!(crd.contains(r"^vpc-[0-9a-f]+$"));
        assert!(crd.contains("\"sg\""), "the short name");
    }
}
