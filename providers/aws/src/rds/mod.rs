//! RDS kinds and their external clients.

use std::collections::{BTreeMap, BTreeSet};

use tether_api::external::ProviderError;

use crate::{errors::provider_error, tags::stale_tags};

pub mod connection;
pub mod db_instance;
pub mod db_subnet_group;
pub mod password;

pub use db_instance::{DBInstance, DBInstanceClient};
pub use db_subnet_group::{DBSubnetGroup, DBSubnetGroupClient};

/// Adds (or overwrites) `desired` tags on the RDS resource `arn`, and removes those
/// tether applied before (`applied`) that `desired` no longer has.
pub(crate) async fn sync_tags(
    rds: &aws_sdk_rds::Client,
    arn: &str,
    desired: &BTreeMap<String, String>,
    applied: &BTreeSet<String>,
) -> Result<(), ProviderError> {
    rds.add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(db_subnet_group::rds_tags(desired)))
        .send()
        .await
        .map_err(provider_error)?;
    let stale = stale_tags(applied, desired);
    if !stale.is_empty() {
        rds.remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(provider_error)?;
    }
    Ok(())
}
