//! Connects managed objects to AWS: reads the object's `ProviderConfig`, checks that it
//! may be used from the object's namespace and that its credentials are there, holds it
//! in use, builds its SDK configuration once per ProviderConfig generation, and hands
//! out the kind's client.
//!
//! Every AWS call for an object goes through [`Connector::connect`] first, deletion
//! included, so a namespace the ProviderConfig's `namespaceSelector` does not select
//! never reaches AWS with its keys. Building a configuration calls nothing in AWS, so a
//! controller pointed at moto or LocalStack starts without touching the network.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};
use serde_json::json;
use tether_api::{
    external::{Connector, ExternalClient, ProviderError},
    managed::Managed,
    provider_config::{NOT_PERMITTED, namespace_selected},
    telemetry::CallObserver,
};

use crate::{
    ProviderConfig,
    call_metrics::AwsConfig,
    sdk_config::{self, SecretKeys},
};

/// The metadata of one namespace (its labels), as a metadata-only watch keeps it.
pub type NamespaceMeta = PartialObjectMeta<Namespace>;

/// What the connectors of one controller scope (all namespaces, or one) read besides
/// the objects themselves.
#[derive(Clone)]
pub struct Scope {
    /// The ProviderConfigs, from a watch.
    pub provider_configs: Store<ProviderConfig>,
    /// The namespaces in scope with their labels, from a metadata-only watch.
    pub namespaces: Store<NamespaceMeta>,
    /// The finalizer that holds a ProviderConfig while this scope's objects use it.
    pub in_use_finalizer: String,
}

/// An SDK configuration built from one ProviderConfig generation.
#[derive(Clone)]
struct Built {
    generation: i64,
    config: AwsConfig,
    /// The credentials Secret it reads keys from, if any.
    secret: Option<SecretKeys>,
}

/// SDK configurations by ProviderConfig name, each with the generation it was built
/// from; shared by the connectors of every kind. ProviderConfigs and namespaces are
/// read from watch caches, so a reconcile costs no API request for them.
#[derive(Clone)]
pub struct SdkConfigs {
    kube: kube::Client,
    scope: Scope,
    built: Arc<Mutex<HashMap<String, Built>>>,
    /// When this process added its in-use finalizer to each ProviderConfig, by UID;
    /// one reconcile adds it at a time (see [`SdkConfigs::hold`]).
    held: Arc<tokio::sync::Mutex<HashMap<String, Instant>>>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// How long after adding its in-use finalizer to a ProviderConfig a reconcile whose
/// cached copy does not show it yet takes it as added: the cache shows a write within
/// a second or two. Past it, a finalizer the cache still does not show was removed by
/// someone, and is added again.
const HELD_RECENTLY: Duration = Duration::from_secs(30);

impl SdkConfigs {
    /// An empty cache that reads ProviderConfigs and namespaces from `scope`'s caches
    /// (and through `kube` while those have not listed yet). Clients built from its
    /// configurations report every AWS call to `observer`, if given.
    pub fn new(kube: kube::Client, scope: Scope, observer: Option<Arc<dyn CallObserver>>) -> Self {
        Self {
            kube,
            scope,
            built: Arc::default(),
            held: Arc::default(),
            observer,
        }
    }

    /// The configuration of ProviderConfig `name` for an object in `namespace` (being
    /// deleted: `deleting`), and the generation it reflects, built now if the
    /// ProviderConfig is new or has changed. Refused when the ProviderConfig's
    /// `namespaceSelector` does not select `namespace`, or its credentials Secret is
    /// missing; the ProviderConfig is held in use (its finalizer) before the
    /// configuration is handed out.
    pub async fn get(
        &self,
        name: &str,
        namespace: &str,
        deleting: bool,
    ) -> Result<(i64, AwsConfig), ProviderError> {
        let provider_config = match self.scope.provider_configs.get(&ObjectRef::new(name)) {
            Some(cached) => cached,
            // Not in the cache (yet): it may have been applied a moment ago.
            None => Arc::new(self.read(name).await?),
        };
        self.permit(&provider_config, namespace).await?;
        self.hold(&provider_config, deleting).await?;
        let generation = provider_config.metadata.generation.unwrap_or_default();
        let cached = self
            .lock()
            .get(name)
            .filter(|built| built.generation == generation)
            .cloned();
        let built = match cached {
            Some(built) => built,
            None => self.build(&provider_config, generation).await?,
        };
        if let Some(secret) = &built.secret {
            secret
                .check()
                .await
                .map_err(|error| credentials_error(name, &error))?;
        }
        Ok((generation, built.config))
    }

    /// Builds and keeps the configuration of `provider_config` at `generation`.
    async fn build(
        &self,
        provider_config: &ProviderConfig,
        generation: i64,
    ) -> Result<Built, ProviderError> {
        let name = provider_config.name_any();
        let loaded = sdk_config::load_with_secret(&provider_config.spec, &self.kube)
            .await
            .map_err(|error| credentials_error(&name, &error))?;
        let built = Built {
            generation,
            config: AwsConfig::for_provider_config(loaded.sdk, &name, self.observer.clone()),
            secret: loaded.secret,
        };
        self.lock().insert(name, built.clone());
        Ok(built)
    }

    /// Fine when `provider_config` may be used for objects in `namespace`; else the
    /// refusal, naming both. No selector admits every namespace without a look at it.
    async fn permit(
        &self,
        provider_config: &ProviderConfig,
        namespace: &str,
    ) -> Result<(), ProviderError> {
        let Some(selector) = &provider_config.spec.namespace_selector else {
            return Ok(());
        };
        let name = provider_config.name_any();
        let labels = self.labels(namespace).await?;
        let refusal = match namespace_selected(Some(selector), &labels) {
            Ok(true) => return Ok(()),
            Ok(false) => format!(
                "ProviderConfig {name} may not be used in namespace {namespace}: its \
                 namespaceSelector does not select the namespace's labels"
            ),
            Err(error) => format!("ProviderConfig {name}'s {error}"),
        };
        // Terminal: waits for a change: the namespace's labels (whose change reconciles
        // the objects there), the ProviderConfig, or the object.
        Err(ProviderError::terminal(refusal).with_code(NOT_PERMITTED))
    }

    /// The labels of `namespace`: from the cache, or read while the cache has not
    /// listed yet.
    async fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        use futures::FutureExt;
        let cache = &self.scope.namespaces;
        if cache.wait_until_ready().now_or_never().is_some()
            && let Some(cached) = cache.get(&ObjectRef::new(namespace))
        {
            return Ok(cached.labels().clone());
        }
        let read = Api::<Namespace>::all(self.kube.clone())
            .get_metadata_opt(namespace)
            .await
            .map_err(|error| {
                ProviderError::transient(format!(
                    "reading the labels of namespace {namespace}: {error}"
                ))
            })?;
        Ok(read
            .map(|namespace| namespace.labels().clone())
            .unwrap_or_default())
    }

    /// Adds this scope's in-use finalizer to `provider_config` unless it has it, so that
    /// no cloud resource is made through a ProviderConfig that could disappear before
    /// the resource is deleted. Server-side apply under a field manager of the
    /// finalizer's name: the list is a set, others' finalizers stay. A ProviderConfig
    /// being deleted takes no new finalizer: without this scope's, it serves only
    /// deletions (an object being deleted: `deleting`). The reconciles that start at
    /// once on a fresh ProviderConfig (up to 16 a kind) all see it without the
    /// finalizer: they add it one at a time, and those after the first find it added.
    async fn hold(
        &self,
        provider_config: &ProviderConfig,
        deleting: bool,
    ) -> Result<(), ProviderError> {
        let finalizer = &self.scope.in_use_finalizer;
        if provider_config.finalizers().contains(finalizer) {
            return Ok(());
        }
        let name = provider_config.name_any();
        if provider_config.meta().deletion_timestamp.is_some() {
            if deleting {
                return Ok(());
            }
            // Terminal: waits for a change: the ProviderConfig goes, or the object does.
            return Err(ProviderError::terminal(format!(
                "ProviderConfig {name} is being deleted: tether makes nothing new through it"
            )));
        }
        let uid = provider_config.uid().unwrap_or_default();
        let mut held = self.held.lock().await;
        held.retain(|_, added| added.elapsed() < HELD_RECENTLY);
        if held.contains_key(&uid) {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": ProviderConfig::api_version(&()),
            "kind": ProviderConfig::kind(&()),
            "metadata": {"name": name, "finalizers": [finalizer]},
        });
        Api::<ProviderConfig>::all(self.kube.clone())
            .patch(&name, &PatchParams::apply(finalizer), &Patch::Apply(&patch))
            .await
            .map_err(|error| {
                ProviderError::transient(format!(
                    "adding finalizer {finalizer} to ProviderConfig {name}: {error}"
                ))
            })?;
        held.insert(uid, Instant::now());
        tracing::info!(provider_config = %name, %finalizer, "holding the ProviderConfig while objects use it");
        Ok(())
    }

    /// ProviderConfig `name`, read from the API server.
    async fn read(&self, name: &str) -> Result<ProviderConfig, ProviderError> {
        Api::<ProviderConfig>::all(self.kube.clone())
            .get_opt(name)
            .await
            .map_err(|error| {
                ProviderError::transient(format!("reading ProviderConfig {name}: {error}"))
            })?
            // Transient: the ProviderConfig may be applied after the object.
            .ok_or_else(|| {
                ProviderError::transient(format!("ProviderConfig {name} does not exist"))
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Built>> {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The provider error for ProviderConfig `name` whose configuration failed with
/// `error`; a missing credentials Secret (or key) carries
/// [`tether_api::provider_config::CREDENTIALS_MISSING`].
fn credentials_error(name: &str, error: &sdk_config::Error) -> ProviderError {
    ProviderError::new(error.class(), format!("ProviderConfig {name}: {error}"))
        .with_optional_code(error.reason())
}

/// Builds a kind's client from an SDK configuration: a client calls AWS only, and gets
/// what it needs from Kubernetes (Secret values, references) in its `Context`.
pub type BuildClient<C> = fn(&AwsConfig) -> C;

/// The connector of one kind: one client per ProviderConfig generation, so SDK clients
/// and their connection pools live as long as their configuration.
pub struct AwsConnector<C> {
    configs: SdkConfigs,
    build: BuildClient<C>,
    clients: Mutex<HashMap<String, (i64, C)>>,
}

impl<C> AwsConnector<C> {
    /// A connector that builds clients with `build` from the configurations in `configs`.
    pub fn new(configs: SdkConfigs, build: BuildClient<C>) -> Self {
        Self {
            configs,
            build,
            clients: Mutex::default(),
        }
    }
}

impl<M, C> Connector<M> for AwsConnector<C>
where
    M: Managed,
    C: ExternalClient<M> + Clone + Send + Sync + 'static,
{
    type Client = C;

    async fn connect(&self, object: &M) -> Result<C, ProviderError> {
        let name = &object.managed_fields().provider_config_ref.name;
        let namespace = object.namespace().unwrap_or_default();
        let deleting = object.meta().deletion_timestamp.is_some();
        let (generation, config) = self.configs.get(name, &namespace, deleting).await?;
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match clients.get(name) {
            Some((built_from, client)) if *built_from == generation => Ok(client.clone()),
            _ => {
                let client = (self.build)(&config);
                clients.insert(name.clone(), (generation, client.clone()));
                Ok(client)
            }
        }
    }
}
