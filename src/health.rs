//! What `/readyz` reports: a replica is ready once its controllers' caches have synced
//! (every object of every kind listed), or, with leader election, while it stands by
//! to take over.

use std::sync::{
    Arc,
    atomic::{AtomicU8, AtomicUsize, Ordering},
};

use kube::runtime::watcher;

/// The process's readiness, shared by the controllers and the admin server.
#[derive(Debug, Default)]
pub struct Health {
    /// 0 while starting, then [`STANDING_BY`] or [`RUNNING`].
    role: AtomicU8,
    caches: AtomicUsize,
    synced: AtomicUsize,
}

const STANDING_BY: u8 = 1;
const RUNNING: u8 = 2;

impl Health {
    /// This replica waits for the leader lease.
    pub fn standing_by(&self) {
        self.role.store(STANDING_BY, Ordering::Release);
    }

    /// This replica runs the controllers (it leads, or there is no election).
    pub fn running(&self) {
        self.role.store(RUNNING, Ordering::Release);
    }

    /// Registers one controller cache; call [`CacheSynced::synced`] once it is filled.
    pub fn cache(self: &Arc<Self>) -> CacheSynced {
        self.caches.fetch_add(1, Ordering::AcqRel);
        CacheSynced(self.clone())
    }

    /// Why the replica is not ready, for `/readyz`'s answer.
    pub fn waiting_for(&self) -> String {
        match self.role.load(Ordering::Acquire) {
            RUNNING => format!(
                "{} of {} caches synced",
                self.synced.load(Ordering::Acquire),
                self.caches.load(Ordering::Acquire)
            ),
            _ => "starting".to_owned(),
        }
    }

    /// Whether `/readyz` says ready.
    pub fn ready(&self) -> bool {
        match self.role.load(Ordering::Acquire) {
            STANDING_BY => true,
            RUNNING => {
                let caches = self.caches.load(Ordering::Acquire);
                caches > 0 && self.synced.load(Ordering::Acquire) >= caches
            }
            _starting => false,
        }
    }
}

/// One registered cache, not synced yet.
#[derive(Debug)]
pub struct CacheSynced(Arc<Health>);

impl CacheSynced {
    /// The cache holds every object of its kind.
    pub fn synced(self) {
        self.0.synced.fetch_add(1, Ordering::AcqRel);
    }

    /// A function for `Stream::inspect` on the watch stream that fills the cache: it
    /// marks the cache synced at the first complete list. (kube-runtime's
    /// `Store::wait_until_ready` wakes only one waiter, and the controller is one.)
    pub fn on_first_list<K>(self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
        let mut pending = Some(self);
        move |event| {
            if let Ok(watcher::Event::InitDone) = event
                && let Some(cache) = pending.take()
            {
                cache.synced();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_replica_is_ready_once_every_cache_is_synced() {
        let health = Arc::new(Health::default());
        assert!(!health.ready(), "starting");
        health.running();
        let first = health.cache();
        let second = health.cache();
        assert!(!health.ready());
        first.synced();
        assert!(!health.ready());
        second.synced();
        assert!(health.ready());
    }

    #[test]
    fn a_standby_is_ready_and_a_new_leader_is_not_until_its_caches_sync() {
        let health = Arc::new(Health::default());
        health.standing_by();
        assert!(health.ready());
        health.running();
        assert!(!health.ready(), "no cache registered yet");
        let cache = health.cache();
        assert!(!health.ready());
        cache.synced();
        assert!(health.ready());
    }
}
