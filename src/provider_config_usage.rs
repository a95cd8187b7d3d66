//! Keeps a ProviderConfig while managed objects use it, as Crossplane's
//! ProviderConfigUsage does: deleting a ProviderConfig in use leaves it Terminating
//! until the last object that names it is gone (the objects' own deletion still uses
//! it to delete their cloud resources), and its `InUse` condition says how many objects
//! use it and which.
//!
//! The connector adds the in-use finalizer before the first cloud call through a
//! ProviderConfig; this controller counts the users from the managed kinds' caches
//! (no watch of its own besides the ProviderConfigs'), says so in the condition, and
//! removes the finalizer with the last user. Like a class's finalizer, the finalizer
//! and the condition are per controller scope: a controller of one namespace holds and
//! reports for the objects in that namespace only.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tether_api::{
    conditions::{self, ConditionUpdate, reasons, set_condition},
    provider_config::ProviderConfig,
};

use crate::{
    crds, finalizers,
    reconciler::{Settings, SharedWatches, Shutdown},
};

/// The finalizer that holds a ProviderConfig while objects in a controller's scope use
/// it: `tether.dev/in-use` for a controller of every namespace,
/// `in-use.tether.dev/<ns>` for one that watches namespace `<ns>` only (so that
/// controllers of different namespaces never release each other's hold).
pub fn in_use_finalizer(namespace: Option<&str>) -> String {
    match namespace {
        None => "tether.dev/in-use".to_owned(),
        Some(namespace) => format!("in-use.tether.dev/{namespace}"),
    }
}

/// The condition type that says whether objects in a controller's scope use a
/// ProviderConfig: `InUse`, or `InUse.<ns>` for a controller of namespace `<ns>`.
pub fn in_use_condition(namespace: Option<&str>) -> String {
    match namespace {
        None => "InUse".to_owned(),
        Some(namespace) => format!("InUse.{namespace}"),
    }
}

/// How many users the condition names before it only counts.
const NAMED_USERS: usize = 5;

/// How long a ProviderConfig waits for the managed kinds' caches' first lists.
const CACHE_WAIT: Duration = Duration::from_secs(1);

/// How long the users must stay unchanged before the condition is written again: a
/// burst of new objects changes the count with each, and is then one write, not one
/// per few objects (0.27 writes per database when 100 were applied at once). The
/// finalizer does not wait for it: the connector adds it before the first cloud call.
const USERS_SETTLE: Duration = Duration::from_secs(1);

/// How long a failed reconcile waits before it is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Why a reconcile of a ProviderConfig did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing ProviderConfigs: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Crd(#[from] crds::Error),
}

/// The watch of ProviderConfigs of kind `K` for one controller scope: its cache, read
/// by the connectors, and its events, which drive the in-use controller.
pub struct ProviderConfigWatch<K: ProviderConfig> {
    store: Store<K>,
    events: futures::stream::BoxStream<'static, Result<K, watcher::Error>>,
}

impl<K: ProviderConfig> ProviderConfigWatch<K> {
    /// The watch of every ProviderConfig; runs with the in-use controller.
    pub fn new(kube: &kube::Client, settings: &Settings) -> Self {
        let (store, writer) = reflector::store::<K>();
        let events = watcher(Api::<K>::all(kube.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .inspect(settings.health.cache().on_first_list())
            .applied_objects()
            .boxed();
        Self { store, events }
    }

    /// The cached ProviderConfigs.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }
}

/// Everything the reconciles of the ProviderConfigs share.
struct Shared {
    kube: kube::Client,
    settings: Settings,
    watches: SharedWatches,
    finalizer: String,
    condition: &'static str,
}

/// Runs the in-use controller of ProviderConfigs of kind `K` until `shutdown`
/// completes. A change to any managed object reconciles the ProviderConfig it names.
pub async fn run<K: ProviderConfig>(
    kube: kube::Client,
    watch: ProviderConfigWatch<K>,
    settings: Settings,
    watches: &SharedWatches,
    shutdown: Shutdown,
) {
    let namespace = settings.namespace.clone();
    let shared = Arc::new(Shared {
        kube,
        finalizer: in_use_finalizer(namespace.as_deref()),
        // One per scope, made once for the life of the process.
        condition: Box::leak(in_use_condition(namespace.as_deref()).into_boxed_str()),
        settings,
        watches: watches.clone(),
    });
    let users_changed = named_provider_configs::<K>(watches.references.subscribe_every());
    let running = Controller::for_stream(watch.events, watch.store)
        .with_config(kube::runtime::controller::Config::default().debounce(USERS_SETTLE))
        .reconcile_on(users_changed)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::<K>, error_policy, shared)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "reconcile did not complete");
            }
        });
    tracing::info!(kind = %K::kind(&()), "in-use controller started");
    // As for the other controllers: stopping is bounded.
    let deadline = async move {
        shutdown.await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        () = running => {}
        () = deadline => {}
    }
    tracing::info!(kind = %K::kind(&()), "in-use controller stopped");
}

/// The ProviderConfig each changed managed object names.
fn named_provider_configs<K: ProviderConfig>(
    changes: impl Stream<Item = Arc<kube::core::DynamicObject>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    changes.filter_map(|object| {
        let name = object
            .data
            .pointer("/spec/providerConfigRef/name")
            .and_then(serde_json::Value::as_str)
            .map(ObjectRef::new);
        std::future::ready(name)
    })
}

/// Holds the ProviderConfig while objects in scope use it and says which; releases it
/// with the last of them.
async fn reconcile<K: ProviderConfig>(
    provider_config: Arc<K>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let name = provider_config.name_any();
    let Some(users) = shared.watches.references.users_of(&name) else {
        return Ok(Action::requeue(CACHE_WAIT));
    };
    let api: Api<K> = Api::all(shared.kube.clone());
    let deleting = provider_config.meta().deletion_timestamp.is_some();
    let held = provider_config.finalizers().contains(&shared.finalizer);
    let uninstalling = deleting && held && crds::being_deleted::<K>(&shared.kube).await?;
    if users.is_empty() || uninstalling {
        if finalizers::remove(&api, &*provider_config, &shared.finalizer).await? {
            tracing::info!(provider_config = %name, "no object uses the ProviderConfig any more; released it");
        }
        // Said only where this scope said it was in use: a controller of one namespace
        // writes nothing on the ProviderConfigs of others.
        if conditions::find(provider_config.conditions(), shared.condition).is_some() {
            let unused = ConditionUpdate::fails(
                shared.condition,
                "Unused",
                format!("no object {} uses it", scope_words(&shared.settings)),
            );
            write_condition(&api, &*provider_config, &shared, unused).await?;
        }
        return Ok(Action::await_change());
    }
    if !deleting && !held {
        // The connector adds it before the first cloud call; this covers an object
        // that reached the cache while the finalizer was being released. The same
        // apply as the connector's (manager named after the finalizer), so the two
        // never conflict.
        finalizers::add(&api, &*provider_config, &shared.finalizer).await?;
    }
    let named: Vec<&str> = users.iter().take(NAMED_USERS).map(String::as_str).collect();
    let more = match users.len().saturating_sub(NAMED_USERS) {
        0 => String::new(),
        more => format!(" and {more} more"),
    };
    let count = match users.len() {
        1 => "1 object".to_owned(),
        many => format!("{many} objects"),
    };
    let users_words = format!("{}{more}", named.join(", "));
    let in_use = if deleting {
        ConditionUpdate::holds(
            shared.condition,
            reasons::DELETION_WAITING,
            format!(
                "being deleted: waits until the {count} {} that use it are gone (their deletion uses it to delete their cloud resources): {users_words}",
                scope_words(&shared.settings)
            ),
        )
    } else {
        ConditionUpdate::holds(
            shared.condition,
            reasons::IN_USE,
            format!(
                "used by {count} {}: {users_words}",
                scope_words(&shared.settings)
            ),
        )
    };
    write_condition(&api, &*provider_config, &shared, in_use).await?;
    // Changes to the users come from their kinds' watches; this is a safety net.
    Ok(Action::requeue(shared.settings.poll_interval))
}

/// "in any namespace", or "in namespace <ns>".
fn scope_words(settings: &Settings) -> String {
    match &settings.namespace {
        None => "in any namespace".to_owned(),
        Some(namespace) => format!("in namespace {namespace}"),
    }
}

/// Applies `update` as this scope's condition when it changes the recorded one:
/// server-side apply of that one condition under the scope's own field manager, so
/// the conditions of other scopes stay.
async fn write_condition<K: ProviderConfig>(
    api: &Api<K>,
    provider_config: &K,
    shared: &Shared,
    update: ConditionUpdate,
) -> Result<(), Error> {
    let recorded = conditions::find(provider_config.conditions(), shared.condition);
    let mut written: Vec<_> = recorded.cloned().into_iter().collect();
    set_condition(
        &mut written,
        update,
        provider_config.meta().generation,
        k8s_openapi::jiff::Timestamp::now(),
    );
    if recorded == written.first() {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {"conditions": written},
    });
    api.patch_status(
        &provider_config.name_any(),
        &PatchParams::apply(&shared.finalizer).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn error_policy<K: ProviderConfig>(object: Arc<K>, error: &Error, _shared: Arc<Shared>) -> Action {
    tracing::warn!(%error, name = object.name_any(), "reconcile failed; retrying in {RETRY:?}");
    Action::requeue(RETRY)
}
