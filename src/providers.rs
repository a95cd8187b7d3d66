//! The one place that names the providers' kinds: starts a controller for each managed
//! kind and each claim kind, and the in-use controller of the ProviderConfigs.

use std::future::Future;

use futures::future::FutureExt;
use tether_aws::{
    ProviderConfig,
    connector::{AwsConnector, Scope, SdkConfigs},
    ec2::{Instance, InstanceClient, SecurityGroup, SecurityGroupClient},
    rds::{DBInstance, DBInstanceClient, DBSubnetGroup, DBSubnetGroupClient},
    self_service::{DatabaseClaim, InstanceClaim},
};

use crate::{
    claims, namespace_watch,
    provider_config_usage::{self, ProviderConfigWatch},
    reconciler::{self, Settings, SharedWatches},
    secret_watch,
};

/// Runs the controllers of every managed kind until `shutdown` completes.
pub async fn run(
    kube: kube::Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown: reconciler::Shutdown = shutdown.boxed().shared();
    let observer: std::sync::Arc<dyn tether_api::telemetry::CallObserver> =
        settings.metrics.clone();
    // One metadata-only watch of the Secrets and one of the namespaces in scope for
    // every kind's controller.
    let scope = settings.namespace.as_deref();
    let (secrets, watching_secrets) = secret_watch::watch(&kube, scope, &settings.health);
    let (namespaces, watching_namespaces) = namespace_watch::watch(&kube, scope, &settings.health);
    let watching = futures::future::select(
        Box::pin(futures::future::join(watching_secrets, watching_namespaces)),
        shutdown.clone(),
    );
    // ProviderConfigs are watched once, by their in-use controller; the connectors read
    // its cache.
    let provider_configs = ProviderConfigWatch::<ProviderConfig>::new(&kube, &settings);
    let configs = SdkConfigs::new(
        kube.clone(),
        Scope {
            provider_configs: provider_configs.store().clone(),
            namespaces: namespaces.cache().clone(),
            in_use_finalizer: provider_config_usage::in_use_finalizer(scope),
        },
        Some(observer),
    );
    // Each managed kind is watched once, by its controller; kinds that refer to it read
    // that controller's cache.
    let watches = SharedWatches::new(secrets, namespaces);
    // Every controller takes the same client, settings, watches and shutdown signal.
    macro_rules! managed {
        ($kind:ty, $client:ty) => {
            reconciler::run::<$kind, _>(
                kube.clone(),
                AwsConnector::new(configs.clone(), <$client>::from_config),
                settings.clone(),
                &watches,
                shutdown.clone(),
            )
        };
    }
    macro_rules! claimed {
        ($claim:ty) => {
            claims::run::<$claim>(kube.clone(), settings.clone(), &watches, shutdown.clone())
        };
    }
    let controllers = async {
        futures::join!(
            managed!(DBSubnetGroup, DBSubnetGroupClient),
            managed!(SecurityGroup, SecurityGroupClient),
            managed!(Instance, InstanceClient),
            managed!(DBInstance, DBInstanceClient),
            claimed!(DatabaseClaim),
            claimed!(InstanceClaim),
            provider_config_usage::run(
                kube.clone(),
                provider_configs,
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
        )
    };
    // The controllers subscribe on their first poll, before the watch's first; the
    // watch stops at the shutdown signal, the controllers after their grace.
    futures::join!(controllers, watching);
}
