//! The rules that decide what tether may do to a cloud resource it sees: whether the
//! resource is this object's to change and delete, and whether a resource the cloud
//! does not show is really missing or only not visible yet. Pure: no I/O.

use std::time::Duration;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta},
    jiff::Timestamp,
};

/// How long after a create a resource the cloud does not show still counts as on its
/// way, whatever a read says. AWS's reads are eventually consistent:
/// `DescribeInstances` may answer `InvalidInstanceID.NotFound`, and tag-filtered reads
/// may omit the instance, for a while after `RunInstances`. After this long, a direct
/// read of the resource's recorded name that finds nothing is taken as proof that it is
/// gone (the runtime observes by name and by UID tag, and only a direct read may say
/// a resource is missing).
pub const CREATE_GRACE: Duration = Duration::from_secs(300);

/// How long after a create that the cloud does not show yet the same create is sent
/// again, and then how often: for when the first never reached the cloud (tether was
/// killed between recording the attempt and sending it). The repeat is harmless when
/// the first did arrive: it carries the same idempotency token or unique name, so the
/// cloud answers with what the first made.
pub const CREATE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whose a cloud resource is, as far as this object is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whose {
    /// This object created it: it records the object's UID.
    Ours,
    /// A user named it in `tether.dev/external-name`, or the object only observes it
    /// (`ObserveOnly`), and no other live object owns it: tether may act on it as the
    /// spec says.
    Adopted,
    /// It records the UID of another object that still exists, in any namespace and
    /// of any kind (DESIGN rule 7): tether never adopts, observes for credentials,
    /// changes or deletes it for this object, whatever the object asks.
    OwnedByAnother,
    /// Someone else's, and nobody asked to adopt it: tether reads it and never writes
    /// to it.
    NotOurs {
        /// Whether it records the UID of an object that no longer exists (it was let go
        /// with `deletionPolicy: Retain`), rather than no UID at all.
        orphaned: bool,
    },
}

/// Who the UID a resource records (its `tether.dev/uid` tag) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// It records no UID.
    Nobody,
    /// The object being reconciled.
    This,
    /// Another object that exists, or one tether cannot prove is gone.
    LiveOther,
    /// An object that no longer exists.
    GoneOther,
}

impl Owner {
    /// Who `recorded` names for the object with `object_uid`; `other_is_live` tells
    /// whether another object with that UID still exists.
    pub fn of(object_uid: Option<&str>, recorded: Option<&str>, other_is_live: bool) -> Self {
        match recorded {
            None => Self::Nobody,
            Some(recorded) if object_uid == Some(recorded) => Self::This,
            Some(_) if other_is_live => Self::LiveOther,
            Some(_) => Self::GoneOther,
        }
    }
}

impl Whose {
    /// Whose the resource is, from who its UID tag names and whether the user asked to
    /// adopt it (`adopted`: the external name set by a user, or `ObserveOnly`).
    pub fn of(owner: Owner, adopted: bool) -> Self {
        match owner {
            Owner::This => Self::Ours,
            Owner::LiveOther => Self::OwnedByAnother,
            Owner::Nobody | Owner::GoneOther if adopted => Self::Adopted,
            Owner::Nobody => Self::NotOurs { orphaned: false },
            Owner::GoneOther => Self::NotOurs { orphaned: true },
        }
    }

    /// Whether tether may act on the resource for this object (observe it for the
    /// connection Secret, change it, delete it per policy).
    pub fn is_ours_to_act_on(&self) -> bool {
        matches!(self, Self::Ours | Self::Adopted)
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

/// What to do about a resource the cloud does not show, when it may be for creating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenMissing {
    /// No create is on its way: it is missing, create it.
    Missing,
    /// A create was sent at this time, less than [`CREATE_RETRY_AFTER`] ago: wait
    /// for it to show.
    Wait(Timestamp),
    /// A create was sent at this time and the cloud still does not show its result:
    /// send the same create again (same attempt time, so the same idempotency token),
    /// in case the first never arrived. Never a new attempt: not seeing a resource is
    /// no proof that it is not there.
    Repeat(Timestamp),
    /// A create was sent at this time, longer ago than [`CREATE_GRACE`], and a direct
    /// read of the name the cloud gave the resource finds nothing: it is gone, and a
    /// create is a new attempt (a new idempotency token).
    Gone(Timestamp),
}

impl WhenMissing {
    /// Decides from the time of the create not yet seen (`create_sent`), whether
    /// the resource's name is known (`named`: the cloud's id was recorded, or the name
    /// is chosen before the create), at `now`.
    pub fn decide(create_sent: Option<Timestamp>, named: bool, now: Timestamp) -> Self {
        let Some(sent) = create_sent else {
            return Self::Missing;
        };
        let waited = waited_since(sent, now);
        if waited < signed(CREATE_RETRY_AFTER) {
            Self::Wait(sent)
        } else if named && waited >= signed(CREATE_GRACE) {
            Self::Gone(sent)
        } else {
            Self::Repeat(sent)
        }
    }
}

/// Whether the deletion of an object whose resource the cloud does not show may
/// finish. Yes when the delete was sent (`delete_sent`) or no create is on its way;
/// while one is (`create_sent`), only after [`CREATE_GRACE`]: letting go earlier
/// would leave running what the create made once the cloud shows it.
pub fn deletion_may_finish(
    create_sent: Option<Timestamp>,
    delete_sent: bool,
    now: Timestamp,
) -> bool {
    delete_sent || create_sent.is_none_or(|sent| waited_since(sent, now) >= signed(CREATE_GRACE))
}

fn waited_since(sent: Timestamp, now: Timestamp) -> k8s_openapi::jiff::SignedDuration {
    now.duration_since(sent)
}

fn signed(duration: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(duration)
        .expect("the periods fit a signed duration")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
    const OTHER: &str = "7d2e4b1a-0000-4000-8000-000000000000";

    /// Every case of the decision: who the UID tag names (by `Owner::of`) against
    /// whether the user asked to adopt the resource.
    #[test]
    fn a_resource_is_acted_on_only_when_ours_or_adopted_from_nobody_alive() {
        use Whose::*;
        let cases = [
            // (recorded UID, another object with it lives, adopted) → claim
            (Some(UID), false, false, Ours),
            (Some(UID), false, true, Ours),
            (None, false, false, NotOurs { orphaned: false }),
            (None, false, true, Adopted),
            (Some(OTHER), true, false, OwnedByAnother),
            (Some(OTHER), true, true, OwnedByAnother),
            (Some(OTHER), false, false, NotOurs { orphaned: true }),
            (Some(OTHER), false, true, Adopted),
        ];
        for (recorded, live, adopted, expected) in cases {
            let owner = Owner::of(Some(UID), recorded, live);
            assert_eq!(
                Whose::of(owner, adopted),
                expected,
                "recorded {recorded:?}, live {live}, adopted {adopted}"
            );
        }
        assert_eq!(Owner::of(None, Some(OTHER), true), Owner::LiveOther);
        assert!(Ours.is_ours_to_act_on() && Adopted.is_ours_to_act_on());
        assert!(!OwnedByAnother.is_ours_to_act_on());
        assert!(!NotOurs { orphaned: true }.is_ours_to_act_on());
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
    fn a_create_not_shown_is_repeated_with_its_token_and_renewed_only_when_gone() {
        let sent: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let at = |seconds: i64| sent + k8s_openapi::jiff::SignedDuration::from_secs(seconds);
        use WhenMissing::*;
        let cases = [
            // (create pending, named, seconds after it) → decision
            (None, false, 0, Missing),
            (None, true, 900, Missing),
            (Some(sent), false, 20, Wait(sent)),
            (Some(sent), true, 20, Wait(sent)),
            (Some(sent), false, -5, Wait(sent)),
            (Some(sent), false, 30, Repeat(sent)),
            (Some(sent), true, 299, Repeat(sent)),
            // No id to read: never proof of absence, the same create again.
            (Some(sent), false, 300, Repeat(sent)),
            (Some(sent), false, 86_400, Repeat(sent)),
            (Some(sent), true, 300, Gone(sent)),
        ];
        for (pending, named, seconds, expected) in cases {
            assert_eq!(
                WhenMissing::decide(pending, named, at(seconds)),
                expected,
                "pending {pending:?}, named {named}, after {seconds} s"
            );
        }
    }

    #[test]
    fn a_deletion_waits_for_a_create_on_its_way_until_the_grace_ends() {
        let sent: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let at = |seconds: i64| sent + k8s_openapi::jiff::SignedDuration::from_secs(seconds);
        let cases = [
            // (create pending, delete sent, seconds after it) → may finish
            (None, false, 0, true),
            (None, true, 0, true),
            (Some(sent), false, 20, false),
            (Some(sent), false, 299, false),
            (Some(sent), true, 20, true),
            (Some(sent), false, 300, true),
        ];
        for (pending, delete_sent, seconds, expected) in cases {
            assert_eq!(
                deletion_may_finish(pending, delete_sent, at(seconds)),
                expected,
                "pending {pending:?}, delete sent {delete_sent}, after {seconds} s"
            );
        }
    }
}
