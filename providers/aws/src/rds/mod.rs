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

/// The tags tether wants on an RDS resource: `tags` from the spec, plus the UID tag.
fn desired_tags(tags: &BTreeMap<String, String>, uid: Option<String>) -> BTreeMap<String, String> {
    let mut tags = tags.clone();
    if let Some(uid) = uid {
        tags.insert(db_subnet_group::UID_TAG.to_owned(), uid);
    }
    tags
}

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
