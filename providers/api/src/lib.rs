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

/// What the runtime needs of every custom resource it handles besides
/// `kube::Resource`: to clone, print and (de)serialize it, and to share it between
/// tasks. Every type that can does.
pub trait CustomObject:
    Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

impl<T> CustomObject for T where
    T: Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}
