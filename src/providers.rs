//! The one place that names the providers' kinds: starts a controller for each managed
//! kind and each claim kind.

use std::future::Future;

use futures::future::FutureExt;
use tether_aws::{
    connector::{AwsConnector, SdkConfigs},
    ec2::{Instance, InstanceClient, SecurityGroup, SecurityGroupClient},
    rds::{DBInstance, DBInstanceClient, DBSubnetGroup, DBSubnetGroupClient},
    self_service::{DatabaseClaim, InstanceClaim},
};

use crate::{
    claims,
    reconciler::{self, Settings, SharedWatches},
    secret_watch::SecretWatch,
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
    let configs = SdkConfigs::new(kube.clone(), Some(observer));
    // One metadata-only watch of the Secrets in scope for every kind's controller.
    let (secrets, watching) =
        SecretWatch::new(&kube, settings.namespace.as_deref(), &settings.health);
    let watching = futures::future::select(Box::pin(watching), shutdown.clone());
    // Each managed kind is watched once, by its controller; kinds that refer to it read
    // that controller's cache.
    let watches = SharedWatches::new(secrets);
    let controllers = async {
        futures::join!(
            reconciler::run::<DBSubnetGroup, _>(
                kube.clone(),
                AwsConnector::new(configs.clone(), DBSubnetGroupClient::from_config),
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
            reconciler::run::<SecurityGroup, _>(
                kube.clone(),
                AwsConnector::new(configs.clone(), SecurityGroupClient::from_config),
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
            reconciler::run::<Instance, _>(
                kube.clone(),
                AwsConnector::new(configs.clone(), InstanceClient::from_config),
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
            reconciler::run::<DBInstance, _>(
                kube.clone(),
                AwsConnector::new(configs.clone(), DBInstanceClient::from_config),
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
            claims::run::<DatabaseClaim>(
                kube.clone(),
                settings.clone(),
                &watches,
                shutdown.clone(),
            ),
            claims::run::<InstanceClaim>(
                kube.clone(),
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
