//! Connects managed objects to AWS: reads the object's `ProviderConfig`, builds its SDK
//! configuration once per ProviderConfig generation, and hands out the kind's client.
//!
//! Building a configuration calls nothing in AWS, so a controller pointed at moto or
//! LocalStack starts without touching the network.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tether_api::{
    ErrorClass,
    external::{Connector, ExternalClient, ProviderError},
    managed::Managed,
    telemetry::CallObserver,
};

use crate::{ProviderConfig, call_metrics::AwsConfig, sdk_config};

/// SDK configurations by ProviderConfig name, each with the generation it was built
/// from; shared by the connectors of every kind. ProviderConfigs are read from a watch
/// cache, so a reconcile costs no API request for them.
#[derive(Clone)]
pub struct SdkConfigs {
    kube: kube::Client,
    provider_configs: Store<ProviderConfig>,
    built: Arc<Mutex<HashMap<String, (i64, AwsConfig)>>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl SdkConfigs {
    /// An empty cache that reads ProviderConfigs through `kube`; starts a task that
    /// watches them for as long as the process runs. Clients built from its
    /// configurations report every AWS call to `observer`, if given.
    pub fn new(kube: kube::Client, observer: Option<Arc<dyn CallObserver>>) -> Self {
        let (provider_configs, writer) = reflector::store();
        let watch = watcher(
            Api::<ProviderConfig>::all(kube.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer)
        .for_each(|_| std::future::ready(()));
        tokio::spawn(watch);
        Self {
            kube,
            provider_configs,
            built: Arc::default(),
            observer,
        }
    }

    /// The configuration of ProviderConfig `name` and the generation it reflects,
    /// built now if the ProviderConfig is new or has changed.
    pub async fn get(&self, name: &str) -> Result<(i64, AwsConfig), ProviderError> {
        let provider_config = match self.provider_configs.get(&ObjectRef::new(name)) {
            Some(cached) => cached,
            // Not in the cache (yet): it may have been applied a moment ago.
            None => Arc::new(self.read(name).await?),
        };
        let generation = provider_config.metadata.generation.unwrap_or_default();
        if let Some((built_from, config)) = self.lock().get(name)
            && *built_from == generation
        {
            return Ok((generation, config.clone()));
        }
        let sdk = sdk_config::load(&provider_config.spec, &self.kube)
            .await
            .map_err(|error| ProviderError {
                class: error.class(),
                code: None,
                message: format!("ProviderConfig {}: {error}", provider_config.name_any()),
            })?;
        let config = AwsConfig::for_provider_config(sdk, name, self.observer.clone());
        self.lock()
            .insert(name.to_owned(), (generation, config.clone()));
        Ok((generation, config))
    }

    /// ProviderConfig `name`, read from the API server.
    async fn read(&self, name: &str) -> Result<ProviderConfig, ProviderError> {
        Api::<ProviderConfig>::all(self.kube.clone())
            .get_opt(name)
            .await
            .map_err(|error| ProviderError {
                class: ErrorClass::Transient,
                code: None,
                message: format!("reading ProviderConfig {name}: {error}"),
            })?
            .ok_or_else(|| ProviderError {
                // Transient: the ProviderConfig may be applied after the object.
                class: ErrorClass::Transient,
                code: None,
                message: format!("ProviderConfig {name} does not exist"),
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, AwsConfig)>> {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Builds a kind's client from an SDK configuration and a Kubernetes client.
pub type BuildClient<C> = fn(&AwsConfig, kube::Client) -> C;

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
        let (generation, config) = self.configs.get(name).await?;
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match clients.get(name) {
            Some((built_from, client)) if *built_from == generation => Ok(client.clone()),
            _ => {
                let client = (self.build)(&config, self.configs.kube.clone());
                clients.insert(name.clone(), (generation, client.clone()));
                Ok(client)
            }
        }
    }
}
