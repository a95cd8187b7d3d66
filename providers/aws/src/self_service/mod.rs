//! Self-service: the classes a platform team writes (`DatabaseClass`, `InstanceClass`)
//! and the claims application teams write against them (`DatabaseClaim`,
//! `InstanceClaim`), with the admission policies that refuse a claim outside its
//! class's bounds at `kubectl apply`.

mod admission_policy;
mod database;
mod instance;

use std::collections::BTreeMap;

use kube::{KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};

pub use admission_policy::{admission_policies, admission_policy_bindings};
pub use database::{
    DatabaseClaim, DatabaseClaimSpec, DatabaseClaimStatus, DatabaseClass, DatabaseClassSpec,
    DatabaseLimits, DatabaseSettings,
};
pub use instance::{
    InstanceClaim, InstanceClaimSpec, InstanceClaimStatus, InstanceClass, InstanceClassSpec,
    InstanceLimits, InstanceSettings,
};

/// Tag on every resource made for a claim: the class it was made from.
pub const CLASS_TAG: &str = "tether.dev/class";
/// Tag on every resource made for a claim: `<namespace>/<claim>`.
pub const CLAIM_TAG: &str = "tether.dev/claim";

/// The tags of a resource made for `claim` of `class`: the class's, and where it
/// comes from (`tether.dev/class`, `tether.dev/claim`).
fn claim_tags(
    class_tags: &BTreeMap<String, String>,
    class: &impl ResourceExt,
    claim: &impl ResourceExt,
) -> BTreeMap<String, String> {
    let mut tags = class_tags.clone();
    tags.insert(CLASS_TAG.to_owned(), class.name_any());
    tags.insert(
        CLAIM_TAG.to_owned(),
        format!(
            "{}/{}",
            claim.namespace().unwrap_or_default(),
            claim.name_any()
        ),
    );
    tags
}

/// The connection Secret of `claim`: the one it names, or one named like it.
fn connection_secret_name(
    claim: &impl ResourceExt,
    named: Option<&tether_api::managed::LocalSecretReference>,
) -> String {
    named.map_or_else(|| claim.name_any(), |secret| secret.name.clone())
}

/// The storage a class offers: a default and the bounds a claim must stay within.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("self.min <= self.default && self.default <= self.max")
    .message("storageGiB needs min <= default <= max")
    .reason(kube::core::Reason::FieldValueInvalid))]
pub struct StorageBounds {
    /// GiB a claim gets when it names none.
    #[schemars(range(min = 20, max = 65536))]
    pub default: i32,
    /// The least GiB a claim may ask for.
    #[schemars(range(min = 20, max = 65536))]
    pub min: i32,
    /// The most GiB a claim may ask for.
    #[schemars(range(min = 20, max = 65536))]
    pub max: i32,
}

impl StorageBounds {
    /// The claim's `wanted` GiB if within bounds, else why not.
    fn pick(&self, wanted: Option<i32>) -> Result<i32, String> {
        match wanted {
            None => Ok(self.default),
            Some(gib) if gib < self.min => Err(format!(
                "storageGiB {gib} is below the class's minimum of {}",
                self.min
            )),
            Some(gib) if gib > self.max => Err(format!(
                "storageGiB {gib} is above the class's maximum of {}",
                self.max
            )),
            Some(gib) => Ok(gib),
        }
    }
}

/// One setting of an existing resource after a class change: the `wanted` value when
/// the claim itself names it (`chosen`) or it did not change, else the `built` one,
/// with `field` added to `waiting`.
fn keep_or_name<T: Clone + PartialEq>(
    field: &'static str,
    chosen: bool,
    wanted: &T,
    built: &T,
    waiting: &mut Vec<&'static str>,
) -> T {
    if chosen || wanted == built {
        wanted.clone()
    } else {
        waiting.push(field);
        built.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_within_bounds_is_taken_and_outside_is_refused_naming_the_bound() {
        let bounds = StorageBounds {
            default: 20,
            min: 20,
            max: 100,
        };
        assert_eq!(bounds.pick(None), Ok(20));
        assert_eq!(bounds.pick(Some(100)), Ok(100));
        assert_eq!(
            bounds.pick(Some(101)),
            Err("storageGiB 101 is above the class's maximum of 100".to_owned())
        );
        let mut raised = bounds.clone();
        raised.min = 50;
        assert_eq!(
            raised.pick(Some(40)),
            Err("storageGiB 40 is below the class's minimum of 50".to_owned())
        );
    }
}
