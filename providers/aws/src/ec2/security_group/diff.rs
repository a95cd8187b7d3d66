//! Where a security group differs from its spec: a pure comparison of the spec's
//! rules and tags with what EC2 reports, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use tether_api::external::{Context, Delta};

use super::{Direction, ObservedRule, SecurityGroup, SecurityGroupObservation};
use crate::tags::tags_differ;

/// Where a security group differs from its spec: its tags, and the rules to add and
/// remove in each direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecurityGroupDelta {
    /// `tags`, tether's UID tag included.
    pub tags: bool,
    /// Inbound rules to add and remove.
    pub(super) ingress: RuleChanges,
    /// Outbound rules to add and remove.
    pub(super) egress: RuleChanges,
}

impl Delta for SecurityGroupDelta {
    fn is_empty(&self) -> bool {
        !self.tags && self.ingress.is_empty() && self.egress.is_empty()
    }

    /// `tags`, then each rule change in words (`ingress: add tcp 22 from 10.0.0.0/8`).
    fn describe(&self) -> Vec<String> {
        let tags = self.tags.then(|| "tags".to_owned());
        tags.into_iter()
            .chain(self.ingress.describe(Direction::Ingress))
            .chain(self.egress.describe(Direction::Egress))
            .collect()
    }
}

/// How the group, as EC2 describes it (its rules in `observed`, its `tags`), differs
/// from `object`'s spec; `context` holds the resolved peer groups and the tags tether
/// applied before.
pub(super) fn diff(
    object: &SecurityGroup,
    context: &Context<'_>,
    observed: &SecurityGroupObservation,
    tags: &BTreeMap<String, String>,
) -> SecurityGroupDelta {
    let changes = |direction, actual| {
        RuleChanges::between(
            &object.desired_rules(direction, context),
            actual,
            object.peers_unresolved(context),
        )
    };
    SecurityGroupDelta {
        tags: tags_differ(&object.desired_tags(), context.applied_tags, tags),
        ingress: changes(Direction::Ingress, &observed.ingress),
        egress: changes(Direction::Egress, &observed.egress),
    }
}

/// What it takes to turn `actual` rules into `desired` ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct RuleChanges {
    pub(super) add: Vec<ObservedRule>,
    pub(super) remove: Vec<ObservedRule>,
}

impl RuleChanges {
    /// The changes from `actual` to `desired`; with `keep_group_peers`, rules whose
    /// peer is a security group are never removed (`desired` lacks peers not yet
    /// resolved, and such a rule may be one of theirs).
    pub(super) fn between(
        desired: &BTreeSet<ObservedRule>,
        actual: &[ObservedRule],
        keep_group_peers: bool,
    ) -> Self {
        let actual: BTreeSet<&ObservedRule> = actual
            .iter()
            .filter(|rule| {
                !(keep_group_peers && rule.peer.starts_with("sg-")) || desired.contains(*rule)
            })
            .collect();
        Self {
            add: desired
                .iter()
                .filter(|rule| !actual.contains(rule))
                .cloned()
                .collect(),
            remove: actual
                .into_iter()
                .filter(|rule| !desired.contains(*rule))
                .cloned()
                .collect(),
        }
    }

    /// Whether there is nothing to add or remove.
    pub(super) fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// The changes in words, for the delta's description and so the `Updated` Event:
    /// `ingress: add tcp 22 from 10.0.0.0/8`.
    fn describe(&self, direction: Direction) -> impl Iterator<Item = String> + '_ {
        let add = self
            .add
            .iter()
            .map(move |rule| format!("{direction}: add {}", rule.describe(direction)));
        let remove = self
            .remove
            .iter()
            .map(move |rule| format!("{direction}: remove {}", rule.describe(direction)));
        add.chain(remove)
    }
}
