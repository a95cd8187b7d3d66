//! The rules and their conversions, without AWS.

use super::*;

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
    let context = Context::named(Some(GROUP)).with_references(&references);
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
