//! The pace of one service's calls under one budget: unlimited until AWS throttles a
//! call, then the rate AWS was seen to refill at, which creeps up while calls succeed
//! and is measured again at the next throttle.
//!
//! AWS meters each service of an account and region with a token bucket: a burst, then
//! a steady refill. A refused call says the bucket is empty; between two refusals the
//! calls AWS accepted are what it refilled, so their count over the time between says
//! how fast it refills. At the first refusal there is no earlier one: the calls
//! accepted over the last [`WINDOW`] stand in (the burst among them makes that too
//! fast when the service was busy for long, too slow when it had just started; the
//! next refusal corrects it). The pace is then [`MARGIN`] of that rate, spaced evenly
//! (no burst of its own), and rises by [`GROWTH`] of it per second without a refusal
//! ([`LEAST_GROWTH`] at least).
//!
//! The SDK's own adaptive limiter is not used: it shares one rate among every service
//! of a retry partition, lowers it by 0.7x the rate it *sent* at per refusal (about 7
//! refusals to fall from a burst's rate to AWS's), cannot go below 0.5 calls a second,
//! and makes a throttled call's retry wait for 10 of its tokens (issue 21: 22-28% of
//! calls refused, 1.7-1.8x the calls, with AWS's bucket at a seventh of the rate the
//! work wanted).

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How far back the calls AWS accepted are counted at a first refusal.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The pace set at a refusal, as a share of the rate AWS was seen to refill at.
pub const MARGIN: f64 = 0.9;
/// How much faster the pace gets per second without a refusal, as a share of the pace
/// set at the last one (linear: 2% a second is 1.2x after 10 s, 2x after 50 s).
pub const GROWTH: f64 = 0.02;
/// The least the pace gets faster per second without a refusal, in calls a second: a
/// pace at the [`FLOOR`] is back at 0.65 calls a second after a minute.
pub const LEAST_GROWTH: f64 = 0.01;
/// The slowest pace: one call in 20 s, so that a service that throttles everything
/// is still asked now and then.
pub const FLOOR: f64 = 0.05;
/// A measure over less time than this is noise: refusals that come within it of the
/// last change are answers to calls sent before it, and refine that change's measure
/// instead of starting a new one.
const SETTLE: Duration = Duration::from_secs(2);
/// One refusal lowers the pace to no less than this share of what it was: a measure
/// taken while the service had little to do (AWS refilled more than it was asked) is
/// too low.
const MOST_CUT: f64 = 0.5;
/// How long sent and refused calls are remembered.
const MEMORY: Duration = Duration::from_secs(300);

/// The pace of one service's calls (see the module's documentation).
#[derive(Debug, Default)]
pub struct Pace {
    state: Mutex<State>,
    /// The line of calls waiting for a turn: one waits at a time, in the order they
    /// came (tokio's mutex is fair).
    line: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The pace set at the last refusal, and how it was measured; `None` (no limit)
    /// until AWS refuses a call.
    set: Option<Setting>,
    /// When the next call may go.
    next: Option<Instant>,
    /// When calls were sent, over the last [`MEMORY`].
    sent: VecDeque<Instant>,
    /// When calls AWS refused were answered, over the last [`MEMORY`].
    refused: VecDeque<Instant>,
}

/// A pace set at a refusal.
#[derive(Clone, Copy, Debug)]
struct Setting {
    /// Calls a second, at `at`.
    rate: f64,
    /// When it was set.
    at: Instant,
    /// The pace before it (unlimited: `None`).
    before: Option<f64>,
    /// The calls sent from here on, less those refused, measured the refill.
    since: Instant,
    /// Over this long.
    over: Duration,
}

impl State {
    /// The pace at `now`: the last setting, grown since.
    fn rate(&self, now: Instant) -> Option<f64> {
        let set = self.set?;
        let seconds = now.saturating_duration_since(set.at).as_secs_f64();
        Some(set.rate + (set.rate * GROWTH).max(LEAST_GROWTH) * seconds)
    }

    /// Calls sent from `since` to `now`, less those refused: what AWS accepted (the
    /// calls still on their way count as accepted).
    fn accepted_between(&self, since: Instant, now: Instant) -> f64 {
        let between = |at: &&Instant| (since..=now).contains(*at);
        let sent = self.sent.iter().filter(between).count();
        let refused = self.refused.iter().filter(between).count();
        sent.saturating_sub(refused) as f64
    }

    fn forget_before(&mut self, now: Instant) {
        for calls in [&mut self.sent, &mut self.refused] {
            while calls
                .front()
                .is_some_and(|&at| now.saturating_duration_since(at) > MEMORY)
            {
                calls.pop_front();
            }
        }
    }
}

impl Pace {
    /// Takes a call's turn at `now` when it is due (`None`: send the call now), or says
    /// how long until the next turn. Turns are not reserved ahead: a call waiting for
    /// one goes at the pace of when it goes, which rises while it waits.
    pub fn turn(&self, now: Instant) -> Option<Duration> {
        let mut state = self.lock();
        state.forget_before(now);
        if let Some(rate) = state.rate(now) {
            let next = state.next.unwrap_or(now);
            if next > now {
                return Some(next - now);
            }
            state.next = Some(now + Duration::from_secs_f64(1.0 / rate));
        }
        state.sent.push_back(now);
        None
    }

    /// Waits for a call's turn: at once when one is due (always, until AWS refuses a
    /// call), else in line behind the calls that came first.
    pub async fn wait(&self) {
        if self.turn(Instant::now()).is_none() {
            return;
        }
        let _first_in_line = self.line.lock().await;
        while let Some(wait) = self.turn(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// AWS refused a call with a throttling error, answered at `now`.
    pub fn refused(&self, now: Instant) {
        let mut state = self.lock();
        state.refused.push_back(now);
        let setting = match state.set {
            // An answer to a call sent before the last change: that change's measure,
            // with this refusal too.
            Some(set) if now.saturating_duration_since(set.at) < SETTLE => Setting {
                rate: measured(&state, set.since, now, set.over, set.before).min(set.rate),
                ..set
            },
            // The bucket was empty at the last change and is empty again: what AWS
            // accepted in between is what it refilled.
            // (Counted from when the answers to calls sent before the last change were
            // in: their refusals are not this measure's.)
            Some(set) => {
                let since = set.at + SETTLE;
                let over = now.saturating_duration_since(since);
                let before = state.rate(now);
                Setting {
                    rate: measured(&state, since, now, over, before),
                    at: now,
                    before,
                    since,
                    over,
                }
            }
            None => {
                let since = now.checked_sub(WINDOW).unwrap_or(now);
                Setting {
                    rate: measured(&state, since, now, WINDOW, None),
                    at: now,
                    before: None,
                    since,
                    over: WINDOW,
                }
            }
        };
        state.set = Some(setting);
        // The bucket is empty: the next call waits for one refill.
        let refill = now + Duration::from_secs_f64(1.0 / setting.rate);
        state.next = Some(state.next.map_or(refill, |next| next.max(refill)));
    }

    /// Calls a second at `now`, once AWS has throttled one.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        self.lock().rate(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pace from what AWS accepted from `since` to `now`, over `over`: [`MARGIN`] of it, no
/// less than [`MOST_CUT`] of the pace `before` (when there was one) and [`FLOOR`].
fn measured(
    state: &State,
    since: Instant,
    now: Instant,
    over: Duration,
    before: Option<f64>,
) -> f64 {
    let refill = state.accepted_between(since, now) / over.as_secs_f64().max(1.0);
    let lowest = before.map_or(FLOOR, |before| (before * MOST_CUT).max(FLOOR));
    (refill * MARGIN).max(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A call sent at `at`, its turn due.
    fn send(pace: &Pace, at: Instant) {
        assert_eq!(pace.turn(at), None, "the call's turn is due");
    }

    fn close(rate: Option<f64>, expected: f64) -> bool {
        rate.is_some_and(|rate| (rate - expected).abs() < 1e-6)
    }

    #[test]
    fn calls_go_at_once_until_aws_throttles_one() {
        let pace = Pace::default();
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(pace.turn(now), None);
        }
        assert_eq!(pace.rate(now), None);
    }

    #[test]
    fn a_first_wave_refused_in_part_sets_the_pace_from_what_was_accepted() {
        let pace = Pace::default();
        let start = Instant::now() + WINDOW;
        // Eight calls at once, AWS's burst holds five: three refused together.
        for _ in 0..8 {
            send(&pace, start);
        }
        for i in 0..3 {
            pace.refused(start + seconds(0.01 * f64::from(i)));
        }
        let rate = 5.0 / WINDOW.as_secs_f64() * MARGIN;
        assert!(close(pace.rate(start), rate));
        // The bucket is empty: a retry waits one refill from the last refusal.
        let now = start + seconds(0.1);
        let wait = pace.turn(now).expect("a wait").as_secs_f64();
        assert!((wait - (1.0 / rate - 0.08)).abs() < 1e-6, "{wait}");
        // Then calls go one at a time, 1/pace apart.
        let due = now + seconds(wait);
        assert_eq!(pace.turn(due), None, "its turn");
        let next = pace.turn(due).expect("the next call waits").as_secs_f64();
        let gap = 1.0 / pace.rate(due).unwrap();
        assert!((next - gap).abs() < 1e-6, "{next} against {gap}");
    }

    #[test]
    fn a_second_refusal_measures_the_refill_between_the_two() {
        let pace = Pace::default();
        let start = Instant::now() + WINDOW;
        // 20 calls over the last 10 s, then one refused: 1.8/s.
        for i in 0..20 {
            send(&pace, start - seconds(0.5 * f64::from(i + 1)));
        }
        pace.refused(start);
        assert!(close(pace.rate(start), 1.9 * MARGIN));
        // Once the answers to the calls sent before are in, 9 calls accepted over 6 s,
        // then one refused: AWS refills 1.5/s.
        for i in 0..9 {
            send(&pace, start + SETTLE + seconds(f64::from(i) / 1.5));
        }
        let throttled_at = start + SETTLE + seconds(6.0);
        send(&pace, throttled_at);
        pace.refused(throttled_at);
        assert!(close(pace.rate(throttled_at), 1.5 * MARGIN));
    }

    #[test]
    fn nothing_accepted_sets_the_floor_and_the_pace_still_climbs_back() {
        let pace = Pace::default();
        let start = Instant::now() + WINDOW;
        send(&pace, start);
        pace.refused(start);
        assert!(close(pace.rate(start), FLOOR));
        // And climbs back.
        let minute = start + seconds(60.0);
        assert!(close(pace.rate(minute), FLOOR + 60.0 * LEAST_GROWTH));
    }

    #[test]
    fn a_refusal_after_an_idle_spell_halves_the_pace_at_most() {
        let pace = Pace::default();
        let start = Instant::now() + WINDOW;
        for i in 0..10 {
            send(&pace, start - seconds(f64::from(i)));
        }
        pace.refused(start);
        let rate = pace.rate(start).unwrap();
        // One call in 60 s, refused: the service had little to ask, AWS not less to give.
        let later = start + seconds(60.0);
        send(&pace, later);
        pace.refused(later);
        let grown = rate * (1.0 + 60.0 * GROWTH);
        assert!(close(pace.rate(later), grown * MOST_CUT));
    }

    #[test]
    fn the_pace_grows_while_calls_succeed() {
        let pace = Pace::default();
        let start = Instant::now() + WINDOW;
        for _ in 0..10 {
            send(&pace, start);
        }
        pace.refused(start);
        let rate = pace.rate(start).unwrap();
        assert!(close(
            pace.rate(start + seconds(10.0)),
            rate * (1.0 + 10.0 * GROWTH)
        ));
    }
}
