//! The `DBSubnetGroup` kind (an RDS DB subnet group), one file a part: the custom
//! resource (`types`), where a group differs from its spec (`diff`, pure), the RDS calls
//! (`client`), and their tests.

mod client;
mod diff;
mod types;

#[cfg(test)]
mod tests;

pub use client::DBSubnetGroupClient;
pub(crate) use client::rds_tags;
pub use diff::DBSubnetGroupDelta;
pub use types::{DBSubnetGroup, DBSubnetGroupObservation, DBSubnetGroupSpec, DBSubnetGroupStatus};
