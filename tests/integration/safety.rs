//! The rules that keep users safe (DESIGN.md), each shown where it used to break, with
//! the real `tether run`: a resource tether did not create is never changed or
//! deleted; reads that lag behind a create never make a second resource; deleting the
//! CRDs leaves the cloud alone; `Retain` keeps the credentials.

use std::time::Duration;

use crate::world::merge_patch;
use crate::{
    data_plane::{assert_refused, connect_with},
    db_instance_controller::{
        RDS_WRITES, database, instance_exists, rds, rds_through_proxy, secret_data, wait_secret,
    },
    instance::{generated_key, instance, tagged_instances},
    security_group::{security_group, tagged_groups},
    world::{World, condition},
};
use aws_sdk_rds::types::Tag;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use tether_api::{
    conditions::{READY, SYNCED},
    managed::{EXTERNAL_NAME_ANNOTATION, PAUSED_ANNOTATION},
};
use tether_aws::{
    ec2::{Instance, SecurityGroup},
    rds::DBInstance,
    tags::UID_TAG,
};

/// The tags of the RDS instance `identifier`, as moto holds them.
pub(crate) async fn rds_tags(world: &World, identifier: &str) -> Vec<(String, String)> {
    rds(world)
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .expect("describing the instance")
        .db_instances()[0]
        .tag_list()
        .iter()
        .map(|tag| {
            (
                tag.key().unwrap_or_default().to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_rds_instance_tether_did_not_create_is_neither_changed_nor_deleted() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let identifier = format!("{}-legacy", world.ns.name);
    // Made through the proxy, so that a database server stands behind it.
    rds_through_proxy(&world)
        .create_db_instance()
        .db_instance_identifier(&identifier)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("owner")
        .master_user_password("Their-Own-Password-1")
        .tags(Tag::builder().key("team").value("legacy").build())
        .send()
        .await
        .expect("creating someone else's database");
    world.proxy.reset_counts();
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(&database(
            &world,
            "squatter",
            &format!("  identifier: {identifier}\n  deletionPolicy: Delete\n"),
        ))
        .await;

    let refused = world
        .wait_condition(&api, "squatter", SYNCED, "False", Some("NotOwned"))
        .await;
    let message = condition(&refused, SYNCED).message;
    assert!(
        message.contains(&identifier) && message.contains("was not created by this object"),
        "{message}"
    );
    assert!(
        message.contains(EXTERNAL_NAME_ANNOTATION),
        "says how to adopt: {message}"
    );
    assert_eq!(condition(&refused, READY).reason, "NotOwned");
    world.wait_for_event("squatter", "NotOwned").await;
    // Another poll comes and goes (every 10 s): still nothing is written.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let counts = world.proxy.counts();
    for write in RDS_WRITES {
        assert_eq!(counts.get(*write), None, "{write} was sent: {counts:?}");
    }
    assert!(
        !rds_tags(&world, &identifier)
            .await
            .iter()
            .any(|(key, _)| key == UID_TAG),
        "the database was not tagged"
    );
    assert_eq!(
        secret_data(&world, "squatter-db").await,
        None,
        "no connection Secret for someone else's database"
    );

    // Deleting the object leaves the database where it is.
    world.delete_and_wait_gone(&api, "squatter").await;
    assert!(instance_exists(&world, &identifier).await);
    assert_eq!(world.proxy.count("DeleteDBInstance"), 0);
    let retained = world.wait_for_event("squatter", "Retained").await;
    assert!(
        retained
            .note
            .unwrap_or_default()
            .contains("was not created by this object"),
    );

    // A user who names it adopts it: then tether manages it (and tags it as its own).
    world
        .apply(&database(
            &world,
            "adopter",
            &format!("  identifier: {identifier}\n  deletionPolicy: Retain\n"),
        ))
        .await;
    api.patch(
        "adopter",
        &PatchParams::apply("platform-team"),
        &Patch::Apply(json!({
            "apiVersion": "rds.tether.dev/v1alpha1",
            "kind": "DBInstance",
            "metadata": {"name": "adopter", "annotations": {EXTERNAL_NAME_ANNOTATION: identifier}},
        })),
    )
    .await
    .unwrap();
    let adopted = world
        .wait_condition(&api, "adopter", READY, "True", Some("Available"))
        .await;
    let uid = adopted.uid().unwrap();
    for _ in 0..40 {
        if rds_tags(&world, &identifier)
            .await
            .contains(&(UID_TAG.to_owned(), uid.clone()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        rds_tags(&world, &identifier)
            .await
            .contains(&(UID_TAG.to_owned(), uid)),
        "the adopted database carries its new owner's UID"
    );
    let data = wait_secret(&world, "adopter-db", "hold a password", |data| {
        data.contains_key("password")
    })
    .await;
    // tether cannot know the password the database was made with, so it set one.
    assert_eq!(connect_with(&world, &data).await, "owner postgres");
    assert_refused(
        &data,
        "Their-Own-Password-1",
        "the password from before the adoption is refused",
    )
    .await;
    world.finish().await;
}

#[tokio::test]
async fn under_45_s_of_read_lag_ten_instances_and_three_groups_are_each_created_once() {
    let world = World::start().await;
    // Longer than the 30 s after which an unseen create is repeated: the repeats carry
    // the first launch's ClientToken.
    world.proxy.hide_new_resources_for(Duration::from_secs(45));
    let instances: Vec<String> = (0..10).map(|i| format!("vm-{i}")).collect();
    let groups: Vec<String> = (0..3).map(|i| format!("sg-{i}")).collect();
    for name in &groups {
        world.apply(&security_group(
                &world,
                name,
                "  ingress:\n  - {protocol: tcp, fromPort: 443, toPort: 443, cidrBlocks: [10.0.0.0/8]}\n",
            )).await;
    }
    for name in &instances {
        world.apply(&instance(&world, name, "")).await;
    }
    let instance_api: Api<Instance> = world.ns.api();
    let group_api: Api<SecurityGroup> = world.ns.api();
    let within = Duration::from_secs(150);
    for name in &instances {
        world
            .wait_condition_within(&instance_api, name, (READY, "True", None), within)
            .await;
    }
    for name in &groups {
        world
            .wait_condition_within(&group_api, name, (READY, "True", None), within)
            .await;
    }
    let tokens: std::collections::BTreeSet<String> =
        world.proxy.launch_tokens().into_iter().collect();
    assert_eq!(
        tokens.len(),
        10,
        "one ClientToken per Instance, however often repeated; controller log:\n{}",
        world.log_tail()
    );
    for name in &groups {
        let uid = group_api.get(name).await.unwrap().uid().unwrap();
        assert_eq!(
            tagged_groups(&world, &uid).await.len(),
            1,
            "{name} has exactly one group in EC2"
        );
    }
    for name in &instances {
        let uid = instance_api.get(name).await.unwrap().uid().unwrap();
        assert_eq!(
            tagged_instances(&world, UID_TAG, Some(&uid)).await.len(),
            1,
            "{name} has exactly one instance in EC2"
        );
    }
    world.finish().await;
}

#[tokio::test]
async fn deleting_the_crds_leaves_the_cloud_resources_and_their_secrets() {
    let world = World::start_alone().await;
    world.proxy.serve_databases();
    world
        .apply(&database(&world, "orders", "  deletionPolicy: Delete\n"))
        .await;
    world
        .apply(&instance(
            &world,
            "web",
            &format!("  deletionPolicy: Delete\n{}", generated_key("web")),
        ))
        .await;
    let databases: Api<DBInstance> = world.ns.api();
    let instances: Api<Instance> = world.ns.api();
    let database = world
        .wait_condition(&databases, "orders", READY, "True", None)
        .await;
    let identifier = database.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    let vm = world
        .wait_condition(&instances, "web", READY, "True", None)
        .await;
    let instance_uid = vm.uid().unwrap();
    let password = wait_secret(&world, "orders-db", "hold a password", |d| {
        d.contains_key("password")
    })
    .await["password"]
        .clone();
    let key = wait_secret(&world, "web-ssh", "hold the key", |d| {
        d.contains_key("ssh-privatekey")
    })
    .await["ssh-privatekey"]
        .clone();

    // Uninstalling: the CRDs go, and the API server deletes their objects.
    let crds: Api<CustomResourceDefinition> = Api::all(world.ns.client.clone());
    for crd in ["dbinstances.rds.tether.dev", "instances.ec2.tether.dev"] {
        crds.delete(crd, &DeleteParams::default()).await.unwrap();
    }
    for crd in ["dbinstances.rds.tether.dev", "instances.ec2.tether.dev"] {
        let mut gone = false;
        for _ in 0..240 {
            if crds.get_opt(crd).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            gone,
            "CRD {crd} still exists 120 s after its deletion:\n{}",
            world.log_tail()
        );
    }

    for call in ["DeleteDBInstance", "TerminateInstances", "DeleteKeyPair"] {
        assert_eq!(world.proxy.count(call), 0, "{call} was sent");
    }
    assert!(instance_exists(&world, &identifier).await);
    assert_eq!(
        tagged_instances(&world, UID_TAG, Some(&instance_uid))
            .await
            .len(),
        1,
        "the instance still runs"
    );
    // The garbage collector deletes a Secret whose owner is gone unless tether let go.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept_password = secret_data(&world, "orders-db").await.expect("Secret kept");
    assert_eq!(kept_password["password"], password);
    assert_eq!(
        connect_with(&world, &kept_password).await,
        "app orders",
        "the kept Secret still connects"
    );
    let kept_key = secret_data(&world, "web-ssh").await.expect("Secret kept");
    assert_eq!(kept_key["ssh-privatekey"], key);
    let log = world.tether.log();
    assert!(
        log.contains("CustomResourceDefinition of DBInstance is being deleted")
            && log.contains("CustomResourceDefinition of Instance is being deleted"),
        "the log says why nothing was deleted:\n{}",
        world.log_tail()
    );
    world.finish().await;
}

#[tokio::test]
async fn retained_objects_leave_their_credentials_behind() {
    let world = World::start().await;
    world.proxy.serve_databases();
    world
        .apply(&database(&world, "kept", "  deletionPolicy: Retain\n"))
        .await;
    world
        .apply(&database(&world, "dropped", "  deletionPolicy: Delete\n"))
        .await;
    world
        .apply(&instance(
            &world,
            "kept-vm",
            &format!("  deletionPolicy: Retain\n{}", generated_key("kept-vm")),
        ))
        .await;
    let databases: Api<DBInstance> = world.ns.api();
    let instances: Api<Instance> = world.ns.api();
    for name in ["kept", "dropped"] {
        world
            .wait_condition(&databases, name, READY, "True", None)
            .await;
    }
    let kept = databases.get("kept").await.unwrap();
    world
        .wait_condition(&instances, "kept-vm", READY, "True", None)
        .await;
    let password = wait_secret(&world, "kept-db", "hold a password", |d| {
        d.contains_key("password")
    })
    .await["password"]
        .clone();
    let key = wait_secret(&world, "kept-vm-ssh", "hold the key", |d| {
        d.contains_key("ssh-privatekey")
    })
    .await["ssh-privatekey"]
        .clone();
    wait_secret(&world, "dropped-db", "hold a password", |d| {
        d.contains_key("password")
    })
    .await;

    databases
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    databases
        .delete("dropped", &DeleteParams::default())
        .await
        .unwrap();
    instances
        .delete("kept-vm", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["kept", "dropped"] {
        world.wait_gone(&databases, name).await;
    }
    world.wait_gone(&instances, "kept-vm").await;
    // The garbage collector is at work: the deleted database's Secret goes. (On a
    // control plane started moments ago, the collector learns the new kinds at its
    // next discovery, up to about a minute later.)
    let mut collected = false;
    for _ in 0..240 {
        if secret_data(&world, "dropped-db").await.is_none() {
            collected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        collected,
        "the Delete object's Secret is garbage-collected within 120 s"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = world.ns.api();
    for (secret, key_name, value) in [
        ("kept-db", "password", &password),
        ("kept-vm-ssh", "ssh-privatekey", &key),
    ] {
        let orphan = secrets.get(secret).await.expect("the Secret is kept");
        assert!(orphan.owner_references().is_empty(), "{secret} is orphaned");
        assert_eq!(&secret_data(&world, secret).await.unwrap()[key_name], value);
    }
    for (object, secret) in [("kept", "kept-db"), ("kept-vm", "kept-vm-ssh")] {
        let event = world.wait_for_event(object, "Retained").await;
        assert!(
            event.note.unwrap_or_default().contains(secret),
            "the Retained Event names Secret {secret}"
        );
    }
    // A user who adopts the kept database again gets its Secret back, password and all.
    let identifier = kept.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    world.proxy.reset_counts();
    world
        .apply(
            &database(&world, "kept", "  deletionPolicy: Retain\n").replace(
                "metadata: {name: kept}",
                &format!(
                    "metadata: {{name: kept, annotations: {{{EXTERNAL_NAME_ANNOTATION}: {identifier}}}}}"
                ),
            ),
        )
        .await;
    let again = world
        .wait_condition(&databases, "kept", READY, "True", None)
        .await;
    let secret = wait_secret(&world, "kept-db", "hold the password", |d| {
        d.contains_key("password")
    })
    .await;
    assert_eq!(
        secret["password"], password,
        "the kept password is still the one"
    );
    assert_eq!(connect_with(&world, &secret).await, "app orders");
    let taken = secrets.get("kept-db").await.unwrap();
    assert_eq!(
        taken.owner_references().first().map(|r| r.uid.as_str()),
        again.uid().as_deref(),
        "the new object owns the Secret"
    );
    assert_eq!(
        world.proxy.count("ModifyDBInstance"),
        0,
        "the password was not reset"
    );
    // Checked last, so that a run on code from before shows the Secrets lost first.
    let uid_digits: String = kept.uid().unwrap().replace('-', "")[..10].to_owned();
    assert_eq!(
        kept.annotations()[EXTERNAL_NAME_ANNOTATION],
        format!("{}-kept-{uid_digits}", world.ns.name),
        "the derived identifier is readable and unique per object"
    );
    world.finish().await;
}

#[tokio::test]
async fn credentials_of_an_assumed_role_never_reach_the_log() {
    let world = World::start_with_credentials(
        "{source: AssumeRole, assumeRole: {roleArn: 'arn:aws:iam::123456789012:role/tether', externalId: platform}}",
    )
    .await;
    world.apply(&security_group(&world, "web", "")).await;
    let api: Api<SecurityGroup> = world.ns.api();
    world.wait_condition(&api, "web", READY, "True", None).await;
    assert!(
        world
            .proxy
            .calls()
            .iter()
            .any(|call| call.operation == "AssumeRole"),
        "tether assumed the role"
    );
    // STS's secret key and session token, and the token the EC2 calls carried.
    let issued = world.proxy.credentials_seen();
    assert!(
        issued.len() >= 2,
        "STS handed out a secret key and a session token"
    );
    let log = world.tether.log();
    assert!(log.len() > 10_000, "the log is at trace level");
    let object = serde_json::to_string(&api.get("web").await.unwrap()).unwrap();
    let events = serde_json::to_string(&world.events("web").await).unwrap();
    for (what, text) in [("log", &log), ("object", &object), ("Events", &events)] {
        for secret in &issued {
            assert!(
                !text.contains(secret.as_str()),
                "the {what} shows a credential STS issued"
            );
        }
    }
    world.finish().await;
}

/// A credentials Secret for the test's ProviderConfig holding `access_key_id`.
fn aws_keys(access_key_id: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-keys}}\nstringData: {{aws_access_key_id: {access_key_id}, aws_secret_access_key: not-checked-by-moto}}\n"
    )
}

#[tokio::test]
async fn rotated_keys_in_the_credentials_secret_are_used_without_a_restart() {
    const FIRST: &str = "AKIAROTATIONTEST0001";
    const SECOND: &str = "AKIAROTATIONTEST0002";
    let world = World::start().await;
    world.apply(&aws_keys(FIRST)).await;
    world
        .apply(&format!(
            "apiVersion: tether.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {}}}\nspec:\n  region: us-east-1\n  endpoint: {}\n  credentials: {{source: Secret, secretRef: {{namespace: {}, name: aws-keys}}}}\n",
            world.provider_config,
            world.proxy.endpoint(),
            world.ns.name
        ))
        .await;
    world.apply(&security_group(&world, "web", "")).await;
    let api: Api<SecurityGroup> = world.ns.api();
    world.wait_condition(&api, "web", READY, "True", None).await;
    let signed_with = |key: &str| {
        world
            .proxy
            .calls()
            .iter()
            .any(|call| call.service == "ec2" && call.access_key_id == key)
    };
    assert!(signed_with(FIRST), "the Secret's keys sign the calls");

    world.apply(&aws_keys(SECOND)).await;
    // The group is polled every 10 s; the keys are read again within a minute.
    let mut rotated = false;
    for _ in 0..100 {
        if signed_with(SECOND) {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        rotated,
        "no call signed with the rotated keys within 100 s:\n{}",
        world.log_tail()
    );
    world.finish().await;
}

#[tokio::test]
async fn deletion_protection_lifted_in_the_spec_lets_a_deletion_finish() {
    let world = World::start().await;
    world
        .apply(&database(
            &world,
            "guarded",
            "  deletionPolicy: Delete\n  deletionProtection: true\n",
        ))
        .await;
    let api: Api<DBInstance> = world.ns.api();
    let ready = world
        .wait_condition(&api, "guarded", READY, "True", None)
        .await;
    let identifier = ready.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    api.delete("guarded", &DeleteParams::default())
        .await
        .unwrap();
    let message = world.wait_refusal(&api, "guarded", "DeleteFailed").await;
    assert!(
        message.contains("deletion protection")
            && message.contains("spec.deletionProtection: false"),
        "{message}"
    );
    // A refusal waits for a change or the next poll (10 s here): no retry storm.
    world
        .assert_retried_at_poll_speed_only("DeleteDBInstance")
        .await;
    assert!(instance_exists(&world, &identifier).await);

    merge_patch(
        &api,
        "guarded",
        json!({"spec": {"deletionProtection": false}}),
    )
    .await;
    world.wait_gone(&api, "guarded").await;
    assert!(!instance_exists(&world, &identifier).await);
    world.finish().await;
}

#[tokio::test]
async fn a_paused_object_that_is_deleted_waits_for_unpausing() {
    let world = World::start().await;
    world.apply(&security_group(&world, "paused", "")).await;
    let api: Api<SecurityGroup> = world.ns.api();
    let ready = world
        .wait_condition(&api, "paused", READY, "True", None)
        .await;
    let group_id = ready.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    let annotate = |value: &str| json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
    merge_patch(&api, "paused", annotate("true")).await;
    world
        .wait_condition(&api, "paused", SYNCED, "False", Some("ReconcilePaused"))
        .await;
    api.delete("paused", &DeleteParams::default())
        .await
        .unwrap();
    let message = world.wait_refusal(&api, "paused", "DeletionPaused").await;
    assert!(message.contains("remove the annotation"), "{message}");
    assert_eq!(world.proxy.count("DeleteSecurityGroup"), 0);

    merge_patch(&api, "paused", annotate("false")).await;
    world.wait_gone(&api, "paused").await;
    assert_eq!(world.proxy.count("DeleteSecurityGroup"), 1);
    let gone = world
        .ec2()
        .describe_security_groups()
        .group_ids(&group_id)
        .send()
        .await;
    assert!(gone.is_err(), "the group is deleted in AWS");
    world.finish().await;
}
