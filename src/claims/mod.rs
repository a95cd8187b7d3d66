//! The self-service controllers, one pair per claim kind: the claim controller turns
//! each admitted claim into its managed object (same namespace, owned by the claim)
//! and reports that object's state on the claim; the class controller keeps a class
//! from disappearing while claims use it.
//!
//! Neither makes a cloud call: the managed object's own controller does, so a refused
//! claim costs the cloud nothing.

mod admission;
mod class;
mod reconcile;

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    core::ApiResource,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::Reporter,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tether_api::claim::Claim;

use self::admission::Grants;
use crate::{
    events::Publisher,
    reconciler::{self, Settings, SharedWatches, Shutdown},
};

/// The finalizer that keeps a claim until its managed object is gone.
pub const CLAIM_FINALIZER: &str = "tether.dev/claim";

/// The finalizer that keeps a class while claims in this controller's scope use it:
/// `tether.dev/claims` for a controller of every namespace, `claims.tether.dev/<ns>`
/// for one that watches namespace `<ns>` only (so that controllers of different
/// namespaces never release each other's hold).
pub fn class_finalizer(namespace: Option<&str>) -> String {
    match namespace {
        None => "tether.dev/claims".to_owned(),
        Some(namespace) => format!("claims.tether.dev/{namespace}"),
    }
}

/// Why a reconcile of a claim or a class did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing Kubernetes objects: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Crd(#[from] crate::crds::Error),
    /// Not a failure: the claim's managed object is still being deleted, so the
    /// claim's finalizer stays.
    #[error("waiting for the claim's resource to be deleted")]
    WaitingForDeletion,
}

/// Everything the reconciles of one claim kind and its class share.
struct Shared<C: Claim> {
    kube: kube::Client,
    events: Publisher,
    settings: Settings,
    /// The claims in scope, as the claim controller's cache holds them.
    claims: Store<C>,
    /// Whether that cache has had its first complete list.
    claims_listed: Arc<AtomicBool>,
    /// The class finalizer of this controller's scope.
    class_finalizer: String,
    /// What the limits granted lately; every admission decision holds this lock.
    grants: Mutex<Grants>,
}

impl<C: Claim> Shared<C> {
    fn grants(&self) -> MutexGuard<'_, Grants> {
        self.grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long a failed reconcile waits before it is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Runs the controllers of claim kind `C` and its class until `shutdown` completes.
pub async fn run<C: Claim>(
    kube: kube::Client,
    settings: Settings,
    shared_watches: &SharedWatches,
    shutdown: Shutdown,
) {
    let claims_api = scoped::<C>(&kube, settings.namespace.as_deref());
    let classes_api = Api::<C::Class>::all(kube.clone());
    // One watch of the claims and one of the classes: each feeds its own controller and
    // cache, and wakes the other controller through its changes (deletions included).
    let (claim_changes, claim_changed) = changes::<C>();
    let (class_changes, class_changed) = changes::<C::Class>();
    let (claims, writer) = reflector::store::<C>();
    let claims_listed = Arc::new(AtomicBool::new(false));
    let listed = claims_listed.clone();
    let claim_events = watcher(claims_api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(settings.health.cache().on_first_list())
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                listed.store(true, Ordering::Release);
            }
        })
        .then(move |event| forward(claim_changes.clone(), event))
        .applied_objects();
    let (classes, class_writer) = reflector::store::<C::Class>();
    let class_events = watcher(classes_api, watcher::Config::default())
        .default_backoff()
        .reflect(class_writer)
        .then(move |event| forward(class_changes.clone(), event))
        .applied_objects();
    let claim_controller = Controller::for_stream(claim_events, claims.clone());
    let events = Publisher::new(
        kube.clone(),
        Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: settings.instance.clone(),
        },
    );
    let shared = Arc::new(Shared {
        kube,
        events,
        class_finalizer: class_finalizer(settings.namespace.as_deref()),
        settings,
        claims: claims.clone(),
        claims_listed,
        grants: Mutex::default(),
    });
    let concurrency = shared.settings.concurrency;
    // A claim's managed object changing reconciles the claim; the changes come from the
    // managed kind's own watch (no second watch of that kind).
    let managed_kind = ApiResource::erase::<C::Managed>(&());
    let claim_controller = claim_controller.watches_stream_with(
        shared_watches.references.subscribe(&managed_kind),
        |object| reconciler::owners::<C>(&object),
        managed_kind,
    );
    let claims_running = claim_controller
        .watches_stream(subscribe(&class_changed), move |class| {
            users(&claims, &class.name_any())
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::reconcile, error_policy, shared.clone())
        .for_each(log_outcome);
    let classes_running = Controller::for_stream(class_events, classes)
        .watches_stream(subscribe(&claim_changed), |claim: C| {
            Some(ObjectRef::new(claim.class_name()))
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(class::reconcile, error_policy, shared)
        .for_each(log_outcome);
    tracing::info!(kind = %C::kind(&()), "claim controller started");
    // As for managed kinds: kube-runtime's graceful shutdown can wait for a cache that
    // never fills, so stopping is bounded.
    let deadline = async move {
        shutdown.await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        _ = futures::future::join(claims_running, classes_running) => {}
        () = deadline => {}
    }
    tracing::info!(kind = %C::kind(&()), "claim controller stopped");
}

/// How many changes wait for the other controller before a watch waits for it.
const BUFFER: usize = 1024;

/// The sending and the receiving end of the changes of kind `K`.
fn changes<K>() -> (
    async_broadcast::Sender<Arc<K>>,
    async_broadcast::InactiveReceiver<Arc<K>>,
) {
    let (mut sender, receiver) = async_broadcast::broadcast(BUFFER);
    // Nobody subscribed (the other controller stopped): changes go nowhere.
    sender.set_await_active(false);
    (sender, receiver.deactivate())
}

/// Hands the object `event` touches (applied or deleted) to the subscribers of
/// `changes`, waiting for them when their buffer is full; passes the event on.
async fn forward<K: Clone>(
    changes: async_broadcast::Sender<Arc<K>>,
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Result<watcher::Event<K>, watcher::Error> {
    if let Ok(
        watcher::Event::Apply(object)
        | watcher::Event::Delete(object)
        | watcher::Event::InitApply(object),
    ) = &event
    {
        let _ = changes.broadcast_direct(Arc::new(object.clone())).await;
    }
    event
}

/// The changes of `changes` from now on, as a controller's trigger stream takes them.
fn subscribe<K: Clone>(
    changes: &async_broadcast::InactiveReceiver<Arc<K>>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + use<K> {
    changes
        .activate_cloned()
        .map(|object| Ok(Arc::unwrap_or_clone(object)))
}

/// The claims (from the cache) that use class `class`.
fn users<C: Claim>(claims: &Store<C>, class: &str) -> Vec<ObjectRef<C>> {
    claims
        .state()
        .into_iter()
        .filter(|claim| claim.class_name() == class)
        .map(|claim| ObjectRef::from_obj(&*claim))
        .collect()
}

/// Objects of kind `K` in the controller's namespace, or in all.
fn scoped<K>(kube: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    }
}

async fn log_outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(error) = result {
        tracing::debug!(error = %error, "reconcile did not complete");
    }
}

/// Kubernetes API failures are retried shortly; a claim whose resource is being
/// deleted is looked at again at the wait interval (and as soon as the resource goes).
fn error_policy<K: kube::Resource<DynamicType = ()>, C: Claim>(
    object: Arc<K>,
    error: &Error,
    shared: Arc<Shared<C>>,
) -> Action {
    if let Error::WaitingForDeletion = error {
        return Action::requeue(shared.settings.wait_interval);
    }
    tracing::warn!(%error, kind = %K::kind(&()), name = object.name_any(), "reconcile failed; retrying in {RETRY:?}");
    Action::requeue(RETRY)
}
