//! How a cloud resource differs from its spec: the contract of each kind's typed
//! delta, shared by the managed-kind trait and the external-client contract.

use std::fmt;

/// How a cloud resource differs from its spec: a type of each kind's own, so that
/// `update` changes exactly what `observe` found different, and a misnamed field is a
/// compile error rather than a skipped update.
pub trait Delta: Clone + fmt::Debug + Default + PartialEq + Send + Sync {
    /// Whether the resource matches the spec.
    fn is_empty(&self) -> bool;

    /// The differences in words, e.g. `instanceClass` or `ingress: add tcp 22 from
    /// 10.0.0.0/8`, for Events and conditions.
    fn describe(&self) -> Vec<String>;
}
