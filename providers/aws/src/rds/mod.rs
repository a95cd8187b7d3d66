//! RDS kinds and their external clients.

pub mod db_subnet_group;

pub use db_subnet_group::{DBSubnetGroup, DBSubnetGroupClient};
