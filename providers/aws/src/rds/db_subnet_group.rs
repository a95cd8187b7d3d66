//! The `DBSubnetGroup` kind (an RDS DB subnet group) and its external client.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_rds::{
    operation::{
        delete_db_subnet_group::DeleteDBSubnetGroupError,
        describe_db_subnet_groups::DescribeDBSubnetGroupsError,
    },
    types::Tag,
};
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus, derived_name},
};

use crate::{
    errors::{absent_if, provider_error},
    tags::UID_TAG,
};

crate::delta::field_delta! {
    /// Where a DB subnet group differs from its spec.
    DBSubnetGroupDelta {
        /// `description`.
        description => "description",
        /// `subnetIds`.
        subnet_ids => "subnetIds",
        /// `tags`, tether's UID tag included.
        tags => "tags",
    }
}

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
    fn desired_tags(&self) -> BTreeMap<String, String> {
        crate::tags::desired_tags(&self.spec.tags, self.uid())
    }
}

/// Observes and changes DB subnet groups through the RDS API.
#[derive(Clone, Debug)]
pub struct DBSubnetGroupClient {
    rds: aws_sdk_rds::Client,
}

impl DBSubnetGroupClient {
    /// A client that calls RDS through `rds`.
    pub fn new(rds: aws_sdk_rds::Client) -> Self {
        Self { rds }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &aws_config::SdkConfig, _kube: kube::Client) -> Self {
        Self::new(aws_sdk_rds::Client::new(config))
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        let listed = self
            .rds
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(provider_error)?;
        Ok(listed
            .tag_list()
            .iter()
            .filter_map(|tag| {
                Some((
                    tag.key()?.to_owned(),
                    tag.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect())
    }
}

/// The tags as RDS takes them.
pub(crate) fn rds_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

impl ExternalClient<DBSubnetGroup> for DBSubnetGroupClient {
    async fn observe(
        &self,
        object: &DBSubnetGroup,
        context: Context<'_>,
    ) -> Result<ObservationOf<DBSubnetGroup>, ProviderError> {
        let external_name = context.require_external_name()?;
        let described = absent_if(
            self.rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(external_name)
                .send()
                .await,
            DescribeDBSubnetGroupsError::is_db_subnet_group_not_found_fault,
        )?;
        let Some(group) = described
            .as_ref()
            .and_then(|described| described.db_subnet_groups().first())
        else {
            return Ok(Observation::Missing);
        };
        let subnet_ids: BTreeSet<String> = group
            .subnets()
            .iter()
            .filter_map(|subnet| subnet.subnet_identifier().map(str::to_owned))
            .collect();
        let arn = group.db_subnet_group_arn().map(str::to_owned);
        let tags = match &arn {
            Some(arn) => self.tags(arn).await?,
            None => BTreeMap::new(),
        };

        let delta = DBSubnetGroupDelta {
            description: group.db_subnet_group_description()
                != Some(object.spec.description.as_str()),
            subnet_ids: subnet_ids != object.spec.subnet_ids.iter().cloned().collect(),
            tags: crate::tags::tags_differ(&object.desired_tags(), context.applied_tags, &tags),
        };
        let status = group.subnet_group_status().map(str::to_owned);
        let readiness = match status.as_deref() {
            Some("Complete") | None => Readiness::Ready,
            Some(other) => Readiness::NotReady {
                reason: "Incomplete".to_owned(),
                message: format!("AWS reports the subnet group as {other}"),
            },
        };
        Ok(Observation::Exists(Observed {
            external_name: None,
            owner_uid: tags.get(UID_TAG).cloned(),
            delta,
            readiness,
            at_provider: DBSubnetGroupObservation {
                arn,
                status,
                vpc_id: group.vpc_id().map(str::to_owned),
                subnet_ids: subnet_ids.into_iter().collect(),
            },
            connection: ConnectionDetails::default(),
        }))
    }

    async fn create(
        &self,
        object: &DBSubnetGroup,
        context: Context<'_>,
    ) -> Result<Created, ProviderError> {
        let external_name = context.require_external_name()?;
        self.rds
            .create_db_subnet_group()
            .db_subnet_group_name(external_name)
            .db_subnet_group_description(&object.spec.description)
            .set_subnet_ids(Some(object.spec.subnet_ids.clone()))
            .set_tags(Some(rds_tags(&object.desired_tags())))
            .send()
            .await
            .map_err(provider_error)?;
        Ok(Created::default())
    }

    async fn update(
        &self,
        object: &DBSubnetGroup,
        context: Context<'_>,
        observed: &ObservedOf<DBSubnetGroup>,
    ) -> Result<(), ProviderError> {
        let external_name = context.require_external_name()?;
        let delta = &observed.delta;
        if delta.description || delta.subnet_ids {
            self.rds
                .modify_db_subnet_group()
                .db_subnet_group_name(external_name)
                .db_subnet_group_description(&object.spec.description)
                .set_subnet_ids(Some(object.spec.subnet_ids.clone()))
                .send()
                .await
                .map_err(provider_error)?;
        }
        if let (true, Some(arn)) = (delta.tags, &observed.at_provider.arn) {
            super::sync_tags(&self.rds, arn, &object.desired_tags(), context.applied_tags).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        _object: &DBSubnetGroup,
        context: Context<'_>,
        _policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        let external_name = context.require_external_name()?;
        absent_if(
            self.rds
                .delete_db_subnet_group()
                .db_subnet_group_name(external_name)
                .send()
                .await,
            DeleteDBSubnetGroupError::is_db_subnet_group_not_found_fault,
        )?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! Edge cases moto cannot show (its ModifyDBSubnetGroup drops the group), with the
    //! SDK's own mocks.

    use aws_sdk_rds::{
        error::ErrorMetadata,
        operation::modify_db_subnet_group::{ModifyDBSubnetGroupError, ModifyDbSubnetGroupOutput},
        types::error::InvalidDbSubnetGroupStateFault,
    };
    use aws_smithy_mocks::{mock, mock_client};
    use kube::core::ObjectMeta;
    use tether_api::ErrorClass;

    use super::*;

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
    /// The name derived for `object()`.
    const NAME: &str = "shop-orders-0c9f3a1e5b";

    fn object() -> DBSubnetGroup {
        DBSubnetGroup {
            metadata: ObjectMeta {
                name: Some("orders".into()),
                namespace: Some("shop".into()),
                uid: Some(UID.into()),
                ..ObjectMeta::default()
            },
            spec: DBSubnetGroupSpec {
                managed: ManagedFields::default(),
                description: "all zones".into(),
                subnet_ids: vec!["subnet-0a".into(), "subnet-0b".into(), "subnet-0c".into()],
                tags: BTreeMap::new(),
            },
            status: None,
        }
    }

    fn observed(delta: DBSubnetGroupDelta) -> ObservedOf<DBSubnetGroup> {
        Observed {
            external_name: None,
            owner_uid: Some(UID.into()),
            delta,
            readiness: Readiness::Ready,
            at_provider: DBSubnetGroupObservation {
                arn: Some("arn:aws:rds:us-east-1:123456789012:subgrp:shop-orders".into()),
                ..DBSubnetGroupObservation::default()
            },
            connection: ConnectionDetails::default(),
        }
    }

    #[tokio::test]
    async fn update_sends_the_desired_description_and_subnets_only() {
        let modify = mock!(aws_sdk_rds::Client::modify_db_subnet_group)
            .match_requests(|request| {
                request.db_subnet_group_name() == Some(NAME)
                    && request.db_subnet_group_description() == Some("all zones")
                    && request.subnet_ids() == ["subnet-0a", "subnet-0b", "subnet-0c"]
            })
            .then_output(|| ModifyDbSubnetGroupOutput::builder().build());
        let rds = mock_client!(aws_sdk_rds, [&modify]);
        let client = DBSubnetGroupClient::new(rds);
        let object = object();
        let name = object.default_external_name();
        client
            .update(
                &object,
                Context::named(name.as_deref()),
                &observed(DBSubnetGroupDelta {
                    description: true,
                    subnet_ids: true,
                    ..DBSubnetGroupDelta::default()
                }),
            )
            .await
            .expect("the modify call matches");
        assert_eq!(
            modify.num_calls(),
            1,
            "one ModifyDBSubnetGroup, and no tag call"
        );
    }

    #[tokio::test]
    async fn a_subnet_group_in_use_elsewhere_is_pending_not_an_error() {
        let modify = mock!(aws_sdk_rds::Client::modify_db_subnet_group).then_error(|| {
            ModifyDBSubnetGroupError::InvalidDbSubnetGroupStateFault(
                InvalidDbSubnetGroupStateFault::builder()
                    .message("the subnet group is being modified")
                    .meta(
                        ErrorMetadata::builder()
                            .code("InvalidDBSubnetGroupStateFault")
                            .message("the subnet group is being modified")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = DBSubnetGroupClient::new(mock_client!(aws_sdk_rds, [&modify]));
        let object = object();
        let error = client
            .update(
                &object,
                Context::named(Some(NAME)),
                &observed(DBSubnetGroupDelta {
                    subnet_ids: true,
                    ..DBSubnetGroupDelta::default()
                }),
            )
            .await
            .expect_err("busy");
        assert_eq!(error.class, ErrorClass::Pending);
        assert_eq!(
            error.code.as_deref(),
            Some("InvalidDBSubnetGroupStateFault")
        );
        assert_eq!(error.message, "the subnet group is being modified");
    }
}
