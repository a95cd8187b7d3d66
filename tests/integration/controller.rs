//! The generic reconciler, driven through `DBSubnetGroup` by the real `tether run`
//! binary against moto: lifecycle per deletion policy, adoption in ObserveOnly, pause,
//! and a refusal from AWS that must not turn into a retry storm.

use std::time::Duration;

use kube::{Api, ResourceExt};
use serde_json::json;
use tether_api::{
    conditions::{READY, SYNCED},
    managed::EXTERNAL_NAME_ANNOTATION,
};
use tether_aws::rds::DBSubnetGroup;

use crate::world::merge_patch;
use crate::{
    db_subnet_group::default_subnets,
    world::{World, condition, derived_name},
};

/// Calls that change something in AWS.
const RDS_WRITES: &[&str] = &[
    "CreateDBSubnetGroup",
    "ModifyDBSubnetGroup",
    "DeleteDBSubnetGroup",
    "AddTagsToResource",
    "RemoveTagsFromResource",
];

fn manifest(world: &World, name: &str, subnets: &[String], extra: &str) -> String {
    format!(
        "apiVersion: rds.tether.dev/v1alpha1\nkind: DBSubnetGroup\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  description: orders database subnets\n  subnetIds: [{}]\n  tags: {{team: orders}}\n{extra}",
        world.provider_config,
        subnets.join(", ")
    )
}

/// A world with the subnet group `name` on two of the default subnets (`extra` ends
/// its spec) applied: the world, the groups' API and the default subnets.
async fn world_with_group(name: &str, extra: &str) -> (World, Api<DBSubnetGroup>, Vec<String>) {
    let world = World::start().await;
    let subnets = default_subnets(&world.direct_sdk_config()).await;
    world
        .apply(&manifest(&world, name, &subnets[..2], extra))
        .await;
    let api = world.ns.api();
    (world, api, subnets)
}

async fn group_exists(world: &World, name: &str) -> bool {
    aws_sdk_rds::Client::new(&world.direct_sdk_config())
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
        .is_ok()
}

fn writes(world: &World) -> usize {
    RDS_WRITES.iter().map(|op| world.proxy.count(op)).sum()
}

#[tokio::test]
async fn a_subnet_group_is_created_updated_and_deleted() {
    let (world, api, subnets) = world_with_group("orders", "").await;

    let ready = world
        .wait_condition(&api, "orders", READY, "True", Some("Available"))
        .await;
    let external_name = derived_name(&world.ns.name, "orders", &ready.uid().unwrap());
    assert_eq!(
        ready.annotations().get(EXTERNAL_NAME_ANNOTATION),
        Some(&external_name),
        "the RDS name is recorded on the object"
    );
    assert!(
        ready
            .finalizers()
            .contains(&"tether.dev/finalizer".to_owned())
    );
    let synced = condition(&ready, SYNCED);
    let status = ready.status.clone().unwrap();
    assert_eq!(synced.status, "True");
    assert_eq!(synced.observed_generation, ready.metadata.generation);
    let at_provider = status.at_provider.expect("atProvider");
    assert!(at_provider.vpc_id.is_some());
    assert_eq!(at_provider.subnet_ids.len(), 2);
    assert!(group_exists(&world, &external_name).await);
    let created = world.wait_for_event("orders", "Created").await;
    assert_eq!(
        created.note.as_deref(),
        Some(format!("created DBSubnetGroup {external_name}").as_str())
    );
    assert_eq!(world.proxy.count("CreateDBSubnetGroup"), 1);

    // A new tag is applied in place.
    world
        .apply(&manifest(
            &world,
            "orders",
            &subnets[..2],
            "  deletionPolicy: Delete\n",
        ))
        .await;
    merge_patch(
        &api,
        "orders",
        json!({"spec": {"tags": {"cost-centre": "42"}}}),
    )
    .await;
    let updated = world.wait_for_event("orders", "Updated").await;
    assert_eq!(updated.note.as_deref(), Some("updated tags"));
    assert!(world.proxy.count("AddTagsToResource") >= 1);

    world.delete_and_wait_gone(&api, "orders").await;
    assert!(
        !group_exists(&world, &external_name).await,
        "Delete removes the group from AWS"
    );
    world.wait_for_event("orders", "Deleted").await;
    world.finish().await;
}

#[tokio::test]
async fn retain_leaves_the_group_in_aws() {
    let (world, api, _) = world_with_group("kept", "  deletionPolicy: Retain\n").await;
    let kept = world
        .wait_condition(&api, "kept", READY, "True", None)
        .await;
    let kept_name = kept.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    world.delete_and_wait_gone(&api, "kept").await;
    let retained = world.wait_for_event("kept", "Retained").await;
    assert!(
        retained.note.unwrap().contains("deletionPolicy Retain"),
        "the Event says why"
    );
    assert!(group_exists(&world, &kept_name).await);
    assert_eq!(world.proxy.count("DeleteDBSubnetGroup"), 0);
    world.finish().await;
}

#[tokio::test]
async fn observe_only_adopts_an_existing_group_without_writing_to_aws() {
    let world = World::start().await;
    let config = world.direct_sdk_config();
    let subnets = default_subnets(&config).await;
    let existing = format!("{}-legacy", world.ns.name);
    aws_sdk_rds::Client::new(&config)
        .create_db_subnet_group()
        .db_subnet_group_name(&existing)
        .db_subnet_group_description("made by hand")
        .set_subnet_ids(Some(subnets[..2].to_vec()))
        .send()
        .await
        .expect("creating the group to adopt");

    let api: Api<DBSubnetGroup> = world.ns.api();
    let yaml = manifest(
        &world,
        "adopted",
        &subnets[..2],
        "  managementPolicy: ObserveOnly\n",
    )
    .replace(
        "metadata: {name: adopted}",
        &format!(
            "metadata: {{name: adopted, annotations: {{{EXTERNAL_NAME_ANNOTATION}: {existing}}}}}"
        ),
    );
    world.apply(&yaml).await;
    let adopted = world
        .wait_condition(&api, "adopted", READY, "True", None)
        .await;
    let synced = condition(&adopted, SYNCED);
    assert_eq!(synced.status, "True");
    assert!(
        synced
            .message
            .contains("differs from the spec in description, tags"),
        "ObserveOnly reports the drift it does not fix: {}",
        synced.message
    );
    assert!(world.proxy.count("DescribeDBSubnetGroups") >= 1);

    world.delete_and_wait_gone(&api, "adopted").await;
    assert!(
        group_exists(&world, &existing).await,
        "ObserveOnly never deletes"
    );
    assert_eq!(
        writes(&world),
        0,
        "no write call reached AWS: {:?}",
        world.proxy.counts()
    );
    world.finish().await;
}

#[tokio::test]
async fn pause_stops_every_aws_call_until_it_is_lifted() {
    let (world, api, _) = world_with_group("paused", "").await;
    world
        .wait_condition(&api, "paused", READY, "True", None)
        .await;

    let pause =
        |value: &'static str| json!({"metadata": {"annotations": {"tether.dev/paused": value}}});
    merge_patch(&api, "paused", pause("true")).await;
    world
        .wait_condition(&api, "paused", SYNCED, "False", Some("ReconcilePaused"))
        .await;
    world.proxy.reset_counts();
    // A spec change and more than one poll interval (10 s) pass without a call.
    merge_patch(
        &api,
        "paused",
        json!({"spec": {"tags": {"ignored": "while-paused"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        world.proxy.calls().len(),
        0,
        "paused: no AWS call at all: {:?}",
        world.proxy.counts()
    );

    merge_patch(&api, "paused", pause("false")).await;
    world
        .wait_condition(&api, "paused", SYNCED, "True", None)
        .await;
    world.wait_for_event("paused", "Updated").await;
    assert!(
        world.proxy.count("AddTagsToResource") >= 1,
        "the held-back change is applied"
    );
    world.finish().await;
}

#[tokio::test]
async fn an_aws_refusal_is_reported_once_and_not_retried_hot() {
    let world = World::start().await;
    let api: Api<DBSubnetGroup> = world.ns.api();
    world
        .apply(&manifest(
            &world,
            "refused",
            &["subnet-0000dead".to_owned()],
            "",
        ))
        .await;
    let message = world.wait_refusal(&api, "refused", "CreateFailed").await;
    assert!(message.starts_with("creating failed: "), "{message}");
    assert!(
        message.contains("subnet-0000dead"),
        "AWS's message: {message}"
    );
    let event = world.wait_for_warning("refused", "CreateFailed").await;
    assert_eq!(event.note, Some(message));

    // Terminal: the next attempt waits for the poll interval (10 s here), not a
    // backoff of milliseconds.
    world
        .assert_retried_at_poll_speed_only("CreateDBSubnetGroup")
        .await;
    world.finish().await;
}
