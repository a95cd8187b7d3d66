//! Prints how long objects wait for their first reconcile when a controller has more
//! due objects than slots: kube-runtime's own limit (`Config::concurrency`) against
//! tether's first-come-first-served turns (`tether::reconciler::turns`). The
//! reproduction of docs/kube-rs-fair-scheduling.md, run with
//! `cargo run --locked --example fair_turns` (no API server: kube-runtime's `applier`
//! over a store filled by hand).
//!
//! Every object's reconcile takes `WORK` and asks to be reconciled again at once, so
//! every object is always due: a fair scheduler reaches each object within
//! `OBJECTS × WORK ÷ SLOTS`.

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt, future::BoxFuture, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::ObjectMeta,
    runtime::{
        controller::{Action, Config, applier},
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tether::reconciler::turns::Turns;

/// Objects, all due from the start and again after every reconcile.
const OBJECTS: usize = 200;
/// Reconciles at a time.
const SLOTS: u16 = 4;
/// What one reconcile takes.
const WORK: Duration = Duration::from_millis(100);
/// How long each scheduler runs.
const WATCHED: Duration = Duration::from_secs(20);

/// Per object: when it was first reconciled and how often it was reconciled.
#[derive(Default)]
struct Record {
    first: HashMap<String, Duration>,
    reconciles: HashMap<String, usize>,
}

type Shared = Arc<(Instant, Mutex<Record>)>;

fn note(shared: &Shared, name: &str) {
    let (started, record) = &**shared;
    let mut record = record.lock().expect("record lock");
    record
        .first
        .entry(name.to_owned())
        .or_insert_with(|| started.elapsed());
    *record.reconciles.entry(name.to_owned()).or_default() += 1;
}

fn config_map(index: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("object-{index:03}")),
            namespace: Some("team".to_owned()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// The queue of an applier: object references, never ending (as a watch).
type Queue = Pin<Box<dyn Stream<Item = Result<ObjectRef<ConfigMap>, Infallible>> + Send>>;

/// A store holding every object (listed, so ready), its writer (kept, as a watch
/// keeps it), and a queue asking for each object once, in name order.
fn objects() -> (Store<ConfigMap>, Writer<ConfigMap>, Queue) {
    let (store, mut writer) = reflector::store::<ConfigMap>();
    let mut references = Vec::new();
    writer.apply_watcher_event(&watcher::Event::Init);
    for index in 0..OBJECTS {
        let object = config_map(index);
        references.push(ObjectRef::from_obj(&object));
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let queue = stream::iter(references.into_iter().map(Ok)).chain(stream::pending());
    (store, writer, Box::pin(queue))
}

/// Runs kube-runtime's applier for `WATCHED` with `concurrency` and `reconcile`,
/// and returns what it recorded.
async fn run(
    concurrency: u16,
    reconcile: impl FnMut(
        Arc<ConfigMap>,
        Arc<(Shared, Store<ConfigMap>)>,
    ) -> BoxFuture<'static, Result<Action, Infallible>>,
) -> Record {
    let (store, _writer, queue) = objects();
    let shared: Shared = Arc::new((Instant::now(), Mutex::new(Record::default())));
    let context = Arc::new((shared.clone(), store.clone()));
    let applied = applier(
        reconcile,
        |_, _: &Infallible, _| Action::await_change(),
        context,
        store,
        queue,
        Config::default().concurrency(concurrency),
    )
    .for_each(|_| async {});
    let _ = tokio::time::timeout(WATCHED, applied).await;
    let (_, record) = Arc::into_inner(shared).expect("the applier is dropped");
    record.into_inner().expect("record lock")
}

/// One reconcile: noted, `WORK` long, and due again at once.
async fn work(shared: &Shared, object: &ConfigMap) -> Action {
    note(shared, object.metadata.name.as_deref().unwrap_or_default());
    tokio::time::sleep(WORK).await;
    Action::requeue(Duration::from_millis(1))
}

/// Reconciles under kube-runtime's limit alone.
async fn kube_runtime_limit() -> Record {
    run(SLOTS, |object, context| {
        Box::pin(async move { Ok(work(&context.0, &object).await) })
    })
    .await
}

/// Reconciles with kube-runtime unbounded, each taking a turn first, as tether does.
async fn tether_turns() -> Record {
    let turns = Arc::new(Turns::new(SLOTS));
    run(0, move |object, context| {
        let turns = turns.clone();
        Box::pin(async move {
            let Some((object, _turn)) = turns.take(object, &context.1).await else {
                return Ok(Action::await_change());
            };
            Ok(work(&context.0, &object).await)
        })
    })
    .await
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    // Nearest rank: the smallest value with at least q of the values at or below it.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn print(title: &str, record: &Record) {
    let mut firsts: Vec<Duration> = record.first.values().copied().collect();
    firsts.sort();
    let never = OBJECTS - firsts.len();
    let counts: Vec<usize> = (0..OBJECTS)
        .map(|index| {
            let name = config_map(index).metadata.name.unwrap_or_default();
            record.reconciles.get(&name).copied().unwrap_or(0)
        })
        .collect();
    let total: usize = counts.iter().sum();
    println!("{title}:");
    println!(
        "  never reconciled after {} s: {never} of {OBJECTS}",
        WATCHED.as_secs()
    );
    if !firsts.is_empty() {
        println!(
            "  first reconcile of those reconciled: p50 {:.1} s, p99 {:.1} s, slowest {:.1} s",
            quantile(&firsts, 0.5).as_secs_f64(),
            quantile(&firsts, 0.99).as_secs_f64(),
            firsts[firsts.len() - 1].as_secs_f64(),
        );
    }
    println!(
        "  reconciles per object: fewest {}, most {}, {total} in all",
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
    );
}

#[tokio::main]
async fn main() {
    println!(
        "{OBJECTS} objects always due, {SLOTS} at a time, {} ms per reconcile: a fair \
         scheduler reaches every object within {:.1} s",
        WORK.as_millis(),
        WORK.as_secs_f64() * OBJECTS as f64 / f64::from(SLOTS),
    );
    print(
        "kube-runtime 5.0.0, Config::concurrency(4)",
        &kube_runtime_limit().await,
    );
    print(
        "tether's turns (kube-runtime unbounded, a FIFO semaphore of 4)",
        &tether_turns().await,
    );
}
