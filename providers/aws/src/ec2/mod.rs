//! EC2 kinds and their external clients, and the tag and filter helpers they share.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use tether_api::external::ProviderError;

use crate::{
    budget::OnlyThrottlingRetried,
    errors::provider_error,
    tags::{UID_TAG, stale_tags},
};

pub mod instance;
pub mod live_instances;
pub mod security_group;
pub mod ssh_key;

pub use instance::{Instance, InstanceClient};
pub use security_group::{SecurityGroup, SecurityGroupClient};

/// Configuration for a create call that the SDK must retry only when AWS throttled
/// it: when its answer is lost, a blind retry could make a second resource (emulators
/// ignore `ClientToken`, and most create calls have none); the reconcile loop retries
/// instead, after looking for the resource by its UID tag. A throttled call did
/// nothing, and its retry waits for the budget's pace ([`OnlyThrottlingRetried`]).
pub(crate) fn retried_only_when_throttled() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_classifier(OnlyThrottlingRetried)
}

/// The tags as EC2 takes them.
pub(crate) fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// The tags EC2 reports, as a map.
pub(crate) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Tags to apply in the create call itself, so a resource never exists untagged.
pub(crate) fn tag_specification(
    resource_type: ResourceType,
    tags: &BTreeMap<String, String>,
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

/// The filter that finds the resources created for the object with `uid`.
pub(crate) fn uid_filter(uid: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{UID_TAG}"))
        .values(uid)
        .build()
}

/// Matches every resource tether tagged with an object's UID.
pub(crate) fn tagged_filter() -> Filter {
    Filter::builder().name("tag-key").values(UID_TAG).build()
}

/// The value of the `tether.dev/uid` tag among `tags`: the UID of the object whose
/// resource it is.
pub(crate) fn uid_tag(tags: &[Tag]) -> Option<&str> {
    tags.iter().find(|tag| tag.key() == Some(UID_TAG))?.value()
}

/// Adds (or overwrites) `tags` on the EC2 resource `id`.
pub(crate) async fn create_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    ec2.create_tags()
        .resources(id)
        .set_tags(Some(ec2_tags(tags)))
        .send()
        .await
        .map_err(provider_error)?;
    Ok(())
}

/// Puts `desired` tags on the EC2 resource `id`, and takes off those tether applied
/// before (`applied`) that `desired` no longer has.
pub(crate) async fn sync_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    desired: &BTreeMap<String, String>,
    applied: &BTreeSet<String>,
) -> Result<(), ProviderError> {
    create_tags(ec2, id, desired).await?;
    let stale = stale_tags(applied, desired);
    if !stale.is_empty() {
        ec2.delete_tags()
            .resources(id)
            .set_tags(Some(
                stale
                    .into_iter()
                    .map(|key| Tag::builder().key(key).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(provider_error)?;
    }
    Ok(())
}

/// Whether an EC2 error code says the resource does not exist
/// (`InvalidInstanceID.NotFound`, `InvalidGroup.NotFound`, …). A malformed id is not
/// "missing": tether must not create a new resource because an adopted id is mistyped.
pub(crate) fn is_not_found<E: aws_sdk_ec2::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code().is_some_and(|code| code.ends_with(".NotFound"))
}
