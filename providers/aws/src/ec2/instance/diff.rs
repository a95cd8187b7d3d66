//! Where an instance differs from its spec: a pure comparison of the spec with what
//! EC2 reports, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use tether_api::external::Context;

use super::{
    Instance, InstanceObservation,
    types::{RUNNING, STOPPED},
};
use crate::tags::tags_differ;

/// Where an EC2 instance differs from its spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceDelta {
    /// `tags`, tether's UID tag included.
    pub tags: bool,
    /// `securityGroupIds` and `securityGroupRefs`.
    pub security_group_ids: bool,
    /// `instanceType`, and the instance can be stopped or is stopped.
    pub instance_type: bool,
    /// Not a spec field: the instance is stopped (or carries a stale marker) after
    /// tether stopped it to change its type, and must be started again.
    pub instance_state: bool,
    /// Not a spec field: other live instances that carry the object's UID tag (a
    /// launch made twice), by id, to be terminated: one object, one instance.
    pub duplicates: Vec<String>,
}

impl tether_api::external::Delta for InstanceDelta {
    fn is_empty(&self) -> bool {
        !(self.tags || self.security_group_ids || self.instance_type || self.instance_state)
            && self.duplicates.is_empty()
    }

    fn describe(&self) -> Vec<String> {
        let fields = [
            (self.tags, "tags"),
            (self.security_group_ids, "securityGroupIds"),
            (self.instance_type, "instanceType"),
            (self.instance_state, "instanceState"),
        ];
        let mut described: Vec<String> = fields
            .into_iter()
            .filter(|(differs, _)| *differs)
            .map(|(_, field)| field.to_owned())
            .collect();
        if !self.duplicates.is_empty() {
            described.push(format!(
                "terminated duplicate instances {} (they carry this object's UID tag)",
                self.duplicates.join(", ")
            ));
        }
        described
    }
}

/// How the instance, as EC2 describes it (`observed`, and its `tags`), differs from
/// `object`'s spec; `context` holds the resolved security groups and the tags tether
/// applied before.
pub(super) fn diff(
    object: &Instance,
    context: &Context<'_>,
    observed: &InstanceObservation,
    tags: &BTreeMap<String, String>,
) -> InstanceDelta {
    let spec = &object.spec;
    let state = observed.state.as_deref();
    let (running, stopped) = (state == Some(RUNNING), state == Some(STOPPED));

    // While the instance is pending, stopping or shutting down, nothing can be done.
    let type_differs = observed.instance_type.as_deref() != Some(spec.instance_type.as_str())
        && (running || stopped);
    // Stopped by tether: start it again. Running with the tag and no stop coming: the
    // start happened but the tag stayed, so only the tag goes.
    let stop_coming = running && type_differs && spec.allow_stop;
    let groups: BTreeSet<&String> = observed.security_group_ids.iter().collect();
    InstanceDelta {
        tags: tags_differ(&object.desired_tags(), context.applied_tags, tags),
        // Unresolved references (only while the object is being deleted) compare nothing.
        security_group_ids: object
            .desired_security_groups(context)
            .ok()
            .flatten()
            .is_some_and(|wanted| wanted.iter().collect::<BTreeSet<_>>() != groups),
        instance_type: type_differs,
        instance_state: observed.restart_after_stop && (stopped || (running && !stop_coming)),
        duplicates: Vec::new(),
    }
}
