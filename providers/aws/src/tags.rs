//! The tags tether puts on every cloud resource it creates: the spec's own, plus the
//! UID of the Kubernetes object, which is how tether finds a resource it created
//! when the response to the create call never arrived; and the tags it takes off again
//! when they leave the spec (never the ones others put on).

use std::collections::{BTreeMap, BTreeSet};

/// Tag that carries the UID of the Kubernetes object that created a cloud resource.
pub const UID_TAG: &str = "tether.dev/uid";

/// The tags tether wants on a resource: `tags` from the spec, plus the UID tag.
pub fn desired_tags(
    tags: &BTreeMap<String, String>,
    uid: Option<String>,
) -> BTreeMap<String, String> {
    let mut tags = tags.clone();
    if let Some(uid) = uid {
        tags.insert(UID_TAG.to_owned(), uid);
    }
    tags
}

/// Whether `desired` tags are not all on the resource with these values, or a tag
/// tether applied before (`applied`) and the spec dropped is still on it. Tags added
/// by others are left alone.
pub fn tags_differ(
    desired: &BTreeMap<String, String>,
    applied: &BTreeSet<String>,
    actual: &BTreeMap<String, String>,
) -> bool {
    desired
        .iter()
        .any(|(key, value)| actual.get(key) != Some(value))
        || stale_tags(applied, desired)
            .iter()
            .any(|key| actual.contains_key(key))
}

/// The keys tether applied before (`applied`) that `desired` no longer has: to be
/// removed from the resource. tether's own `tether.dev/` tags never are.
pub fn stale_tags(applied: &BTreeSet<String>, desired: &BTreeMap<String, String>) -> Vec<String> {
    applied
        .iter()
        .filter(|key| !desired.contains_key(*key) && !key.starts_with("tether.dev/"))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_tags_tether_applied_and_the_spec_dropped_are_stale() {
        let applied = BTreeSet::from(["env".to_owned(), "team".to_owned(), UID_TAG.to_owned()]);
        let desired = tags(&[("team", "shop")]);
        assert_eq!(stale_tags(&applied, &desired), ["env"]);
        // On the resource: the dropped tag, and one someone else added.
        let actual = tags(&[("team", "shop"), ("env", "dev"), ("cost-center", "42")]);
        assert!(tags_differ(&desired, &applied, &actual));
        let cleaned = tags(&[("team", "shop"), ("cost-center", "42")]);
        assert!(
            !tags_differ(&desired, &applied, &cleaned),
            "others' tags are no difference"
        );
        assert!(
            !tags_differ(&desired, &BTreeSet::new(), &actual),
            "without a record nothing is stale"
        );
    }
}
