//! `InstanceClass` and `InstanceClaim`: what a platform team offers as "a machine" and
//! what an application team asks for; a claim becomes one EC2 `Instance` built from
//! both, always with a generated SSH key.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    claim::{Choice, Claim, ClaimStatus, Class},
    managed::{
        DeletionPolicy, LocalSecretReference, ManagedFields, ManagementPolicy,
        ProviderConfigReference,
    },
};

use super::{claim_tags, connection_secret_name, keep_or_name};
use crate::ec2::instance::{Instance, InstanceSpec, SshKey};

/// What a platform team offers as a machine: the network and tags a claim never sees,
/// the images and types a claim may pick, who may use it and how many.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "InstanceClass",
    doc = "A kind of EC2 instance a platform team offers; application teams ask for one with an InstanceClaim.",
    category = "tether",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.instanceType.default"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct InstanceClassSpec {
    /// The ProviderConfig (AWS account and region) every instance of the class uses
    /// (default `default`).
    #[serde(default)]
    pub provider_config_ref: ProviderConfigReference,
    /// The AMIs (`ami-…`) a claim may name, and the default.
    pub image_id: Choice<String>,
    /// The instance types (e.g. `t3.micro`) a claim may name, and the default.
    pub instance_type: Choice<String>,
    /// The subnet (`subnet-…`) every instance is launched in. Default: a default
    /// subnet of the default VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-[0-9a-f]+$"))]
    pub subnet_id: Option<String>,
    /// Ids of the security groups (`sg-…`) every instance joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,
    /// The login user the connection Secret names (default `ec2-user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub ssh_username: Option<String>,
    /// Tags added to every instance of the class (tether adds `tether.dev/uid`,
    /// `tether.dev/class` and `tether.dev/claim`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
    /// The namespaces whose claims may use the class (by their labels); all when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// How much of the class one namespace may claim.
    #[serde(default)]
    pub limits: InstanceLimits,
}

/// How much of an instance class one namespace may claim; unset is unlimited.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceLimits {
    /// At most this many claims of the class per namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub claims_per_namespace: Option<u32>,
}

impl Class for InstanceClass {
    fn namespace_selector(&self) -> Option<&LabelSelector> {
        self.spec.namespace_selector.as_ref()
    }

    fn claims_per_namespace(&self) -> Option<u32> {
        self.spec.limits.claims_per_namespace
    }
}

/// An application team's request for an instance of a class, in its namespace.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "InstanceClaim",
    namespaced,
    status = "InstanceClaimStatus",
    doc = "An EC2 instance of an InstanceClass for this namespace; Ready when the instance runs, with its address and SSH key in status.connectionSecret.",
    category = "tether",
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.className"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.connectionSecret"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct InstanceClaimSpec {
    /// The InstanceClass to take the instance from. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("className is immutable: a claim keeps the class its instance was made from")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub class_name: String,
    /// The AMI; default: the class's. Must be one the class allows. A change
    /// replaces nothing: the instance keeps the image it was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^ami-[0-9a-f]+$"))]
    pub image_id: Option<String>,
    /// The instance type; default: the class's. Must be one it allows. A change stops
    /// and starts the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]+\.[a-z0-9-]+$"))]
    pub instance_type: Option<String>,
    /// The Secret (in this namespace) that receives the address and the SSH key;
    /// default: a Secret named like the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalSecretReference>,
}

/// What tether reports on an instance claim.
pub type InstanceClaimStatus = ClaimStatus<InstanceSettings>;

/// The settings of a claim's instance that a change would stop or replace it for:
/// resolved from class and claim at launch, kept until the claim or the team changes
/// them.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSettings {
    /// The ProviderConfig.
    pub provider_config: String,
    /// The AMI.
    pub image_id: String,
    /// The instance type.
    pub instance_type: String,
    /// The subnet, when the class names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
}

impl Claim for InstanceClaim {
    type Class = InstanceClass;
    type Managed = Instance;
    type Settings = InstanceSettings;

    fn class_name(&self) -> &str {
        &self.spec.class_name
    }

    fn claim_status(&self) -> Option<&ClaimStatus<InstanceSettings>> {
        self.status.as_ref()
    }

    fn settings(&self, class: &InstanceClass) -> Result<InstanceSettings, Vec<String>> {
        let offered = &class.spec;
        let image_id = offered
            .image_id
            .pick("imageId", self.spec.image_id.as_ref());
        let instance_type = offered
            .instance_type
            .pick("instanceType", self.spec.instance_type.as_ref());
        match (image_id, instance_type) {
            (Ok(image_id), Ok(instance_type)) => Ok(InstanceSettings {
                provider_config: offered.provider_config_ref.name.clone(),
                image_id,
                instance_type,
                subnet_id: offered.subnet_id.clone(),
            }),
            (image_id, instance_type) => Err([image_id.err(), instance_type.err()]
                .into_iter()
                .flatten()
                .collect()),
        }
    }

    fn keep_unsafe_changes(
        &self,
        wanted: &InstanceSettings,
        built: &InstanceSettings,
    ) -> (InstanceSettings, Vec<&'static str>) {
        let mut waiting = Vec::new();
        let settings = InstanceSettings {
            provider_config: keep_or_name(
                "providerConfigRef",
                false,
                &wanted.provider_config,
                &built.provider_config,
                &mut waiting,
            ),
            // An instance keeps the image it was launched from (`imageId` is
            // immutable), whoever asks.
            image_id: keep_or_name(
                "imageId",
                false,
                &wanted.image_id,
                &built.image_id,
                &mut waiting,
            ),
            instance_type: keep_or_name(
                "instanceType",
                self.spec.instance_type.is_some(),
                &wanted.instance_type,
                &built.instance_type,
                &mut waiting,
            ),
            subnet_id: keep_or_name(
                "subnetId",
                false,
                &wanted.subnet_id,
                &built.subnet_id,
                &mut waiting,
            ),
        };
        (settings, waiting)
    }

    fn accept_changes(
        &self,
        wanted: &InstanceSettings,
        built: &InstanceSettings,
    ) -> InstanceSettings {
        InstanceSettings {
            image_id: built.image_id.clone(),
            subnet_id: built.subnet_id.clone(),
            ..wanted.clone()
        }
    }

    fn compose(&self, class: &InstanceClass, settings: &InstanceSettings) -> Instance {
        let offered = &class.spec;
        let tags = claim_tags(&offered.tags, class, self);
        Instance::new(
            &self.name_any(),
            InstanceSpec {
                managed: ManagedFields {
                    provider_config_ref: ProviderConfigReference {
                        name: settings.provider_config.clone(),
                    },
                    deletion_policy: Some(DeletionPolicy::Delete),
                    management_policy: ManagementPolicy::Full,
                    write_connection_secret_to_ref: Some(LocalSecretReference {
                        name: self.connection_secret_name(),
                    }),
                },
                image_id: settings.image_id.clone(),
                instance_type: settings.instance_type.clone(),
                subnet_id: settings.subnet_id.clone(),
                security_group_ids: offered.security_group_ids.clone(),
                security_group_refs: Vec::new(),
                ssh_key: Some(SshKey {
                    generate: true,
                    key_name: None,
                    username: offered.ssh_username.clone(),
                }),
                user_data: None,
                // The team changed the instance type in its claim: that takes a stop.
                allow_stop: true,
                tags,
            },
        )
    }

    fn endpoint(managed: &Instance) -> Option<String> {
        let observed = managed.status.as_ref()?.at_provider.as_ref()?;
        observed
            .public_ip
            .clone()
            .or_else(|| observed.private_ip.clone())
    }

    fn connection_secret_name(&self) -> String {
        connection_secret_name(self, self.spec.write_connection_secret_to_ref.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner_class() -> InstanceClass {
        serde_saphyr::from_str(
            "apiVersion: tether.dev/v1alpha1
kind: InstanceClass
metadata: {name: build-runner}
spec:
  imageId: {default: ami-0aa, allowed: [ami-0bb]}
  instanceType: {default: t3.micro, allowed: [t3.large]}
  subnetId: subnet-01
  securityGroupIds: [sg-01]
  tags: {team: platform}
",
        )
        .expect("an InstanceClass")
    }

    fn claim(spec: &str) -> InstanceClaim {
        serde_saphyr::from_str(&format!(
            "apiVersion: tether.dev/v1alpha1
kind: InstanceClaim
metadata: {{name: ci, namespace: shop}}
spec:
  className: build-runner
{spec}"
        ))
        .expect("an InstanceClaim")
    }

    #[test]
    fn the_instance_has_the_class_network_and_always_a_generated_key() {
        let claim = claim("  instanceType: t3.large\n");
        let class = runner_class();
        let settings = claim.settings(&class).expect("allowed");
        let instance = claim.compose(&class, &settings);
        let spec = &instance.spec;
        assert_eq!(spec.image_id, "ami-0aa");
        assert_eq!(spec.instance_type, "t3.large");
        assert_eq!(spec.subnet_id.as_deref(), Some("subnet-01"));
        assert_eq!(spec.security_group_ids, ["sg-01"]);
        assert!(spec.ssh_key.as_ref().is_some_and(|key| key.generate));
        assert_eq!(spec.tags["tether.dev/claim"], "shop/ci");
        assert_eq!(spec.tags["team"], "platform");
    }

    #[test]
    fn an_image_the_class_does_not_offer_is_refused() {
        assert_eq!(
            claim("  imageId: ami-0cc\n").settings(&runner_class()),
            Err(vec![
                "imageId ami-0cc is not allowed; the class allows ami-0aa, ami-0bb".to_owned()
            ])
        );
    }

    #[test]
    fn a_new_default_image_waits_and_even_a_chosen_one_cannot_replace_the_instance() {
        let claim = claim("  imageId: ami-0aa\n");
        let built = claim.settings(&runner_class()).expect("allowed");
        let mut wanted = built.clone();
        wanted.image_id = "ami-0bb".into();
        let (kept, waiting) = claim.keep_unsafe_changes(&wanted, &built);
        assert_eq!(kept.image_id, "ami-0aa");
        assert_eq!(waiting, ["imageId"]);
    }
}
