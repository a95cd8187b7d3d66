//! Leader election on a `Lease` (kube-lease-manager): of the replicas that share a
//! lease, only the holder runs the controllers, so only one writes to AWS and to the
//! cluster. A replica that stops releases the lease, and a standby that sees the lease
//! released takes it at once instead of waiting for it to expire.
//!
//! A leader stops writing the moment it can no longer be sure it leads, as
//! controller-runtime's does, and not when some task gets round to noticing:
//!
//! - **By the clock.** Every write, to AWS ([`crate::reconciler`]'s gated clients) and
//!   to the cluster ([`crate::kube_client`]'s write gate), first asks the [`WriteGate`]
//!   whether the lease, as last seen renewed, still holds now: its `renewTime` plus its
//!   duration, less a margin of a third of the duration. Others take the lease only
//!   once the whole duration has passed, so the old leader stops a third of the
//!   duration before a new one can start, which covers clock skew between nodes and the
//!   time a write takes to arrive. The check reads the clocks itself (the wall clock,
//!   which the lease's times are on, and the monotonic one, which a wall clock set back
//!   does not fool): a process that was stalled (SIGSTOP, a paused VM, a long stall)
//!   finds the gate closed when it resumes, whatever its tasks do first.
//! - **Renewing early.** The holder renews every third of the duration, so a renewal
//!   may be a third of the duration late (a slow API server, a conflict retried) before
//!   the gate closes (controller-runtime: renew every 2 s, stop after 10 s without
//!   renewal, 15 s lease). The renewals are kube-lease-manager's, and it says only when
//!   the holder changes, not when it renewed: the times come from the `Lease` itself,
//!   watched here, each renewal's `renewTime` moving the gate's deadline on. When the
//!   deadline comes without a renewal seen, the lease is read directly; if that shows
//!   no renewal either, this replica has lost the lease. A renewal the API server
//!   answers with an error loses it at once.
//! - **Exiting.** A replica that loses the lease (it names another holder or none, a
//!   renewal failed, or the deadline passed) stops competing, and `tether run` exits at
//!   once with an error, dropping every running reconcile where it is: they could only
//!   write for a replica that no longer leads. Dropping alone would not do: a
//!   reconcile is a task of its own, and one running on another thread goes on to its
//!   next write before it notices; the gate stops that write. Kubernetes restarts the
//!   process as a standby. Stopping on SIGTERM is different: the leader gives running
//!   reconciles their grace, then releases the lease.
//!
//! Without `--leader-elect` the gate is always open.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// Where and as whom this replica competes for the lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod's name).
    pub identity: String,
    /// How long the lease holds without renewal: the longest a crashed leader keeps
    /// the others waiting. At least [`SHORTEST_LEASE`].
    pub duration: Duration,
}

/// The shortest lease duration: the holder renews every third of it, in whole seconds.
pub const SHORTEST_LEASE: Duration = Duration::from_secs(3);

/// How long to wait before competing again after an error talking to the API server.
const RETRY: Duration = Duration::from_secs(2);

/// Why a write was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "this replica cannot be sure it still holds the leader lease, so it writes nothing; \
         the leader does"
    )]
    NotLeading,
}

/// Whether this replica may write now, to AWS or to the cluster: always without leader
/// election; with it, only while the lease it holds has not run out by the clock
/// (see the module's doc). Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct WriteGate {
    /// The end of this replica's tenure, when it leads; `None` inside for a replica
    /// that does not lead. No state at all: no leader election, always open.
    tenure: Option<Arc<Mutex<Option<Tenure>>>>,
}

/// Until when a leader may write, on both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tenure {
    /// On the wall clock, which the lease's `renewTime` is on.
    until: SystemTime,
    /// The same instant on the monotonic clock, as it stood when the tenure was
    /// learned: a wall clock set back later does not lengthen it.
    until_monotonic: Instant,
}

impl Tenure {
    fn new(until: SystemTime, now: SystemTime, now_monotonic: Instant) -> Self {
        Self {
            until,
            until_monotonic: now_monotonic + until.duration_since(now).unwrap_or_default(),
        }
    }

    fn holds(&self, now: SystemTime, now_monotonic: Instant) -> bool {
        now < self.until && now_monotonic < self.until_monotonic
    }
}

impl WriteGate {
    /// A gate for a replica that competes for the lease: closed until it leads.
    pub fn elected() -> Self {
        Self {
            tenure: Some(Arc::default()),
        }
    }

    /// Whether this replica may write now.
    pub fn check(&self) -> Result<(), Error> {
        if self.is_open_at(SystemTime::now(), Instant::now()) {
            Ok(())
        } else {
            Err(Error::NotLeading)
        }
    }

    fn is_open_at(&self, now: SystemTime, now_monotonic: Instant) -> bool {
        let Some(tenure) = &self.tenure else {
            return true;
        };
        lock(tenure).is_some_and(|tenure| tenure.holds(now, now_monotonic))
    }

    /// Keeps the gate open until `until` (wall clock), or longer if it already was:
    /// a renewal seen late never shortens what a later one allowed.
    pub(crate) fn hold_until(&self, until: SystemTime) {
        if let Some(tenure) = &self.tenure {
            let mut tenure = lock(tenure);
            if tenure.is_none_or(|held| held.until < until) {
                *tenure = Some(Tenure::new(until, SystemTime::now(), Instant::now()));
            }
        }
    }

    fn close(&self) {
        if let Some(tenure) = &self.tenure {
            *lock(tenure) = None;
        }
    }

    /// When the gate closes unless the tenure is renewed, on the monotonic clock.
    fn deadline(&self) -> Option<Instant> {
        self.tenure
            .as_ref()
            .and_then(|tenure| lock(tenure).map(|tenure| tenure.until_monotonic))
    }
}

fn lock(tenure: &Mutex<Option<Tenure>>) -> std::sync::MutexGuard<'_, Option<Tenure>> {
    tenure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a lease of a given duration is held: renewed every third of it, and written
/// under until a third of it before it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    /// The lease's duration in whole seconds (what the `Lease` records).
    duration_secs: u64,
    /// How long before expiry kube-lease-manager renews (its "grace"), in whole seconds.
    renew_before_expiry_secs: u64,
    /// How long before the lease expires the leader stops writing.
    margin: Duration,
}

impl Timing {
    fn of(duration: Duration) -> Self {
        let duration_secs = duration.as_secs().max(SHORTEST_LEASE.as_secs());
        let renew_every_secs = (duration_secs / 3).max(1);
        Self {
            duration_secs,
            renew_before_expiry_secs: duration_secs - renew_every_secs,
            margin: Duration::from_secs(duration_secs) / 3,
        }
    }
}

/// Until when `lease` lets `identity` write (wall clock): its last renewal plus its
/// duration, less `margin`; `None` when someone else holds it, or nobody.
fn held_until(lease: &Lease, identity: &str, margin: Duration) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
    Some(renewed + duration.saturating_sub(margin))
}

/// Whether nobody holds `lease`.
fn released(lease: &Lease) -> bool {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .is_none_or(str::is_empty)
}

/// This replica's part in the election, run by a background task.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts competing for the lease; `gate` opens while this replica leads.
    pub fn start(kube: kube::Client, settings: LeaseSettings, gate: WriteGate) -> Self {
        let (leading_sender, leading) = watch::channel(false);
        let (stop, stopping) = oneshot::channel();
        let task = tokio::spawn(compete(kube, settings, gate, leading_sender, stopping));
        Self {
            leading,
            stop: Some(stop),
            task,
        }
    }

    /// Waits until this replica holds the lease (and its write gate is open).
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Completes when this replica, having held the lease, no longer does.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Stops competing and releases the lease if this replica holds it.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Competes for the lease until `stopping` or until it loses the lease, publishing
/// whether this replica holds it and keeping `gate` open while it does.
async fn compete(
    kube: kube::Client,
    settings: LeaseSettings,
    gate: WriteGate,
    leading: watch::Sender<bool>,
    mut stopping: oneshot::Receiver<()>,
) {
    let timing = Timing::of(settings.duration);
    let leases = Api::<Lease>::namespaced(kube.clone(), &settings.namespace);
    let reader = LeaseReader {
        leases: leases.clone(),
        settings: &settings,
        timing,
        gate: &gate,
    };
    let events = watcher(
        leases,
        watcher::Config::default().fields(&format!("metadata.name={}", settings.name)),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|lease| async move { lease.ok() });
    let mut events = std::pin::pin!(events);
    loop {
        // A new manager reads the lease afresh: the way to notice a release at once.
        let manager = match manager(&kube, &settings, timing).await {
            Ok(manager) => manager,
            Err(error) => {
                tracing::warn!(%error, lease = %settings.name, "cannot read the leader lease; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    _ = &mut stopping => return,
                }
            }
        };
        // Kept across the loop's turns: it renews the lease while it runs, and a
        // renewal cut short would be sent again at once.
        let mut changed = Box::pin(manager.changed());
        loop {
            let holds = *leading.borrow();
            let deadline = gate.deadline().filter(|_| holds);
            tokio::select! {
                result = &mut changed => {
                    changed.set(manager.changed());
                    match result {
                        Ok(true) if !holds => match reader.confirm().await {
                            Ok(true) => {
                                tracing::info!(lease = %settings.name, identity = %settings.identity, "acquired the leader lease");
                                leading.send_replace(true);
                            }
                            Ok(false) => {
                                tracing::debug!(lease = %settings.name, "the lease read back is not this replica's");
                            }
                            Err(error) => {
                                tracing::warn!(%error, lease = %settings.name, "cannot read the leader lease just acquired; trying again");
                                tokio::time::sleep(RETRY).await;
                                break;
                            }
                        },
                        Ok(false) if holds => {
                            return lose(&gate, &leading, &settings, "it names another holder, or none");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, lease = %settings.name, "leader lease");
                            if holds {
                                return lose(&gate, &leading, &settings, "renewing it failed");
                            }
                            tokio::time::sleep(RETRY).await;
                            break;
                        }
                    }
                }
                Some(lease) = events.next() => {
                    if holds {
                        // A renewal moves the deadline on; anything else (it may be an
                        // event from before this replica took the lease) is checked
                        // against the lease itself.
                        match held_until(&lease, &settings.identity, timing.margin) {
                            Some(until) => gate.hold_until(until),
                            None => {
                                if !reader.confirm().await.unwrap_or(false) {
                                    return lose(&gate, &leading, &settings, "it names another holder, or none");
                                }
                            }
                        }
                    } else if released(&lease) {
                        tracing::debug!(lease = %settings.name, "the leader released the lease");
                        break;
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    if !reader.confirm().await.unwrap_or(false) {
                        return lose(&gate, &leading, &settings, "it was not renewed in time");
                    }
                }
                _ = &mut stopping => {
                    gate.close();
                    // Its renewal, if one is on its way, must not hold the lease's lock.
                    drop(changed);
                    if let Err(error) = manager.release().await {
                        tracing::warn!(%error, lease = %settings.name, "could not release the leader lease; it expires by itself");
                    } else if holds {
                        tracing::info!(lease = %settings.name, "released the leader lease");
                    }
                    leading.send_replace(false);
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Reads this replica's tenure from the `Lease` itself (a direct read, not the watch).
struct LeaseReader<'a> {
    leases: Api<Lease>,
    settings: &'a LeaseSettings,
    timing: Timing,
    gate: &'a WriteGate,
}

impl LeaseReader<'_> {
    /// Reads the lease: when it shows this replica holding it with time left, keeps the
    /// gate open until then and returns `true`; otherwise closes the gate.
    async fn confirm(&self) -> Result<bool, kube::Error> {
        let lease = self.leases.get_opt(&self.settings.name).await;
        let until = lease.as_ref().ok().and_then(|lease| {
            held_until(lease.as_ref()?, &self.settings.identity, self.timing.margin)
        });
        match until.filter(|until| *until > SystemTime::now()) {
            Some(until) => {
                self.gate.hold_until(until);
                Ok(true)
            }
            None => {
                self.gate.close();
                lease.map(|_| false)
            }
        }
    }
}

/// Closes the gate and says this replica no longer leads; the caller stops competing.
fn lose(gate: &WriteGate, leading: &watch::Sender<bool>, settings: &LeaseSettings, why: &str) {
    gate.close();
    tracing::warn!(lease = %settings.name, identity = %settings.identity, "lost the leader lease: {why}");
    leading.send_replace(false);
}

async fn manager(
    kube: &kube::Client,
    settings: &LeaseSettings,
    timing: Timing,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(kube.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(timing.duration_secs)
        .with_grace(timing.renew_before_expiry_secs)
        .build()
        .await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime,
    };

    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<SystemTime>, duration_secs: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed.map(|renewed| {
                    MicroTime(k8s_openapi::jiff::Timestamp::try_from(renewed).unwrap())
                }),
                lease_duration_seconds: Some(duration_secs),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_holder_renews_every_third_of_the_lease_and_writes_until_a_third_is_left() {
        let timing = |secs| {
            let timing = Timing::of(Duration::from_secs(secs));
            (
                timing.duration_secs,
                timing.duration_secs - timing.renew_before_expiry_secs,
                timing.margin,
            )
        };
        assert_eq!(timing(15), (15, 5, Duration::from_secs(5)));
        assert_eq!(timing(9), (9, 3, Duration::from_secs(3)));
        assert_eq!(timing(8), (8, 2, Duration::from_secs(8) / 3));
        assert_eq!(timing(3), (3, 1, Duration::from_secs(1)));
    }

    #[test]
    fn a_lease_lets_its_holder_write_until_its_renewal_plus_two_thirds_of_its_duration() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let margin = Timing::of(Duration::from_secs(15)).margin;
        assert_eq!(
            held_until(&lease(Some("me"), Some(renewed), 15), "me", margin),
            Some(renewed + Duration::from_secs(10))
        );
        assert_eq!(
            held_until(&lease(Some("other"), Some(renewed), 15), "me", margin),
            None
        );
        assert_eq!(
            held_until(&lease(None, Some(renewed), 15), "me", margin),
            None
        );
        assert_eq!(held_until(&lease(Some("me"), None, 15), "me", margin), None);
        assert!(released(&lease(None, None, 15)));
        assert!(released(&lease(Some(""), None, 15)));
        assert!(!released(&lease(Some("other"), Some(renewed), 15)));
    }

    #[test]
    fn without_leader_election_the_gate_is_always_open() {
        assert_eq!(WriteGate::default().check(), Ok(()));
    }

    #[test]
    fn an_elected_gate_is_open_only_until_the_tenure_runs_out_by_either_clock() {
        let gate = WriteGate::elected();
        assert_eq!(
            gate.check(),
            Err(Error::NotLeading),
            "closed until it leads"
        );
        let until = SystemTime::now() + Duration::from_secs(10);
        gate.hold_until(until);
        assert_eq!(gate.check(), Ok(()));
        let (wall, monotonic) = (SystemTime::now(), Instant::now());
        assert!(gate.is_open_at(
            wall + Duration::from_secs(9),
            monotonic + Duration::from_secs(9)
        ));
        // A process that resumes after a stall past the deadline finds it closed,
        // before any task has run.
        assert!(!gate.is_open_at(
            wall + Duration::from_secs(11),
            monotonic + Duration::from_secs(11)
        ));
        // A wall clock set back does not lengthen the tenure; the monotonic clock,
        // which stands still while the machine sleeps, does not either.
        assert!(!gate.is_open_at(
            wall - Duration::from_secs(60),
            monotonic + Duration::from_secs(11)
        ));
        assert!(!gate.is_open_at(wall + Duration::from_secs(11), monotonic));
        gate.close();
        assert_eq!(gate.check(), Err(Error::NotLeading));
    }

    #[test]
    fn a_renewal_seen_late_never_shortens_the_tenure() {
        let gate = WriteGate::elected();
        let later = SystemTime::now() + Duration::from_secs(10);
        gate.hold_until(later);
        gate.hold_until(later - Duration::from_secs(5));
        let deadline = gate.deadline().expect("leading");
        assert!(deadline > Instant::now() + Duration::from_secs(8));
    }
}
