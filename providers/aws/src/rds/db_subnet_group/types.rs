//! The `DBSubnetGroup` custom resource: its spec with the CEL rules, its status, and
//! what the runtime needs to know of it.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus, derived_name};

use super::DBSubnetGroupDelta;

/// The longest DB subnet group name RDS accepts.
const MAX_NAME_LENGTH: usize = 255;

/// An RDS DB subnet group: the subnets, in at least two availability zones, that a
/// `DBInstance` may be placed in.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "rds.tether.dev",
    version = "v1alpha1",
    kind = "DBSubnetGroup",
    namespaced,
    status = "DBSubnetGroupStatus",
    doc = "An RDS DB subnet group; Ready when RDS reports it complete.",
    category = "tether",
    shortname = "dbsubnetgroup",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "VPC", type_ = "string", json_path = ".status.atProvider.vpcId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Snapshot'")
    .message("a DB subnet group has no snapshot: use Delete or Retain")
    .field_path(".deletionPolicy")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct DBSubnetGroupSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,

    /// Description of the subnet group.
    #[schemars(length(min = 1, max = 255))]
    pub description: String,

    /// Subnet ids (`subnet-…`), in at least two availability zones of one VPC.
    #[schemars(
        length(min = 1, max = 20),
        inner(regex(pattern = r"^subnet-[0-9a-f]+$"))
    )]
    pub subnet_ids: Vec<String>,

    /// Tags for the subnet group. tether adds `tether.dev/uid`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
}

/// What tether and AWS report about the subnet group.
pub type DBSubnetGroupStatus = ManagedStatus<DBSubnetGroupObservation>;

/// The subnet group as AWS reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DBSubnetGroupObservation {
    /// ARN of the subnet group.
    pub arn: Option<String>,
    /// AWS's status of the subnet group, e.g. `Complete`.
    pub status: Option<String>,
    /// The VPC the subnets belong to.
    pub vpc_id: Option<String>,
    /// The subnets in the group.
    pub subnet_ids: Vec<String>,
}

impl Managed for DBSubnetGroup {
    type AtProvider = DBSubnetGroupObservation;
    type Delta = DBSubnetGroupDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&ManagedStatus<DBSubnetGroupObservation>> {
        self.status.as_ref()
    }

    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.spec.tags)
    }

    /// `<namespace>-<name>-<UID digits>` (see [`derived_name`]); `None` before the
    /// object has a UID.
    fn default_external_name(&self) -> Option<String> {
        Some(derived_name(
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &self.uid()?,
            MAX_NAME_LENGTH,
        ))
    }
}

impl DBSubnetGroup {
    /// The tags tether wants on the subnet group: the spec's, plus the UID tag.
    pub(super) fn desired_tags(&self) -> BTreeMap<String, String> {
        crate::tags::desired_tags(&self.spec.tags, self.uid())
    }
}
