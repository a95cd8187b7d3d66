//! What the shared snapshot keeps of each EC2 instance EC2 describes: the fields tether
//! compares, observes and publishes, and nothing else.
//!
//! The snapshot holds one entry per instance of a ProviderConfig (a thousand at scale),
//! and the SDK's `Instance` is 1.8 KiB before its strings, most of it fields tether
//! never reads (network interfaces, block devices, placement, …).

use aws_sdk_ec2::{
    primitives::DateTime,
    types::{GroupIdentifier, Instance, InstanceState, InstanceStateName, InstanceType, Tag},
};

use crate::kept::{listed, owned};

/// An EC2 instance as far as tether reads it; [`Instance::from`] gives it back in the
/// SDK's shape, the other fields unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct KeptInstance {
    instance_id: Option<String>,
    state: Option<InstanceStateName>,
    instance_type: Option<InstanceType>,
    image_id: Option<String>,
    subnet_id: Option<String>,
    vpc_id: Option<String>,
    private_ip_address: Option<String>,
    public_ip_address: Option<String>,
    private_dns_name: Option<String>,
    public_dns_name: Option<String>,
    key_name: Option<String>,
    launch_time: Option<DateTime>,
    security_group_ids: Vec<Option<String>>,
    /// Key and value.
    tags: Vec<(Option<String>, Option<String>)>,
}

impl KeptInstance {
    /// The instance's id.
    pub(super) fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }
}

impl From<&Instance> for KeptInstance {
    fn from(instance: &Instance) -> Self {
        Self {
            instance_id: owned(instance.instance_id()),
            state: instance.state().and_then(|state| state.name()).cloned(),
            instance_type: instance.instance_type().cloned(),
            image_id: owned(instance.image_id()),
            subnet_id: owned(instance.subnet_id()),
            vpc_id: owned(instance.vpc_id()),
            private_ip_address: owned(instance.private_ip_address()),
            public_ip_address: owned(instance.public_ip_address()),
            private_dns_name: owned(instance.private_dns_name()),
            public_dns_name: owned(instance.public_dns_name()),
            key_name: owned(instance.key_name()),
            launch_time: instance.launch_time().copied(),
            security_group_ids: instance
                .security_groups()
                .iter()
                .map(|group| owned(group.group_id()))
                .collect(),
            tags: instance
                .tags()
                .iter()
                .map(|tag| (owned(tag.key()), owned(tag.value())))
                .collect(),
        }
    }
}

impl From<KeptInstance> for Instance {
    fn from(kept: KeptInstance) -> Self {
        Instance::builder()
            .set_instance_id(kept.instance_id)
            .set_state(
                kept.state
                    .map(|name| InstanceState::builder().name(name).build()),
            )
            .set_instance_type(kept.instance_type)
            .set_image_id(kept.image_id)
            .set_subnet_id(kept.subnet_id)
            .set_vpc_id(kept.vpc_id)
            .set_private_ip_address(kept.private_ip_address)
            .set_public_ip_address(kept.public_ip_address)
            .set_private_dns_name(kept.private_dns_name)
            .set_public_dns_name(kept.public_dns_name)
            .set_key_name(kept.key_name)
            .set_launch_time(kept.launch_time)
            .set_security_groups(listed(
                kept.security_group_ids
                    .into_iter()
                    .map(|id| GroupIdentifier::builder().set_group_id(id).build())
                    .collect(),
            ))
            .set_tags(listed(
                kept.tags
                    .into_iter()
                    .map(|(key, value)| Tag::builder().set_key(key).set_value(value).build())
                    .collect(),
            ))
            .build()
    }
}
