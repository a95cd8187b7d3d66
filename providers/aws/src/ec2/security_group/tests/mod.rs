//! The rule arithmetic, and the EC2 calls (their contents, order and error codes)
//! with the SDK's own mocks; the diff, without mocks; and the CRD's rules.
//!
//! One file a part: the rules (`rules`), the diff (`diff`), the EC2 calls with the
//! SDK's mocks (`client`), the CRD (`types`); the fixtures they share are here.

mod client;
mod diff;
mod rules;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use crate::testing::{self, UID, a_dropped_tag, error, exists, metadata, mock_client};
use aws_sdk_ec2::{
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
    types::{
        IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroup as Ec2Group,
        Tag, UserIdGroupPair,
    },
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use kube::CustomResourceExt;
use tether_api::{
    ErrorClass,
    external::{Context, Created, Delta, ExternalClient, Observation, ObservedOf, Readiness},
    managed::{DeletionPolicy, Managed, ManagedFields},
    references::LocalReference,
};

use super::{
    client::Change,
    diff::{RuleChanges, diff},
    types::allow_all_outbound,
    *,
};
use crate::{ec2::tag_map, tags::UID_TAG};

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
        metadata: metadata("web"),
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

/// A DescribeSecurityGroups of the group `id`, which EC2 does not have.
fn not_found_by_id(id: &'static str) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_security_groups)
        .match_requests(move |request| request.group_ids() == [id])
        .then_error(move || {
            DescribeSecurityGroupsError::generic(error(
                "InvalidGroup.NotFound",
                &format!("The security group '{id}' does not exist"),
            ))
        })
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

fn client(rules: &[&Rule]) -> SecurityGroupClient {
    SecurityGroupClient::new(mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules))
}

/// A client that answers `rules` in this order and no other.
fn in_order(rules: &[&Rule]) -> SecurityGroupClient {
    SecurityGroupClient::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, rules))
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
    testing::observed(
        Some(GROUP),
        SecurityGroupDelta {
            tags,
            ..SecurityGroupDelta::default()
        },
        SecurityGroupObservation {
            group_id: GROUP.into(),
            ingress,
            egress,
            ..SecurityGroupObservation::default()
        },
    )
}
