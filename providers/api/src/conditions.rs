//! The `Ready` and `Synced` status conditions every managed resource reports, and the
//! rule that `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// Condition type: the cloud resource exists and is usable.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile succeeded.
pub const SYNCED: &str = "Synced";

pub mod reasons;

/// A condition to record, before it is given its times and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// The condition type, e.g. [`READY`].
    pub type_: &'static str,
    /// Whether the condition holds.
    pub status: bool,
    /// A CamelCase reason, e.g. `Available`, `ReconcileError`.
    pub reason: String,
    /// A human-readable message; never holds a secret.
    pub message: String,
}

impl ConditionUpdate {
    /// A condition that holds.
    pub fn holds(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn fails(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Writes `update` into `conditions`, for an object at `generation`, at `now`.
///
/// `lastTransitionTime` keeps its old value unless the status changed, so a condition
/// rewritten on every poll does not look like a fresh transition.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if update.status { "True" } else { "False" };
    let previous = conditions.iter().position(|c| c.type_ == update.type_);
    let last_transition_time = match previous.map(|index| &conditions[index]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason,
        message: update.message,
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(index) => conditions[index] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_new_condition_is_added_with_the_current_time() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::fails(READY, "Creating", "the database is being created"),
            Some(1),
            at(0),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "Creating");
        assert_eq!(conditions[0].observed_generation, Some(1));
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::fails(READY, "Creating", "a"),
            Some(1),
            at(0),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::fails(READY, "Modifying", "b"),
            Some(2),
            at(60),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at(0)),
            "same status: time kept"
        );
        assert_eq!(
            conditions[0].reason, "Modifying",
            "reason and message still follow"
        );
        assert_eq!(conditions[0].observed_generation, Some(2));

        set_condition(
            &mut conditions,
            ConditionUpdate::holds(READY, "Available", "c"),
            Some(2),
            at(120),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at(120)),
            "new status: time moves"
        );
        assert!(is_true(&conditions, READY));
    }

    #[test]
    fn conditions_of_other_types_are_left_alone() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::holds(SYNCED, "ReconcileSuccess", ""),
            Some(1),
            at(0),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::fails(READY, "Creating", ""),
            Some(1),
            at(5),
        );
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, SYNCED));
        assert!(!is_true(&conditions, READY));
        assert_eq!(
            find(&conditions, SYNCED).unwrap().last_transition_time,
            Time(at(0))
        );
    }
}
