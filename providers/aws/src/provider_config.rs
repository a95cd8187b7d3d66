//! The `ProviderConfig` custom resource: which AWS account and region to talk to, and how.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use tether_api::SecretReference;

/// Where and how tether reaches AWS: a region, an optional endpoint override (for
/// LocalStack, moto or a VPC endpoint) and the source of the credentials.
///
/// Managed resources name their ProviderConfig in `spec.providerConfigRef.name`
/// (default `default`), and classes in theirs; `namespaceSelector` says whose objects
/// may. While objects use it, tether keeps a finalizer on it (`tether.dev/in-use`, or
/// `in-use.tether.dev/<namespace>` for a controller of one namespace), so that deleting
/// it waits until their cloud resources are dealt with.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    doc = "Where and how tether reaches AWS: region, optional endpoint and credentials.",
    category = "tether",
    status = "ProviderConfigStatus",
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Credentials",
        type_ = "string",
        json_path = ".spec.credentials.source"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    /// AWS region, for example `eu-west-1`.
    #[schemars(
        regex(pattern = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$"),
        length(max = 32)
    )]
    pub region: String,

    /// Endpoint that replaces AWS's own for every service, for example
    /// `http://127.0.0.1:4566` for LocalStack. Leave it out to talk to AWS.
    #[x_kube(validation = kube::core::Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    )
    .message("must be an http or https URL such as http://127.0.0.1:4566")
    .reason(kube::core::Reason::FieldValueInvalid))]
    #[schemars(length(max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Where the AWS credentials come from. Defaults to the SDK's default chain.
    #[serde(default)]
    pub credentials: Credentials,

    /// The namespaces whose objects (and claims, through their class) may use this
    /// ProviderConfig, by their labels; all namespaces when unset. An object in another
    /// namespace gets `Synced=False` with reason `ProviderConfigNotPermitted`, and
    /// nothing reaches AWS for it, not even its deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What tether reports on a ProviderConfig.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    /// `InUse` (`InUse.<namespace>` for a controller of one namespace): whether objects
    /// use the ProviderConfig, how many and which (the first few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl tether_api::provider_config::ProviderConfig for ProviderConfig {
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |status| status.conditions.as_slice())
    }
}

/// Where the AWS credentials come from.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[x_kube(
    validation = kube::core::Rule::new("self.source != 'Secret' || has(self.secretRef)")
        .message("secretRef is required when source is Secret")
        .field_path(".secretRef")
        .reason(kube::core::Reason::FieldValueRequired),
    validation = kube::core::Rule::new("self.source != 'AssumeRole' || has(self.assumeRole)")
        .message("assumeRole.roleArn is required when source is AssumeRole")
        .field_path(".assumeRole")
        .reason(kube::core::Reason::FieldValueRequired),
    validation = kube::core::Rule::new("self.source == 'AssumeRole' || !has(self.assumeRole)")
        .message("assumeRole is only used when source is AssumeRole")
        .field_path(".assumeRole")
        .reason(kube::core::Reason::FieldValueForbidden),
    validation = kube::core::Rule::new("self.source != 'Default' || !has(self.secretRef)")
        .message("secretRef is not used when source is Default")
        .field_path(".secretRef")
        .reason(kube::core::Reason::FieldValueForbidden),
)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// `Default`: the SDK's default chain (environment, web identity/IRSA, EKS pod
    /// identity, instance profile). `Secret`: static keys from `secretRef`.
    /// `AssumeRole`: assume `assumeRole.roleArn` with STS, starting from the keys in
    /// `secretRef` when given, else from the default chain.
    #[serde(default)]
    pub source: CredentialsSource,

    /// Secret holding `aws_access_key_id`, `aws_secret_access_key` and optionally
    /// `aws_session_token`. Required when `source` is `Secret`; optional base
    /// credentials when `source` is `AssumeRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// The IAM role to assume. Required when `source` is `AssumeRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRole>,
}

/// Where the AWS credentials come from.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq,
)]
pub enum CredentialsSource {
    /// The SDK's default credential chain.
    #[default]
    Default,
    /// Static keys from a Secret.
    Secret,
    /// A role assumed through STS.
    AssumeRole,
}

/// An IAM role to assume through STS.
#[derive(schemars::JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRole {
    /// ARN of the role, for example `arn:aws:iam::123456789012:role/tether`.
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$"))]
    #[schemars(length(max = 2048))]
    pub role_arn: String,

    /// External ID the role's trust policy requires, if any.
    #[schemars(regex(pattern = r"^[\w+=,.@:/-]+$"), length(min = 2, max = 1224))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,

    /// Session name recorded in CloudTrail. Defaults to `tether`.
    #[schemars(regex(pattern = r"^[\w+=,.@-]+$"), length(min = 2, max = 64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}
