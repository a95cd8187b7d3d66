//! The RDS calls that observe, create, update and delete a DB subnet group.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_rds::{
    operation::{
        delete_db_subnet_group::DeleteDBSubnetGroupError,
        describe_db_subnet_groups::DescribeDBSubnetGroupsError,
    },
    types::Tag,
};
use tether_api::{
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::DeletionPolicy,
};

use super::{DBSubnetGroup, DBSubnetGroupObservation, diff::diff};
use crate::{
    call_metrics::AwsConfig,
    errors::{absent_if, provider_error},
    tags::UID_TAG,
};

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
    pub fn from_config(config: &AwsConfig, _kube: kube::Client) -> Self {
        Self::new(config.rds())
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

        let delta = diff(
            object,
            &context,
            group.db_subnet_group_description(),
            &subnet_ids,
            &tags,
        );
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
            crate::rds::sync_tags(&self.rds, arn, &object.desired_tags(), context.applied_tags)
                .await?;
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
