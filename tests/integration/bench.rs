//! One database, then 100 at once, and one EC2 instance, then 50 at once, against
//! moto: each gets exactly one create, becomes Ready and gets a complete Secret. The
//! tests also print how long that took and how many AWS calls it made (figures, never
//! asserted); `make bench` shows them.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{Api, ResourceExt, api::ListParams};
use tether_api::{
    conditions::{self, READY},
    managed::Managed,
};
use tether_aws::{ec2::Instance, rds::DBInstance};
use tether_testkit::tether::{KubeRequests, READS, WRITES};

use crate::world::World;

/// `count` DBInstances `<prefix>-<i>` (postgres, deletionPolicy Delete), each with a
/// connection Secret.
pub(crate) fn databases(world: &World, prefix: &str, count: usize) -> String {
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

/// `count` Instances `<prefix>-<i>` with a generated SSH key, each with a connection
/// Secret.
pub(crate) fn instances(world: &World, prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: ec2.tether.dev/v1alpha1\nkind: Instance\nmetadata: {{name: {prefix}-{i}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  imageId: ami-0123456789abcdef0\n  instanceType: t3.micro\n  sshKey: {{generate: true}}\n  writeConnectionSecretToRef: {{name: {prefix}-{i}-ssh}}\n",
                world.provider_config
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// How long a burst took from its apply (to the 100 ms the objects are polled at).
pub(crate) struct Timings {
    /// Until every object was Ready.
    pub ready: Duration,
    /// Until every Secret held its key.
    pub secrets: Duration,
    /// Until each object was Ready, sorted.
    pub each_ready: Vec<Duration>,
}

impl Timings {
    /// The median time to Ready of one object.
    pub fn median(&self) -> Duration {
        self.each_ready[self.each_ready.len() / 2]
    }
}

/// Applies `count` objects of kind `M` named `<prefix>-<i>` from `manifests`, and
/// returns the times until all are Ready (and each was), and until all their Secrets
/// hold `secret_key`.
pub(crate) async fn apply_and_time<M: Managed>(
    world: &World,
    manifests: &str,
    prefix: &str,
    count: usize,
    secret_key: &str,
) -> Timings {
    let api: Api<M> = world.ns.api();
    let secrets: Api<Secret> = world.ns.api();
    let started = Instant::now();
    world.apply(manifests).await;
    let (mut ready_at, mut secrets_at) = (None, None);
    let mut each_ready: BTreeMap<String, Duration> = BTreeMap::new();
    while ready_at.is_none() || secrets_at.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not done in 10 min:\n{}",
            world.log_tail()
        );
        if ready_at.is_none() {
            let listed = api.list(&ListParams::default()).await.unwrap().items;
            let now = started.elapsed();
            for object in listed
                .iter()
                .filter(|object| object.name_any().starts_with(prefix))
                .filter(|object| conditions::is_true(object.conditions(), READY))
            {
                each_ready.entry(object.name_any()).or_insert(now);
            }
            if each_ready.len() == count {
                ready_at = Some(now);
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
                .filter(|s| s.data.as_ref().is_some_and(|d| d.contains_key(secret_key)))
                .count();
            if published == count {
                secrets_at = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut each_ready: Vec<Duration> = each_ready.into_values().collect();
    each_ready.sort();
    Timings {
        ready: ready_at.unwrap(),
        secrets: secrets_at.unwrap(),
        each_ready,
    }
}

#[tokio::test]
async fn bench_one_then_a_hundred_databases_each_created_once_with_a_secret() {
    let world = World::start().await;
    for (prefix, count) in [("one", 1), ("many", 100)] {
        world.proxy.reset_counts();
        let before = world.tether.kube_requests();
        let manifests = databases(&world, prefix, count);
        let timings = apply_and_time::<DBInstance>(&world, &manifests, prefix, count, "host").await;
        assert_eq!(
            world.proxy.count("CreateDBInstance"),
            count,
            "exactly one create per database: {:?}",
            world.proxy.counts()
        );
        report(&world, prefix, &before, "database", count, &timings).await;
    }
    world.finish().await;
}

#[tokio::test]
async fn bench_one_then_fifty_instances_each_launched_once_with_a_key() {
    let world = World::start().await;
    for (prefix, count) in [("one", 1), ("many", 50)] {
        world.proxy.reset_counts();
        let before = world.tether.kube_requests();
        let manifests = instances(&world, prefix, count);
        let timings =
            apply_and_time::<Instance>(&world, &manifests, prefix, count, "instance-id").await;
        assert_eq!(
            world.proxy.count("RunInstances"),
            count,
            "exactly one launch per instance: {:?}",
            world.proxy.counts()
        );
        report(&world, prefix, &before, "instance", count, &timings).await;
    }
    // Steady state: every instance is polled every 10 s (the tests' --poll-interval);
    // the shared snapshot answers most polls.
    world.proxy.reset_counts();
    tokio::time::sleep(Duration::from_secs(35)).await;
    println!(
        " 51 Ready instance(s) polled for 35 s: {} DescribeInstances (one call per instance and poll made 161)",
        world.proxy.count("DescribeInstances")
    );
    world.finish().await;
}

/// Prints the figures of one run: times, the AWS calls per object by operation, and
/// tether's writes to the API server per object (`before`: its requests before the
/// apply).
async fn report(
    world: &World,
    prefix: &str,
    before: &KubeRequests,
    kind: &str,
    count: usize,
    timings: &Timings,
) {
    let calls = world.proxy.calls().len();
    let mut per_object: Vec<(String, f64)> = world
        .proxy
        .counts()
        .into_iter()
        .map(|(operation, n)| (operation, n as f64 / count as f64))
        .collect();
    per_object.sort_by(|a, b| a.0.cmp(&b.0));
    println!(
        "{count:>3} {kind}(s): all Ready after {:.2} s (median {:.2} s), all Secrets complete after {:.2} s, {calls} AWS calls ({:.2} per {kind}: {per_object:?})",
        timings.ready.as_secs_f64(),
        timings.median().as_secs_f64(),
        timings.secrets.as_secs_f64(),
        calls as f64 / count as f64
    );
    let requests = world.tether.kube_requests();
    let (writes, by_request) = requests.per_object(before, count, &WRITES);
    println!("     API server writes: {writes:.2} per {kind}: {by_request}");
    let (reads, by_request) = requests.per_object(before, count, &READS);
    println!("     API server reads: {reads:.1} per {kind}: {by_request}");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for event in world
        .ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let about = event.regarding.and_then(|regarding| regarding.name);
        if about.is_some_and(|name| name.starts_with(&format!("{prefix}-"))) {
            *reasons.entry(event.reason.unwrap_or_default()).or_default() += 1;
        }
    }
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{reason} {:.2}", *n as f64 / count as f64))
        .collect();
    println!("     Events per {kind}: {}", reasons.join(", "));
}
