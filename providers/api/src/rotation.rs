//! Scheduled rotation of the application logins a database hands out: the spec's
//! `passwordRotation`, what the status reports of it, and the pure decision of what is
//! due next.
//!
//! Two logins take turns (`<user>_a`, `<user>_b`). Each rotation gives the idle one a
//! new password and switches the connection Secret to it; `gracePeriod` later, the
//! login the Secret held before gets a password nobody knows. A login is never
//! switched to while its grace period runs, so an application that still holds the
//! previous credentials keeps connecting until that period ends.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `gracePeriod` when the spec names none.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(600);

/// Annotation on an object: a new value rotates its password at once (`kubectl
/// annotate … tether.dev/rotate-now=<anything new>`).
pub const ROTATE_NOW_ANNOTATION: &str = "tether.dev/rotate-now";

/// The Secret that keeps the master credentials of an object whose connection Secret
/// `connection_secret` holds a rotated login.
pub fn master_secret_name(connection_secret: &str) -> String {
    format!("{connection_secret}-master")
}

/// How often tether rotates the password the connection Secret holds.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "duration(self.every) > duration(has(self.gracePeriod) ? self.gracePeriod : '10m')",
    "message": "gracePeriod (default 10m) must be shorter than every: a login is switched to again only after the grace period of the previous switch",
    "fieldPath": ".gracePeriod",
    "reason": "FieldValueInvalid",
}]))]
pub struct PasswordRotation {
    /// Time between two rotations, in Go's duration syntax (`1m`, `24h`, `720h`); at
    /// least `1m`.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('1m')",
        "message": "every must be at least 1m",
        "reason": "FieldValueInvalid",
    }]))]
    pub every: String,

    /// How long the previous login keeps working after a rotation, for applications
    /// that read the Secret late (kubelet refreshes a mounted Secret within about a
    /// minute) and for pooled connections. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub grace_period: Option<String>,
}

/// A `passwordRotation` field that does not parse (the CRD's schema refuses it first).
#[derive(Debug, thiserror::Error)]
#[error("passwordRotation.{field} {value:?} is not a duration like 1m, 24h or 1h30m")]
pub struct InvalidDuration {
    field: &'static str,
    value: String,
}

/// A rotation schedule, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSchedule {
    /// Time between two rotations.
    pub every: Duration,
    /// How long the previous login keeps working.
    pub grace_period: Duration,
}

impl PasswordRotation {
    /// The schedule this spec asks for.
    pub fn schedule(&self) -> Result<RotationSchedule, InvalidDuration> {
        let every = parse_duration("every", &self.every)?;
        let grace_period = match &self.grace_period {
            Some(grace) => parse_duration("gracePeriod", grace)?,
            None => DEFAULT_GRACE_PERIOD,
        };
        Ok(RotationSchedule {
            every,
            grace_period,
        })
    }
}

/// `value` in Go's duration syntax (`90s`, `1m`, `24h`, `1h30m`), which the schema's
/// pattern admits and CEL's `duration()` reads.
fn parse_duration(field: &'static str, value: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration {
        field,
        value: value.to_owned(),
    };
    let mut total = 0f64;
    let mut rest = value;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// One of the two application logins that take turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// `<user>_a`.
    A,
    /// `<user>_b`.
    B,
}

impl Login {
    /// The other login.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// The login's name for the master user `user`: `<user>_a` or `<user>_b`.
    pub fn name(self, user: &str) -> String {
        match self {
            Self::A => format!("{user}_a"),
            Self::B => format!("{user}_b"),
        }
    }

    /// Which login `name` is, for the master user `user`.
    pub fn of(name: &str, user: &str) -> Option<Self> {
        [Self::A, Self::B]
            .into_iter()
            .find(|login| login.name(user) == name)
    }
}

/// What the connection Secret records of the last rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRotation {
    /// The login the Secret holds.
    pub login: Login,
    /// When the Secret was switched to it.
    pub at: Timestamp,
    /// The `tether.dev/rotate-now` value the switch answered, if any.
    pub answered: Option<String>,
    /// Whether the other login's password was changed to one nobody knows since.
    pub previous_retired: bool,
}

impl LastRotation {
    /// `duration` after the switch: when its grace period ends, or the next rotation
    /// is due.
    pub fn after(&self, duration: Duration) -> Timestamp {
        self.at.checked_add(duration).unwrap_or(Timestamp::MAX)
    }
}

/// What is due for an object's logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// Give `to` a new password and switch the Secret to it.
    Switch {
        /// The login to switch to.
        to: Login,
        /// Why, in words, for the Event.
        why: &'static str,
    },
    /// Change the password of the login the Secret held before to one nobody knows.
    Retire(Login),
    /// Nothing until `until`.
    Wait {
        /// When something falls due.
        until: Timestamp,
    },
}

/// What is due at `now` under `schedule`, given the Secret's record of the `last`
/// rotation (`None`: the Secret holds no login yet) and the object's
/// `tether.dev/rotate-now` value `asked`.
///
/// The previous login is retired once its grace period has run; only then may the
/// Secret switch again (to it, with a new password), whatever the schedule or a
/// `rotate-now` asks, so that nobody holding it loses it early.
pub fn decide(
    now: Timestamp,
    schedule: RotationSchedule,
    last: Option<&LastRotation>,
    asked: Option<&str>,
) -> RotationStep {
    let Some(last) = last else {
        return RotationStep::Switch {
            to: Login::A,
            why: "first login",
        };
    };
    let grace_ends = last.after(schedule.grace_period);
    if !last.previous_retired {
        return if now >= grace_ends {
            RotationStep::Retire(last.login.other())
        } else {
            RotationStep::Wait { until: grace_ends }
        };
    }
    if asked.is_some() && asked != last.answered.as_deref() {
        return RotationStep::Switch {
            to: last.login.other(),
            why: "asked by the tether.dev/rotate-now annotation",
        };
    }
    let due = last.after(schedule.every);
    if now >= due {
        RotationStep::Switch {
            to: last.login.other(),
            why: "scheduled",
        }
    } else {
        RotationStep::Wait { until: due }
    }
}

/// The rotation of an object's logins, as its status reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// The login the connection Secret holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// When the connection Secret was last switched to a new login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<Time>,
    /// When the next rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn schedule() -> RotationSchedule {
        RotationSchedule {
            every: 10 * MINUTE,
            grace_period: 2 * MINUTE,
        }
    }

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minutes * 60).unwrap()
    }

    fn last(login: Login, minutes: i64, retired: bool, answered: Option<&str>) -> LastRotation {
        LastRotation {
            login,
            at: at(minutes),
            answered: answered.map(str::to_owned),
            previous_retired: retired,
        }
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        for (text, seconds) in [
            ("1m", 60.0),
            ("90s", 90.0),
            ("1h30m", 5400.0),
            ("720h", 2_592_000.0),
            ("1.5m", 90.0),
            ("500ms", 0.5),
        ] {
            let rotation = PasswordRotation {
                every: text.to_owned(),
                grace_period: Some("1s".to_owned()),
            };
            assert_eq!(
                rotation.schedule().unwrap().every.as_secs_f64(),
                seconds,
                "{text}"
            );
        }
        for bad in ["", "1", "m", "1d", "1 m", "-1m", "1m-"] {
            let rotation = PasswordRotation {
                every: bad.to_owned(),
                grace_period: None,
            };
            assert!(rotation.schedule().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_grace_period_defaults_to_ten_minutes() {
        let rotation = PasswordRotation {
            every: "24h".to_owned(),
            grace_period: None,
        };
        assert_eq!(rotation.schedule().unwrap().grace_period, 10 * MINUTE);
    }

    #[test]
    fn logins_alternate_and_are_named_after_the_master_user() {
        assert_eq!(Login::A.name("boss"), "boss_a");
        assert_eq!(Login::B.name("boss"), "boss_b");
        assert_eq!(Login::A.other(), Login::B);
        assert_eq!(Login::of("boss_b", "boss"), Some(Login::B));
        assert_eq!(Login::of("boss", "boss"), None);
        assert_eq!(Login::of("other_a", "boss"), None);
    }

    #[test]
    fn each_step_falls_due_in_turn() {
        use RotationStep::*;
        let cases = [
            (
                "no login yet",
                None,
                0,
                None,
                Switch {
                    to: Login::A,
                    why: "first login",
                },
            ),
            (
                "in the grace period",
                Some(last(Login::A, 0, false, None)),
                1,
                None,
                Wait { until: at(2) },
            ),
            (
                "the grace period has run",
                Some(last(Login::A, 0, false, None)),
                2,
                None,
                Retire(Login::B),
            ),
            (
                "retired, not due",
                Some(last(Login::A, 0, true, None)),
                5,
                None,
                Wait { until: at(10) },
            ),
            (
                "due",
                Some(last(Login::A, 0, true, None)),
                10,
                None,
                Switch {
                    to: Login::B,
                    why: "scheduled",
                },
            ),
            (
                "long overdue, after a controller outage",
                Some(last(Login::B, 0, true, None)),
                500,
                None,
                Switch {
                    to: Login::A,
                    why: "scheduled",
                },
            ),
            (
                "asked to rotate now",
                Some(last(Login::A, 0, true, None)),
                3,
                Some("1"),
                Switch {
                    to: Login::B,
                    why: "asked by the tether.dev/rotate-now annotation",
                },
            ),
            (
                "the same ask, answered before",
                Some(last(Login::B, 0, true, Some("1"))),
                3,
                Some("1"),
                Wait { until: at(10) },
            ),
            (
                "asked during the grace period: the grace period runs first",
                Some(last(Login::A, 0, false, Some("1"))),
                1,
                Some("2"),
                Wait { until: at(2) },
            ),
            (
                "overdue in the grace period: still the grace period first",
                Some(last(Login::A, 0, false, None)),
                1,
                None,
                Wait { until: at(2) },
            ),
        ];
        for (case, last, now, asked, expected) in cases {
            assert_eq!(
                decide(at(now), schedule(), last.as_ref(), asked),
                expected,
                "{case}"
            );
        }
    }
}
