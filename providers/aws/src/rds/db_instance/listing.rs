//! The listings behind the DB instance client's shared snapshots: every DB instance
//! tether tagged (RDS returns each instance's tags with it), and the current version of
//! every secret RDS keeps in Secrets Manager, so that a managed master password is read
//! again only when RDS has rotated it.

use aws_sdk_secretsmanager::types::{Filter as SecretFilter, FilterNameStringType};
use tether_api::{external::ProviderError, snapshot::Listing};

use super::kept::KeptInstance;
use crate::{paging::for_each_page, tags::UID_TAG};

/// The most DB instances one `DescribeDBInstances` page may hold.
const INSTANCE_PAGE_SIZE: i32 = 100;
/// The most secrets one `ListSecrets` page may hold.
const SECRET_PAGE_SIZE: i32 = 100;
/// The staging label of a secret's current version.
const CURRENT: &str = "AWSCURRENT";

/// Every DB instance carrying a `tether.dev/uid` tag, by identifier, over all pages.
pub(super) async fn tagged_instances(
    rds: &aws_sdk_rds::Client,
) -> Result<Listing<KeptInstance>, ProviderError> {
    let mut entries = Vec::new();
    let pages = for_each_page!(rds.describe_db_instances(), INSTANCE_PAGE_SIZE, |page| {
        entries.extend(
            page.db_instances()
                .iter()
                .filter(|instance| {
                    instance
                        .tag_list()
                        .iter()
                        .any(|tag| tag.key() == Some(UID_TAG))
                })
                .filter_map(|instance| {
                    Some((
                        instance.db_instance_identifier()?.to_owned(),
                        KeptInstance::from(instance),
                    ))
                }),
        );
    });
    let listing = Listing { entries, pages };
    tracing::debug!(
        pages = listing.pages,
        instances = listing.entries.len(),
        "listed the DB instances tether tagged"
    );
    Ok(listing)
}

/// The current version id of every secret RDS owns, by ARN, over all pages. The
/// values stay in Secrets Manager.
pub(super) async fn rds_secret_versions(
    secrets_manager: &aws_sdk_secretsmanager::Client,
) -> Result<Listing<String>, ProviderError> {
    let owned_by_rds = SecretFilter::builder()
        .key(FilterNameStringType::OwningService)
        .values("rds")
        .build();
    let mut entries = Vec::new();
    let request = secrets_manager.list_secrets().filters(owned_by_rds);
    let pages = for_each_page!(request, SECRET_PAGE_SIZE, |page| {
        entries.extend(page.secret_list().iter().filter_map(|secret| {
            let current = secret
                .secret_versions_to_stages()?
                .iter()
                .find(|(_, stages)| stages.iter().any(|stage| stage == CURRENT))?
                .0;
            Some((secret.arn()?.to_owned(), current.clone()))
        }));
    });
    Ok(Listing { entries, pages })
}
