//! SecurityGroup end to end with the real `tether run`, on moto and on LocalStack: the
//! rule set is kept exactly as declared (drift is put back and reported), references
//! resolve to group ids (also for DBInstance), groups that name each other are
//! deleted although AWS refuses to delete a group another group's rule names (the
//! fault proxy plays that), a lost create answer makes no second group, and bad rules
//! are refused at apply time.

use std::{collections::BTreeSet, time::Duration};

use aws_sdk_ec2::types::{IpPermission, IpRange};
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;
use tether_api::{
    conditions::{READY, SYNCED},
    managed::EXTERNAL_NAME_ANNOTATION,
};
use tether_aws::{ec2::SecurityGroup, rds::DBInstance, tags::UID_TAG};
use tether_testkit::{Fault, TestNamespace, cluster, emulator::EmulatorKind};

use crate::db_instance_controller::described;
use crate::world::merge_patch;
use crate::world::on_moto_and_localstack;
use crate::{
    db_instance_controller::database,
    world::{World, condition, derived_name},
};

const SSH_AND_HTTPS: &str = "  ingress:\n  - {protocol: tcp, fromPort: 22, toPort: 22, cidrBlocks: [10.0.0.0/8]}\n  - {protocol: tcp, fromPort: 443, toPort: 443, cidrBlocks: [0.0.0.0/0], ipv6CidrBlocks: ['::/0']}\n";

/// The security groups in EC2 (straight to the emulator) tagged with the UID `uid`.
pub(crate) async fn tagged_groups(
    world: &World,
    uid: &str,
) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
    world
        .ec2()
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{UID_TAG}"))
                .values(uid)
                .build(),
        )
        .send()
        .await
        .expect("describing security groups")
        .security_groups()
        .to_vec()
}

pub(crate) fn security_group(world: &World, name: &str, rules: &str) -> String {
    format!(
        "apiVersion: ec2.tether.dev/v1alpha1\nkind: SecurityGroup\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  description: {name} servers\n  tags: {{team: shop}}\n{rules}",
        world.provider_config
    )
}

/// The group as AWS holds it, straight from the emulator.
pub(crate) async fn describe(
    world: &World,
    group_id: &str,
) -> Option<aws_sdk_ec2::types::SecurityGroup> {
    world
        .ec2()
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .ok()
        .and_then(|described| described.security_groups().first().cloned())
}

/// Rules in words, one per peer: `tcp 22-22 10.0.0.0/8`, `-1 0.0.0.0/0`.
fn rules(permissions: &[IpPermission]) -> BTreeSet<String> {
    permissions
        .iter()
        .flat_map(|permission| {
            let ports = match (permission.from_port(), permission.to_port()) {
                (Some(from), Some(to)) if permission.ip_protocol() != Some("-1") => {
                    format!(" {from}-{to}")
                }
                _ => String::new(),
            };
            let head = format!("{}{ports}", permission.ip_protocol().unwrap_or_default());
            let peers = permission
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip())
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
                .map(str::to_owned)
                .collect::<Vec<_>>();
            peers.into_iter().map(move |peer| format!("{head} {peer}"))
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// Waits up to 60 s until the group's rules in AWS satisfy `check`.
async fn wait_rules(
    world: &World,
    group_id: &str,
    what: &str,
    check: impl Fn(&BTreeSet<String>, &BTreeSet<String>) -> bool,
) {
    let mut last = None;
    for _ in 0..120 {
        let group = describe(world, group_id).await.expect("the group exists");
        let (ingress, egress) = (
            rules(group.ip_permissions()),
            rules(group.ip_permissions_egress()),
        );
        if check(&ingress, &egress) {
            return;
        }
        last = Some((ingress, egress));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "{what}: not within 60 s; ingress and egress now {last:?}\n{}",
        world.log_tail()
    );
}

async fn lifecycle_and_drift(emulator: EmulatorKind) {
    let world = World::start_on(emulator).await;
    let api: Api<SecurityGroup> = world.ns.api();
    world
        .apply(&security_group(&world, "web", SSH_AND_HTTPS))
        .await;
    let ready = world.wait_condition(&api, "web", READY, "True", None).await;
    let group_id = ready
        .annotations()
        .get(EXTERNAL_NAME_ANNOTATION)
        .expect("the group id is recorded")
        .clone();
    let uid = ready.uid().unwrap();
    let at_provider = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(at_provider.group_id, group_id);
    let group = describe(&world, &group_id).await.expect("the group exists");
    assert_eq!(
        group.group_name(),
        Some(derived_name(&world.ns.name, "web", &uid).as_str())
    );
    assert_eq!(group.description(), Some("web servers"));
    let tags: BTreeSet<(String, String)> = group
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert!(tags.contains(&("team".into(), "shop".into())), "{tags:?}");
    assert!(tags.contains(&(UID_TAG.into(), ready.metadata.uid.clone().unwrap())));
    let declared = set(&[
        "tcp 22-22 10.0.0.0/8",
        "tcp 443-443 0.0.0.0/0",
        "tcp 443-443 ::/0",
    ]);
    assert_eq!(rules(group.ip_permissions()), declared);
    assert_eq!(
        rules(group.ip_permissions_egress()),
        set(&["-1 0.0.0.0/0"]),
        "the default egress"
    );
    assert_eq!(world.proxy.count("CreateSecurityGroup"), 1);

    // Behind tether's back: the SSH rule goes, an RDP rule comes.
    let ec2 = world.ec2();
    let permission = |port: i32, cidr: &str| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    };
    ec2.revoke_security_group_ingress()
        .group_id(&group_id)
        .ip_permissions(permission(22, "10.0.0.0/8"))
        .send()
        .await
        .expect("revoking by hand");
    ec2.authorize_security_group_ingress()
        .group_id(&group_id)
        .ip_permissions(permission(3389, "0.0.0.0/0"))
        .send()
        .await
        .expect("authorizing by hand");
    wait_rules(&world, &group_id, "drift put back", |ingress, _| {
        *ingress == declared
    })
    .await;
    let updated = world.wait_for_event("web", "Updated").await;
    let note = updated.note.unwrap_or_default();
    assert!(
        note.contains("ingress: add tcp 22 from 10.0.0.0/8"),
        "{note}"
    );
    assert!(
        note.contains("ingress: remove tcp 3389 from 0.0.0.0/0"),
        "{note}"
    );

    // A spec change: nothing may go out any more, and HTTPS only from IPv4.
    merge_patch(&api, "web", json!({"spec": {
            "egress": [],
            "ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}],
        }})).await;
    wait_rules(
        &world,
        &group_id,
        "spec change applied",
        |ingress, egress| *ingress == set(&["tcp 443-443 0.0.0.0/0"]) && egress.is_empty(),
    )
    .await;

    world.delete_and_wait_gone(&api, "web").await;
    assert!(
        describe(&world, &group_id).await.is_none(),
        "the group is deleted in AWS"
    );
    world.finish().await;
}

on_moto_and_localstack!(
    lifecycle_and_drift:
    a_security_group_keeps_its_declared_rules_on_moto,
    a_security_group_keeps_its_declared_rules_on_localstack
);

#[tokio::test]
async fn references_wait_for_the_group_and_resolve_to_its_id() {
    let world = World::start().await;
    let groups: Api<SecurityGroup> = world.ns.api();
    let databases: Api<DBInstance> = world.ns.api();
    // The application's group admits its load balancer's group, which comes later.
    world.apply(&security_group(
            &world,
            "app",
            "  ingress:\n  - {protocol: tcp, fromPort: 8080, toPort: 8080, securityGroupRefs: [{name: lb}]}\n",
        )).await;
    let message = world
        .wait_refusal(&groups, "app", "ReferenceNotReady")
        .await;
    assert!(
        message.contains("SecurityGroup lb does not exist"),
        "{message}"
    );
    world
        .apply(&security_group(&world, "lb", SSH_AND_HTTPS))
        .await;
    let lb = world
        .wait_condition(&groups, "lb", READY, "True", None)
        .await;
    // The application's group existed all along; its rule comes once lb is Ready.
    let app = world
        .wait_condition(&groups, "app", SYNCED, "True", None)
        .await;
    let lb_id = lb.status.unwrap().at_provider.unwrap().group_id;
    let app_id = app.status.unwrap().at_provider.unwrap().group_id;
    wait_rules(&world, &app_id, "admit the lb's group", |ingress, _| {
        *ingress == set(&[&format!("tcp 8080-8080 {lb_id}")])
    })
    .await;

    // A database joins the application's group by reference.
    world
        .apply(&database(
            &world,
            "orders",
            "  deletionPolicy: Delete\n  vpcSecurityGroupRefs: [{name: app}]\n",
        ))
        .await;
    let database = world
        .wait_condition(&databases, "orders", READY, "True", None)
        .await;
    let instance = described(&world, &database.annotations()[EXTERNAL_NAME_ANNOTATION]).await;
    let joined: Vec<_> = instance
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(joined, [app_id.as_str()]);
    world.delete_and_wait_gone(&databases, "orders").await;
    world.finish().await;
}

async fn a_lost_create_answer_makes_no_second_group(emulator: EmulatorKind) {
    let world = World::start_on(emulator).await;
    world
        .proxy
        .inject("CreateSecurityGroup", Fault::DropResponse, Some(1));
    let api: Api<SecurityGroup> = world.ns.api();
    world
        .apply(&security_group(&world, "lost", SSH_AND_HTTPS))
        .await;
    let ready = world
        .wait_condition(&api, "lost", READY, "True", None)
        .await;
    let uid = ready.metadata.uid.clone().unwrap();
    let tagged = tagged_groups(&world, &uid).await;
    let ids: Vec<_> = tagged.iter().filter_map(|g| g.group_id()).collect();
    assert_eq!(ids.len(), 1, "exactly one group carries the UID: {ids:?}");
    assert_eq!(
        ready
            .annotations()
            .get(EXTERNAL_NAME_ANNOTATION)
            .map(String::as_str),
        Some(ids[0])
    );
    assert_eq!(
        world.proxy.count("CreateSecurityGroup"),
        1,
        "the group found by its tag is adopted, not created again"
    );
    // Its rules were put in place by the reconcile that found it.
    wait_rules(
        &world,
        ids[0],
        "rules of the adopted group",
        |ingress, _| ingress.len() == 3,
    )
    .await;
    world.finish().await;
}

on_moto_and_localstack!(
    a_lost_create_answer_makes_no_second_group:
    a_lost_create_answer_makes_no_second_group_on_moto,
    a_lost_create_answer_makes_no_second_group_on_localstack
);

#[tokio::test]
async fn bad_rules_are_refused_at_apply_time() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let group = |name: &str, rule: &str| {
        format!(
            "apiVersion: ec2.tether.dev/v1alpha1\nkind: SecurityGroup\nmetadata: {{name: {name}}}\nspec:\n  description: d\n  ingress:\n  - {rule}\n"
        )
    };
    ns.apply(&group(
        "ok",
        "{protocol: icmp, fromPort: -1, toPort: -1, cidrBlocks: [10.1.0.0/16]}",
    ))
    .await
    .expect("a valid rule");
    for (what, rule, fragment) in [
        (
            "a malformed CIDR",
            "{protocol: tcp, fromPort: 22, toPort: 22, cidrBlocks: [10.0.0.300/8]}",
            "each entry must be an IPv4 CIDR",
        ),
        (
            "a CIDR with host bits",
            "{protocol: tcp, fromPort: 22, toPort: 22, cidrBlocks: [10.0.0.1/8]}",
            "without host bits",
        ),
        (
            "an IPv6 range among the IPv4 ones",
            "{protocol: tcp, fromPort: 22, toPort: 22, cidrBlocks: ['2001:db8::/32']}",
            "each entry must be an IPv4 CIDR",
        ),
        (
            "a port out of range",
            "{protocol: tcp, fromPort: 22, toPort: 70000, cidrBlocks: [10.0.0.0/8]}",
            "spec.ingress[0].toPort",
        ),
        (
            "a reversed port range",
            "{protocol: udp, fromPort: 600, toPort: 500, cidrBlocks: [10.0.0.0/8]}",
            "0 <= fromPort <= toPort",
        ),
        (
            "tcp without ports",
            "{protocol: tcp, cidrBlocks: [10.0.0.0/8]}",
            "tcp and udp rules need fromPort and toPort",
        ),
        (
            "ports on an all-protocols rule",
            "{protocol: all, fromPort: 1, toPort: 2, cidrBlocks: [10.0.0.0/8]}",
            "leave out fromPort and toPort",
        ),
        (
            "a rule with no peer",
            "{protocol: tcp, fromPort: 22, toPort: 22}",
            "needs at least one of cidrBlocks",
        ),
        (
            "an unknown protocol",
            "{protocol: gre, cidrBlocks: [10.0.0.0/8]}",
            "spec.ingress[0].protocol",
        ),
    ] {
        let message = ns.refusal(&group("bad", rule), what).await;
        assert!(message.contains(fragment), "{what}: {message}");
    }
    // Immutable fields.
    let renamed = group(
        "ok",
        "{protocol: icmp, fromPort: -1, toPort: -1, cidrBlocks: [10.1.0.0/16]}",
    )
    .replace("description: d", "description: e");
    let message = ns.refusal(&renamed, "a description change").await;
    assert!(message.contains("description is immutable"), "{message}");
    ns.delete().await;
}

#[tokio::test]
async fn two_groups_that_allow_each_other_both_become_ready() {
    let world = World::start().await;
    groups_that_name_each_other(&world).await;
    assert_eq!(world.proxy.count("CreateSecurityGroup"), 2);
    world.finish().await;
}

#[tokio::test]
async fn a_tag_dropped_from_the_spec_goes_and_tags_of_others_stay() {
    let world = World::start().await;
    let groups: Api<SecurityGroup> = world.ns.api();
    let tagged = |tags: &str| {
        security_group(&world, "web", "")
            .replace("tags: {team: shop}", &format!("tags: {{{tags}}}"))
    };
    world.apply(&tagged("team: shop, env: dev")).await;
    let ready = world
        .wait_condition(&groups, "web", READY, "True", None)
        .await;
    let id = ready.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    world
        .ec2()
        .create_tags()
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("cost-center")
                .value("42")
                .build(),
        )
        .send()
        .await
        .expect("tagging by hand");

    world.apply(&tagged("team: shop")).await;
    let mut keys = BTreeSet::new();
    for _ in 0..60 {
        let group = describe(&world, &id).await.expect("the group exists");
        keys = group
            .tags()
            .iter()
            .filter_map(|tag| tag.key().map(str::to_owned))
            .collect();
        if !keys.contains("env") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        keys,
        set(&["cost-center", "team", UID_TAG]),
        "env goes, the tag added by hand and tether's own stay:\n{}",
        world.log_tail()
    );
    assert!(world.proxy.count("DeleteTags") >= 1);
    world.finish().await;
}

/// The rules that make group `name` admit `peer`'s group on `port`.
fn admitting(port: u16, peer: &str) -> String {
    format!(
        "  ingress:\n  - {{protocol: tcp, fromPort: {port}, toPort: {port}, securityGroupRefs: [{{name: {peer}}}]}}\n"
    )
}

/// Waits until `app` and `db` are Ready and each admits the other's group in AWS;
/// returns their group ids.
async fn groups_that_name_each_other(world: &World) -> (String, String) {
    let groups: Api<SecurityGroup> = world.ns.api();
    world
        .apply(&security_group(world, "db", &admitting(5432, "app")))
        .await;
    world
        .apply(&security_group(world, "app", &admitting(8080, "db")))
        .await;
    let mut ids = Vec::new();
    for name in ["db", "app"] {
        let synced = world
            .wait_condition(&groups, name, SYNCED, "True", None)
            .await;
        assert_eq!(condition(&synced, READY).status, "True");
        ids.push(synced.annotations()[EXTERNAL_NAME_ANNOTATION].clone());
    }
    let (db_id, app_id) = (ids[0].clone(), ids[1].clone());
    wait_rules(world, &db_id, "db admits app", |ingress, _| {
        *ingress == set(&[&format!("tcp 5432-5432 {app_id}")])
    })
    .await;
    wait_rules(world, &app_id, "app admits db", |ingress, _| {
        *ingress == set(&[&format!("tcp 8080-8080 {db_id}")])
    })
    .await;
    (db_id, app_id)
}

#[tokio::test]
async fn two_groups_that_name_each_other_are_both_deleted() {
    // AWS (and the fault proxy, which plays it) refuses to delete a group that
    // another group's rule names: each group's own rules naming the other go first.
    let world = World::start().await;
    let groups: Api<SecurityGroup> = world.ns.api();
    let (db_id, app_id) = groups_that_name_each_other(&world).await;
    for name in ["db", "app"] {
        groups.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["db", "app"] {
        world.wait_gone(&groups, name).await;
    }
    for id in [&db_id, &app_id] {
        assert!(
            describe(&world, id).await.is_none(),
            "{id} is deleted in AWS"
        );
    }
    world.finish().await;
}

#[tokio::test]
async fn a_group_another_group_still_names_says_so_and_goes_once_the_rule_goes() {
    let world = World::start().await;
    let groups: Api<SecurityGroup> = world.ns.api();
    let (db_id, app_id) = groups_that_name_each_other(&world).await;

    // The application's group goes; the database's group still admits it.
    groups
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = world
        .wait_condition(&groups, "app", SYNCED, "False", Some("DeleteFailed"))
        .await;
    let message = condition(&waiting, SYNCED).message;
    assert!(
        message.contains(&format!(
            "security group {app_id} is still named by rules of {db_id}"
        )),
        "{message}"
    );
    assert!(
        waiting.metadata.deletion_timestamp.is_some(),
        "app waits, Terminating"
    );
    let refused = world
        .proxy
        .calls()
        .iter()
        .filter(|call| call.operation == "DeleteSecurityGroup" && !call.forwarded)
        .count();
    assert!(refused >= 1, "the proxy refused the delete as AWS does");
    let warning = world.wait_for_event("app", "DeleteFailed").await;
    assert!(
        warning.note.unwrap_or_default().contains(&db_id),
        "the Event names the group that holds it"
    );
    // app's own rule naming db went before its delete was tried.
    wait_rules(
        &world,
        &app_id,
        "app's rule naming db revoked",
        |ingress, _| ingress.is_empty(),
    )
    .await;

    // The database's group stops admitting it: app's group goes.
    world
        .apply(&security_group(&world, "db", SSH_AND_HTTPS))
        .await;
    world.wait_gone(&groups, "app").await;
    assert!(
        describe(&world, &app_id).await.is_none(),
        "app's group is deleted in AWS"
    );
    assert!(describe(&world, &db_id).await.is_some(), "db's group stays");
    world.finish().await;
}
