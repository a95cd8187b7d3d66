//! The diff, without mocks.

use super::*;

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
    Context::named(Some(GROUP)).with_references(references)
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
