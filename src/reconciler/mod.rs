//! The generic managed-resource controller: watches one kind and keeps each object's
//! cloud resource in line with it through the kind's provider.
//!
//! The order of one reconcile is DESIGN.md's: annotations → paused? → references →
//! connect → connection Secret ownership → observe → delete per policy, or create,
//! update, or nothing → publish the connection Secret → status → requeue with jitter.

mod error;
mod ownership;
mod pacing;
mod reconcile;
mod references;
mod status;

use std::{sync::Arc, time::Duration};

use futures::{
    FutureExt, StreamExt,
    future::{self, BoxFuture},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    core::{DynamicObject, PartialObjectMeta},
    runtime::{
        Controller, Predicate, WatchStreamExt,
        controller::{self, Action},
        events::{Recorder, Reporter},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tether_api::{
    external::Connector,
    managed::{BOOKKEEPING_ANNOTATIONS, Managed},
};

pub use error::{Error, Phase};

use crate::{
    connection_secret::{MANAGED_BY_LABEL, MANAGED_BY_VALUE},
    health::Health,
    metrics::Metrics,
};

/// How the controllers of every kind behave.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a Ready object's cloud resource is observed again (AWS sends no
    /// watch events); `tether.dev/poll-interval` overrides it per object.
    pub poll_interval: Duration,
    /// How often an object whose cloud resource is on its way (creating, modifying,
    /// deleting) or whose references are not Ready is looked at again.
    pub wait_interval: Duration,
    /// How many objects of one kind are reconciled at once.
    pub concurrency: u16,
    /// Name of this controller instance in Events.
    pub instance: Option<String>,
    /// The one namespace to reconcile; all when `None`.
    pub namespace: Option<String>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The process's readiness, which waits for every controller's cache.
    pub health: Arc<Health>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(300),
            wait_interval: Duration::from_secs(15),
            concurrency: 16,
            instance: None,
            namespace: None,
            metrics: Arc::default(),
            health: Arc::default(),
        }
    }
}

/// Everything the reconciles of one kind share.
struct Shared<C> {
    kube: kube::Client,
    connector: C,
    recorder: Recorder,
    settings: Settings,
    pacing: pacing::Pacing,
}

/// How long running reconciles get to finish after the shutdown signal. Cutting one
/// short is safe (every step is idempotent and credentials are published first); this
/// only saves a repeated cloud call after the restart.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The signal to stop, shared by every controller.
pub type Shutdown = future::Shared<BoxFuture<'static, ()>>;

/// Runs the controller of kind `M` until `shutdown` completes, letting running
/// reconciles finish (for up to [`SHUTDOWN_GRACE`]).
pub async fn run<M, C>(kube: kube::Client, connector: C, settings: Settings, shutdown: Shutdown)
where
    M: Managed,
    C: Connector<M>,
{
    let scoped = |kube: &kube::Client| match &settings.namespace {
        Some(namespace) => Api::<PartialObjectMeta<Secret>>::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    };
    let objects_api = match &settings.namespace {
        Some(namespace) => Api::<M>::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    };
    let (reader, writer) = reflector::store::<M>();
    let cache = settings.health.cache();
    // Status writes change neither generation, annotations nor finalizers, so they
    // never trigger another reconcile (and another round of cloud calls).
    let objects = watcher(objects_api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(cache.on_first_list())
        .applied_objects()
        .predicate_filter(
            predicates::generation::<M>
                .combine(annotations_but_bookkeeping)
                .combine(predicates::finalizers),
            Default::default(),
        );
    // A connection Secret that is changed or deleted by hand is put back.
    let connection_secrets = watcher(
        scoped(&kube),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
    )
    .default_backoff()
    .touched_objects();
    let recorder = Recorder::new(
        kube.clone(),
        Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: settings.instance.clone(),
        },
    );
    let mut controller = Controller::for_stream(objects, reader.clone())
        .owns_stream(connection_secrets)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown.clone());
    if M::READS_SECRETS {
        // A change to a Secret an object reads (a user-supplied password) reconciles
        // that object. Only metadata is watched: no Secret value is held in memory.
        let secrets = watcher(scoped(&kube), watcher::Config::default())
            .default_backoff()
            .touched_objects();
        let reader = reader.clone();
        controller = controller.watches_stream(secrets, move |secret| {
            let name = secret.name_any();
            referrers(&reader, secret.namespace(), |object| {
                object.secret_references().contains(&name)
            })
        });
    }
    for kind in M::referenced_kinds() {
        // A referenced object that changes (becomes Ready) reconciles the objects
        // waiting for it at once, not at their next look.
        let api = match &settings.namespace {
            Some(namespace) => Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(
                kube.clone(),
                namespace,
                &kind,
            ),
            None => Api::all_with(kube.clone(), &kind),
        };
        let referenced = watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects();
        let reader = reader.clone();
        let kind_name = kind.kind.clone();
        controller = controller.watches_stream_with(
            referenced,
            move |object| {
                let name = object.name_any();
                referrers(&reader, object.namespace(), |referrer| {
                    referrer.references().iter().any(|reference| {
                        reference.resource.kind == kind_name && reference.name == name
                    })
                })
            },
            kind,
        );
    }
    let shared = Arc::new(Shared {
        kube,
        connector,
        recorder,
        settings,
        pacing: pacing::Pacing::default(),
    });
    tracing::info!(kind = %M::kind(&()), "controller started");
    let running = controller
        .run(reconcile::reconcile, error_policy, shared)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "reconcile did not complete");
            }
        });
    // kube-runtime's graceful shutdown waits for the object cache, which never fills
    // when the signal comes before the first list: then nothing runs and there is
    // nothing to wait for.
    let deadline = async move {
        shutdown.await;
        if reader.wait_until_ready().now_or_never().is_some() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!(kind = %M::kind(&()), "reconciles still running after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
    };
    tokio::select! {
        () = running => {}
        () = deadline => {}
    }
    tracing::info!(kind = %M::kind(&()), "controller stopped");
}

/// A hash of the object's annotations without tether's bookkeeping ones: tether sets
/// and clears `tether.dev/create-pending` around every create, and a refused create
/// must not come straight back (it waits for a change or the next poll).
fn annotations_but_bookkeeping<M: Managed>(object: &M) -> Option<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    for entry in object
        .annotations()
        .iter()
        .filter(|(key, _)| !BOOKKEEPING_ANNOTATIONS.contains(&key.as_str()))
    {
        std::hash::Hash::hash(&entry, &mut hasher);
    }
    Some(std::hash::Hasher::finish(&hasher))
}

/// The objects in `namespace` (from the controller's cache) for which `refers` holds.
fn referrers<M: Managed>(
    reader: &Store<M>,
    namespace: Option<String>,
    refers: impl Fn(&M) -> bool,
) -> Vec<ObjectRef<M>> {
    reader
        .state()
        .into_iter()
        .filter(|object| object.namespace() == namespace && refers(object))
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}

/// Only Kubernetes API failures the reconcile could not record reach this point; the
/// object backs off like any other transient failure (5 s doubling to 10 min), so an
/// API server in trouble is not hammered by every object at a fixed rate.
fn error_policy<M: Managed, C>(object: Arc<M>, error: &Error, shared: Arc<Shared<C>>) -> Action {
    let retry_in = shared
        .pacing
        .failed(&object.uid().unwrap_or_default(), false);
    tracing::warn!(%error, name = object.name_any(), ?retry_in, "reconcile failed before its outcome could be recorded");
    Action::requeue(retry_in)
}
