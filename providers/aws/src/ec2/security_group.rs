//! The SecurityGroup kind: an EC2 security group whose rule set tether keeps exactly
//! as declared, putting back rules removed by hand and removing rules added by hand.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, UserIdGroupPair,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    ObjectReference,
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, Observed, ProviderError,
        Readiness,
    },
    managed::{DeletionPolicy, Managed, ManagedFields},
    references::LocalReference,
};

use super::{
    create_tags, is_not_found, tag_map, tag_specification, tags_differ, uid_filter, without_retries,
};
use crate::errors::{absent_if, provider_error};

/// The name of the tags difference, as `Observed::differences` lists it.
const TAGS: &str = "tags";

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
    doc = "An EC2 security group whose rules tether keeps exactly as declared.",
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

    /// The group's name in AWS, unique within its VPC; default `<namespace>-<name>`.
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
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupStatus {
    /// `Ready` (the group exists) and `Synced` (the last reconcile succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// What AWS reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<SecurityGroupObservation>,
}

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

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }

    fn at_provider(&self) -> Option<&SecurityGroupObservation> {
        self.status.as_ref()?.at_provider.as_ref()
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

    /// The group's name in AWS: `spec.groupName`, else `<namespace>-<name>`.
    pub fn group_name(&self) -> String {
        self.spec.group_name.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
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
struct RuleChanges {
    add: Vec<ObservedRule>,
    remove: Vec<ObservedRule>,
}

impl RuleChanges {
    fn between(desired: &BTreeSet<ObservedRule>, actual: &[ObservedRule]) -> Self {
        let actual: BTreeSet<&ObservedRule> = actual.iter().collect();
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

    /// The changes in words, for `Observed::differences` and so the `Updated` Event:
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
    async fn find(
        &self,
        object: &SecurityGroup,
        external_name: Option<&str>,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ProviderError> {
        if let Some(id) = external_name {
            let described = absent_if(
                self.ec2
                    .describe_security_groups()
                    .group_ids(id)
                    .send()
                    .await,
                is_not_found,
            )?;
            if let Some(group) = described.and_then(|d| d.security_groups().first().cloned()) {
                return Ok(Some(group));
            }
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

    /// Makes the group's rules in `direction` the `desired` ones, given `actual`:
    /// adds first, then removes, so traffic allowed before and after never stops.
    async fn converge(
        &self,
        group_id: &str,
        direction: Direction,
        desired: &BTreeSet<ObservedRule>,
        actual: &[ObservedRule],
    ) -> Result<(), ProviderError> {
        let changes = RuleChanges::between(desired, actual);
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
    ) -> Result<Observation<SecurityGroupObservation>, ProviderError> {
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
        let mut differences = Vec::new();
        if tags_differ(&object.desired_tags(), &tag_map(group.tags())) {
            differences.push(TAGS.to_owned());
        }
        for (direction, actual) in [
            (Direction::Ingress, &at_provider.ingress),
            (Direction::Egress, &at_provider.egress),
        ] {
            let changes = RuleChanges::between(&object.desired_rules(direction, &context), actual);
            differences.extend(changes.describe(direction));
        }
        Ok(Observation::Exists(Observed {
            external_name: Some(at_provider.group_id.clone()),
            differences,
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
        let created = self
            .ec2
            .create_security_group()
            .group_name(object.group_name())
            .description(&object.spec.description)
            .set_vpc_id(object.spec.vpc_id.clone())
            .tag_specifications(tag_specification(
                ResourceType::SecurityGroup,
                &object.desired_tags(),
            ))
            .customize()
            .config_override(without_retries())
            .send()
            .await
            .map_err(provider_error)?;
        let group_id = created.group_id().unwrap_or_default().to_owned();
        // A new group allows all outbound IPv4 traffic and nothing inbound.
        let egress = [ObservedRule::new("-1", None, None, "0.0.0.0/0".to_owned())];
        for (direction, actual) in [
            (Direction::Ingress, &[][..]),
            (Direction::Egress, &egress[..]),
        ] {
            self.converge(
                &group_id,
                direction,
                &object.desired_rules(direction, &context),
                actual,
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
        observed: &Observed<SecurityGroupObservation>,
    ) -> Result<(), ProviderError> {
        let group = &observed.at_provider;
        if observed.differences.iter().any(|d| d == TAGS) {
            create_tags(&self.ec2, &group.group_id, &object.desired_tags()).await?;
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
