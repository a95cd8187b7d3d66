//! Where a DB instance differs from its spec: a pure comparison of the spec with what
//! RDS reports, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_rds::types::DbInstance;
use tether_api::external::Context;

use super::DBInstance;

crate::delta::field_delta! {
    /// Where an RDS DB instance differs from its spec.
    DBInstanceDelta {
        /// `engineVersion`.
        engine_version => "engineVersion",
        /// `instanceClass`.
        instance_class => "instanceClass",
        /// `allocatedStorageGiB`.
        allocated_storage => "allocatedStorageGiB",
        /// The master password (generated, the user's, or RDS-managed).
        master_password => "masterPassword",
        /// `vpcSecurityGroupIds` and `vpcSecurityGroupRefs`.
        vpc_security_group_ids => "vpcSecurityGroupIds",
        /// `multiAZ`.
        multi_az => "multiAZ",
        /// `publiclyAccessible`.
        publicly_accessible => "publiclyAccessible",
        /// `backupRetentionDays`.
        backup_retention_days => "backupRetentionDays",
        /// `deletionProtection`.
        deletion_protection => "deletionProtection",
        /// `tags`, tether's UID tag included.
        tags => "tags",
    }
}

/// How `instance`, as RDS describes it (its pending modifications and `tags` read
/// along), differs from `object`'s spec; `context` holds the resolved security group
/// references and the tags tether applied before. A value RDS is still applying
/// counts as applied: no second modify for it. The master password is not in what RDS
/// describes: `password_differs` is what reading it found (see `observe_password`).
pub(super) fn diff(
    object: &DBInstance,
    context: &Context<'_>,
    instance: &DbInstance,
    tags: &BTreeMap<String, String>,
    password_differs: bool,
) -> DBInstanceDelta {
    let spec = &object.spec;
    let desired_groups = object.desired_security_groups(context);
    let pending = instance.pending_modified_values();
    let wanted_class = Some(spec.instance_class.as_str());
    DBInstanceDelta {
        engine_version: spec.engine_version.as_deref().is_some_and(|wanted| {
            let applied =
                |actual: Option<&str>| actual.is_some_and(|actual| version_matches(wanted, actual));
            !applied(instance.engine_version())
                && !applied(pending.and_then(|p| p.engine_version()))
        }),
        instance_class: instance.db_instance_class() != wanted_class
            && pending.and_then(|p| p.db_instance_class()) != wanted_class,
        allocated_storage: spec.allocated_storage_gib.is_some()
            && instance.allocated_storage() != spec.allocated_storage_gib
            && pending.and_then(|p| p.allocated_storage()) != spec.allocated_storage_gib,
        master_password: password_differs,
        vpc_security_group_ids: desired_groups
            .as_ref()
            .is_some_and(|desired| *desired != security_group_ids(instance)),
        multi_az: spec.multi_az.is_some()
            && instance.multi_az() != spec.multi_az
            && pending.and_then(|p| p.multi_az()) != spec.multi_az,
        publicly_accessible: spec.publicly_accessible.is_some()
            && instance.publicly_accessible() != spec.publicly_accessible,
        backup_retention_days: spec.backup_retention_days.is_some()
            && instance.backup_retention_period() != spec.backup_retention_days
            && pending.and_then(|p| p.backup_retention_period()) != spec.backup_retention_days,
        deletion_protection: spec.deletion_protection.is_some()
            && instance.deletion_protection() != spec.deletion_protection,
        tags: crate::tags::tags_differ(&object.desired_tags(), context.applied_tags, tags),
    }
}

/// Whether the `actual` engine version satisfies the `wanted` one: equal, or `wanted`
/// is a prefix ending at a dot boundary (`16` matches `16.3`; `16.3` matches `16.3`
/// only, not `16.30`).
pub(super) fn version_matches(wanted: &str, actual: &str) -> bool {
    actual
        .strip_prefix(wanted)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The ids of the security groups an instance has or is getting.
fn security_group_ids(instance: &DbInstance) -> BTreeSet<String> {
    instance
        .vpc_security_groups()
        .iter()
        .filter(|membership| membership.status() != Some("removing"))
        .filter_map(|membership| membership.vpc_security_group_id().map(str::to_owned))
        .collect()
}
