//! Running tether like production, with the real binary: `/metrics` counts the AWS
//! calls the fault proxy sees; of two replicas only the lease holder acts, and the
//! other takes over when the leader stops (at once) or dies (within the lease
//! duration), without a duplicate resource; a leader that stalls past its lease writes
//! nothing more to AWS when it resumes, and exits.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use tether_api::conditions::READY;
use tether_aws::{ec2::SecurityGroup, rds::DBInstance};
use tether_testkit::{ControlPlane, Extra, Fault, Tether, fault_proxy::Call};

use crate::{
    data_plane::connect_with,
    db_instance_controller::{SECRET_KEYS, database, wait_secret},
    security_group::security_group,
    world::World,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// The AWS calls `/metrics` reports, summed by operation.
fn reported_calls(metrics: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("tether_aws_calls_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("a sample line");
        let operation = labels
            .split(',')
            .find_map(|label| label.strip_prefix("operation=\""))
            .and_then(|value| value.strip_suffix('"'))
            .expect("an operation label");
        *calls.entry(operation.to_owned()).or_default() += value.parse::<u64>().expect("a count");
    }
    calls
}

/// The calls the proxy saw, by operation.
fn proxied_calls(world: &World) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for call in world.proxy.calls() {
        *calls.entry(call.operation).or_default() += 1;
    }
    calls
}

/// The value of the sample `name` (labels included) in `metrics`.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_the_aws_calls_the_proxy_sees_and_a_first_ready_is_announced() {
    let world = World::start().await;
    world.apply(&database(&world, "metered", "")).await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .wait_condition(&api, "metered", READY, "True", None)
        .await;
    // The create is announced by an Event; the first Ready by the status, the log
    // and the metrics (an Event too would cost a write per object in a burst).
    let created = world.wait_for_event("metered", "Created").await;
    assert!(
        created
            .note
            .as_deref()
            .is_some_and(|note| note.starts_with("created DBInstance")),
        "{created:?}"
    );
    let logged =
        |log: &str| log.contains("is Ready, ") && log.contains("s after the object was created");
    for _ in 0..40 {
        if logged(&world.tether.log()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        logged(&world.tether.log()),
        "the first Ready is logged:\n{}",
        world.log_tail()
    );
    let object = api.get("metered").await.unwrap();
    assert!(
        object
            .status
            .as_ref()
            .and_then(|s| s.first_ready_time.as_ref())
            .is_some(),
        "status.firstReadyTime is recorded"
    );

    // Calls may be on their way between two reads; the counts must meet.
    let mut last = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..40 {
        let metrics = world
            .tether
            .admin_get("/metrics")
            .expect("scraping /metrics");
        let proxied = proxied_calls(&world);
        let reported = reported_calls(&metrics);
        if !proxied.is_empty() && reported == proxied {
            eprintln!("/metrics once the proxy's counts were met:\n{metrics}");
            assert!(proxied.contains_key("CreateDBInstance"), "{proxied:?}");
            for (name, at_least) in [
                (
                    r#"tether_reconciles_total{kind="DBInstance",result="ok"}"#,
                    1.0,
                ),
                (
                    r#"tether_reconcile_duration_seconds_count{kind="DBInstance"}"#,
                    1.0,
                ),
                (
                    r#"tether_managed_objects{kind="DBInstance",ready="true"}"#,
                    1.0,
                ),
                (
                    r#"tether_time_to_ready_seconds_count{kind="DBInstance"}"#,
                    1.0,
                ),
                ("tether_leader", 1.0),
            ] {
                let value =
                    sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
                assert!(value >= at_least, "{name} is {value}\n{metrics}");
            }
            world.finish().await;
            return;
        }
        last = (proxied, reported);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "the proxy's counts and /metrics never met:\nproxy:   {:?}\nmetrics: {:?}",
        last.0, last.1
    );
}

/// The watch requests `/metrics` reports for `resource`, as (metadata only, whole
/// objects).
fn watches_of(metrics: &str, resource: &str) -> (f64, f64) {
    let count = |metadata_only: bool| {
        sample(
            metrics,
            &format!(
                r#"tether_kube_requests_total{{verb="watch",resource="{resource}",metadata_only="{metadata_only}"}}"#
            ),
        )
        .unwrap_or(0.0)
    };
    (count(true), count(false))
}

#[tokio::test]
async fn one_watch_per_kind_and_one_metadata_only_secret_watch_serve_every_controller() {
    let world = World::start().await;
    world.proxy.serve_databases();
    // Polled once an hour: only the Secret watch can bring a change to tether's notice
    // within this test.
    let manifest = database(&world, "watched", "").replace(
        "metadata: {name: watched}",
        "metadata: {name: watched, annotations: {tether.dev/poll-interval: 1h}}",
    );
    world.apply(&manifest).await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .wait_condition(&api, "watched", READY, "True", None)
        .await;
    let complete =
        |data: &BTreeMap<String, String>| SECRET_KEYS.iter().all(|key| data.contains_key(*key));
    let published = wait_secret(&world, "watched-db", "hold every key", complete).await;

    // Four managed kinds, two of which look at Secrets: one watch of Secrets, and it
    // asks for metadata only (no Secret value reaches tether through it).
    let secret_watches = || {
        let metrics = world
            .tether
            .admin_get("/metrics")
            .expect("scraping /metrics");
        // Each managed kind is watched once, whole, however many kinds refer to it
        // (security groups: three, themselves included); so are the claims and classes,
        // which each wake both the claim and the class controller.
        for kind in [
            "dbinstances",
            "dbsubnetgroups",
            "securitygroups",
            "instances",
            "databaseclaims",
            "databaseclasses",
            "instanceclaims",
            "instanceclasses",
        ] {
            assert_eq!(
                watches_of(&metrics, kind),
                (0.0, 1.0),
                "watches of {kind} (metadata only, whole objects):\n{metrics}"
            );
        }
        (watches_of(&metrics, "secrets"), metrics)
    };
    let (watches, metrics) = secret_watches();
    assert_eq!(
        watches,
        (1.0, 0.0),
        "(metadata only, whole objects):\n{metrics}"
    );

    // Changed by hand: put back.
    let secrets = world.ns.api::<Secret>();
    secrets
        .patch(
            "watched-db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"host": "tampered.example"}})),
        )
        .await
        .expect("editing the Secret by hand");
    wait_secret(&world, "watched-db", "get its host back", |data| {
        data.get("host") == published.get("host")
    })
    .await;
    // Deleted by hand: put back.
    secrets
        .delete("watched-db", &DeleteParams::default())
        .await
        .expect("deleting the Secret by hand");
    let restored = wait_secret(&world, "watched-db", "come back", complete).await;
    assert_eq!(
        connect_with(&world, &restored).await,
        "app orders",
        "the Secret comes back with a password the database has"
    );

    let (watches, metrics) = secret_watches();
    assert_eq!(watches, (1.0, 0.0), "still one Secret watch:\n{metrics}");
    world.finish().await;
}

/// The lease holder's identity, once the lease has one.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .expect("reading the lease")
        .and_then(|lease| lease.spec?.holder_identity)
        .filter(|holder| !holder.is_empty())
}

/// A time the lease records (`renewTime`, `acquireTime`), as the API server holds it.
async fn lease_time(
    leases: &Api<Lease>,
    field: impl Fn(
        k8s_openapi::api::coordination::v1::LeaseSpec,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
) -> k8s_openapi::jiff::Timestamp {
    let lease = leases.get("tether").await.expect("reading the lease");
    field(lease.spec.expect("a lease spec"))
        .expect("the lease records the time")
        .0
}

/// Waits up to `within` (and 5 s more, so that a slow machine reports a figure
/// instead of failing) for the lease to be held by someone other than `from`;
/// returns the new holder and how long it took.
async fn hand_over(
    leases: &Api<Lease>,
    name: &str,
    from: &str,
    within: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    while started.elapsed() < within + Duration::from_secs(5) {
        if let Some(now) = holder(leases, name).await.filter(|now| now != from) {
            return (now, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the lease stayed with {from} for {within:?}");
}

/// The replicas' extra arguments: leader election on a lease in the test's namespace,
/// with their own access key so the proxy tells their calls apart.
fn replica(ns: &str, access_key: &str) -> Extra {
    replica_leasing(ns, access_key, "8s")
}

/// [`replica`] with a lease of `duration`.
fn replica_leasing(ns: &str, access_key: &str, duration: &str) -> Extra {
    Extra {
        args: [
            "--leader-elect",
            "--lease-namespace",
            ns,
            "--lease-duration",
            duration,
        ]
        .map(str::to_owned)
        .to_vec(),
        env: vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), access_key.to_owned()),
            ("HOSTNAME".to_owned(), access_key.to_lowercase()),
        ],
    }
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_acts_and_the_other_takes_over() {
    const KEYS: [&str; 3] = [
        "AKIAREPLICAONE000000",
        "AKIAREPLICATWO000000",
        "AKIAREPLICATHREE0000",
    ];
    let mut world = World::start_with(|ns| replica(ns, KEYS[0])).await;
    let ns = world.ns.name.clone();
    let start_replica = |key: &str| {
        Tether::start_with(
            TETHER,
            &ns,
            ControlPlane::shared().kubeconfig(),
            replica(&ns, key),
        )
    };
    let leases: Api<Lease> = world.ns.api();
    let mut first_holder = None;
    for _ in 0..100 {
        first_holder = holder(&leases, "tether").await;
        if first_holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_holder = first_holder.expect("the first replica takes the lease");
    let standby = start_replica(KEYS[1]);

    let api: Api<DBInstance> = world.ns.api();
    for name in ["one", "two"] {
        world.apply(&database(&world, name, "")).await;
    }
    for name in ["one", "two"] {
        world.wait_condition(&api, name, READY, "True", None).await;
    }
    let keys = |world: &World| {
        let mut keys: Vec<String> = world
            .proxy
            .calls()
            .into_iter()
            .map(|call| call.access_key_id)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    assert_eq!(keys(&world), [KEYS[0]], "only the leader calls AWS");
    let standby_metrics = standby
        .admin_get("/metrics")
        .expect("the standby's /metrics");
    assert_eq!(sample(&standby_metrics, "tether_leader"), Some(0.0));
    assert!(standby.admin_get("/readyz").is_ok(), "a standby is ready");

    // SIGTERM: the leader releases the lease, and the standby takes it at once.
    let renewed_before_stop = lease_time(&leases, |spec| spec.renew_time).await;
    let mut leader = std::mem::replace(&mut world.tether, standby);
    // Stopping blocks; the proxy the leader's last calls go through runs here.
    let stopped = tokio::task::spawn_blocking(move || leader.stop())
        .await
        .expect("stopping the leader");
    assert!(stopped, "the leader stops cleanly on SIGTERM");
    let (second_holder, took) =
        hand_over(&leases, "tether", &first_holder, Duration::from_secs(2)).await;
    eprintln!("hand-over after SIGTERM: {took:?}");
    let acquired = lease_time(&leases, |spec| spec.acquire_time).await;
    assert!(
        acquired < renewed_before_stop + k8s_openapi::jiff::SignedDuration::from_secs(8),
        "the standby took the released lease before it could expire (renewed {renewed_before_stop}, \
         acquired {acquired}, lease 8 s)"
    );
    world.apply(&database(&world, "three", "")).await;
    world
        .wait_condition(&api, "three", READY, "True", None)
        .await;
    assert!(
        keys(&world).contains(&KEYS[1].to_owned()),
        "the new leader calls AWS"
    );

    // SIGKILL: the lease expires, and a third replica takes over.
    let third = start_replica(KEYS[2]);
    world.tether.kill();
    world.tether = third;
    let (_, took) = hand_over(&leases, "tether", &second_holder, Duration::from_secs(8)).await;
    eprintln!("hand-over after SIGKILL: {took:?}");
    world.apply(&database(&world, "four", "")).await;
    for name in ["one", "two", "three", "four"] {
        world.wait_condition(&api, name, READY, "True", None).await;
    }
    assert!(
        keys(&world).contains(&KEYS[2].to_owned()),
        "the third replica calls AWS"
    );
    assert_eq!(
        world.proxy.count("CreateDBInstance"),
        4,
        "one database per object across both hand-overs: {:?}",
        world.proxy.counts()
    );
    world.finish().await;
}

/// Polls `check` every 100 ms until it holds; fails with `what` after 60 s (a bound
/// for a stuck test, not a measure).
async fn eventually<F>(what: &str, mut check: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not happen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The access key of the replica that leads first, and of its standby.
const OLD: &str = "AKIAOLDLEADER0000000";
const NEW: &str = "AKIANEWLEADER0000000";
/// Their lease: renewed every 3 s, written under for 6 s after a renewal.
const LEASE: &str = "9s";
const DESCRIBE: &str = "DescribeSecurityGroups";

/// How many of `calls` are `operation`s signed with `key`.
fn calls_by(calls: &[Call], key: &str, operation: &str) -> usize {
    calls
        .iter()
        .filter(|call| call.access_key_id == key && call.operation == operation)
        .count()
}

/// A world whose replica (key [`OLD`]) holds the lease, and a standby (key [`NEW`]);
/// returns the standby and the leader's identity in the lease.
async fn leader_and_standby() -> (World, Tether, String) {
    let world = World::start_with(|ns| replica_leasing(ns, OLD, LEASE)).await;
    let leases: Api<Lease> = world.ns.api();
    eventually("the first replica takes the lease", || async {
        holder(&leases, "tether").await.is_some()
    })
    .await;
    let leader = holder(&leases, "tether").await.expect("checked above");
    let standby = Tether::start_with(
        TETHER,
        &world.ns.name,
        ControlPlane::shared().kubeconfig(),
        replica_leasing(&world.ns.name, NEW, LEASE),
    );
    (world, standby, leader)
}

/// Stalls the leader (SIGSTOP) inside its `read`th read of security groups (held 3 s
/// by the proxy) until the standby has taken the lease and the read is answered, then
/// resumes it: from the stall on, it must send AWS nothing but reads, and it must exit
/// with an error. The standby is the world's controller afterwards.
async fn stall_the_leader_past_its_lease_inside_read(
    world: &mut World,
    standby: Tether,
    leader: &str,
    read: usize,
) {
    eventually("the leader's read reaches the proxy", || async {
        calls_by(&world.proxy.held(), OLD, DESCRIBE) >= read
    })
    .await;
    world.tether.pause();
    // Nothing the leader sends from here on is in the proxy's calls yet.
    let stalled_at = world.proxy.calls().len();
    let leases: Api<Lease> = world.ns.api();
    let (new_leader, took) = hand_over(&leases, "tether", leader, Duration::from_secs(9 + 2)).await;
    eprintln!("{new_leader} took the lease {took:?} after the leader stalled");
    eventually("the stalled leader's read is answered", || async {
        calls_by(&world.proxy.calls(), OLD, DESCRIBE) >= read
    })
    .await;
    world.tether.resume();
    let resumed = Instant::now();

    let writes_by_old = |world: &World| -> Vec<String> {
        world
            .proxy
            .calls()
            .into_iter()
            .skip(stalled_at)
            .filter(|call| call.access_key_id == OLD && !call.operation.starts_with("Describe"))
            .map(|call| call.operation)
            .collect()
    };
    let status = loop {
        let writes = writes_by_old(world);
        assert!(
            writes.is_empty(),
            "the old leader wrote to AWS after it lost the lease: {writes:?}; its log ends:\n{}",
            world.log_tail()
        );
        if let Some(status) = world.tether.exited() {
            eprintln!(
                "the old leader exited {:?} after it resumed",
                resumed.elapsed()
            );
            break status;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(60),
            "the old leader did not exit after it lost the lease; its log ends:\n{}",
            world.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let writes = writes_by_old(world);
    assert!(writes.is_empty(), "the old leader wrote to AWS: {writes:?}");
    assert!(!status.success(), "losing the lease is an error: {status}");
    assert!(
        world.tether.log().contains("lost the leader lease"),
        "its log says why it stopped:\n{}",
        world.log_tail()
    );
    world.proxy.clear_faults();
    world.tether = standby;
}

#[tokio::test]
async fn a_leader_stalled_past_its_lease_just_before_a_create_creates_nothing_when_it_resumes_and_exits()
 {
    let (mut world, standby, leader) = leader_and_standby().await;
    world
        .proxy
        .inject(DESCRIBE, Fault::Latency(Duration::from_secs(3)), None);
    world.apply(&security_group(&world, "web", "")).await;
    let groups: Api<SecurityGroup> = world.ns.api();
    // The first reconcile reads the group (missing) and adds the finalizer, making no
    // cloud write; the next one reads it again, to create it.
    eventually("the finalizer goes on", || async {
        groups.get("web").await.is_ok_and(|group| {
            group
                .metadata
                .finalizers
                .is_some_and(|finalizers| finalizers.iter().any(|f| f == "tether.dev/finalizer"))
        })
    })
    .await;
    stall_the_leader_past_its_lease_inside_read(&mut world, standby, &leader, 2).await;

    // The new leader creates the group, once.
    world
        .wait_condition(&groups, "web", READY, "True", None)
        .await;
    assert_eq!(
        calls_by(&world.proxy.calls(), NEW, "CreateSecurityGroup"),
        1,
        "the new leader creates the group: {:?}",
        world.proxy.counts()
    );
    assert_eq!(world.proxy.count("CreateSecurityGroup"), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_leader_stalled_past_its_lease_just_before_a_deletion_deletes_nothing_when_it_resumes_and_exits()
 {
    let (mut world, standby, leader) = leader_and_standby().await;
    // No routine check reads the group meanwhile: the one read held is the deletion's.
    let group = security_group(&world, "web", "").replacen(
        "metadata: {name: web}",
        "metadata: {name: web, annotations: {tether.dev/poll-interval: 1h}}",
        1,
    );
    world.apply(&group).await;
    let groups: Api<SecurityGroup> = world.ns.api();
    world
        .wait_condition(&groups, "web", READY, "True", None)
        .await;
    world
        .proxy
        .inject(DESCRIBE, Fault::Latency(Duration::from_secs(3)), None);
    groups
        .delete("web", &DeleteParams::default())
        .await
        .expect("deleting the SecurityGroup");
    // Deletion reads the group directly, then deletes it.
    stall_the_leader_past_its_lease_inside_read(&mut world, standby, &leader, 1).await;

    // The new leader deletes the group, once.
    world.wait_gone(&groups, "web").await;
    assert_eq!(
        calls_by(&world.proxy.calls(), NEW, "DeleteSecurityGroup"),
        1,
        "the new leader deletes the group: {:?}",
        world.proxy.counts()
    );
    assert_eq!(world.proxy.count("DeleteSecurityGroup"), 1);
    world.finish().await;
}
