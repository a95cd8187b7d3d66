//! The `Instance` kind (an EC2 instance, optionally with an SSH key pair tether
//! generates), one file a part: the custom resource with its CEL rules (`types`), where
//! an instance differs from its spec (`diff`, pure), the EC2 calls that find an
//! instance by its UID tag, launch it exactly once, change its tags, security groups
//! and type (stopping and starting it only when allowed), and terminate it (`client`),
//! what its shared snapshot keeps of each instance (`kept`), and their tests.

mod client;
mod diff;
mod kept;
mod types;

#[cfg(test)]
mod tests;

pub use client::{InstanceClient, RESTART_TAG};
pub use diff::InstanceDelta;
pub use types::{Instance, InstanceObservation, InstanceSpec, InstanceStatus, SshKey};
