//! tether's AWS provider: the `ProviderConfig` kind, the AWS SDK clients built from it,
//! and the managed kinds (RDS and EC2) with their external clients.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub mod connector;
mod delta;
pub mod ec2;
pub mod errors;
pub mod provider_config;
pub mod rds;
pub mod sdk_config;
pub mod tags;

pub use provider_config::{ProviderConfig, ProviderConfigSpec};

/// Every custom resource definition this provider serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ProviderConfig::crd(),
        rds::DBInstance::crd(),
        rds::DBSubnetGroup::crd(),
        ec2::SecurityGroup::crd(),
        ec2::Instance::crd(),
    ]
}
