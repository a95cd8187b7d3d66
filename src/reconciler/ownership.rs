//! The rules that decide what tether may do to a cloud resource it sees: whether the
//! resource is this object's to change and delete, and whether a resource the cloud
//! does not show is really missing or only not visible yet. Pure: no I/O.

use std::time::Duration;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta},
    jiff::Timestamp,
};

/// How long after a create a resource the cloud does not show still counts as on its
/// way. AWS's reads are eventually consistent: `DescribeInstances` may answer
/// `InvalidInstanceID.NotFound`, and tag-filtered reads may omit the instance, for a
/// while after `RunInstances`.
pub const CREATE_GRACE: Duration = Duration::from_secs(300);

/// How long after a create that the cloud does not show yet the same create is sent
/// again, and then how often: for when the first never reached the cloud (tether was
/// killed between recording the attempt and sending it). The repeat is harmless when
/// the first did arrive: it carries the same idempotency token or unique name, so the
/// cloud answers with what the first made.
pub const CREATE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whose a cloud resource is, as far as this object is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This object created it: it records the object's UID.
    Ours,
    /// A user named it in `tether.dev/external-name`, or the object only observes it
    /// (`ObserveOnly`): tether may act on it as the spec says.
    Adopted,
    /// Someone else's: tether reads it and never writes to it. `owner_uid` is the UID
    /// it records, if any.
    NotOurs { owner_uid: Option<String> },
}

impl Claim {
    /// Whose the resource is: ours when it records `object_uid`, adopted when the
    /// user asked for it (`adopted`), else not ours.
    pub fn of(object_uid: Option<&str>, owner_uid: Option<&str>, adopted: bool) -> Self {
        match (object_uid, owner_uid) {
            (Some(object_uid), Some(owner_uid)) if object_uid == owner_uid => Self::Ours,
            _ if adopted => Self::Adopted,
            _ => Self::NotOurs {
                owner_uid: owner_uid.map(str::to_owned),
            },
        }
    }
}

/// Whether a user (any field manager but `own_manager`) set the annotation `key` on
/// the object, as the API server's managed fields record it. tether records the
/// external name itself, and its own record is no adoption: a user adopts a resource
/// by setting the annotation, with `kubectl annotate`, `kubectl apply` or any client.
pub fn annotation_set_by_user(meta: &ObjectMeta, key: &str, own_manager: &str) -> bool {
    meta.managed_fields
        .iter()
        .flatten()
        .any(|entry| sets_annotation(entry, key, own_manager))
}

/// Whether `entry` is another manager's than `own_manager` and owns annotation `key`.
fn sets_annotation(entry: &ManagedFieldsEntry, key: &str, own_manager: &str) -> bool {
    entry.manager.as_deref() != Some(own_manager)
        && entry.fields_v1.as_ref().is_some_and(|fields| {
            fields
                .0
                .pointer("/f:metadata/f:annotations")
                .and_then(|annotations| annotations.get(format!("f:{key}")))
                .is_some()
        })
}

/// Keeps of `meta`'s managed fields only what [`annotation_set_by_user`] reads for
/// `key`: the entries of other managers that own it, each cut down to that one field.
/// A cached object then holds a few bytes of managed fields instead of a few KiB.
pub fn keep_only_annotation_owners(meta: &mut ObjectMeta, key: &str, own_manager: &str) {
    let field = format!("f:{key}");
    let Some(entries) = meta.managed_fields.take() else {
        return;
    };
    let kept: Vec<ManagedFieldsEntry> = entries
        .into_iter()
        .filter(|entry| sets_annotation(entry, key, own_manager))
        .map(|entry| ManagedFieldsEntry {
            manager: entry.manager,
            fields_v1: Some(FieldsV1(serde_json::json!({
                "f:metadata": {"f:annotations": {field.clone(): {}}}
            }))),
            ..ManagedFieldsEntry::default()
        })
        .collect();
    meta.managed_fields = (!kept.is_empty()).then_some(kept);
}

/// What to do about a resource the cloud does not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenMissing {
    /// No create is on its way: it is missing.
    Missing,
    /// A create was sent at this time, less than [`CREATE_RETRY_AFTER`] ago: wait
    /// for it to show.
    Wait(Timestamp),
    /// A create was sent at this time, within [`CREATE_GRACE`] but longer than
    /// [`CREATE_RETRY_AFTER`] ago: send the same create again (same attempt time,
    /// same idempotency token), in case the first never arrived.
    Repeat(Timestamp),
    /// A create was sent at this time, longer ago than [`CREATE_GRACE`], and the
    /// resource never showed: it is missing after all.
    GaveUpWaiting(Timestamp),
}

impl WhenMissing {
    /// Decides from the time of the create not yet seen (`create_pending`), at `now`.
    pub fn decide(create_pending: Option<Timestamp>, now: Timestamp) -> Self {
        let Some(sent) = create_pending else {
            return Self::Missing;
        };
        let waited = now.duration_since(sent);
        let signed = |duration: Duration| {
            k8s_openapi::jiff::SignedDuration::try_from(duration)
                .expect("the periods fit a signed duration")
        };
        if waited < signed(CREATE_RETRY_AFTER) {
            Self::Wait(sent)
        } else if waited < signed(CREATE_GRACE) {
            Self::Repeat(sent)
        } else {
            Self::GaveUpWaiting(sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
    const OTHER: &str = "7d2e4b1a-0000-4000-8000-000000000000";

    #[test]
    fn a_resource_with_our_uid_is_ours_even_when_named_by_hand() {
        assert_eq!(Claim::of(Some(UID), Some(UID), false), Claim::Ours);
        assert_eq!(Claim::of(Some(UID), Some(UID), true), Claim::Ours);
    }

    #[test]
    fn a_resource_without_our_uid_is_not_ours_unless_adopted() {
        assert_eq!(
            Claim::of(Some(UID), None, false),
            Claim::NotOurs { owner_uid: None }
        );
        assert_eq!(
            Claim::of(Some(UID), Some(OTHER), false),
            Claim::NotOurs {
                owner_uid: Some(OTHER.to_owned())
            }
        );
        assert_eq!(Claim::of(Some(UID), None, true), Claim::Adopted);
        assert_eq!(Claim::of(Some(UID), Some(OTHER), true), Claim::Adopted);
        assert_eq!(
            Claim::of(None, Some(OTHER), false),
            Claim::NotOurs {
                owner_uid: Some(OTHER.to_owned())
            }
        );
    }

    fn managed_by(manager: &str, annotations: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Update".to_owned()),
            fields_v1: Some(FieldsV1(
                json!({"f:metadata": {"f:annotations": annotations}}),
            )),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn an_annotation_counts_as_the_users_only_when_another_manager_set_it() {
        let key = "tether.dev/external-name";
        let by_tether = ObjectMeta {
            managed_fields: Some(vec![managed_by(
                "tether",
                json!({"f:tether.dev/external-name": {}}),
            )]),
            ..ObjectMeta::default()
        };
        assert!(!annotation_set_by_user(&by_tether, key, "tether"));
        let by_user = ObjectMeta {
            managed_fields: Some(vec![
                managed_by("tether", json!({"f:tether.dev/create-pending": {}})),
                managed_by(
                    "kubectl-annotate",
                    json!({"f:tether.dev/external-name": {}}),
                ),
            ]),
            ..ObjectMeta::default()
        };
        assert!(annotation_set_by_user(&by_user, key, "tether"));
        let other_annotation = ObjectMeta {
            managed_fields: Some(vec![managed_by(
                "kubectl-client-side-apply",
                json!({"f:team": {}}),
            )]),
            ..ObjectMeta::default()
        };
        assert!(!annotation_set_by_user(&other_annotation, key, "tether"));
        assert!(!annotation_set_by_user(
            &ObjectMeta::default(),
            key,
            "tether"
        ));
    }

    #[test]
    fn cut_down_managed_fields_still_tell_who_set_the_annotation() {
        let key = "tether.dev/external-name";
        let mut spec_and_name = managed_by(
            "kubectl-client-side-apply",
            json!({"f:tether.dev/external-name": {}, "f:team": {}}),
        );
        spec_and_name.fields_v1.as_mut().unwrap().0["f:spec"] =
            json!({"f:engine": {}, "f:allocatedStorage": {}});
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![
                managed_by("tether", json!({"f:tether.dev/external-name": {}})),
                managed_by("kubectl-annotate", json!({"f:team": {}})),
                spec_and_name,
            ]),
            ..ObjectMeta::default()
        };
        keep_only_annotation_owners(&mut meta, key, "tether");
        assert_eq!(
            meta.managed_fields,
            Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl-client-side-apply".to_owned()),
                fields_v1: Some(FieldsV1(json!({
                    "f:metadata": {"f:annotations": {"f:tether.dev/external-name": {}}}
                }))),
                ..ManagedFieldsEntry::default()
            }])
        );
        assert!(annotation_set_by_user(&meta, key, "tether"));

        let mut named_by_tether = ObjectMeta {
            managed_fields: Some(vec![managed_by(
                "tether",
                json!({"f:tether.dev/external-name": {}}),
            )]),
            ..ObjectMeta::default()
        };
        keep_only_annotation_owners(&mut named_by_tether, key, "tether");
        assert_eq!(named_by_tether.managed_fields, None);
        assert!(!annotation_set_by_user(&named_by_tether, key, "tether"));
    }

    #[test]
    fn a_resource_not_shown_after_a_create_is_waited_for_within_the_grace() {
        let sent: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let at = |seconds: i64| sent + k8s_openapi::jiff::SignedDuration::from_secs(seconds);
        assert_eq!(WhenMissing::decide(None, at(0)), WhenMissing::Missing);
        assert_eq!(
            WhenMissing::decide(Some(sent), at(20)),
            WhenMissing::Wait(sent)
        );
        assert_eq!(
            WhenMissing::decide(Some(sent), at(30)),
            WhenMissing::Repeat(sent)
        );
        assert_eq!(
            WhenMissing::decide(Some(sent), at(299)),
            WhenMissing::Repeat(sent)
        );
        assert_eq!(
            WhenMissing::decide(Some(sent), at(300)),
            WhenMissing::GaveUpWaiting(sent)
        );
        // A clock that went backwards still waits.
        assert_eq!(
            WhenMissing::decide(Some(sent), at(-5)),
            WhenMissing::Wait(sent)
        );
    }
}
