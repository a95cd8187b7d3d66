//! What the shared snapshot keeps of each DB instance RDS describes: the fields tether
//! compares, observes and publishes, and nothing else.
//!
//! The snapshot holds one entry per instance of a ProviderConfig (a thousand at scale),
//! and the SDK's `DbInstance` is 2.5 KiB before its strings, most of it fields tether
//! never reads (parameter and option groups, the subnet group with its subnets, …).

use aws_sdk_rds::types::{
    DbInstance, Endpoint, MasterUserSecret, PendingModifiedValues, Tag, VpcSecurityGroupMembership,
};

use crate::kept::{listed, owned};

/// A DB instance as far as tether reads it; [`DbInstance::from`] gives it back in the
/// SDK's shape, the other fields unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct KeptInstance {
    identifier: Option<String>,
    arn: Option<String>,
    status: Option<String>,
    class: Option<String>,
    engine: Option<String>,
    engine_version: Option<String>,
    allocated_storage: Option<i32>,
    multi_az: Option<bool>,
    publicly_accessible: Option<bool>,
    backup_retention_period: Option<i32>,
    deletion_protection: Option<bool>,
    master_username: Option<String>,
    db_name: Option<String>,
    /// Address and port.
    endpoint: Option<(Option<String>, Option<i32>)>,
    master_user_secret_arn: Option<String>,
    /// Group id and membership status.
    security_groups: Vec<(Option<String>, Option<String>)>,
    /// Key and value.
    tags: Vec<(Option<String>, Option<String>)>,
    /// The changes RDS holds for the next maintenance window (rare, so boxed).
    pending: Option<Box<PendingModifiedValues>>,
}

impl From<&DbInstance> for KeptInstance {
    fn from(instance: &DbInstance) -> Self {
        Self {
            identifier: owned(instance.db_instance_identifier()),
            arn: owned(instance.db_instance_arn()),
            status: owned(instance.db_instance_status()),
            class: owned(instance.db_instance_class()),
            engine: owned(instance.engine()),
            engine_version: owned(instance.engine_version()),
            allocated_storage: instance.allocated_storage(),
            multi_az: instance.multi_az(),
            publicly_accessible: instance.publicly_accessible(),
            backup_retention_period: instance.backup_retention_period(),
            deletion_protection: instance.deletion_protection(),
            master_username: owned(instance.master_username()),
            db_name: owned(instance.db_name()),
            endpoint: instance
                .endpoint()
                .map(|endpoint| (owned(endpoint.address()), endpoint.port())),
            master_user_secret_arn: owned(
                instance
                    .master_user_secret()
                    .and_then(|secret| secret.secret_arn()),
            ),
            security_groups: instance
                .vpc_security_groups()
                .iter()
                .map(|group| (owned(group.vpc_security_group_id()), owned(group.status())))
                .collect(),
            tags: instance
                .tag_list()
                .iter()
                .map(|tag| (owned(tag.key()), owned(tag.value())))
                .collect(),
            pending: instance.pending_modified_values().map(|pending| {
                Box::new(
                    PendingModifiedValues::builder()
                        .set_engine_version(owned(pending.engine_version()))
                        .set_db_instance_class(owned(pending.db_instance_class()))
                        .set_allocated_storage(pending.allocated_storage())
                        .set_multi_az(pending.multi_az())
                        .set_backup_retention_period(pending.backup_retention_period())
                        .build(),
                )
            }),
        }
    }
}

impl From<KeptInstance> for DbInstance {
    fn from(kept: KeptInstance) -> Self {
        DbInstance::builder()
            .set_db_instance_identifier(kept.identifier)
            .set_db_instance_arn(kept.arn)
            .set_db_instance_status(kept.status)
            .set_db_instance_class(kept.class)
            .set_engine(kept.engine)
            .set_engine_version(kept.engine_version)
            .set_allocated_storage(kept.allocated_storage)
            .set_multi_az(kept.multi_az)
            .set_publicly_accessible(kept.publicly_accessible)
            .set_backup_retention_period(kept.backup_retention_period)
            .set_deletion_protection(kept.deletion_protection)
            .set_master_username(kept.master_username)
            .set_db_name(kept.db_name)
            .set_endpoint(kept.endpoint.map(|(address, port)| {
                Endpoint::builder()
                    .set_address(address)
                    .set_port(port)
                    .build()
            }))
            .set_master_user_secret(
                kept.master_user_secret_arn
                    .map(|arn| MasterUserSecret::builder().secret_arn(arn).build()),
            )
            .set_vpc_security_groups(listed(
                kept.security_groups
                    .into_iter()
                    .map(|(id, status)| {
                        VpcSecurityGroupMembership::builder()
                            .set_vpc_security_group_id(id)
                            .set_status(status)
                            .build()
                    })
                    .collect(),
            ))
            .set_tag_list(listed(
                kept.tags
                    .into_iter()
                    .map(|(key, value)| Tag::builder().set_key(key).set_value(value).build())
                    .collect(),
            ))
            .set_pending_modified_values(kept.pending.map(|pending| *pending))
            .build()
    }
}
