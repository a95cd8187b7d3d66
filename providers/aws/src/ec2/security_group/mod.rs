//! The `SecurityGroup` kind: an EC2 security group whose rule set tether keeps exactly
//! as declared, putting back rules removed by hand and removing rules added by hand.
//! One file a part: the custom resource (`types`), the rules in the form tether
//! compares and sends (`rules`), where a group differs from its spec (`diff`, pure),
//! the EC2 calls (`client`), and their tests.

mod client;
mod diff;
mod rules;
mod types;

#[cfg(test)]
mod tests;

pub use client::SecurityGroupClient;
pub use diff::SecurityGroupDelta;
pub use types::{
    Direction, ObservedRule, Protocol, SecurityGroup, SecurityGroupObservation, SecurityGroupRule,
    SecurityGroupSpec, SecurityGroupStatus,
};
