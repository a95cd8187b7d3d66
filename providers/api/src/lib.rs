//! The provider contract of tether: the types every provider shares with the runtime.
//!
//! Providers (AWS today) define their custom resources with these building blocks, so
//! that the runtime can treat every managed kind alike without naming a cloud type.

#![warn(missing_docs)]

pub mod claim;
pub mod conditions;
pub mod delta;
pub mod error_class;
pub mod external;
pub mod managed;
pub mod provider_config;
pub mod references;
pub mod rotation;
pub mod snapshot;
pub mod telemetry;

pub use error_class::ErrorClass;
pub use references::{LocalReference, ObjectReference, SecretKeyRef, SecretReference};
