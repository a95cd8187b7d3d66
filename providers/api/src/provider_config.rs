//! What the runtime knows of a provider's `ProviderConfig` kind: who may use one (its
//! `namespaceSelector`, checked by the provider's connector before any cloud call), the
//! condition reasons a refused connection carries, and its status conditions (the
//! runtime keeps a ProviderConfig in use and says by whom).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::{ClusterResourceScope, Selector, SelectorExt};

/// Reason of `Synced=False` on an object whose namespace its ProviderConfig's
/// `namespaceSelector` does not select: nothing reaches the cloud for it.
pub const NOT_PERMITTED: &str = "ProviderConfigNotPermitted";

/// Reason of `Synced=False` on an object whose ProviderConfig's credentials Secret is
/// missing (or lacks a key).
pub const CREDENTIALS_MISSING: &str = "ProviderConfigCredentialsMissing";

/// A provider's cluster-scoped ProviderConfig kind, as the runtime's in-use controller
/// reads it.
pub trait ProviderConfig:
    kube::Resource<DynamicType = (), Scope = ClusterResourceScope> + crate::CustomObject
{
    /// `status.conditions`.
    fn conditions(&self) -> &[Condition];
}

/// Why a label selector cannot be matched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("namespaceSelector is invalid: {0}")]
pub struct InvalidSelector(String);

/// Whether a namespace with `labels` is selected by `selector` (a class's or a
/// ProviderConfig's `namespaceSelector`); no selector selects every namespace.
pub fn namespace_selected(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, InvalidSelector> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    let selector =
        Selector::try_from(selector.clone()).map_err(|error| InvalidSelector(error.to_string()))?;
    Ok(selector.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_selector_matches_labels_and_expressions() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"tether.dev/databases": "allowed"},
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["shop", "ci"]}]
        }))
        .unwrap();
        assert_eq!(
            namespace_selected(
                Some(&selector),
                &labels(&[("tether.dev/databases", "allowed"), ("team", "shop")])
            ),
            Ok(true)
        );
        assert_eq!(
            namespace_selected(Some(&selector), &labels(&[("team", "shop")])),
            Ok(false)
        );
        assert_eq!(namespace_selected(None, &labels(&[])), Ok(true));
    }

    #[test]
    fn an_invalid_selector_selects_nothing_and_says_why() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "team", "operator": "Near", "values": ["shop"]}]
        }))
        .unwrap();
        let error = namespace_selected(Some(&selector), &labels(&[("team", "shop")]))
            .expect_err("an unknown operator");
        assert!(
            error
                .to_string()
                .starts_with("namespaceSelector is invalid: "),
            "{error}"
        );
    }
}
