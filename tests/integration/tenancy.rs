//! The namespace as the boundary between teams (DESIGN rule 7), tried as an adversary
//! would: one `tether run` serves two namespaces, and the second names the first's
//! database.

use std::time::Duration;

use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;
use tether_api::{
    conditions::{READY, SYNCED},
    managed::EXTERNAL_NAME_ANNOTATION,
};
use tether_aws::{rds::DBInstance, tags::UID_TAG};
use tether_testkit::{Extra, TestNamespace};

use crate::world::merge_patch;
use crate::{
    data_plane::{assert_refused, connect_with},
    db_instance_controller::{RDS_WRITES, database, instance_exists, secret_data, wait_secret_in},
    safety::rds_tags,
    world::{World, condition},
};

/// The `tether.dev/uid` tag of the RDS instance `identifier`, as moto holds it.
async fn owner_tag(world: &World, identifier: &str) -> Option<String> {
    rds_tags(world, identifier)
        .await
        .into_iter()
        .find_map(|(key, value)| (key == UID_TAG).then_some(value))
}

/// A DBInstance `name` in namespace `namespace` that names the RDS instance
/// `identifier` in `tether.dev/external-name`, with `extra` spec lines.
fn naming(world: &World, namespace: &str, name: &str, identifier: &str, extra: &str) -> String {
    database(world, name, &format!("  identifier: {identifier}\n{extra}")).replacen(
        &format!("metadata: {{name: {name}}}"),
        &format!(
            "metadata: {{name: {name}, namespace: {namespace}, annotations: {{{EXTERNAL_NAME_ANNOTATION}: {identifier}}}}}"
        ),
        1,
    )
}

#[tokio::test]
async fn another_namespace_that_names_a_live_database_gets_nothing_of_it() {
    let thieves = TestNamespace::new().await;
    let thieves_ns = thieves.name.clone();
    let world = World::start_with(|_| Extra {
        args: vec!["--watch-namespaces".to_owned(), thieves_ns.clone()],
        ..Extra::default()
    })
    .await;
    world.proxy.serve_databases();
    let owners: Api<DBInstance> = world.ns.api();
    let others: Api<DBInstance> = thieves.api();
    world
        .apply(&database(&world, "orders", "  deletionPolicy: Delete\n"))
        .await;
    let owned = world
        .wait_condition(&owners, "orders", READY, "True", None)
        .await;
    let identifier = owned.annotations()[EXTERNAL_NAME_ANNOTATION].clone();
    let owner_uid = owned.uid().unwrap();
    let owners_secret = secret_data(&world, "orders-db").await.unwrap();
    let password = owners_secret["password"].clone();
    world.proxy.reset_counts();

    // The other team names it, to manage it (and delete it) and to observe it.
    for (name, extra) in [
        ("taker", "  deletionPolicy: Delete\n"),
        ("watcher", "  managementPolicy: ObserveOnly\n"),
    ] {
        thieves
            .apply(&naming(&world, &thieves_ns, name, &identifier, extra))
            .await
            .expect("applying the other team's object");
    }
    for name in ["taker", "watcher"] {
        let refused = world
            .wait_condition(&others, name, SYNCED, "False", Some("OwnedByAnother"))
            .await;
        assert_eq!(condition(&refused, READY).reason, "OwnedByAnother");
        let message = condition(&refused, SYNCED).message;
        assert!(
            message.contains("belongs to another tether object"),
            "{message}"
        );
        // The identifier is the other team's own input; beyond it, nothing of the owner.
        let beyond = message.replace(&identifier, "");
        assert!(
            !beyond.contains(&world.ns.name)
                && !beyond.contains("orders")
                && !beyond.contains(&owner_uid),
            "names nothing of the owner: {message}"
        );
    }
    // Another poll comes and goes (every 10 s): still nothing is written.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let counts = world.proxy.counts();
    for write in RDS_WRITES {
        assert_eq!(counts.get(*write), None, "{write} was sent: {counts:?}");
    }
    assert_eq!(
        owner_tag(&world, &identifier).await.as_deref(),
        Some(owner_uid.as_str()),
        "the database still records its owner"
    );
    let others_secrets: Api<k8s_openapi::api::core::v1::Secret> = thieves.api();
    for secret in ["taker-db", "watcher-db"] {
        assert!(
            others_secrets.get_opt(secret).await.unwrap().is_none(),
            "no Secret {secret} in the other namespace"
        );
    }
    assert_eq!(
        condition(&owners.get("orders").await.unwrap(), READY).status,
        "True",
        "the owner's object is still Ready"
    );

    // Deleting the other team's objects deletes nothing.
    for name in ["taker", "watcher"] {
        others.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["taker", "watcher"] {
        world.wait_gone(&others, name).await;
    }
    assert!(instance_exists(&world, &identifier).await);
    assert_eq!(world.proxy.count("DeleteDBInstance"), 0);
    assert_eq!(
        secret_data(&world, "orders-db").await.unwrap()["password"],
        password,
        "the owner's password is untouched"
    );
    assert_eq!(
        connect_with(&world, &owners_secret).await,
        "app orders",
        "the owner still connects"
    );

    // Once its owner lets it go (Retain), the database may move to the other team.
    merge_patch(
        &owners,
        "orders",
        json!({"spec": {"deletionPolicy": "Retain"}}),
    )
    .await;
    world.delete_and_wait_gone(&owners, "orders").await;
    thieves
        .apply(&naming(
            &world,
            &thieves_ns,
            "mover",
            &identifier,
            "  deletionPolicy: Retain\n",
        ))
        .await
        .expect("applying the adopting object");
    let adopted = world
        .wait_condition(&others, "mover", READY, "True", None)
        .await;
    let mover_uid = adopted.uid().unwrap();
    for _ in 0..40 {
        if owner_tag(&world, &identifier).await.as_ref() == Some(&mover_uid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        owner_tag(&world, &identifier).await,
        Some(mover_uid),
        "the adopted database records its new owner"
    );
    // The new team connects with a password of its own; the old team's is refused.
    let movers_secret = wait_secret_in(
        &world,
        &thieves.api(),
        "mover-db",
        "hold a password",
        |data| data.contains_key("password"),
    )
    .await;
    assert_eq!(connect_with(&world, &movers_secret).await, "app orders");
    assert_refused(
        &owners_secret,
        &password,
        "the previous team's password is refused",
    )
    .await;
    world.delete_and_wait_gone(&others, "mover").await;
    world.finish().await;
    thieves.delete().await;
}
