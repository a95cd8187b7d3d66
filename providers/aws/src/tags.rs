//! The tags tether puts on every cloud resource it creates: the spec's own, plus the
//! UID of the Kubernetes object, which is how tether finds a resource it created
//! when the response to the create call never arrived.

use std::collections::BTreeMap;

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

/// Whether `desired` tags are all on the resource with these values (tags added by
/// others are left alone).
pub fn tags_differ(desired: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) -> bool {
    desired
        .iter()
        .any(|(key, value)| actual.get(key) != Some(value))
}
