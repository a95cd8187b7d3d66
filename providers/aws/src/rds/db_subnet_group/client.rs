//! The RDS calls that observe, create, update and delete a DB subnet group.
//!
//! Routine polls are answered by a shared snapshot of `DescribeDBSubnetGroups`. That
//! call returns no tags, so the snapshot carries the tags a direct read (`Describe`
//! and `ListTagsForResource`) last saw of each group, forgotten at each write through
//! this client: a group whose tags are not known is read directly. Tags changed
//! outside tether are therefore seen at the next direct read (after a write, or a
//! restart), not at every poll.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use aws_sdk_rds::{
    operation::{
        delete_db_subnet_group::DeleteDBSubnetGroupError,
        describe_db_subnet_groups::DescribeDBSubnetGroupsError,
    },
    types::{DbSubnetGroup, Tag},
};
use tether_api::{
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::DeletionPolicy,
    snapshot::{Listing, Snapshot, WriteGuard},
};

use super::{DBSubnetGroup, DBSubnetGroupObservation, diff::diff};
use crate::{
    call_metrics::AwsConfig,
    errors::{absent_if, provider_error},
    paging::for_each_page,
    tags::UID_TAG,
};

/// The most groups one `DescribeDBSubnetGroups` page may hold.
const PAGE_SIZE: i32 = 100;

/// A subnet group as RDS describes it, with its tags.
#[derive(Clone, Debug)]
struct TaggedGroup {
    group: DbSubnetGroup,
    tags: BTreeMap<String, String>,
}

/// Observes and changes DB subnet groups through the RDS API. Clones share the
/// snapshot.
#[derive(Clone, Debug)]
pub struct DBSubnetGroupClient {
    rds: aws_sdk_rds::Client,
    /// Every subnet group whose tags are known, by name: answers the polls of every
    /// DBSubnetGroup of this ProviderConfig at once.
    snapshot: Snapshot<TaggedGroup>,
    /// The tags each group had at its last direct read, by name.
    known_tags: Arc<Mutex<HashMap<String, BTreeMap<String, String>>>>,
}

impl DBSubnetGroupClient {
    /// A client that calls RDS through `rds`.
    pub fn new(rds: aws_sdk_rds::Client) -> Self {
        Self {
            rds,
            snapshot: Snapshot::default(),
            known_tags: Arc::default(),
        }
    }

    /// Every subnet group whose tags are known (and so may be tether's), by name, over
    /// all pages.
    async fn known_groups(&self) -> Result<Listing<TaggedGroup>, ProviderError> {
        let mut entries = Vec::new();
        let pages = for_each_page!(self.rds.describe_db_subnet_groups(), PAGE_SIZE, |page| {
            let known_tags = self.known_tags();
            entries.extend(page.db_subnet_groups().iter().filter_map(|group| {
                let name = group.db_subnet_group_name()?;
                let tags = known_tags.get(name)?.clone();
                Some((
                    name.to_owned(),
                    TaggedGroup {
                        group: group.clone(),
                        tags,
                    },
                ))
            }));
        });
        Ok(Listing { entries, pages })
    }

    /// The group `name` and its tags, as RDS describes them now.
    async fn read(&self, name: &str) -> Result<Option<TaggedGroup>, ProviderError> {
        let described = absent_if(
            self.rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(name)
                .send()
                .await,
            DescribeDBSubnetGroupsError::is_db_subnet_group_not_found_fault,
        )?;
        let Some(group) =
            described.and_then(|described| described.db_subnet_groups?.into_iter().next())
        else {
            return Ok(None);
        };
        let tags = match group.db_subnet_group_arn() {
            Some(arn) => self.tags(arn).await?,
            None => BTreeMap::new(),
        };
        self.known_tags().insert(name.to_owned(), tags.clone());
        Ok(Some(TaggedGroup { group, tags }))
    }

    fn known_tags(&self) -> MutexGuard<'_, HashMap<String, BTreeMap<String, String>>> {
        self.known_tags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &AwsConfig) -> Self {
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
    /// Groups are kept by name. A write forgets the group's known tags, and once it
    /// ended no earlier record answers for the group.
    fn write_guard(&self, _object: &DBSubnetGroup, context: Context<'_>) -> Option<WriteGuard> {
        let name = context.external_name?;
        self.known_tags().remove(name);
        Some(self.snapshot.write_guard(name))
    }

    async fn observe(
        &self,
        object: &DBSubnetGroup,
        context: Context<'_>,
    ) -> Result<ObservationOf<DBSubnetGroup>, ProviderError> {
        let external_name = context.require_external_name()?;
        let found = self
            .snapshot
            .get(
                external_name,
                context.freshness,
                || self.known_groups(),
                |_| true,
                || self.read(external_name),
            )
            .await?;
        let Some(TaggedGroup { group, tags }) = found else {
            return Ok(Observation::Missing);
        };
        let subnet_ids: BTreeSet<String> = group
            .subnets()
            .iter()
            .filter_map(|subnet| subnet.subnet_identifier().map(str::to_owned))
            .collect();
        let arn = group.db_subnet_group_arn().map(str::to_owned);

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
