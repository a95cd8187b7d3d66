//! tether's AWS provider: the `ProviderConfig` kind, the AWS SDK clients built from it,
//! the managed kinds (RDS and EC2) with their external clients, and the self-service
//! classes and claims built on them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub mod budget;
pub mod call_metrics;
pub mod connector;
mod delta;
pub mod ec2;
pub mod errors;
mod kept;
mod paging;
pub mod provider_config;
pub mod rds;
pub mod sdk_config;
pub mod self_service;
pub mod tags;
#[cfg(test)]
mod testing;

pub use provider_config::{ProviderConfig, ProviderConfigSpec};

/// Every custom resource definition this provider serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ProviderConfig::crd(),
        rds::DBInstance::crd(),
        rds::DBSubnetGroup::crd(),
        ec2::SecurityGroup::crd(),
        ec2::Instance::crd(),
        self_service::DatabaseClass::crd(),
        self_service::DatabaseClaim::crd(),
        self_service::InstanceClass::crd(),
        self_service::InstanceClaim::crd(),
    ]
}
