//! When to look again: the poll interval with jitter, per-object exponential backoff
//! after failures, and a shared pause per ProviderConfig while AWS throttles it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// First delay after a transient failure; doubles per consecutive failure.
const TRANSIENT_BASE: Duration = Duration::from_secs(5);
/// First delay after a throttled call; doubles per consecutive failure. Short: the
/// provider's shared budget already paces the calls that follow (an AWS client waits
/// for it), so this only spreads the throttled ProviderConfig's reconciles out; a long
/// pause would leave the budget idle and the objects unconverged.
const THROTTLED_BASE: Duration = Duration::from_secs(10);
/// The longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// `interval`, moved at random by up to a tenth either way, so objects created together
/// do not poll together.
pub fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// How long a finalizer this controller added is awaited in its cache before it is
/// added again (the cache lags a write by its watch event, normally milliseconds).
const FINALIZER_IN_FLIGHT: Duration = Duration::from_secs(30);

/// How long this process remembers a create it sent and has not seen the result of
/// ([`Pacing::create_sent`]): far longer than a watch cache lags the annotations that
/// record it, and than the cloud's read lag.
const CREATE_REMEMBERED: Duration = Duration::from_secs(3600);

/// Consecutive failures per object, throttling pauses per ProviderConfig, and what
/// was done recently per object.
#[derive(Debug, Default)]
pub struct Pacing {
    failures: Mutex<HashMap<String, u32>>,
    throttled_until: Mutex<HashMap<String, Instant>>,
    create_repeated: Marks,
    finalizer_added: Marks,
    creates: Mutex<HashMap<String, (Instant, SentCreate)>>,
    planned_creates: Mutex<HashMap<String, (Instant, k8s_openapi::jiff::Timestamp)>>,
}

/// A create this process sent for an object, as tether records it in the object's
/// annotations: kept in memory too, because the object's cache may not show those
/// annotations yet when the next reconcile starts, and without them that reconcile
/// would take the resource the cloud does not show yet for missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCreate {
    /// When the create was first attempted (`tether.dev/create-pending`).
    pub attempt: k8s_openapi::jiff::Timestamp,
    /// The name the cloud gave the resource, once the create answered
    /// (`tether.dev/external-name`).
    pub external_name: Option<String>,
}

/// When each object was last marked; a mark older than the period asked about is
/// forgotten.
#[derive(Debug, Default)]
struct Marks(Mutex<HashMap<String, Instant>>);

impl Marks {
    /// Whether `uid` was marked within `period`.
    fn within(&self, uid: &str, period: Duration) -> bool {
        let now = Instant::now();
        let mut marks = lock(&self.0);
        marks.retain(|_, at| now.duration_since(*at) < period);
        marks.contains_key(uid)
    }

    fn mark(&self, uid: &str) {
        lock(&self.0).insert(uid.to_owned(), Instant::now());
    }

    fn forget(&self, uid: &str) {
        lock(&self.0).remove(uid);
    }
}

impl Pacing {
    /// Forgets the failures of object `uid` after a successful reconcile.
    pub fn succeeded(&self, uid: &str) {
        lock(&self.failures).remove(uid);
    }

    /// The delay before retrying object `uid` after another failure, doubling from
    /// `base` (transient) or a longer base when `throttled`.
    pub fn failed(&self, uid: &str, throttled: bool) -> Duration {
        let mut failures = lock(&self.failures);
        let count = failures.entry(uid.to_owned()).or_default();
        *count = count.saturating_add(1);
        let base = if throttled {
            THROTTLED_BASE
        } else {
            TRANSIENT_BASE
        };
        let exponent = (*count - 1).min(16);
        jitter(base.saturating_mul(1 << exponent).min(MAX_BACKOFF))
    }

    /// Holds every object of ProviderConfig `name` back for `pause`, so that a throttled
    /// account gets fewer calls from all of them, not just the one that was refused.
    pub fn throttle(&self, name: &str, pause: Duration) {
        let until = Instant::now() + pause;
        let mut throttled = lock(&self.throttled_until);
        let entry = throttled.entry(name.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether object `uid` may send its unconfirmed create again now: not within
    /// `every` of the last repeat (a restart forgets, which costs one more repeat of
    /// an idempotent call at most). Records the repeat when it is due.
    pub fn create_repeat_due(&self, uid: &str, every: Duration) -> bool {
        if self.create_repeated.within(uid, every) {
            return false;
        }
        self.create_repeated.mark(uid);
        true
    }

    /// Records that object `uid`'s finalizer was just added.
    pub fn finalizer_added(&self, uid: &str) {
        self.finalizer_added.mark(uid);
    }

    /// Whether object `uid`'s finalizer was added lately and its watch event is still on
    /// its way (the cache shows the object without it): adding it again would change
    /// nothing, and the event brings the object back.
    pub fn finalizer_in_flight(&self, uid: &str) -> bool {
        self.finalizer_added.within(uid, FINALIZER_IN_FLIGHT)
    }

    /// Records that the cache shows object `uid`'s finalizer.
    pub fn finalizer_seen(&self, uid: &str) {
        self.finalizer_added.forget(uid);
    }

    /// Records that object `uid`'s create was marked for `attempt` (with its finalizer,
    /// in a reconcile that makes no cloud write) and is not sent yet: the next
    /// reconcile sends it as that attempt instead of waiting for it.
    pub fn create_planned(&self, uid: &str, attempt: k8s_openapi::jiff::Timestamp) {
        lock(&self.planned_creates).insert(uid.to_owned(), (Instant::now(), attempt));
    }

    /// The attempt object `uid`'s create was marked for and not sent yet, if any.
    pub fn planned_create(&self, uid: &str) -> Option<k8s_openapi::jiff::Timestamp> {
        let mut planned = lock(&self.planned_creates);
        planned.retain(|_, (at, _)| at.elapsed() < CREATE_REMEMBERED);
        planned.get(uid).map(|(_, attempt)| *attempt)
    }

    /// Records that a create first attempted at `attempt` is being sent for object
    /// `uid` (a repeat keeps the first attempt's record).
    pub fn create_sent(&self, uid: &str, attempt: k8s_openapi::jiff::Timestamp) {
        lock(&self.planned_creates).remove(uid);
        let mut creates = lock(&self.creates);
        if creates
            .get(uid)
            .is_none_or(|(_, sent)| sent.attempt != attempt)
        {
            let sent = SentCreate {
                attempt,
                external_name: None,
            };
            creates.insert(uid.to_owned(), (Instant::now(), sent));
        }
    }

    /// Records the name the cloud gave the resource object `uid`'s create made.
    pub fn create_answered(&self, uid: &str, external_name: &str) {
        if let Some((_, sent)) = lock(&self.creates).get_mut(uid) {
            sent.external_name = Some(external_name.to_owned());
        }
    }

    /// Forgets object `uid`'s create: the cloud shows its result, or it was refused.
    pub fn create_settled(&self, uid: &str) {
        lock(&self.planned_creates).remove(uid);
        lock(&self.creates).remove(uid);
    }

    /// The create this process sent for object `uid` and has not seen settle, if any.
    pub fn create_in_flight(&self, uid: &str) -> Option<SentCreate> {
        let mut creates = lock(&self.creates);
        creates.retain(|_, (at, _)| at.elapsed() < CREATE_REMEMBERED);
        creates.get(uid).map(|(_, sent)| sent.clone())
    }

    /// How long objects of ProviderConfig `name` must still wait, if they must.
    pub fn throttled_for(&self, name: &str) -> Option<Duration> {
        let mut throttled = lock(&self.throttled_until);
        let until = *throttled.get(name)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            throttled.remove(name);
        }
        left
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..1000 {
            let jittered = jitter(Duration::from_secs(100));
            assert!(jittered >= Duration::from_secs(90) && jittered <= Duration::from_secs(110));
        }
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets_on_success() {
        let pacing = Pacing::default();
        let delays: Vec<Duration> = (0..10).map(|_| pacing.failed("a", false)).collect();
        let within = |delay: Duration, nominal: u64| {
            let nominal = Duration::from_secs(nominal);
            delay >= nominal.mul_f64(0.9) && delay <= nominal.mul_f64(1.1)
        };
        assert!(within(delays[0], 5), "{delays:?}");
        assert!(within(delays[1], 10), "{delays:?}");
        assert!(within(delays[3], 40), "{delays:?}");
        assert!(within(delays[9], 600), "capped: {delays:?}");
        assert!(
            within(pacing.failed("b", true), 10),
            "throttled starts higher"
        );

        pacing.succeeded("a");
        assert!(within(pacing.failed("a", false), 5), "reset after success");
    }

    #[test]
    fn an_unconfirmed_create_is_repeated_at_most_once_per_period() {
        let pacing = Pacing::default();
        let every = Duration::from_millis(200);
        assert!(pacing.create_repeat_due("a", every));
        assert!(!pacing.create_repeat_due("a", every), "not again so soon");
        assert!(pacing.create_repeat_due("b", every), "per object");
        std::thread::sleep(every);
        assert!(pacing.create_repeat_due("a", every), "due again");
    }

    #[test]
    fn an_added_finalizer_is_awaited_until_seen() {
        let pacing = Pacing::default();
        assert!(!pacing.finalizer_in_flight("a"));
        pacing.finalizer_added("a");
        assert!(pacing.finalizer_in_flight("a"));
        assert!(!pacing.finalizer_in_flight("b"), "per object");
        pacing.finalizer_seen("a");
        assert!(!pacing.finalizer_in_flight("a"), "seen: no longer awaited");
    }

    #[test]
    fn a_sent_create_is_remembered_with_its_answer_until_settled() {
        let pacing = Pacing::default();
        let first: k8s_openapi::jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        assert_eq!(pacing.create_in_flight("a"), None);
        pacing.create_sent("a", first);
        pacing.create_answered("a", "i-1");
        pacing.create_sent("a", first);
        assert_eq!(
            pacing.create_in_flight("a"),
            Some(SentCreate {
                attempt: first,
                external_name: Some("i-1".to_owned())
            }),
            "a repeat keeps the first answer"
        );
        assert_eq!(pacing.create_in_flight("b"), None, "per object");
        let second = first + k8s_openapi::jiff::SignedDuration::from_secs(400);
        pacing.create_sent("a", second);
        assert_eq!(
            pacing.create_in_flight("a").unwrap().external_name,
            None,
            "a new attempt starts afresh"
        );
        pacing.create_settled("a");
        assert_eq!(pacing.create_in_flight("a"), None);
    }

    #[test]
    fn a_throttle_pause_covers_its_provider_config_only_and_ends() {
        let pacing = Pacing::default();
        pacing.throttle("default", Duration::from_secs(60));
        assert!(pacing.throttled_for("default").unwrap() > Duration::from_secs(59));
        assert_eq!(pacing.throttled_for("other"), None);
        pacing.throttle("short", Duration::ZERO);
        assert_eq!(pacing.throttled_for("short"), None);
    }
}
