//! Every live EC2 instance matching a filter, over all pages; and the listing behind
//! the shared snapshot of instances ([`tether_api::snapshot`]): every live instance
//! tether tagged, by the UID of the object it belongs to.

use aws_sdk_ec2::types::{Filter, Instance as Ec2Instance};
use tether_api::{external::ProviderError, snapshot::Listing};

use crate::{
    ec2::{tagged_filter, uid_tag},
    paging::for_each_page,
};

/// EC2's states of an instance that is still there.
pub const LIVE_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

/// The most instances one `DescribeInstances` page may hold.
const PAGE_SIZE: i32 = 1000;

/// Every live instance carrying a `tether.dev/uid` tag, keyed by that tag's value.
pub(crate) async fn tagged_by_uid(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Listing<Ec2Instance>, ProviderError> {
    let (instances, pages) = live_instances_paged(ec2, tagged_filter()).await?;
    let entries = instances
        .into_iter()
        .filter_map(|instance| Some((uid_tag(instance.tags())?.to_owned(), instance)))
        .collect();
    Ok(Listing { entries, pages })
}

/// Every live instance matching `filter`, over all pages.
pub(crate) async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    filter: Filter,
) -> Result<Vec<Ec2Instance>, ProviderError> {
    Ok(live_instances_paged(ec2, filter).await?.0)
}

/// Every live instance matching `filter`, and the number of pages that took.
async fn live_instances_paged(
    ec2: &aws_sdk_ec2::Client,
    filter: Filter,
) -> Result<(Vec<Ec2Instance>, usize), ProviderError> {
    let live = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
        .build();
    let mut found = Vec::new();
    let request = ec2.describe_instances().filters(filter).filters(live);
    let pages = for_each_page!(request, PAGE_SIZE, |page| {
        found.extend(
            page.reservations()
                .iter()
                .flat_map(|reservation| reservation.instances())
                .filter(|instance| {
                    instance
                        .state()
                        .and_then(|state| state.name())
                        .is_some_and(|name| LIVE_STATES.contains(&name.as_str()))
                })
                .cloned(),
        );
    });
    Ok((found, pages))
}

#[cfg(test)]
mod tests {
    use crate::{tags::UID_TAG, testing::mock_client};
    use aws_sdk_ec2::{
        operation::describe_instances::DescribeInstancesOutput,
        types::{InstanceState, InstanceStateName, Reservation, Tag},
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock};

    use super::*;

    fn instance(id: &str, state: InstanceStateName, uid: Option<&str>) -> Ec2Instance {
        Ec2Instance::builder()
            .instance_id(id)
            .state(InstanceState::builder().name(state).build())
            .set_tags(uid.map(|uid| vec![Tag::builder().key(UID_TAG).value(uid).build()]))
            .build()
    }

    fn page(instances: Vec<Ec2Instance>, next: Option<&'static str>) -> Rule {
        mock!(aws_sdk_ec2::Client::describe_instances)
            .match_requests(|request| {
                request
                    .filters()
                    .iter()
                    .any(|f| f.name() == Some("tag-key") && f.values() == [UID_TAG])
            })
            .then_output(move || {
                DescribeInstancesOutput::builder()
                    .reservations(
                        Reservation::builder()
                            .set_instances(Some(instances.clone()))
                            .build(),
                    )
                    .set_next_token(next.map(str::to_owned))
                    .build()
            })
    }

    #[tokio::test]
    async fn the_listing_keys_live_tagged_instances_by_uid_over_every_page() {
        let first = page(
            vec![
                instance("i-1", InstanceStateName::Running, Some("uid-1")),
                instance("i-0", InstanceStateName::Terminated, Some("uid-0")),
            ],
            Some("page-2"),
        );
        let second = page(
            vec![instance("i-2", InstanceStateName::Stopped, Some("uid-2"))],
            None,
        );
        let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&first, &second]);
        let listing = tagged_by_uid(&ec2).await.unwrap();
        let keys: Vec<(&str, Option<&str>)> = listing
            .entries
            .iter()
            .map(|(uid, instance)| (uid.as_str(), instance.instance_id()))
            .collect();
        assert_eq!(
            keys,
            [("uid-1", Some("i-1")), ("uid-2", Some("i-2"))],
            "a terminated instance is not live"
        );
        assert_eq!(listing.pages, 2);
    }
}
