//! tether's AWS provider: the `ProviderConfig` kind and the AWS SDK clients built from it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub mod provider_config;
pub mod sdk_config;

pub use provider_config::{ProviderConfig, ProviderConfigSpec};

/// Every custom resource definition this provider serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![ProviderConfig::crd()]
}
