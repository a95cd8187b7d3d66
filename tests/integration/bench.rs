//! Figures, not assertions: how long `tether run` takes from `kubectl apply` to Ready
//! and to the connection Secret, for one database and for 100 at once, against moto.
//! Ignored in the normal run; `make bench` runs it and prints the figures.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, api::ListParams};
use tether_api::conditions::{self, READY};
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
                .filter(|db| {
                    conditions::is_true(tether_api::managed::Managed::conditions(*db), READY)
                })
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
#[ignore = "a benchmark: run with `make bench`"]
async fn bench_apply_to_ready_and_secret() {
    let world = World::start().await;
    for (prefix, count) in [("one", 1), ("many", 100)] {
        world.proxy.reset_counts();
        let (ready, secret) = apply_and_time(&world, prefix, count).await;
        let calls = world.proxy.calls().len();
        println!(
            "{count:>3} database(s): all Ready after {:.2} s, all Secrets complete after {:.2} s, {calls} AWS calls ({:.1} per database)",
            ready.as_secs_f64(),
            secret.as_secs_f64(),
            calls as f64 / count as f64
        );
    }
    world.finish().await;
}
