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
    reconciler::{self, Settings},
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
    futures::join!(
        reconciler::run::<DBSubnetGroup, _>(
            kube.clone(),
            AwsConnector::new(configs.clone(), DBSubnetGroupClient::from_config),
            settings.clone(),
            shutdown.clone(),
        ),
        reconciler::run::<SecurityGroup, _>(
            kube.clone(),
            AwsConnector::new(configs.clone(), SecurityGroupClient::from_config),
            settings.clone(),
            shutdown.clone(),
        ),
        reconciler::run::<Instance, _>(
            kube.clone(),
            AwsConnector::new(configs.clone(), InstanceClient::from_config),
            settings.clone(),
            shutdown.clone(),
        ),
        reconciler::run::<DBInstance, _>(
            kube.clone(),
            AwsConnector::new(configs.clone(), DBInstanceClient::from_config),
            settings.clone(),
            shutdown.clone(),
        ),
        claims::run::<DatabaseClaim>(kube.clone(), settings.clone(), shutdown.clone()),
        claims::run::<InstanceClaim>(kube.clone(), settings.clone(), shutdown.clone()),
    );
}
