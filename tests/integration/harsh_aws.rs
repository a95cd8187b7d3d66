//! AWS's daily faults, played by the fault proxy where the emulators are kinder: reads
//! that lag behind a launch, launches throttled, a launch repeated with changed
//! parameters, a second instance carrying an object's UID. None may make a second
//! instance, leave one running, or leave an object stuck in deletion.

use std::{collections::BTreeSet, time::Duration};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use tether_api::{conditions::READY, managed::EXTERNAL_NAME_ANNOTATION};
use tether_aws::{ec2::Instance, tags::UID_TAG};
use tether_testkit::Fault;

use crate::{
    instance::{instance, tagged_instances},
    operations::sample,
    world::World,
};

/// Waits until the proxy has let `n` launches through (not throttled).
async fn wait_for_launches(world: &World, n: usize) {
    world
        .wait_until(
            Duration::from_secs(60),
            &format!("fewer than {n} RunInstances reached EC2"),
            async || world.proxy.launch_tokens().len() >= n,
        )
        .await;
}

/// A world whose proxy hides new resources for `hidden_for`, with the Instance `vm`
/// applied and its first launch through.
async fn launched_while_hidden(hidden_for: Duration) -> (World, Api<Instance>) {
    let world = World::start().await;
    world.proxy.hide_new_resources_for(hidden_for);
    world.apply(&instance(&world, "vm", "")).await;
    wait_for_launches(&world, 1).await;
    let api = world.ns.api();
    (world, api)
}

#[tokio::test]
async fn an_instance_deleted_before_ec2_shows_it_is_terminated_once_it_shows() {
    let (world, api) = launched_while_hidden(Duration::from_secs(20)).await;
    let uid = api.get("vm").await.unwrap().uid().unwrap();
    api.delete("vm", &DeleteParams::default()).await.unwrap();

    world
        .wait_gone_within(&api, "vm", Duration::from_secs(120))
        .await;
    assert!(
        tagged_instances(&world, UID_TAG, Some(&uid))
            .await
            .is_empty(),
        "nothing keeps running once the object is gone"
    );
    assert_eq!(world.proxy.count("TerminateInstances"), 1);
    assert_eq!(world.proxy.launch_tokens().len(), 1, "launched once");
    world.finish().await;
}

#[tokio::test]
async fn under_90_s_of_read_lag_and_throttled_launches_one_token_makes_one_instance() {
    let (world, api) = launched_while_hidden(Duration::from_secs(90)).await;
    // Right after the first launch: every launch throttled for 40 s, and the spec's
    // tags changed, so a repeat after that differs from the first launch (EC2 answers
    // IdempotentParameterMismatch).
    world.proxy.inject("RunInstances", Fault::Throttle, None);
    api.patch(
        "vm",
        &PatchParams::apply("platform-team"),
        &Patch::Apply(json!({
            "apiVersion": "ec2.tether.dev/v1alpha1",
            "kind": "Instance",
            "metadata": {"name": "vm"},
            "spec": {"tags": {"team": "shop", "tier": "web"}},
        })),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    world.proxy.clear_rules();

    let ready = world
        .wait_condition_within(&api, "vm", (READY, "True", None), Duration::from_secs(180))
        .await;
    let tokens: BTreeSet<String> = world.proxy.launch_tokens().into_iter().collect();
    assert_eq!(
        tokens.len(),
        1,
        "one ClientToken reached EC2: {tokens:?}\n{}",
        world.log_tail()
    );
    assert!(
        world.proxy.throttled_count() > 0,
        "the repeat was throttled"
    );
    // The reconciles the throttling stopped are counted as errors of that class.
    let metrics = world
        .tether
        .admin_get("/metrics")
        .expect("scraping /metrics");
    let name = r#"tether_reconciles_total{kind="Instance",result="error",reason="Throttled"}"#;
    assert!(
        sample(&metrics, name).is_some_and(|count| count >= 1.0),
        "{name} counts the throttled reconciles in\n{metrics}"
    );
    let uid = ready.uid().unwrap();
    let running = tagged_instances(&world, UID_TAG, Some(&uid)).await;
    assert_eq!(running.len(), 1, "one instance exists");
    assert_eq!(
        running[0].instance_id(),
        ready
            .annotations()
            .get(EXTERNAL_NAME_ANNOTATION)
            .map(String::as_str),
        "and it is the one the object records"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_second_instance_carrying_the_objects_uid_is_terminated_and_named_in_an_event() {
    let world = World::start().await;
    let api: Api<Instance> = world.ns.api();
    world.apply(&instance(&world, "vm", "")).await;
    let ready = world.wait_condition(&api, "vm", READY, "True", None).await;
    let uid = ready.uid().unwrap();
    let recorded = ready.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    // A launch made twice, as a lost answer and a new token once made one.
    let second = world
        .ec2()
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type("t3.micro".into())
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key(UID_TAG).value(&uid).build())
                .build(),
        )
        .send()
        .await
        .expect("launching a second instance")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();

    let event = world.wait_for_event("vm", "Updated").await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains(&second), "the Event names {second}: {note}");
    let mut running = Vec::new();
    for _ in 0..60 {
        running = tagged_instances(&world, UID_TAG, Some(&uid)).await;
        if running.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ids: Vec<&str> = running.iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(ids, [recorded.as_str()], "the recorded instance alone runs");
    assert_eq!(
        api.get("vm").await.unwrap().annotations()[EXTERNAL_NAME_ANNOTATION],
        recorded
    );
    world.finish().await;
}
