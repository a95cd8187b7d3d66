//! Where a DB subnet group differs from its spec: a pure comparison of the spec with
//! what RDS reports, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use tether_api::external::Context;

use super::DBSubnetGroup;

crate::delta::field_delta! {
    /// Where a DB subnet group differs from its spec.
    DBSubnetGroupDelta {
        /// `description`.
        description => "description",
        /// `subnetIds`.
        subnet_ids => "subnetIds",
        /// `tags`, tether's UID tag included.
        tags => "tags",
    }
}

/// How `group`, as RDS describes it (its subnets and `tags` read along), differs from
/// `object`'s spec; `context` holds the tags tether applied before.
pub(super) fn diff(
    object: &DBSubnetGroup,
    context: &Context<'_>,
    description: Option<&str>,
    subnet_ids: &BTreeSet<String>,
    tags: &BTreeMap<String, String>,
) -> DBSubnetGroupDelta {
    DBSubnetGroupDelta {
        description: description != Some(object.spec.description.as_str()),
        subnet_ids: *subnet_ids != object.spec.subnet_ids.iter().cloned().collect(),
        tags: crate::tags::tags_differ(&object.desired_tags(), context.applied_tags, tags),
    }
}
