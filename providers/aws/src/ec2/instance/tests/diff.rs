//! The diff, without mocks.

use super::*;

/// [`object`]'s instance as EC2 reports it: `state`, of `instance_type`, in no
/// security group, with the restart marker or not.
fn on_ec2(state: &str, instance_type: &str, restart_after_stop: bool) -> InstanceObservation {
    observation(
        state,
        instance_type,
        restart_after_stop,
        InstanceDelta::default(),
    )
    .at_provider
}

/// The tags [`instance`] carries.
fn ec2_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        (UID_TAG.to_owned(), UID.to_owned()),
        ("Name".to_owned(), "shop/web".to_owned()),
    ])
}

#[test]
fn a_running_instance_as_its_spec_says_has_an_empty_diff() {
    let context = Context::named(Some(ID));
    let delta = diff(
        &object(),
        &context,
        &on_ec2("running", "t3.micro", false),
        &ec2_tags(),
    );
    assert_eq!(delta, InstanceDelta::default());
    assert!(delta.is_empty());
}

#[test]
fn another_type_is_a_difference_only_while_running_or_stopped() {
    let mut object = object();
    object.spec.instance_type = "t3.small".into();
    let context = Context::named(Some(ID));
    let type_only = InstanceDelta {
        instance_type: true,
        ..InstanceDelta::default()
    };
    for state in ["running", "stopped"] {
        let delta = diff(
            &object,
            &context,
            &on_ec2(state, "t3.micro", false),
            &ec2_tags(),
        );
        assert_eq!(delta, type_only, "{state}");
    }
    for state in ["pending", "stopping", "shutting-down"] {
        let delta = diff(
            &object,
            &context,
            &on_ec2(state, "t3.micro", false),
            &ec2_tags(),
        );
        assert!(delta.is_empty(), "nothing can change while {state}");
    }
}

#[test]
fn the_restart_marker_asks_for_a_start_unless_a_stop_is_coming() {
    let context = Context::named(Some(ID));
    let delta = |object: &Instance, state, instance_type| {
        diff(
            object,
            &context,
            &on_ec2(state, instance_type, true),
            &ec2_tags(),
        )
    };
    let state_only = InstanceDelta {
        instance_state: true,
        ..InstanceDelta::default()
    };
    let mut object = object();
    // Stopped by tether and the type changed: start it again.
    assert_eq!(delta(&object, "stopped", "t3.micro"), state_only);
    // Running with the marker left behind: only the marker goes.
    assert_eq!(delta(&object, "running", "t3.micro"), state_only);
    // Running and another type wanted, but no stop allowed: the marker is stale.
    object.spec.instance_type = "t3.small".into();
    assert_eq!(
        delta(&object, "running", "t3.micro").describe(),
        ["instanceType", "instanceState"]
    );
    // Stopping allowed: the stop comes first, the marker stays for the start.
    object.spec.allow_stop = true;
    assert_eq!(
        delta(&object, "running", "t3.micro").describe(),
        ["instanceType"]
    );
    // Stopped with the old type: change it, then start.
    assert_eq!(
        delta(&object, "stopped", "t3.micro").describe(),
        ["instanceType", "instanceState"]
    );
}

#[test]
fn security_groups_compare_as_sets_and_an_unresolved_reference_compares_nothing() {
    let mut object = object();
    object.spec.security_group_ids = vec!["sg-0aaa".into()];
    object.spec.security_group_refs = vec![LocalReference { name: "web".into() }];
    let references = BTreeMap::from([("securityGroupRefs[0]".to_owned(), "sg-0def".to_owned())]);
    let resolved = Context::named(Some(ID)).with_references(&references);
    let mut aws = on_ec2("running", "t3.micro", false);
    aws.security_group_ids = vec!["sg-0def".into(), "sg-0aaa".into()];
    assert!(diff(&object, &resolved, &aws, &ec2_tags()).is_empty());

    aws.security_group_ids = vec!["sg-0def".into()];
    let delta = diff(&object, &resolved, &aws, &ec2_tags());
    assert_eq!(delta.describe(), ["securityGroupIds"]);
    // While the object is being deleted its references are not resolved.
    let unresolved = Context::named(Some(ID));
    assert!(diff(&object, &unresolved, &aws, &ec2_tags()).is_empty());
    // A spec that names no groups leaves them to AWS.
    object.spec.security_group_ids.clear();
    object.spec.security_group_refs.clear();
    assert!(diff(&object, &resolved, &aws, &ec2_tags()).is_empty());
}

#[test]
fn a_tag_tether_applied_and_the_spec_dropped_is_a_difference_others_tags_are_not() {
    let (mut tags, applied) = a_dropped_tag(UID);
    tags.insert("Name".to_owned(), "shop/web".to_owned());
    let aws = on_ec2("running", "t3.micro", false);
    let context = Context {
        applied_tags: &applied,
        ..Context::named(Some(ID))
    };
    assert_eq!(diff(&object(), &context, &aws, &tags).describe(), ["tags"]);
    let never_applied = Context::named(Some(ID));
    assert!(diff(&object(), &never_applied, &aws, &tags).is_empty());
    tags.remove("Name");
    let delta = diff(&object(), &never_applied, &aws, &tags);
    assert_eq!(delta.describe(), ["tags"], "the Name tag is missing");
}
