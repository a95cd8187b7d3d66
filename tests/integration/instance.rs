//! Instance end to end with the real `tether run`, on moto and on LocalStack: the
//! lifecycle (SSH key, addresses, in-place updates, a type change only when stopping is
//! allowed, Delete and Retain), and create-exactly-once when RunInstances' answer is
//! lost and when `tether run` is killed with SIGKILL again and again.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::{Duration, Instant},
};

use aws_sdk_ec2::types::{Filter, Instance as Ec2Instance};
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;
use tether_api::{
    conditions::{READY, SYNCED},
    managed::EXTERNAL_NAME_ANNOTATION,
};
use tether_aws::{
    ec2::{Instance, SecurityGroup, live_instances::LIVE_STATES, ssh_key},
    tags::UID_TAG,
};
use tether_testkit::{Fault, TestNamespace, cluster, emulator::EmulatorKind};

use crate::world::merge_patch;
use crate::world::on_moto_and_localstack;
use crate::{
    db_instance_controller::{secret_data, wait_secret},
    world::{World, condition},
};

/// The keys of an instance's connection Secret when tether generates its SSH key.
const SECRET_KEYS: &[&str] = &[
    "host",
    "instance-id",
    "private-ip",
    "public-ip",
    "ssh-privatekey",
    "username",
];

pub(crate) fn instance(world: &World, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: ec2.tether.dev/v1alpha1\nkind: Instance\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  imageId: ami-0123456789abcdef0\n  instanceType: t3.micro\n  tags: {{team: shop}}\n{extra}",
        world.provider_config
    )
}

/// `sshKey.generate` with its Secret `<name>-ssh`.
pub(crate) fn generated_key(name: &str) -> String {
    format!(
        "  sshKey: {{generate: true, username: admin}}\n  writeConnectionSecretToRef: {{name: {name}-ssh}}\n"
    )
}

/// Every instance (not terminated) carrying `tag` (any value, or `value`).
pub(crate) async fn tagged_instances(
    world: &World,
    tag: &str,
    value: Option<&str>,
) -> Vec<Ec2Instance> {
    let mut filter = Filter::builder().name(match value {
        Some(_) => format!("tag:{tag}"),
        None => "tag-key".to_owned(),
    });
    filter = filter.values(value.unwrap_or(tag));
    let live = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.map(String::from).to_vec()))
        .build();
    let mut found = Vec::new();
    let mut pages = world
        .ec2()
        .describe_instances()
        .filters(filter.build())
        .filters(live)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("describing instances");
        for reservation in page.reservations() {
            found.extend(reservation.instances().iter().cloned());
        }
    }
    found
}

async fn describe_instance(world: &World, id: &str) -> Ec2Instance {
    world
        .ec2()
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describing the instance")
        .reservations()[0]
        .instances()[0]
        .clone()
}

/// Waits up to 60 s until `check` holds for the instance `id` in AWS.
async fn wait_instance(
    world: &World,
    id: &str,
    what: &str,
    check: impl Fn(&Ec2Instance) -> bool,
) -> Ec2Instance {
    let mut last = None;
    for _ in 0..120 {
        let described = describe_instance(world, id).await;
        if check(&described) {
            return described;
        }
        last = Some(described);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "instance {id}: {what} not within 60 s; now {last:#?}\n{}",
        world.log_tail()
    );
}

fn state(instance: &Ec2Instance) -> &str {
    instance
        .state()
        .and_then(|s| s.name())
        .map_or("", |name| name.as_str())
}

fn tags(instance: &Ec2Instance) -> BTreeMap<String, String> {
    instance
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The public key EC2 holds for the key pair `name`, without its comment, or None.
async fn key_pair_public_key(world: &World, name: &str) -> Option<String> {
    let described = world
        .ec2()
        .describe_key_pairs()
        .key_names(name)
        .include_public_key(true)
        .send()
        .await
        .ok()?;
    let key = described.key_pairs().first()?.public_key()?.to_owned();
    Some(without_comment(&key))
}

fn without_comment(public_key: &str) -> String {
    public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The public key of an OpenSSH private key, as OpenSSH's own `ssh-keygen -y` reads it.
fn ssh_keygen_public_key(private_key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id_ed25519");
    std::fs::write(&path, private_key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let output = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("running ssh-keygen (OpenSSH); install it with `apt-get install openssh-client`");
    assert!(
        output.status.success(),
        "ssh-keygen -y refused the generated key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    without_comment(&String::from_utf8(output.stdout).unwrap())
}

async fn lifecycle(emulator: EmulatorKind) {
    let world = World::start_on(emulator).await;
    let instances: Api<Instance> = world.ns.api();
    let groups: Api<SecurityGroup> = world.ns.api();
    let ec2 = world.ec2();
    world.apply(&format!(
            "apiVersion: ec2.tether.dev/v1alpha1\nkind: SecurityGroup\nmetadata: {{name: web}}\nspec:\n  providerConfigRef: {{name: {}}}\n  description: web servers\n  ingress:\n  - {{protocol: tcp, fromPort: 22, toPort: 22, cidrBlocks: [10.0.0.0/8]}}\n",
            world.provider_config
        )).await;
    world.apply(&instance(
            &world,
            "web-1",
            &format!(
                "  securityGroupRefs: [{{name: web}}]\n  userData: |\n    #!/bin/sh\n    echo hello\n{}",
                generated_key("web-1")
            ),
        )).await;

    let ready = world
        .wait_condition(&instances, "web-1", READY, "True", None)
        .await;
    let group_id = groups
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .at_provider
        .unwrap()
        .group_id;
    let uid = ready.metadata.uid.clone().unwrap();
    let id = ready
        .annotations()
        .get(EXTERNAL_NAME_ANNOTATION)
        .expect("the id is recorded")
        .clone();
    let at_provider = ready.status.clone().unwrap().at_provider.unwrap();
    assert_eq!(at_provider.instance_id.as_deref(), Some(id.as_str()));
    assert_eq!(at_provider.state.as_deref(), Some("running"));

    let secret = wait_secret(&world, "web-1-ssh", "hold the instance's details", |data| {
        data.get("instance-id") == Some(&id)
    })
    .await;
    assert_eq!(
        secret.keys().map(String::as_str).collect::<Vec<_>>(),
        SECRET_KEYS
    );
    assert_eq!(secret["username"], "admin");
    assert_eq!(Some(&secret["private-ip"]), at_provider.private_ip.as_ref());
    let host = at_provider
        .public_ip
        .clone()
        .or(at_provider.private_ip.clone())
        .unwrap();
    assert_eq!(secret["host"], host);

    let described = describe_instance(&world, &id).await;
    assert_eq!(
        described.instance_type().map(|t| t.as_str()),
        Some("t3.micro")
    );
    let key_name = format!("tether-{uid}");
    assert_eq!(described.key_name(), Some(key_name.as_str()));
    let joined: Vec<_> = described
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(joined, [group_id.as_str()]);
    let instance_tags = tags(&described);
    assert_eq!(instance_tags.get(UID_TAG), Some(&uid));
    assert_eq!(instance_tags.get("team").map(String::as_str), Some("shop"));
    assert_eq!(
        instance_tags.get("Name"),
        Some(&format!("{}/web-1", world.ns.name))
    );

    // The private key is a valid OpenSSH key whose public half is what EC2 holds.
    let from_secret = ssh_keygen_public_key(&secret["ssh-privatekey"]);
    assert!(from_secret.starts_with("ssh-ed25519 "), "{from_secret}");
    assert_eq!(
        key_pair_public_key(&world, &key_name).await.as_deref(),
        Some(from_secret.as_str()),
        "EC2's key pair is the public half of the Secret's key"
    );

    // The private key appears nowhere but in the Secret: not in the trace-level log,
    // the Events or the object.
    let key_line = secret["ssh-privatekey"]
        .lines()
        .nth(1)
        .expect("a key body")
        .to_owned();
    let log = world.tether.log();
    assert!(
        log.len() > 10_000,
        "the trace log is written ({} bytes)",
        log.len()
    );
    assert!(
        !log.contains(&key_line),
        "the private key is in tether's log"
    );
    for event in world.events("web-1").await {
        assert!(!event.note.unwrap_or_default().contains(&key_line));
    }
    let object = serde_json::to_string(&instances.get("web-1").await.unwrap()).unwrap();
    assert!(
        !object.contains(&key_line),
        "the private key is on the object"
    );

    // Tags and security groups change in place: the instance keeps running.
    let admin_group = world
        .ec2()
        .create_security_group()
        .group_name(format!("{}-admin", world.ns.name))
        .description("admin access")
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    merge_patch(
        &instances,
        "web-1",
        json!({"spec": {
            "tags": {"team": "shop", "tier": "web"},
            "securityGroupIds": [admin_group],
        }}),
    )
    .await;
    let changed = wait_instance(&world, &id, "tier tag and both groups", |i| {
        let groups: BTreeSet<_> = i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        tags(i).get("tier").map(String::as_str) == Some("web")
            && groups == BTreeSet::from([group_id.as_str(), admin_group.as_str()])
    })
    .await;
    assert_eq!(state(&changed), "running");
    assert_eq!(world.proxy.count("StopInstances"), 0);

    // A new type needs a stop, which the spec does not allow yet.
    merge_patch(
        &instances,
        "web-1",
        json!({"spec": {"instanceType": "t3.small"}}),
    )
    .await;
    let message = world
        .wait_refusal(&instances, "web-1", "UpdateFailed")
        .await;
    assert!(
        message.contains("t3.micro") && message.contains("t3.small"),
        "{message}"
    );
    assert!(message.contains("allowStop: true"), "{message}");
    let untouched = describe_instance(&world, &id).await;
    assert_eq!(
        untouched.instance_type().map(|t| t.as_str()),
        Some("t3.micro")
    );
    assert_eq!(state(&untouched), "running");
    assert_eq!(world.proxy.count("StopInstances"), 0);

    // Allowed: stopped, changed and started again.
    merge_patch(&instances, "web-1", json!({"spec": {"allowStop": true}})).await;
    wait_instance(&world, &id, "t3.small and running", |i| {
        i.instance_type().map(|t| t.as_str()) == Some("t3.small") && state(i) == "running"
    })
    .await;
    world
        .wait_condition(&instances, "web-1", SYNCED, "True", None)
        .await;
    world
        .wait_condition(&instances, "web-1", READY, "True", None)
        .await;
    assert_eq!(world.proxy.count("StopInstances"), 1);
    assert_eq!(world.proxy.count("StartInstances"), 1);

    // Retain: an instance launched with an existing key pair stays when its object goes.
    ec2.create_key_pair()
        .key_name(format!("{}-ops", world.ns.name))
        .send()
        .await
        .unwrap();
    world.apply(&instance(
            &world,
            "kept",
            &format!(
                "  deletionPolicy: Retain\n  sshKey: {{keyName: {}-ops}}\n  writeConnectionSecretToRef: {{name: kept-ssh}}\n",
                world.ns.name
            ),
        )).await;
    let kept = world
        .wait_condition(&instances, "kept", READY, "True", None)
        .await;
    let kept_id = kept.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    let kept_secret = secret_data(&world, "kept-ssh").await.expect("the Secret");
    assert!(
        !kept_secret.contains_key("ssh-privatekey"),
        "no key tether does not hold"
    );
    assert_eq!(kept_secret["username"], "ec2-user");
    assert_eq!(
        describe_instance(&world, &kept_id).await.key_name(),
        Some(format!("{}-ops", world.ns.name).as_str())
    );

    // Deleting the Secret loses the only copy of the private key: tether says so
    // rather than publish a Secret no one can log in with.
    world
        .ns
        .api::<k8s_openapi::api::core::v1::Secret>()
        .delete("web-1-ssh", &DeleteParams::default())
        .await
        .unwrap();
    let lost = world
        .wait_condition(&instances, "web-1", READY, "False", Some("SshKeyLost"))
        .await;
    assert!(
        condition(&lost, READY)
            .message
            .contains("re-create this Instance")
    );

    for name in ["web-1", "kept"] {
        world.delete_and_wait_gone(&instances, name).await;
    }
    assert_eq!(state(&describe_instance(&world, &id).await), "terminated");
    assert!(
        key_pair_public_key(&world, &key_name).await.is_none(),
        "the generated key pair is deleted"
    );
    assert_eq!(
        state(&describe_instance(&world, &kept_id).await),
        "running",
        "Retain leaves it running"
    );
    world.delete_and_wait_gone(&groups, "web").await;
    world.finish().await;
}

on_moto_and_localstack!(
    lifecycle:
    an_instance_is_launched_updated_and_terminated_on_moto,
    an_instance_is_launched_updated_and_terminated_on_localstack
);

/// Checks that the instance of object `name` is the one instance carrying its UID, and
/// that its Secret's private key matches the key pair it was launched with.
async fn assert_one_instance_with_its_key(world: &World, object: &Instance) {
    let name = object.name_any();
    let uid = object.metadata.uid.clone().unwrap();
    let found = tagged_instances(world, UID_TAG, Some(&uid)).await;
    let ids: Vec<_> = found.iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(
        ids.len(),
        1,
        "{name}: exactly one instance carries its UID: {ids:?}"
    );
    assert_eq!(
        object
            .annotations()
            .get(EXTERNAL_NAME_ANNOTATION)
            .map(String::as_str),
        Some(ids[0])
    );
    let secret = wait_secret(world, &format!("{name}-ssh"), "name its instance", |data| {
        data.get("instance-id").map(String::as_str) == Some(ids[0])
    })
    .await;
    let key_name = format!("tether-{uid}");
    assert_eq!(found[0].key_name(), Some(key_name.as_str()), "{name}");
    let public = ssh_key::public_key(secret["ssh-privatekey"].as_bytes()).expect("a valid key");
    assert_eq!(
        key_pair_public_key(world, &key_name).await,
        Some(without_comment(&public)),
        "{name}: the Secret's key opens its instance"
    );
}

async fn a_lost_run_instances_answer_makes_exactly_one_instance(emulator: EmulatorKind) {
    let world = World::start_on(emulator).await;
    world
        .proxy
        .inject("RunInstances", Fault::DropResponse, Some(1));
    let api: Api<Instance> = world.ns.api();
    world
        .apply(&instance(&world, "lost", &generated_key("lost")))
        .await;
    let ready = world
        .wait_condition(&api, "lost", READY, "True", None)
        .await;
    assert_eq!(
        world.proxy.count("RunInstances"),
        1,
        "the instance whose answer was lost is found by its tag, not launched again"
    );
    let failed = world.wait_for_event("lost", "CreateFailed").await;
    assert!(failed.note.is_some());
    assert_one_instance_with_its_key(&world, &ready).await;
    world.finish().await;
}

on_moto_and_localstack!(
    a_lost_run_instances_answer_makes_exactly_one_instance:
    a_lost_run_instances_answer_makes_exactly_one_instance_on_moto,
    a_lost_run_instances_answer_makes_exactly_one_instance_on_localstack
);

async fn killed_at_random_points_still_makes_each_of_20_instances_once(emulator: EmulatorKind) {
    const COUNT: usize = 20;
    let mut world = World::start_on(emulator).await;
    // A slow RunInstances widens the window in which a kill lands after EC2 made the
    // instance but before tether recorded its id.
    world.proxy.inject(
        "RunInstances",
        Fault::Latency(Duration::from_millis(300)),
        None,
    );
    let api: Api<Instance> = world.ns.api();
    let manifests: String = (0..COUNT)
        .map(|i| {
            instance(
                &world,
                &format!("fleet-{i:02}"),
                &generated_key(&format!("fleet-{i:02}")),
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    world.apply(&manifests).await;

    // Kill it at random moments while the fleet is being created, then let it finish.
    let started = Instant::now();
    let mut kills = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1500))).await;
        let launched = world.proxy.count("RunInstances");
        let tether = &mut world.tether;
        tokio::task::block_in_place(|| tether.kill_and_restart());
        kills += 1;
        if (launched >= COUNT && kills >= 5) || kills >= 12 {
            break;
        }
    }
    let mut ready = Vec::new();
    for i in 0..COUNT {
        ready.push(
            world
                .wait_condition(&api, &format!("fleet-{i:02}"), READY, "True", None)
                .await,
        );
    }
    let found_by_tag = world
        .tether
        .log()
        .matches("found the cloud resource this object created")
        .count();
    eprintln!(
        "{emulator:?}: {COUNT} instances Ready {:.1?} after apply, with {kills} SIGKILLs; {} RunInstances, \
         {} ImportKeyPair; {found_by_tag} ids recovered through the UID tag",
        started.elapsed(),
        world.proxy.count("RunInstances"),
        world.proxy.count("ImportKeyPair"),
    );
    for object in &ready {
        assert_one_instance_with_its_key(&world, object).await;
    }
    let uids: BTreeSet<String> = ready
        .iter()
        .filter_map(|o| o.metadata.uid.clone())
        .collect();
    let ours: Vec<_> = tagged_instances(&world, UID_TAG, None)
        .await
        .into_iter()
        .filter(|i| tags(i).get(UID_TAG).is_some_and(|uid| uids.contains(uid)))
        .collect();
    assert_eq!(ours.len(), COUNT, "exactly {COUNT} instances in all");
    world.finish().await;
}

// Several threads: killing and restarting the controller blocks one, while the fault
// proxy on another keeps serving the controller.
on_moto_and_localstack!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    killed_at_random_points_still_makes_each_of_20_instances_once:
    tether_killed_at_random_points_still_makes_each_of_20_instances_once_on_moto,
    tether_killed_at_random_points_still_makes_each_of_20_instances_once_on_localstack
);

#[tokio::test]
async fn bad_instance_specs_are_refused_at_apply_time() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let manifest = |name: &str, spec: &str| {
        format!(
            "apiVersion: ec2.tether.dev/v1alpha1\nkind: Instance\nmetadata: {{name: {name}}}\nspec:\n  instanceType: t3.micro\n{spec}"
        )
    };
    let valid = "  imageId: ami-0abc\n  sshKey: {generate: true}\n  writeConnectionSecretToRef: {name: ok-ssh}\n";
    ns.apply(&manifest("ok", valid))
        .await
        .expect("a valid instance");
    for (what, spec, fragment) in [
        (
            "a generated key without a Secret to keep it",
            "  imageId: ami-0abc\n  sshKey: {generate: true}\n".to_owned(),
            "writeConnectionSecretToRef is required when sshKey.generate is true",
        ),
        (
            "both a generated key and a key pair name",
            "  imageId: ami-0abc\n  sshKey: {generate: true, keyName: ops}\n  writeConnectionSecretToRef: {name: s}\n".to_owned(),
            "set exactly one of generate: true and keyName",
        ),
        (
            "a malformed image id",
            "  imageId: ubuntu-24.04\n".to_owned(),
            "spec.imageId",
        ),
        (
            "a Snapshot policy",
            "  imageId: ami-0abc\n  deletionPolicy: Snapshot\n".to_owned(),
            "an instance has no snapshot",
        ),
    ] {
        let message = ns.refusal(&manifest("bad", &spec), what).await;
        assert!(message.contains(fragment), "{what}: {message}");
    }
    let bad_type = manifest("bad", "  imageId: ami-0abc\n").replace("t3.micro", "huge");
    let message = ns.refusal(&bad_type, "a malformed instance type").await;
    assert!(message.contains("spec.instanceType"), "{message}");
    for (what, spec, fragment) in [
        (
            "another image",
            valid.replace("ami-0abc", "ami-0def"),
            "imageId is immutable",
        ),
        (
            "another key",
            valid.replace("{generate: true}", "{keyName: ops}"),
            "sshKey is immutable",
        ),
    ] {
        let message = ns.refusal(&manifest("ok", &spec), what).await;
        assert!(message.contains(fragment), "{what}: {message}");
    }
    ns.delete().await;
}
