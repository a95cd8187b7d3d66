//! `make bench-scale`: tether at scale on a control plane and a moto of its own, with
//! the release build of `tether run` at its default settings, every AWS call counted by
//! the fault proxy. It prints the figures `docs/benchmarks.md` records: time from apply
//! to Ready (all; p50, p99 and max per kind; the objects not reconciled once 60 s after
//! the apply began), AWS calls per object to Ready by operation, steady-state
//! calls per object per hour, the cost of a restart, RSS and CPU, and the latency of a
//! new object while the others exist.
//!
//! Environment: `TETHER_BENCH_OBJECTS` (objects of each kind, default 1000; moto takes
//! at most 1000 DB instances), `TETHER_BENCH_SECRETS` (unrelated 4 KiB Secrets in other
//! namespaces, default 5000), `TETHER_BENCH_STEADY_SECONDS` (how long the steady state
//! is watched, default 660: one default poll interval and its jitter),
//! `TETHER_BENCH_ARGS` (`tether run` arguments added to the defaults, split at spaces,
//! e.g. `--kube-qps 1000 --kube-burst 2000`), `TETHER_BENCH_BINARY` (another build of
//! `tether` to run, to compare two commits).

// A benchmark: a panic here stops it, at its place.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tether_api::{
    conditions::{self, READY},
    managed::Managed,
};
use tether_aws::{ec2::Instance, rds::DBInstance};
use tether_testkit::{
    ControlPlane, Emulator, FaultProxy, TestNamespace, Tether, cluster,
    emulator::EmulatorKind,
    tether::{READS, WRITES},
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// When objects not yet reconciled once are counted, from the start of the apply.
const UNRECONCILED_AFTER: Duration = Duration::from_secs(60);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
        })
        .unwrap_or(default)
}

fn database(name: &str, provider_config: &str) -> String {
    format!(
        "apiVersion: rds.tether.dev/v1alpha1\nkind: DBInstance\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {provider_config}}}\n  deletionPolicy: Delete\n  engine: postgres\n  instanceClass: db.t3.micro\n  allocatedStorageGiB: 20\n  masterUsername: app\n  writeConnectionSecretToRef: {{name: {name}-db}}\n"
    )
}

fn instance(name: &str, provider_config: &str) -> String {
    format!(
        "apiVersion: ec2.tether.dev/v1alpha1\nkind: Instance\nmetadata: {{name: {name}}}\nspec:\n  providerConfigRef: {{name: {provider_config}}}\n  imageId: ami-0123456789abcdef0\n  instanceType: t3.micro\n  sshKey: {{generate: true}}\n  writeConnectionSecretToRef: {{name: {name}-ssh}}\n"
    )
}

/// When each object of one kind was first seen reconciled and first seen Ready, by
/// name.
#[derive(Default)]
struct Seen {
    /// First seen with tether's finalizer or any status condition: the first write a
    /// reconcile makes on the object (a reconcile that fails writes `Synced=False`).
    reconciled: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

/// What is seen of the objects of kind `M` in `namespace`, from a watch.
fn watch<M: Managed>(client: kube::Client, namespace: &str) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorded = seen.clone();
    let api: Api<M> = Api::namespaced(client, namespace);
    tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |object| {
                if let Ok(object) = object {
                    let mut seen = recorded.lock().unwrap();
                    let now = Instant::now();
                    if object
                        .finalizers()
                        .iter()
                        .any(|f| f == "tether.dev/finalizer")
                        || !object.conditions().is_empty()
                    {
                        seen.reconciled.entry(object.name_any()).or_insert(now);
                    }
                    if conditions::is_true(object.conditions(), READY) {
                        seen.ready.entry(object.name_any()).or_insert(now);
                    }
                }
                std::future::ready(())
            }),
    );
    seen
}

/// How many of `applied` were not reconciled once `after` the apply began
/// (`started`): not seen with the finalizer or a condition by then, or never.
fn never_reconciled(
    applied: &HashMap<String, Instant>,
    seen: &Mutex<Seen>,
    started: Instant,
    after: Duration,
) -> usize {
    let seen = seen.lock().unwrap();
    applied
        .keys()
        .filter(|name| {
            seen.reconciled
                .get(*name)
                .is_none_or(|at| at.saturating_duration_since(started) > after)
        })
        .count()
}

/// Applies `manifests` (name, YAML) 16 at a time; returns when each was applied.
async fn apply_all(
    client: &kube::Client,
    namespace: &str,
    manifests: Vec<(String, String)>,
) -> HashMap<String, Instant> {
    stream::iter(manifests)
        .map(|(name, yaml)| async move {
            cluster::apply(client, Some(namespace), &yaml)
                .await
                .unwrap_or_else(|error| panic!("applying {name}: {error}"));
            (name, Instant::now())
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Waits until every one of `names` was seen Ready; returns the seconds each took
/// from its apply, sorted.
async fn wait_all_ready(
    what: &str,
    applied: &HashMap<String, Instant>,
    seen: &Mutex<Seen>,
    limit: Duration,
) -> Vec<f64> {
    let started = Instant::now();
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            applied
                .keys()
                .filter(|name| seen.ready.contains_key(*name))
                .count()
        };
        if done == applied.len() {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "{done} of {} {what} Ready after {limit:?}",
            applied.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    let mut seconds: Vec<f64> = applied
        .iter()
        .map(|(name, at)| {
            seen.ready[name]
                .saturating_duration_since(*at)
                .as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The proxy's counts by operation, per object, sorted by operation.
fn per_object(counts: &HashMap<String, usize>, objects: usize) -> String {
    let sorted: BTreeMap<&String, &usize> = counts.iter().collect();
    sorted
        .iter()
        .map(|(operation, n)| format!("{operation} {:.3}", **n as f64 / objects as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `/proc` says of a process: its memory in MiB and its CPU seconds so far.
struct ProcessFigures {
    /// Resident memory now.
    rss: f64,
    /// Of it, anonymous memory: the heap, the stacks and what the allocator keeps.
    anonymous: f64,
    /// Of it, pages of files: the binary's code and data, and the shared libraries.
    files: f64,
    /// Resident memory at its peak.
    peak: f64,
    /// CPU seconds, user and system.
    cpu: f64,
}

impl ProcessFigures {
    /// `RSS … MiB (heap and stacks …, code and files …)`, the split of the resident memory.
    fn rss(&self) -> String {
        format!(
            "RSS {:.1} MiB ({:.1} heap and stacks, {:.1} code and files)",
            self.rss, self.anonymous, self.files
        )
    }
}

/// The memory and CPU figures of process `pid`.
fn process_figures(pid: u32) -> ProcessFigures {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let mib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ProcessFigures {
        rss: mib("VmRSS:"),
        anonymous: mib("RssAnon:"),
        files: mib("RssFile:") + mib("RssShmem:"),
        peak: mib("VmHWM:"),
        cpu: ticks / 100.0,
    }
}

/// Reconciles without an error of `kind` since the controller started, from /metrics.
fn reconciled(tether: &Tether, kind: &str) -> f64 {
    let metrics = tether.admin_get("/metrics").unwrap_or_default();
    let name = format!(r#"tether_reconciles_total{{kind="{kind}",result="ok"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name)?.parse().ok())
        .unwrap_or(0.0)
}

/// 5,000 (or `count`) unrelated Secrets of 4 KiB in ten other namespaces: what a busy
/// cluster holds, and what a controller that watches whole Secrets would cache.
async fn unrelated_secrets(client: &kube::Client, count: u64) {
    let namespaces: Vec<String> = (0..10).map(|i| format!("unrelated-{i}")).collect();
    for name in &namespaces {
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                },
            )
            .await
            .expect("creating a namespace");
    }
    let value = ByteString(vec![b'x'; 4096]);
    stream::iter(0..count)
        .map(|i| {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespaces[i as usize % 10]);
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(format!("unrelated-{i}")),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([("blob".to_owned(), value.clone())])),
                ..Secret::default()
            };
            async move { api.create(&PostParams::default(), &secret).await.map(drop) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the unrelated Secrets");
}

/// With `--features dhat-heap`: has the process write its heap profile (what it holds
/// now, by call site; what the allocator keeps but does not use is not in it) to `$TETHER_DHAT_FILE`, and prints where it is.
#[cfg(feature = "dhat-heap")]
async fn write_heap_profile(tether: &Tether) {
    let file = std::env::var("TETHER_DHAT_FILE").unwrap_or_else(|_| "dhat-heap.json".into());
    let _ = std::fs::remove_file(&file);
    // SAFETY: kill(2) sends a signal to a process id; it takes no pointer.
    unsafe { libc::kill(tether.pid() as libc::pid_t, libc::SIGUSR1) };
    let asked = Instant::now();
    while !tether.log().contains("wrote the heap profile") {
        assert!(
            asked.elapsed() < Duration::from_secs(120),
            "no heap profile written in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("  heap profile: {file} (scripts/heap-top.py {file} --per <objects>)");
}

#[cfg(not(feature = "dhat-heap"))]
async fn write_heap_profile(_: &Tether) {}

#[tokio::main]
async fn main() {
    let objects = setting("TETHER_BENCH_OBJECTS", 1000) as usize;
    let secrets = setting("TETHER_BENCH_SECRETS", 5000);
    let steady = Duration::from_secs(setting("TETHER_BENCH_STEADY_SECONDS", 660));

    let extra_args: Vec<String> = std::env::var("TETHER_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let settings = if extra_args.is_empty() {
        "default settings".to_owned()
    } else {
        format!("default settings but {}", extra_args.join(" "))
    };
    println!(
        "tether bench-scale: {objects} DBInstances + {objects} Instances, {secrets} unrelated 4 KiB Secrets, release build, {settings}"
    );
    let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .unwrap();
    let moto = tokio::task::spawn_blocking(|| Emulator::start(EmulatorKind::Moto))
        .await
        .unwrap();
    let proxy = FaultProxy::start(moto.endpoint()).await;
    let ns = TestNamespace::new_on(&control_plane).await;
    cluster::install_crds(&ns.client).await;
    let provider_config = ns.name.clone();
    cluster::apply(
        &ns.client,
        None,
        &format!(
            "apiVersion: tether.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {provider_config}}}\nspec:\n  region: us-east-1\n  endpoint: {}\n  credentials: {{source: Default}}\n",
            proxy.endpoint()
        ),
    )
    .await
    .expect("applying the ProviderConfig");
    let started = Instant::now();
    unrelated_secrets(&ns.client, secrets).await;
    println!(
        "  {secrets} unrelated Secrets created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut args = vec![
        "run".to_owned(),
        "--kubeconfig".to_owned(),
        control_plane.kubeconfig().display().to_string(),
    ];
    args.extend(extra_args);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
    ];
    // Another build of tether to compare with, when `TETHER_BENCH_BINARY` names one.
    let binary = std::env::var("TETHER_BENCH_BINARY").unwrap_or_else(|_| TETHER.to_owned());
    let mut tether = Tether::start_command(&binary, args, env);
    let started = process_figures(tether.pid());
    println!("  tether run started and ready: {}", started.rss());

    // Apply to Ready.
    let databases_seen = watch::<DBInstance>(ns.client.clone(), &ns.name);
    let instances_seen = watch::<Instance>(ns.client.clone(), &ns.name);
    proxy.reset_counts();
    let requests_before = tether.kube_requests();
    let started = Instant::now();
    // `objects` manifests named `<prefix>-<i>`, each with its name.
    let manifests = |prefix: &str, manifest: fn(&str, &str) -> String| -> Vec<(String, String)> {
        (0..objects)
            .map(|i| format!("{prefix}-{i}"))
            .map(|name| {
                let yaml = manifest(&name, &provider_config);
                (name, yaml)
            })
            .collect()
    };
    let databases = manifests("db", database);
    let instances = manifests("vm", instance);
    let (applied_databases, applied_instances) = tokio::join!(
        apply_all(&ns.client, &ns.name, databases),
        apply_all(&ns.client, &ns.name, instances)
    );
    let limit = Duration::from_secs(1800);
    let database_seconds =
        wait_all_ready("databases", &applied_databases, &databases_seen, limit).await;
    let instance_seconds =
        wait_all_ready("instances", &applied_instances, &instances_seen, limit).await;
    let all_ready = started.elapsed();
    let counts = proxy.counts();
    let at_ready = process_figures(tether.pid());
    println!("\napply to Ready ({objects} + {objects} objects applied together):");
    println!("  all Ready after {:.1} s", all_ready.as_secs_f64());
    for (kind, seconds, applied, seen) in [
        (
            "DBInstance",
            &database_seconds,
            &applied_databases,
            &databases_seen,
        ),
        (
            "Instance",
            &instance_seconds,
            &applied_instances,
            &instances_seen,
        ),
    ] {
        println!(
            "  {kind}: p50 {:.1} s, p99 {:.1} s, max {:.1} s; never reconciled {} s after the apply began: {}",
            percentile(seconds, 50.0),
            percentile(seconds, 99.0),
            seconds.last().copied().unwrap_or_default(),
            UNRECONCILED_AFTER.as_secs(),
            never_reconciled(applied, seen, started, UNRECONCILED_AFTER)
        );
    }
    println!(
        "    (never reconciled: without tether's finalizer and without any status condition, the first write of a reconcile)"
    );
    let calls: usize = counts.values().sum();
    println!(
        "  AWS calls: {calls} ({:.2} per object): {}",
        calls as f64 / (2 * objects) as f64,
        per_object(&counts, objects)
    );
    println!(
        "    (per object of its kind; CreateDBInstance and DescribeDBInstances are the databases', the EC2 calls the instances')"
    );
    let requests = tether.kube_requests();
    let (writes, by_request) = requests.per_object(&requests_before, 2 * objects, &WRITES);
    println!("  API server writes: {writes:.2} per object: {by_request}");
    let (reads, by_request) = requests.per_object(&requests_before, 2 * objects, &READS);
    println!("  API server reads: {reads:.2} per object: {by_request}");
    println!(
        "  tether run: peak RSS {:.1} MiB, {}, {:.1} CPU seconds so far",
        at_ready.peak,
        at_ready.rss(),
        at_ready.cpu
    );

    // Steady state at the default poll interval.
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.reset_counts();
    let cpu_before = process_figures(tether.pid()).cpu;
    tokio::time::sleep(steady).await;
    let counts = proxy.counts();
    let steady_figures = process_figures(tether.pid());
    let hours = steady.as_secs_f64() / 3600.0;
    let calls: usize = counts.values().sum();
    let describes: usize = counts
        .iter()
        .filter(|(operation, _)| operation.starts_with("Describe") || operation.starts_with("List"))
        .map(|(_, n)| n)
        .sum();
    println!("\nsteady state, watched for {:.0} s:", steady.as_secs_f64());
    println!(
        "  {calls} AWS calls: {:.4} per object per hour ({describes} reads: {:.4} per object per hour): {counts:?}",
        calls as f64 / (2 * objects) as f64 / hours,
        describes as f64 / (2 * objects) as f64 / hours
    );
    println!(
        "  tether run: {} (peak {:.1} MiB), {:.3} CPU seconds per minute",
        steady_figures.rss(),
        steady_figures.peak,
        (steady_figures.cpu - cpu_before) / (steady.as_secs_f64() / 60.0)
    );

    write_heap_profile(&tether).await;

    // Restart: the first pass re-verifies everything.
    proxy.reset_counts();
    let restarted = Instant::now();
    tokio::task::block_in_place(|| tether.kill_and_restart());
    loop {
        if reconciled(&tether, "DBInstance") >= objects as f64
            && reconciled(&tether, "Instance") >= objects as f64
        {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(900),
            "the restart did not re-verify every object in 15 min"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = proxy.counts();
    let calls: usize = counts.values().sum();
    let fresh = process_figures(tether.pid());
    println!("\nrestart (SIGKILL, then a new tether run):");
    println!(
        "  every object re-verified {:.1} s after the restart, with {calls} AWS calls ({:.4} per object): {counts:?}",
        restarted.elapsed().as_secs_f64(),
        calls as f64 / (2 * objects) as f64
    );
    println!(
        "  tether run: {} (peak {:.1} MiB), {:.1} CPU seconds",
        fresh.rss(),
        fresh.peak,
        fresh.cpu
    );

    // The fresh process at rest: a minute later, once its allocator was trimmed (the
    // figure above is the peak of re-verifying everything at once).
    tokio::time::sleep(Duration::from_secs(65)).await;
    let settled = process_figures(tether.pid());
    println!(
        "  a minute later: {} (peak {:.1} MiB)",
        settled.rss(),
        settled.peak
    );

    // New-object latency while the others exist: an Instance (moto holds no more
    // than 1000 DB instances).
    let mut latencies = Vec::new();
    for i in 0..5 {
        let before = proxy.count("RunInstances");
        let name = format!("new-{i}");
        let applied = Instant::now();
        cluster::apply(
            &ns.client,
            Some(&ns.name),
            &instance(&name, &provider_config),
        )
        .await
        .expect("applying a new instance");
        while proxy.count("RunInstances") == before {
            assert!(
                applied.elapsed() < Duration::from_secs(120),
                "no RunInstances for {name} in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(applied.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "\nnew object while {} exist: apply to RunInstances {:?} s (median {:.2} s)",
        2 * objects,
        latencies
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        latencies[latencies.len() / 2]
    );

    let stopped = tokio::task::spawn_blocking(move || tether.stop())
        .await
        .unwrap();
    assert!(stopped, "tether run exits cleanly on SIGTERM");
    drop(proxy);
    drop(moto);
    drop(control_plane);
}
