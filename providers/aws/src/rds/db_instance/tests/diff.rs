//! The diff, without mocks.

use super::*;

/// The tags [`instance`] carries.
fn uid_tag() -> BTreeMap<String, String> {
    BTreeMap::from([(UID_TAG.to_owned(), UID.to_owned())])
}

/// A security group membership as DescribeDBInstances reports it.
fn membership(id: &str, status: &str) -> VpcSecurityGroupMembership {
    VpcSecurityGroupMembership::builder()
        .vpc_security_group_id(id)
        .status(status)
        .build()
}

#[test]
fn an_instance_as_its_spec_says_has_an_empty_diff() {
    let context = Context::named(Some(IDENTIFIER));
    let delta = diff(
        &object(),
        &context,
        &instance("available").build(),
        &uid_tag(),
        false,
    );
    assert_eq!(delta, DBInstanceDelta::default());
    assert!(delta.is_empty());
}

#[test]
fn each_field_rds_reports_otherwise_sets_exactly_its_flag() {
    let mut object = object();
    object.spec.multi_az = Some(false);
    object.spec.publicly_accessible = Some(false);
    object.spec.deletion_protection = Some(true);
    let matching = || {
        instance("available")
            .multi_az(false)
            .publicly_accessible(false)
            .deletion_protection(true)
    };
    let context = Context::named(Some(IDENTIFIER));
    let delta = |instance: DbInstance, password_differs| {
        diff(&object, &context, &instance, &uid_tag(), password_differs)
    };
    assert!(delta(matching().build(), false).is_empty());

    let only = |set: fn(&mut DBInstanceDelta)| {
        let mut delta = DBInstanceDelta::default();
        set(&mut delta);
        delta
    };
    let cases = [
        (
            matching().engine_version("15.7"),
            only(|d| d.engine_version = true),
        ),
        // `16` matches `16.3`, but not `160.1`: versions match on dot boundaries.
        (
            matching().engine_version("160.1"),
            only(|d| d.engine_version = true),
        ),
        (
            matching().db_instance_class("db.t3.micro"),
            only(|d| d.instance_class = true),
        ),
        (
            matching().allocated_storage(50),
            only(|d| d.allocated_storage = true),
        ),
        (matching().multi_az(true), only(|d| d.multi_az = true)),
        (
            matching().publicly_accessible(true),
            only(|d| d.publicly_accessible = true),
        ),
        (
            matching().backup_retention_period(1),
            only(|d| d.backup_retention_days = true),
        ),
        (
            matching().deletion_protection(false),
            only(|d| d.deletion_protection = true),
        ),
    ];
    for (instance, expected) in cases {
        assert_eq!(delta(instance.build(), false), expected);
    }
    // The password is not in what RDS describes: the diff takes what reading it found.
    assert_eq!(
        delta(matching().build(), true),
        only(|d| d.master_password = true)
    );
}

#[test]
fn fields_the_spec_leaves_to_aws_are_no_difference() {
    let mut object = object();
    object.spec.engine_version = None;
    object.spec.allocated_storage_gib = None;
    object.spec.backup_retention_days = None;
    let instance = instance("available")
        .engine_version("15.7")
        .allocated_storage(100)
        .backup_retention_period(1)
        .multi_az(true)
        .publicly_accessible(true)
        .deletion_protection(true)
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .build();
    let context = Context::named(Some(IDENTIFIER));
    let delta = diff(&object, &context, &instance, &uid_tag(), false);
    assert!(delta.is_empty(), "{:?}", delta.describe());
}

#[test]
fn security_groups_are_the_ids_and_resolved_references_and_removals_do_not_count() {
    let mut object = object();
    object.spec.vpc_security_group_ids = vec!["sg-0aaa".into()];
    object.spec.vpc_security_group_refs = vec![LocalReference { name: "db".into() }];
    let references = BTreeMap::from([("vpcSecurityGroupRefs[0]".to_owned(), "sg-0bbb".to_owned())]);
    let context = Context::named(Some(IDENTIFIER)).with_references(&references);
    let joined = instance("available")
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .vpc_security_groups(membership("sg-0bbb", "adding"))
        .vpc_security_groups(membership("sg-0old", "removing"))
        .build();
    let delta = diff(&object, &context, &joined, &uid_tag(), false);
    assert!(delta.is_empty(), "{:?}", delta.describe());

    let without_the_reference = instance("available")
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .build();
    let delta = diff(&object, &context, &without_the_reference, &uid_tag(), false);
    assert_eq!(delta.describe(), ["vpcSecurityGroupIds"]);
}

#[test]
fn a_tag_tether_applied_and_the_spec_dropped_is_a_difference_others_tags_are_not() {
    let object = object();
    let instance = instance("available").build();
    let (on_rds, applied) = a_dropped_tag(UID);
    let context = Context {
        applied_tags: &applied,
        ..Context::named(Some(IDENTIFIER))
    };
    let delta = diff(&object, &context, &instance, &on_rds, false);
    assert_eq!(delta.describe(), ["tags"]);

    let never_applied = Context::named(Some(IDENTIFIER));
    let delta = diff(&object, &never_applied, &instance, &on_rds, false);
    assert!(delta.is_empty(), "{:?}", delta.describe());

    let untagged = diff(&object, &never_applied, &instance, &BTreeMap::new(), false);
    assert_eq!(untagged.describe(), ["tags"], "the UID tag is missing");
}
