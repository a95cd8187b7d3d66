//! DBInstance end to end: the real `tether run` against moto, checked the way a user
//! would check it (conditions, Events, the connection Secret, and what AWS holds).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;
use tether_api::{conditions::READY, managed::EXTERNAL_NAME_ANNOTATION};
use tether_aws::rds::{DBInstance, DBSubnetGroup};

use crate::world::merge_patch;
use crate::{
    data_plane::{assert_refused, connect_with, connect_with_fields},
    db_subnet_group::default_subnets,
    world::World,
};

/// Calls that change something in AWS.
pub(crate) const RDS_WRITES: &[&str] = &[
    "CreateDBInstance",
    "ModifyDBInstance",
    "DeleteDBInstance",
    "AddTagsToResource",
    "RemoveTagsFromResource",
];

/// The keys every database connection Secret holds (`database`, `provider` and `type`
/// are the Service Binding specification's).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "database", "dbname", "engine", "host", "password", "port", "provider", "type", "uri",
    "username",
];

pub(crate) fn database(world: &World, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: rds.tether.dev/v1alpha1\nkind: DBInstance\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  engine: postgres\n  instanceClass: db.t3.micro\n  allocatedStorageGiB: 20\n  databaseName: orders\n  masterUsername: app\n  writeConnectionSecretToRef: {{name: {name}-db}}\n{extra}",
        world.provider_config
    )
}

pub(crate) fn rds(world: &World) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(&world.direct_sdk_config())
}

/// An RDS client through the test's fault proxy, for a database made by hand that
/// the data plane ([`tether_testkit::FaultProxy::serve_databases`]) serves; its calls
/// are counted.
pub(crate) fn rds_through_proxy(world: &World) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(&crate::db_subnet_group::sdk_config(&world.proxy.endpoint()))
}

pub(crate) async fn instance_exists(world: &World, identifier: &str) -> bool {
    rds(world)
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .is_ok()
}

/// The RDS instance `identifier` as the emulator describes it.
pub(crate) async fn described(world: &World, identifier: &str) -> aws_sdk_rds::types::DbInstance {
    rds(world)
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .expect("describing the RDS instance")
        .db_instances()[0]
        .clone()
}

pub(crate) async fn secret_data(world: &World, name: &str) -> Option<BTreeMap<String, String>> {
    secret_data_in(&world.ns.api(), name).await
}

/// The data of Secret `name` of `secrets`, as text, if it exists.
async fn secret_data_in(secrets: &Api<Secret>, name: &str) -> Option<BTreeMap<String, String>> {
    let secret = secrets.get_opt(name).await.unwrap()?;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, ByteString(value))| (key, String::from_utf8(value).unwrap()))
            .collect(),
    )
}

/// Waits until the Secret `name` exists and `check` holds for its data.
pub(crate) async fn wait_secret(
    world: &World,
    name: &str,
    what: &str,
    check: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    wait_secret_in(world, &world.ns.api(), name, what, check).await
}

/// [`wait_secret`] for a Secret of `secrets` (another namespace's).
pub(crate) async fn wait_secret_in(
    world: &World,
    secrets: &Api<Secret>,
    name: &str,
    what: &str,
    check: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    for _ in 0..120 {
        if let Some(data) = secret_data_in(secrets, name).await
            && check(&data)
        {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "Secret {name} did not {what} within 60 s; keys now: {:?}\n{}",
        secret_data_in(secrets, name)
            .await
            .map(|data| data.into_keys().collect::<Vec<_>>()),
        world.log_tail()
    );
}

/// Waits until the connection Secret `name` holds every key of [`SECRET_KEYS`].
pub(crate) async fn wait_complete_secret(
    world: &World,
    name: &str,
    what: &str,
) -> BTreeMap<String, String> {
    wait_secret(world, name, what, |data| {
        SECRET_KEYS.iter().all(|key| data.contains_key(*key))
    })
    .await
}

/// Applies `yaml`, a DBInstance `name` whose connection Secret is `<name>-db` (as
/// [`database`] writes it), waits until it is Ready and its Secret holds every key, and
/// returns the Secret's data.
pub(crate) async fn apply_ready_database(
    world: &World,
    name: &str,
    yaml: &str,
) -> BTreeMap<String, String> {
    world.apply(yaml).await;
    let api: Api<DBInstance> = world.ns.api();
    world.wait_condition(&api, name, READY, "True", None).await;
    wait_complete_secret(world, &format!("{name}-db"), "hold every key").await
}

#[tokio::test]
async fn a_database_becomes_ready_publishes_its_secret_updates_and_goes_per_policy() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let api: Api<DBInstance> = world.ns.api();
    for (name, policy) in [
        ("snap", None),
        ("gone", Some("Delete")),
        ("kept", Some("Retain")),
    ] {
        let extra = policy.map_or(String::new(), |p| format!("  deletionPolicy: {p}\n"));
        world.apply(&database(&world, name, &extra)).await;
    }
    for name in ["snap", "gone", "kept"] {
        let ready = world
            .wait_condition(&api, name, READY, "True", Some("Available"))
            .await;
        let at_provider = ready.status.unwrap().at_provider.expect("atProvider");
        assert!(at_provider.arn.is_some() && at_provider.endpoint_address.is_some());
        assert_eq!(at_provider.status.as_deref(), Some("available"));

        let data = wait_complete_secret(&world, &format!("{name}-db"), "hold every key").await;
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            SECRET_KEYS
        );
        assert_eq!(data["engine"], "postgres");
        assert_eq!(data["username"], "app");
        assert_eq!(data["dbname"], "orders");
        assert_eq!(data["database"], "orders");
        assert_eq!(data["type"], "postgresql");
        assert_eq!(data["provider"], "aws-rds");
        assert_eq!(
            Some(data["host"].as_str()),
            at_provider.endpoint_address.as_deref()
        );
        assert!(data["password"].len() >= 32, "a generated password");
        assert!(
            data["uri"].starts_with("postgresql://app:"),
            "{}",
            data["uri"].len()
        );
        let secret = world
            .ns
            .api::<Secret>()
            .get(&format!("{name}-db"))
            .await
            .unwrap();
        assert_eq!(secret.type_.as_deref(), Some("tether.dev/connection"));
        assert_eq!(secret.owner_references()[0].name, name);
        assert!(
            !secret
                .annotations()
                .contains_key("tether.dev/pending-credentials"),
            "the password was applied by the create"
        );
        assert_eq!(connect_with(&world, &data).await, "app orders");
    }
    assert_eq!(world.proxy.count("CreateDBInstance"), 3, "one create each");

    // An update of the instance class and backups is applied in place.
    merge_patch(
        &api,
        "snap",
        json!({"spec": {"instanceClass": "db.t3.small", "backupRetentionDays": 3}}),
    )
    .await;
    let updated = world.wait_for_event("snap", "Updated").await;
    let note = updated.note.unwrap();
    assert!(
        note.contains("instanceClass") && note.contains("backupRetentionDays"),
        "{note}"
    );
    let mut identifiers = BTreeMap::new();
    for name in ["snap", "gone", "kept"] {
        let object = api.get(name).await.unwrap();
        identifiers.insert(name, object.annotations()[EXTERNAL_NAME_ANNOTATION].clone());
    }
    let identifier = |name: &str| identifiers[name].clone();
    let instance = described(&world, &identifier("snap")).await;
    assert_eq!(instance.db_instance_class(), Some("db.t3.small"));
    assert_eq!(instance.backup_retention_period(), Some(3));

    for name in ["snap", "gone", "kept"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["snap", "gone", "kept"] {
        world.wait_gone(&api, name).await;
    }
    // Snapshot (the default): a final snapshot, named in the Event.
    let started = world.wait_for_event("snap", "DeletionStarted").await;
    let note = started.note.unwrap();
    let snapshot = note
        .split("final snapshot ")
        .nth(1)
        .unwrap_or_else(|| panic!("the Event names the final snapshot: {note}"));
    let snapshots = rds(&world)
        .describe_db_snapshots()
        .db_snapshot_identifier(snapshot)
        .send()
        .await
        .expect("the final snapshot exists");
    assert_eq!(snapshots.db_snapshots().len(), 1);
    assert!(!instance_exists(&world, &identifier("snap")).await);
    // Delete: gone, no snapshot. Retain: still there.
    assert!(!instance_exists(&world, &identifier("gone")).await);
    let gone_note = world
        .wait_for_event("gone", "DeletionStarted")
        .await
        .note
        .unwrap();
    assert!(!gone_note.contains("snapshot"), "{gone_note}");
    assert!(instance_exists(&world, &identifier("kept")).await);
    world.wait_for_event("kept", "Retained").await;
    world.finish().await;
}

#[tokio::test]
async fn observe_only_adopts_a_database_without_any_write() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let existing = format!("{}-legacy", world.ns.name);
    // Made by hand through the proxy, so that a database server stands behind it.
    let by_hand = "made-by-hand-1";
    rds_through_proxy(&world)
        .create_db_instance()
        .db_instance_identifier(&existing)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password(by_hand)
        .send()
        .await
        .expect("creating the instance to adopt");
    world.proxy.reset_counts();

    let api: Api<DBInstance> = world.ns.api();
    let yaml = format!(
        "apiVersion: rds.tether.dev/v1alpha1\nkind: DBInstance\nmetadata:\n  name: legacy\n  annotations: {{tether.dev/external-name: {existing}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  managementPolicy: ObserveOnly\n  engine: postgres\n  instanceClass: db.t3.large\n  masterUsername: admin\n  writeConnectionSecretToRef: {{name: legacy-db}}\n",
        world.provider_config
    );
    world.apply(&yaml).await;
    let adopted = world
        .wait_condition(&api, "legacy", READY, "True", None)
        .await;
    let at_provider = adopted
        .status
        .as_ref()
        .unwrap()
        .at_provider
        .clone()
        .unwrap();
    assert_eq!(at_provider.instance_class.as_deref(), Some("db.t3.micro"));
    let data = wait_secret(&world, "legacy-db", "hold the address", |d| {
        d.contains_key("host")
    })
    .await;
    assert_eq!(data["engine"], "postgres");
    // tether does not know the password of a database it only observes: the Secret
    // says where to connect, and the user brings the password.
    assert!(!data.contains_key("password") && !data.contains_key("uri"));
    assert_eq!(
        connect_with_fields(&world, &data, by_hand).await,
        "admin postgres"
    );

    world.delete_and_wait_gone(&api, "legacy").await;
    assert!(
        instance_exists(&world, &existing).await,
        "ObserveOnly never deletes"
    );
    let writes: usize = RDS_WRITES.iter().map(|op| world.proxy.count(op)).sum();
    assert_eq!(
        writes,
        0,
        "no write reached AWS: {:?}",
        world.proxy.counts()
    );
    world.finish().await;
}

#[tokio::test]
async fn an_invalid_engine_is_reported_with_aws_message_without_a_retry_storm() {
    let world = World::start().await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(&database(&world, "bad", "").replace("engine: postgres", "engine: postgres-deluxe"))
        .await;
    let message = world.wait_refusal(&api, "bad", "CreateFailed").await;
    assert!(
        message.contains("postgres-deluxe"),
        "AWS's message: {message}"
    );
    world.wait_for_warning("bad", "CreateFailed").await;
    world
        .assert_retried_at_poll_speed_only("CreateDBInstance")
        .await;
    world.finish().await;
}

#[tokio::test]
async fn a_deleted_secret_comes_back_with_a_working_password() {
    let world = World::start().await;
    // A real PostgreSQL server behind the instance, to connect with the Secrets.
    world.proxy.serve_databases();
    let before = apply_ready_database(&world, "orders", &database(&world, "orders", "")).await;
    assert_eq!(before["host"], "127.0.0.1", "the data plane's endpoint");
    assert_eq!(connect_with(&world, &before).await, "app orders");
    assert_refused(&before, "not-the-password", "a wrong password is refused").await;
    world.proxy.reset_counts();

    world
        .ns
        .api::<Secret>()
        .delete("orders-db", &DeleteParams::default())
        .await
        .unwrap();
    let after = wait_complete_secret(&world, "orders-db", "come back").await;
    // RDS cannot give the old password back, so tether set a new one: written to the
    // Secret first, then applied with ModifyDBInstance.
    assert_ne!(after["password"], before["password"]);
    assert_eq!(connect_with(&world, &after).await, "app orders");
    assert_refused(
        &after,
        &before["password"],
        "the old password is refused once the new one applies",
    )
    .await;
    assert_eq!(
        world.proxy.count("ModifyDBInstance"),
        1,
        "{:?}",
        world.proxy.counts()
    );
    // Neither password reached a server's log (the database server's included).
    for entry in std::fs::read_dir(tether_testkit::logs::run_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for password in [&before["password"], &after["password"]] {
            assert!(
                !text.contains(password.as_str()),
                "{} shows a password",
                path.display()
            );
        }
    }
    world
        .wait_until(
            Duration::from_secs(10),
            "the new password stayed marked pending",
            async || {
                let secret = world.ns.api::<Secret>().get("orders-db").await.unwrap();
                !secret
                    .annotations()
                    .contains_key("tether.dev/pending-credentials")
            },
        )
        .await;
    world.finish().await;
}

#[tokio::test]
async fn a_password_change_in_the_users_secret_reaches_rds_then_the_connection_secret() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let canary = "Canary-7f3c-Zq8pW3xK-original";
    let rotated = "Canary-9d1e-Lm4vT6yR-rotated";
    world.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: orders-master}}\nstringData: {{password: {canary}}}\n"
        )).await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(&database(
            &world,
            "orders",
            "  masterPassword: {secretKeyRef: {name: orders-master, key: password}}\n",
        ))
        .await;
    world
        .wait_condition(&api, "orders", READY, "True", None)
        .await;
    let data = wait_secret(&world, "orders-db", "hold the password", |d| {
        d.contains_key("password")
    })
    .await;
    assert_eq!(data["password"], canary);
    assert_eq!(connect_with(&world, &data).await, "app orders");

    world.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: orders-master}}\nstringData: {{password: {rotated}}}\n"
        )).await;
    let data = wait_secret(&world, "orders-db", "follow the new password", |d| {
        d.get("password").map(String::as_str) == Some(rotated)
    })
    .await;
    assert!(data["uri"].contains("Canary-9d1e"), "the uri follows too");
    assert!(world.proxy.count("ModifyDBInstance") >= 1);
    assert_eq!(connect_with(&world, &data).await, "app orders");
    assert_refused(&data, canary, "the replaced password is refused").await;

    // The canary never leaves the Secrets: not in the controller's trace log, the
    // Events, the status or the annotations.
    let object = api.get("orders").await.unwrap();
    let shown = serde_json::to_string(&object).unwrap();
    let events = serde_json::to_string(&world.events("orders").await).unwrap();
    let log = world.tether.log();
    assert!(log.len() > 10_000, "the log is at trace level");
    for (what, text) in [("object", &shown), ("Events", &events), ("log", &log)] {
        for secret in [canary, rotated, "Canary-"] {
            assert!(!text.contains(secret), "{what} shows a password");
        }
    }
    world.finish().await;
}

#[tokio::test]
async fn a_database_waits_for_its_subnet_group_then_uses_it() {
    let world = World::start().await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(&database(
            &world,
            "orders",
            "  dbSubnetGroupRef: {name: orders-subnets}\n",
        ))
        .await;
    let message = world
        .wait_refusal(&api, "orders", "ReferenceNotReady")
        .await;
    assert_eq!(
        message,
        "dbSubnetGroupRef: DBSubnetGroup orders-subnets does not exist"
    );
    assert_eq!(world.proxy.count("CreateDBInstance"), 0);

    let subnets = default_subnets(&world.direct_sdk_config()).await;
    world.apply(&format!(
            "apiVersion: rds.tether.dev/v1alpha1\nkind: DBSubnetGroup\nmetadata: {{name: orders-subnets}}\nspec:\n  providerConfigRef: {{name: {}}}\n  description: orders\n  subnetIds: [{}]\n",
            world.provider_config,
            subnets[..2].join(", ")
        )).await;
    let ready = world
        .wait_condition(&api, "orders", READY, "True", None)
        .await;
    let instance = described(&world, &ready.annotations()[EXTERNAL_NAME_ANNOTATION]).await;
    let group = instance
        .db_subnet_group()
        .and_then(|g| g.db_subnet_group_name());
    let subnet_group = world
        .ns
        .api::<DBSubnetGroup>()
        .get("orders-subnets")
        .await
        .unwrap();
    assert_eq!(
        group,
        Some(subnet_group.annotations()[EXTERNAL_NAME_ANNOTATION].as_str())
    );
    world.finish().await;
}

#[tokio::test]
async fn a_foreign_secret_is_never_overwritten_and_nothing_is_created() {
    let world = World::start().await;
    world.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: orders-db}\nstringData: {owner: someone-else}\n").await;
    let api: Api<DBInstance> = world.ns.api();
    world.apply(&database(&world, "orders", "")).await;
    let message = world.wait_refusal(&api, "orders", "SecretConflict").await;
    assert!(
        message.contains("orders-db") && message.contains("not owned by this object"),
        "{message}"
    );
    world.wait_for_warning("orders", "SecretConflict").await;
    assert_eq!(
        world.proxy.count("CreateDBInstance"),
        0,
        "no database whose password would have nowhere to go"
    );
    let data = secret_data(&world, "orders-db").await.unwrap();
    assert_eq!(
        data.into_iter().collect::<Vec<_>>(),
        [("owner".to_owned(), "someone-else".to_owned())],
        "the foreign Secret is untouched"
    );
    world.finish().await;
}
