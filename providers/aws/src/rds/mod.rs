//! RDS kinds and their external clients.

use std::collections::BTreeMap;

use tether_api::external::ProviderError;

use crate::errors::provider_error;

pub mod connection;
pub mod db_instance;
pub mod db_subnet_group;
pub mod password;

pub use db_instance::{DBInstance, DBInstanceClient};
pub use db_subnet_group::{DBSubnetGroup, DBSubnetGroupClient};

/// Adds (or overwrites) `tags` on the RDS resource `arn`.
async fn add_tags(
    rds: &aws_sdk_rds::Client,
    arn: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    rds.add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(db_subnet_group::rds_tags(tags)))
        .send()
        .await
        .map_err(provider_error)?;
    Ok(())
}
