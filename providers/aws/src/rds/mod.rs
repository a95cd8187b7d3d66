//! RDS kinds and their external clients.

pub mod connection;
pub mod db_instance;
pub mod db_subnet_group;
pub mod password;

pub use db_instance::{DBInstance, DBInstanceClient};
pub use db_subnet_group::{DBSubnetGroup, DBSubnetGroupClient};
