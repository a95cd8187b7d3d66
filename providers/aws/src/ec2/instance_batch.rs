//! One paginated `DescribeInstances` of every live instance tether tagged, shared by
//! all Instance objects of a ProviderConfig: a routine poll of N instances costs one
//! call per page and per [`MAX_AGE`], not N calls (DESIGN rule 6).
//!
//! The snapshot only ever answers "here it is": an instance it lacks is looked up
//! directly before anyone concludes it is missing, so a stale snapshot can never lead
//! to a second launch. Every write through the client invalidates it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_sdk_ec2::types::{Filter, Instance as Ec2Instance};
use tether_api::external::ProviderError;

use crate::{errors::provider_error, tags::UID_TAG};

/// How old a snapshot may be when it answers a routine poll.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// EC2's states of an instance that is still there.
pub const LIVE_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

/// The shared snapshot; clones share it.
#[derive(Clone, Debug, Default)]
pub struct InstanceBatch {
    state: Arc<Mutex<State>>,
    /// Held while refreshing, so concurrent polls wait for one call instead of each
    /// making their own.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every write; a refresh that began before a write is discarded.
    epoch: u64,
    snapshot: Option<Snapshot>,
}

#[derive(Debug)]
struct Snapshot {
    taken: Instant,
    epoch: u64,
    by_uid: HashMap<String, Ec2Instance>,
}

impl InstanceBatch {
    /// The live instance tagged with `uid` in a snapshot at most [`MAX_AGE`] old
    /// (refreshed if needed), or `None` when the snapshot lacks it.
    pub async fn lookup(
        &self,
        ec2: &aws_sdk_ec2::Client,
        uid: &str,
    ) -> Result<Option<Ec2Instance>, ProviderError> {
        if let Some(found) = self.fresh(uid) {
            return Ok(found);
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(found) = self.fresh(uid) {
            return Ok(found);
        }
        let epoch = self.state.lock().expect("not poisoned").epoch;
        let tagged = Filter::builder().name("tag-key").values(UID_TAG).build();
        let by_uid: HashMap<String, Ec2Instance> = live_instances(ec2, tagged)
            .await?
            .into_iter()
            .filter_map(|instance| {
                let uid = instance
                    .tags()
                    .iter()
                    .find(|tag| tag.key() == Some(UID_TAG))?
                    .value()?
                    .to_owned();
                Some((uid, instance))
            })
            .collect();
        let found = by_uid.get(uid).cloned();
        let mut state = self.state.lock().expect("not poisoned");
        if state.epoch == epoch {
            state.snapshot = Some(Snapshot {
                taken: Instant::now(),
                epoch,
                by_uid,
            });
        }
        Ok(found)
    }

    /// A guard that forgets the snapshot when dropped: hold it across a write, so a
    /// snapshot taken before the write took effect is never used after it (whether
    /// the write succeeded, failed or lost its answer).
    pub fn write_guard(&self) -> WriteGuard<'_> {
        WriteGuard(self)
    }

    /// Forgets the snapshot: something was just changed through this client.
    pub fn invalidate(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.epoch += 1;
        state.snapshot = None;
    }

    /// The answer of the current snapshot, if there is a fresh one.
    fn fresh(&self, uid: &str) -> Option<Option<Ec2Instance>> {
        let state = self.state.lock().expect("not poisoned");
        let snapshot = state.snapshot.as_ref()?;
        (snapshot.epoch == state.epoch && snapshot.taken.elapsed() <= MAX_AGE)
            .then(|| snapshot.by_uid.get(uid).cloned())
    }
}

/// Forgets the batch's snapshot when dropped; see [`InstanceBatch::write_guard`].
#[must_use = "the snapshot is forgotten when the guard is dropped"]
pub struct WriteGuard<'a>(&'a InstanceBatch);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

/// Every live instance matching `filter`, over all pages.
pub(crate) async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    filter: Filter,
) -> Result<Vec<Ec2Instance>, ProviderError> {
    let live = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
        .build();
    let mut found = Vec::new();
    let mut next_token = None;
    loop {
        let page = ec2
            .describe_instances()
            .filters(filter.clone())
            .filters(live.clone())
            .set_next_token(next_token)
            .send()
            .await
            .map_err(provider_error)?;
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
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
            _ => break,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use crate::testing::mock_client;
    use aws_sdk_ec2::{
        operation::describe_instances::DescribeInstancesOutput,
        types::{InstanceState, InstanceStateName, Reservation, Tag},
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock};

    use super::*;

    fn tagged(id: &str, uid: &str) -> Ec2Instance {
        Ec2Instance::builder()
            .instance_id(id)
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::Running)
                    .build(),
            )
            .tags(Tag::builder().key(UID_TAG).value(uid).build())
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
    async fn one_paginated_describe_answers_every_instance_until_invalidated() {
        let first = page(vec![tagged("i-1", "uid-1")], Some("page-2"));
        let second = page(vec![tagged("i-2", "uid-2")], None);
        let again = page(vec![tagged("i-1", "uid-1")], None);
        let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&first, &second, &again]);
        let batch = InstanceBatch::default();

        let one = batch.lookup(&ec2, "uid-1").await.unwrap();
        let two = batch.lookup(&ec2, "uid-2").await.unwrap();
        let none = batch.lookup(&ec2, "uid-3").await.unwrap();
        assert_eq!(one.and_then(|i| i.instance_id), Some("i-1".into()));
        assert_eq!(two.and_then(|i| i.instance_id), Some("i-2".into()));
        assert!(
            none.is_none(),
            "the snapshot lacks it; the caller looks directly"
        );
        assert_eq!(
            (first.num_calls(), second.num_calls(), again.num_calls()),
            (1, 1, 0),
            "two pages, then answers from the snapshot"
        );

        batch.invalidate();
        let after_write = batch.lookup(&ec2, "uid-2").await.unwrap();
        assert!(
            after_write.is_none(),
            "a new snapshot, taken after the write"
        );
        assert_eq!(again.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_snapshot_from_before_a_write_is_not_used() {
        let stale = page(vec![tagged("i-1", "uid-1")], None);
        let fresh = page(vec![], None);
        let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&stale, &fresh]);
        let batch = InstanceBatch::default();
        // A write lands while the refresh is under way: simulated by bumping the
        // epoch between the refresh's start and its store.
        let epoch_before = batch.state.lock().unwrap().epoch;
        batch.lookup(&ec2, "uid-1").await.unwrap();
        {
            let mut state = batch.state.lock().unwrap();
            assert_eq!(state.epoch, epoch_before);
            state.epoch += 1; // as invalidate() would, but keeping the snapshot
        }
        assert!(
            batch.fresh("uid-1").is_none(),
            "an older epoch's snapshot is not used"
        );
        let looked_again = batch.lookup(&ec2, "uid-1").await.unwrap();
        assert!(looked_again.is_none());
        assert_eq!((stale.num_calls(), fresh.num_calls()), (1, 1));
    }
}
