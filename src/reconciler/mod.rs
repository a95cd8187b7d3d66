//! The generic managed-resource controller: watches one kind and keeps each object's
//! cloud resource in line with it through the kind's provider.
//!
//! The order of one reconcile (the first step that applies is taken; decided in
//! `decision`, carried out in `reconcile`):
//!
//! 1. Let go: the object is being deleted, with tether's finalizer, and so is its
//!    CustomResourceDefinition (uninstalling): the cloud resource stays, the connection
//!    Secret loses its owner reference, the finalizer goes.
//! 2. Unreadable: tether's annotations cannot be read: `Synced=False` says why.
//! 3. Paused: `tether.dev/paused` is "true": `Synced=False` says so, nothing else.
//! 4. Throttled: the cloud throttles the object's ProviderConfig: look again when the
//!    pause ends.
//! 5. Delete: the object is being deleted, with the finalizer: resolve references →
//!    connect → observe → delete per policy what is this object's → remove the
//!    finalizer once the cloud reports the resource gone (or it is kept).
//! 6. Released: the object is being deleted, without the finalizer: nothing to do.
//! 7. Await the finalizer's event: this process added the finalizer and the cache does
//!    not show it yet: that event brings the object back.
//! 8. Add the finalizer: a new object: observe as in 9, with no cloud write (a create
//!    or update waits for the next reconcile), then add the finalizer: with a create's
//!    marks in one patch when the resource is missing (the next reconcile sends that
//!    create), on its own otherwise.
//! 9. Observe: resolve references → connect → load the connection Secret → read the
//!    Secret keys the spec names → observe → missing: create (or wait for a create
//!    already sent) | exists: refuse what is not this object's, else update the delta
//!    (unless ObserveOnly) or nothing → publish the connection Secret → write status →
//!    requeue after the poll interval (the wait interval while anything is on its way),
//!    with jitter. Credentials a create or update needs are published first, and that
//!    reconcile ends there.

mod decision;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod gated;
mod liveness;
mod ownership;
mod pacing;
mod reconcile;
mod references;
pub mod secret_keys;
mod status;
pub mod turns;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::{
    FutureExt, StreamExt,
    future::{self, BoxFuture},
};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller, Predicate, WatchStreamExt,
        controller::{self, Action},
        events::Reporter,
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tether_api::{
    external::Connector,
    managed::{BOOKKEEPING_ANNOTATIONS, EXTERNAL_NAME_ANNOTATION, Managed},
};

pub use error::{Error, Phase};

use crate::{
    events::Publisher,
    health::Health,
    leader::WriteGate,
    metrics::Metrics,
    namespace_watch::NamespaceWatch,
    secret_watch::{SecretNames, SecretWatch},
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
    /// Whether this replica may write: every create, update and delete of a cloud
    /// resource passes it first (always open without leader election).
    pub write_gate: WriteGate,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(600),
            wait_interval: Duration::from_secs(15),
            concurrency: 16,
            instance: None,
            namespace: None,
            metrics: Arc::default(),
            health: Arc::default(),
            write_gate: WriteGate::default(),
        }
    }
}

/// The watches the controllers of every kind share: one of the Secrets in scope and
/// one of the namespaces in scope (metadata only), and each managed kind's own,
/// published for the kinds that refer to it.
#[derive(Clone)]
pub struct SharedWatches {
    /// The Secrets in scope.
    pub secrets: SecretWatch,
    /// The namespaces in scope, with their labels.
    pub namespaces: NamespaceWatch,
    /// The managed kinds' caches and changes.
    pub references: references::Registry,
}

impl SharedWatches {
    /// The shared watches, with `secrets` and `namespaces`.
    pub fn new(secrets: SecretWatch, namespaces: NamespaceWatch) -> Self {
        Self {
            secrets,
            namespaces,
            references: references::Registry::default(),
        }
    }
}

/// Everything the reconciles of one kind share.
struct Shared<C> {
    kube: kube::Client,
    connector: C,
    events: Publisher,
    settings: Settings,
    pacing: pacing::Pacing,
    /// The caches of the kinds this kind's objects refer to.
    references: references::Registry,
    /// The names of the Secrets in scope (connection Secrets among them).
    secrets: SecretNames,
}

/// How long running reconciles get to finish after the shutdown signal. Cutting one
/// short is safe (every step is idempotent and credentials are published first); this
/// only saves a repeated cloud call after the restart.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The signal to stop, shared by every controller.
pub type Shutdown = future::Shared<BoxFuture<'static, ()>>;

/// Runs the controller of kind `M` until `shutdown` completes, letting running
/// reconciles finish (for up to [`SHUTDOWN_GRACE`]).
pub async fn run<M, C>(
    kube: kube::Client,
    connector: C,
    settings: Settings,
    shared_watches: &SharedWatches,
    shutdown: Shutdown,
) where
    M: Managed,
    C: Connector<M>,
{
    let objects_api = match &settings.namespace {
        Some(namespace) => Api::<M>::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    };
    let (reader, writer) = reflector::store::<M>();
    let cache = settings.health.cache();
    // Status writes change neither generation, annotations nor finalizers, so they
    // never trigger another reconcile (and another round of cloud calls).
    let index = Arc::new(SecretIndex::<M>::default());
    // This kind's cache and changes, for the controllers of kinds that refer to it.
    let changes = shared_watches.references.publish(reader.clone());
    let objects = watcher(objects_api, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(cache.on_first_list())
        .inspect({
            let index = index.clone();
            move |event| {
                if let Ok(event) = event {
                    index.apply(event);
                }
            }
        })
        .then(move |event| {
            let changes = changes.clone();
            async move {
                if let (Ok(event), Some(changes)) = (&event, changes) {
                    changes.send(event).await;
                }
                event
            }
        })
        .applied_objects()
        .predicate_filter(
            predicates::generation::<M>
                .combine(annotations_but_bookkeeping)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let events = Publisher::new(
        kube.clone(),
        Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: settings.instance.clone(),
        },
    );
    // One subscription to the shared, metadata-only Secret watch: a connection Secret
    // changed or deleted by hand is put back (its owner reference names the object),
    // and a change to a Secret an object reads (a user-supplied password) reconciles
    // that object (found through the index, not by scanning every object).
    let mut controller = Controller::for_stream(objects, reader.clone())
        .watches_stream(shared_watches.secrets.subscribe(), move |secret| {
            let mut objects = owners::<M>(&secret);
            if M::READS_SECRETS {
                objects.extend(index.referrers(secret.namespace(), &secret.name_any()));
            }
            objects
        })
        // A namespace whose labels change reconciles the objects in it: a
        // ProviderConfig's namespaceSelector may admit or refuse them now.
        .watches_stream(shared_watches.namespaces.subscribe(), {
            let reader = reader.clone();
            move |namespace| referrers(&reader, Some(namespace.name_any()), |_| true)
        })
        // Unbounded here: the reconciles take turns in `Turns`, first come first served.
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on(shutdown.clone());
    for kind in M::referenced_kinds() {
        // A referenced object that changes (becomes Ready) reconciles the objects
        // waiting for it at once, not at their next look.
        let referenced = shared_watches.references.subscribe(&kind);
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
        connector: gated::GatedConnector::new(connector, settings.write_gate.clone()),
        events,
        settings,
        pacing: pacing::Pacing::default(),
        references: shared_watches.references.clone(),
        secrets: shared_watches.secrets.cache().clone(),
    });
    tracing::info!(kind = %M::kind(&()), "controller started");
    let turns = Arc::new(turns::Turns::new(shared.settings.concurrency));
    let store = reader.clone();
    let running = controller
        .run(
            move |object, shared| in_turn(object, shared, turns.clone(), store.clone()),
            error_policy,
            shared,
        )
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

/// One reconcile of `object`, in its turn (see `turns`): of the object it holds only
/// its reference while it waits, and the reconcile's own state is allocated when the
/// turn comes, so the thousands that wait after a restart cost a few hundred bytes each.
async fn in_turn<M: Managed, C: Connector<M>>(
    object: Arc<M>,
    shared: Arc<Shared<C>>,
    turns: Arc<turns::Turns>,
    store: Store<M>,
) -> Result<Action, Error> {
    match turns.take(object, &store).await {
        // Boxed: inline, the reconcile's state (several KiB) would be part of every
        // waiting future.
        Some((object, _turn)) => Box::pin(reconcile::reconcile(object, shared)).await,
        None => Ok(Action::await_change()),
    }
}

/// What client-side `kubectl apply` keeps on an object: a copy of what was applied.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps less of a watched object in the cache: tether never reads the copy that
/// client-side `kubectl apply` keeps, and of the managed fields only who set the
/// external name (adoption). The object is never written back whole, so nothing is
/// lost on the server.
fn slim<M: Managed>(object: &mut M) {
    let meta = object.meta_mut();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    ownership::keep_only_annotation_owners(meta, EXTERNAL_NAME_ANNOTATION, crate::FIELD_MANAGER);
}

/// A hash of the object's annotations without tether's bookkeeping ones: tether sets
/// `tether.dev/create-pending` before every create (and clears it when the create is
/// refused or its resource seen, unless the resource turns Ready), and a refused create
/// must not come straight back (it waits for a change or the next poll). The external
/// name counts only when a user set it: tether records the name it creates under in
/// the same write as the create's mark.
fn annotations_but_bookkeeping<M: Managed>(object: &M) -> Option<u64> {
    let named_by_tether = !ownership::annotation_set_by_user(
        object.meta(),
        EXTERNAL_NAME_ANNOTATION,
        crate::FIELD_MANAGER,
    );
    let tethers_own = |key: &str| {
        BOOKKEEPING_ANNOTATIONS.contains(&key)
            || (named_by_tether && key == EXTERNAL_NAME_ANNOTATION)
    };
    let mut hasher = std::hash::DefaultHasher::new();
    for entry in object
        .annotations()
        .iter()
        .filter(|(key, _)| !tethers_own(key))
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

/// The objects of kind `O` among `object`'s owners (a connection Secret's object, a
/// managed object's claim).
pub(crate) fn owners<O>(object: &impl ResourceExt) -> Vec<ObjectRef<O>>
where
    O: kube::Resource<DynamicType = ()>,
{
    let namespace = object.namespace().unwrap_or_default();
    object
        .owner_references()
        .iter()
        .filter(|owner| owner.kind == O::kind(&()) && owner.api_version == O::api_version(&()))
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace))
        .collect()
}

/// Which objects read which Secrets (`Managed::secret_references`), kept in step with
/// the objects' watch, so a Secret change finds its readers without a scan.
struct SecretIndex<M: Managed> {
    inner: std::sync::Mutex<IndexState<M>>,
}

struct IndexState<M: Managed> {
    /// (namespace, Secret name) → the objects that read it.
    readers: HashMap<(String, String), HashSet<ObjectRef<M>>>,
    /// Object → the Secrets it reads, to undo its entries when it changes or goes.
    reads: HashMap<ObjectRef<M>, Vec<(String, String)>>,
    /// Objects of a relist in progress, swapped in when it completes.
    relist: Option<Vec<M>>,
}

impl<M: Managed> Default for SecretIndex<M> {
    fn default() -> Self {
        Self {
            inner: std::sync::Mutex::new(IndexState {
                readers: HashMap::new(),
                reads: HashMap::new(),
                relist: None,
            }),
        }
    }
}

impl<M: Managed> SecretIndex<M> {
    fn apply(&self, event: &watcher::Event<M>) {
        if !M::READS_SECRETS {
            return;
        }
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(object) => state.set(object, true),
            watcher::Event::Delete(object) => state.set(object, false),
            watcher::Event::Init => state.relist = Some(Vec::new()),
            watcher::Event::InitApply(object) => {
                if let Some(relist) = &mut state.relist {
                    relist.push(object.clone());
                }
            }
            watcher::Event::InitDone => {
                let relist = state.relist.take().unwrap_or_default();
                state.readers.clear();
                state.reads.clear();
                for object in &relist {
                    state.set(object, true);
                }
            }
        }
    }

    fn referrers(&self, namespace: Option<String>, name: &str) -> Vec<ObjectRef<M>> {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state
            .readers
            .get(&(namespace.unwrap_or_default(), name.to_owned()))
            .map(|objects| objects.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl<M: Managed> IndexState<M> {
    /// Records what `object` reads now (`present`), or forgets it.
    fn set(&mut self, object: &M, present: bool) {
        let key = ObjectRef::from_obj(object);
        for secret in self.reads.remove(&key).unwrap_or_default() {
            if let Some(objects) = self.readers.get_mut(&secret) {
                objects.remove(&key);
                if objects.is_empty() {
                    self.readers.remove(&secret);
                }
            }
        }
        if !present {
            return;
        }
        let namespace = object.namespace().unwrap_or_default();
        let secrets: Vec<_> = object
            .secret_references()
            .into_iter()
            .map(|name| (namespace.clone(), name))
            .collect();
        for secret in &secrets {
            self.readers
                .entry(secret.clone())
                .or_default()
                .insert(key.clone());
        }
        if !secrets.is_empty() {
            self.reads.insert(key, secrets);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::fake::{FakeKind, fake};

    fn readers(index: &SecretIndex<FakeKind>, namespace: &str, secret: &str) -> Vec<String> {
        let mut names: Vec<_> = index
            .referrers(Some(namespace.to_owned()), secret)
            .into_iter()
            .map(|object| object.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_index_follows_the_objects_through_changes_deletions_and_relists() {
        let index = SecretIndex::<FakeKind>::default();
        index.apply(&watcher::Event::Apply(fake("orders", Some("admin"))));
        index.apply(&watcher::Event::Apply(fake("billing", Some("admin"))));
        index.apply(&watcher::Event::Apply(fake("plain", None)));
        assert_eq!(readers(&index, "shop", "admin"), ["billing", "orders"]);
        assert!(readers(&index, "other", "admin").is_empty());

        // A changed reference moves; a deleted object is forgotten.
        index.apply(&watcher::Event::Apply(fake("orders", Some("orders-admin"))));
        index.apply(&watcher::Event::Delete(fake("billing", Some("admin"))));
        assert!(readers(&index, "shop", "admin").is_empty());
        assert_eq!(readers(&index, "shop", "orders-admin"), ["orders"]);

        // A relist replaces everything once it completes.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(fake("billing", Some("admin"))));
        assert_eq!(readers(&index, "shop", "orders-admin"), ["orders"]);
        index.apply(&watcher::Event::InitDone);
        assert!(readers(&index, "shop", "orders-admin").is_empty());
        assert_eq!(readers(&index, "shop", "admin"), ["billing"]);
    }

    #[tokio::test]
    async fn a_reconcile_waiting_for_its_turn_holds_a_few_hundred_bytes() {
        let (kube, events) = fake::FakeApi::default().client_and_events();
        let shared = Arc::new(Shared {
            kube,
            connector: fake::FakeConnector(fake::FakeClient::default()),
            events,
            settings: Settings::default(),
            pacing: pacing::Pacing::default(),
            references: references::Registry::default(),
            secrets: SecretNames::default(),
        });
        let (store, _writer) = reflector::store::<FakeKind>();
        let waiting = in_turn(
            Arc::new(fake("orders", Some("admin"))),
            shared,
            Arc::new(turns::Turns::new(1)),
            store,
        );
        let size = std::mem::size_of_val(&waiting);
        eprintln!("a waiting reconcile holds {size} bytes");
        assert!(size <= 512, "a waiting reconcile holds {size} bytes");
    }

    #[test]
    fn a_secret_maps_to_its_owners_of_this_kind_only() {
        let owner = |kind: &str, api_version: &str, name: &str| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
                uid: "u".into(),
                ..Default::default()
            }
        };
        let mut secret = crate::secret_watch::SecretMeta::default();
        secret.metadata.name = Some("orders".into());
        secret.metadata.namespace = Some("shop".into());
        secret.metadata.owner_references = Some(vec![
            owner("FakeKind", "fake.tether.dev/v1", "orders"),
            owner("Instance", "ec2.tether.dev/v1alpha1", "web"),
            owner("FakeKind", "example.com/v1", "imposter"),
        ]);
        let owners = owners::<FakeKind>(&secret);
        assert_eq!(owners, [ObjectRef::new("orders").within("shop")]);
    }
}
