//! The rule arithmetic, and the EC2 calls (their contents, order and error codes)
//! with the SDK's own mocks; the diff, without mocks; and the CRD's rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::testing::mock_client;
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
    types::{
        IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroup as Ec2Group,
        Tag, UserIdGroupPair,
    },
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use kube::{CustomResourceExt, core::ObjectMeta};
use tether_api::{
    ErrorClass,
    external::{
        ConnectionDetails, Context, Created, Delta, ExternalClient, Observation, ObservationOf,
        Observed, ObservedOf, Readiness,
    },
    managed::{DeletionPolicy, Managed, ManagedFields},
    references::LocalReference,
};

use super::{
    client::Change,
    diff::{RuleChanges, diff},
    types::allow_all_outbound,
    *,
};
use crate::{
    ec2::tag_map,
    tags::{UID_TAG, fixtures::a_dropped_tag},
};

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

// The diff, without mocks.

/// [`object`]'s group as EC2 reports it, with these rules.
fn on_ec2(ingress: Vec<ObservedRule>, egress: Vec<ObservedRule>) -> SecurityGroupObservation {
    SecurityGroupObservation {
        group_id: GROUP.into(),
        ingress,
        egress,
        ..SecurityGroupObservation::default()
    }
}

/// The rules EC2 reports for [`object`] as declared.
fn declared() -> SecurityGroupObservation {
    on_ec2(vec![tcp(22, "10.0.0.0/8")], vec![all_traffic("0.0.0.0/0")])
}

/// The tags [`group`] carries.
fn uid_tag() -> BTreeMap<String, String> {
    BTreeMap::from([(UID_TAG.to_owned(), UID.to_owned())])
}

/// A context of [`GROUP`] with `references` resolved.
fn resolving(references: &BTreeMap<String, String>) -> Context<'_> {
    Context {
        references,
        ..Context::named(Some(GROUP))
    }
}

#[test]
fn a_group_as_its_spec_says_has_an_empty_diff() {
    let delta = diff(
        &object(),
        &Context::named(Some(GROUP)),
        &declared(),
        &uid_tag(),
    );
    assert_eq!(delta, SecurityGroupDelta::default());
    assert!(delta.is_empty());
}

#[test]
fn a_rule_changed_in_one_direction_changes_that_direction_only() {
    let context = Context::named(Some(GROUP));
    // ssh opened to the world by hand, instead of 10.0.0.0/8.
    let aws = on_ec2(vec![tcp(22, "0.0.0.0/0")], vec![all_traffic("0.0.0.0/0")]);
    let delta = diff(&object(), &context, &aws, &uid_tag());
    assert!(!delta.tags);
    assert!(delta.egress.is_empty(), "{:?}", delta.egress);
    assert_eq!(delta.ingress.add, [tcp(22, "10.0.0.0/8")]);
    assert_eq!(delta.ingress.remove, [tcp(22, "0.0.0.0/0")]);

    let aws = on_ec2(vec![tcp(22, "10.0.0.0/8")], vec![tcp(443, "0.0.0.0/0")]);
    let delta = diff(&object(), &context, &aws, &uid_tag());
    assert!(!delta.tags && delta.ingress.is_empty());
    assert_eq!(
        delta.describe(),
        [
            "egress: add all traffic to 0.0.0.0/0",
            "egress: remove tcp 443 to 0.0.0.0/0",
        ]
    );
}

#[test]
fn a_tag_tether_applied_and_the_spec_dropped_is_a_difference_others_tags_are_not() {
    let object = object();
    let (tags, applied) = a_dropped_tag(UID);
    let context = Context {
        applied_tags: &applied,
        ..Context::named(Some(GROUP))
    };
    let delta = diff(&object, &context, &declared(), &tags);
    assert_eq!(delta.describe(), ["tags"]);

    let never_applied = Context::named(Some(GROUP));
    let delta = diff(&object, &never_applied, &declared(), &tags);
    assert!(delta.is_empty(), "{:?}", delta.describe());
}

#[test]
fn while_a_peer_group_is_unresolved_only_rules_with_other_peers_are_removed() {
    let mut object = object();
    object.spec.ingress.push(SecurityGroupRule {
        security_group_refs: refs(&["db"]),
        ..spec_rule(Protocol::Tcp, Some((5432, 5432)))
    });
    let aws = on_ec2(
        vec![
            tcp(22, "10.0.0.0/8"),
            tcp(5432, "sg-0db"),
            tcp(3389, "0.0.0.0/0"),
        ],
        vec![all_traffic("0.0.0.0/0")],
    );
    // `db` is not resolved: sg-0db may be its group and stays.
    let delta = diff(&object, &Context::named(Some(GROUP)), &aws, &uid_tag());
    assert_eq!(
        delta.describe(),
        ["ingress: remove tcp 3389 from 0.0.0.0/0"]
    );

    // Resolved to another group, sg-0db is nobody's peer and goes too.
    let references = BTreeMap::from([(
        "ingress[1].securityGroupRefs[0]".to_owned(),
        "sg-0dbnew".to_owned(),
    )]);
    let delta = diff(&object, &resolving(&references), &aws, &uid_tag());
    assert_eq!(
        delta.describe(),
        [
            "ingress: add tcp 5432 from sg-0dbnew",
            "ingress: remove tcp 3389 from 0.0.0.0/0",
            "ingress: remove tcp 5432 from sg-0db",
        ]
    );
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
        .match_requests(|request| carried(request.ip_permissions()) == [all_traffic("0.0.0.0/0")])
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
