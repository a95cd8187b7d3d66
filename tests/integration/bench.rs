//! One database, then 100 at once, against moto: each gets exactly one create, becomes
//! Ready and gets a complete Secret. The test also prints how long that took and how
//! many AWS calls it made (figures, never asserted); `make bench` shows them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, api::ListParams};
use tether_api::{
    conditions::{self, READY},
    managed::Managed,
};
use tether_aws::rds::DBInstance;

use crate::world::World;

fn manifests(world: &World, prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: rds.tether.dev/v1alpha1\nkind: DBInstance\nmetadata: {{name: {prefix}-{i}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  deletionPolicy: Delete\n  engine: postgres\n  instanceClass: db.t3.micro\n  allocatedStorageGiB: 20\n  masterUsername: app\n  writeConnectionSecretToRef: {{name: {prefix}-{i}-db}}\n",
                world.provider_config
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Applies `count` databases and returns the times until all are Ready and until all
/// their Secrets hold a password.
async fn apply_and_time(world: &World, prefix: &str, count: usize) -> (Duration, Duration) {
    let api: Api<DBInstance> = world.ns.api();
    let secrets: Api<Secret> = world.ns.api();
    let started = Instant::now();
    world
        .ns
        .apply(&manifests(world, prefix, count))
        .await
        .unwrap();
    let (mut ready_at, mut secrets_at) = (None, None);
    while ready_at.is_none() || secrets_at.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not done in 10 min:\n{}",
            world.log_tail()
        );
        if ready_at.is_none() {
            let ready = api
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|db| {
                    db.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .filter(|db| conditions::is_true(db.conditions(), READY))
                .count();
            if ready == count {
                ready_at = Some(started.elapsed());
            }
        }
        if secrets_at.is_none() {
            let published = secrets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|s| {
                    s.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .filter(|s| s.data.as_ref().is_some_and(|d| d.contains_key("host")))
                .count();
            if published == count {
                secrets_at = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ready_at.unwrap(), secrets_at.unwrap())
}

#[tokio::test]
async fn bench_one_then_a_hundred_databases_each_created_once_with_a_secret() {
    let world = World::start().await;
    for (prefix, count) in [("one", 1), ("many", 100)] {
        world.proxy.reset_counts();
        let (ready, secret) = apply_and_time(&world, prefix, count).await;
        let calls = world.proxy.calls().len();
        assert_eq!(
            world.proxy.count("CreateDBInstance"),
            count,
            "exactly one create per database: {:?}",
            world.proxy.counts()
        );
        println!(
            "{count:>3} database(s): all Ready after {:.2} s, all Secrets complete after {:.2} s, {calls} AWS calls ({:.1} per database)",
            ready.as_secs_f64(),
            secret.as_secs_f64(),
            calls as f64 / count as f64
        );
    }
    world.finish().await;
}
