//! A shared, paginated listing of one kind's cloud resources in one account and region,
//! so that routine observations of N objects cost one call per page and per refresh,
//! not one read per object (DESIGN rule 6).
//!
//! Every kind plugs in the same way: its client holds a [`Snapshot`] of the cloud's
//! own type, asks it first ([`Snapshot::lookup`], with the listing call to make when a
//! refresh is due), reads directly when it answers `None`, records what the direct read
//! saw ([`Snapshot::record`]), and names the [`Snapshot::write_guard`] of an object's
//! resource ([`ExternalClient::write_guard`]), which the runtime holds across each
//! write.
//!
//! [`ExternalClient::write_guard`]: crate::external::ExternalClient::write_guard
//!
//! Three rules keep it safe and cheap:
//! - A listing only ever answers "here it is, as of then". A key it lacks is read
//!   directly by the caller, so a stale listing never leads to a create; only a direct
//!   read (recorded, fresh enough) may say a resource is not there.
//! - A record (listing or direct read) that started before the last write through this
//!   client to a key is never used for that key: the caller reads it directly instead
//!   of re-listing everything for one changed resource.
//! - A refresh is made only when enough objects want an answer that fresh to pay for
//!   it: at least as many as the last listing had pages, and as many as its direct
//!   reads would take as long as the listing took (an endpoint that lists slowly, such
//!   as an emulator with a thousand resources, is not kept busy listing). A lone object
//!   waiting for its resource to change reads it directly; a thousand share a listing.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// What a listing is taken to cost before the first one: a lone object (a new one, or
/// the first after a start) reads directly, and two or more share a listing.
const PAGES_BEFORE_LISTING: usize = 2;

/// How a snapshot may answer one observation: what the runtime asks for in
/// [`crate::external::Context::freshness`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// Read the cloud directly (a deletion).
    #[default]
    Direct,
    /// Only a direct read at most this old, made since the last write, answers: for an
    /// object whose resource was never seen, which no listing would hold. It neither
    /// asks for a listing nor counts towards one.
    Reads(Duration),
    /// A listing or a direct read at most this old answers, and the listing is
    /// refreshed when that pays.
    Shared(Duration),
}

/// What one listing call returned: the resources by key, and how many pages it took
/// (what the next refresh will cost).
#[derive(Clone, Debug)]
pub struct Listing<T> {
    /// Every resource the listing found, by the key observations ask for.
    pub entries: Vec<(String, T)>,
    /// The number of calls the listing made.
    pub pages: usize,
}

impl<T> Listing<T> {
    /// The same listing with each resource turned into what a snapshot keeps of it.
    pub fn map<U>(self, mut keep: impl FnMut(T) -> U) -> Listing<U> {
        Listing {
            entries: self
                .entries
                .into_iter()
                .map(|(key, resource)| (key, keep(resource)))
                .collect(),
            pages: self.pages,
        }
    }
}

impl<T> Listing<T> {
    /// The same listing with the resources that share a key kept together, in the
    /// order listed: for a kind where several resources may carry one key (EC2
    /// instances launched twice for one object), so that none hides another.
    pub fn grouped(self) -> Listing<Box<[T]>> {
        let mut groups: Vec<(String, Vec<T>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (key, resource) in self.entries {
            match index.get(&key) {
                Some(&at) => {
                    let group: &mut (String, Vec<T>) = &mut groups[at];
                    group.1.push(resource);
                }
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![resource]));
                }
            }
        }
        Listing {
            entries: groups
                .into_iter()
                .map(|(key, group)| (key, group.into_boxed_slice()))
                .collect(),
            pages: self.pages,
        }
    }
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            pages: 0,
        }
    }
}

/// The shared snapshot of one kind in one account and region; clones share it.
#[derive(Debug)]
pub struct Snapshot<T> {
    state: Arc<Mutex<State<T>>>,
    /// Held while listing, so that concurrent lookups wait for one listing instead of
    /// each making their own.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            refreshing: self.refreshing.clone(),
        }
    }
}

impl<T> Default for Snapshot<T> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            refreshing: Arc::default(),
        }
    }
}

/// What is known, and when each record's call started.
#[derive(Debug)]
struct State<T> {
    listing: Option<Record<HashMap<String, T>>>,
    /// The pages of the last listing: how many objects must want a fresh answer before
    /// a refresh pays off. [`PAGES_BEFORE_LISTING`] before the first listing.
    pages: usize,
    /// How long the last listing took; zero before the first.
    listing_took: Duration,
    /// When the last listing ended.
    listed_at: Option<Instant>,
    /// How long a direct read takes, on a moving average; zero before the first.
    read_took: Duration,
    /// Direct reads made since the listing, by key; `None` when the read found nothing.
    reads: HashMap<String, Record<Option<T>>>,
    /// When the last write of each key through this client ended.
    writes: HashMap<String, Instant>,
    /// The last lookup of each key and the age it accepted: the demand for freshness.
    asked: HashMap<String, (Instant, Duration)>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self {
            listing: None,
            pages: PAGES_BEFORE_LISTING,
            listing_took: Duration::ZERO,
            listed_at: None,
            read_took: Duration::ZERO,
            reads: HashMap::new(),
            writes: HashMap::new(),
            asked: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Record<V> {
    /// When the call that saw `value` started: it reflects every write that ended
    /// before then.
    started: Instant,
    value: V,
}

/// What the snapshot knows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known<T> {
    /// The resource, as a record at most the accepted age old saw it.
    Present(T),
    /// A direct read at most the accepted age old, made after the key's last write,
    /// found nothing.
    Absent,
    /// Nothing fresh enough: the caller reads the key directly and records what it saw.
    Unknown,
}

/// What the snapshot can say about one key now.
#[derive(Debug, PartialEq)]
enum Answer<T> {
    /// What a record fresh enough, from after the key's last write, says.
    Known(Known<T>),
    /// A new listing is due and would pay for itself.
    Refresh,
}

impl<T> From<Known<T>> for Answer<T> {
    fn from(known: Known<T>) -> Self {
        Self::Known(known)
    }
}

impl<T: Clone + Send + Sync> Snapshot<T> {
    /// What records as fresh as `freshness` asks know of `key`'s resource, refreshing
    /// the listing with `list` when that is due. [`Known::Unknown`] when the caller
    /// must read the key directly: the listing lacks it, or nothing fresh enough may
    /// answer for it. [`Freshness::Direct`] always answers `Unknown` without a call.
    pub async fn lookup<E, F, Fut>(
        &self,
        key: &str,
        freshness: Freshness,
        list: F,
    ) -> Result<Known<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Listing<T>, E>>,
    {
        let max_age = match freshness {
            Freshness::Direct => return Ok(Known::Unknown),
            Freshness::Reads(max_age) => return Ok(self.lock().read(key, max_age, Instant::now())),
            Freshness::Shared(max_age) if max_age.is_zero() => return Ok(Known::Unknown),
            Freshness::Shared(max_age) => max_age,
        };
        let asked = Instant::now();
        if let Answer::Known(known) = self.lock().answer(key, max_age, asked, true) {
            return Ok(known);
        }
        let _refreshing = self.refreshing.lock().await;
        // A listing that ended after this lookup asked is as fresh as any it could get,
        // however long it took: without this, a listing slower than `max_age` would be
        // stale on arrival, and every lookup that waited for it would list again.
        let waited = |state: &State<T>| {
            if state.listed_at.is_some_and(|listed_at| listed_at >= asked) {
                Duration::MAX
            } else {
                max_age
            }
        };
        // Another lookup may have listed while this one waited.
        let answer = {
            let mut state = self.lock();
            let accepted = waited(&state);
            state.answer(key, accepted, Instant::now(), false)
        };
        if let Answer::Known(known) = answer {
            return Ok(known);
        }
        let started = Instant::now();
        let listing = list().await?;
        let mut state = self.lock();
        state.store(started, listing, started.elapsed());
        let accepted = waited(&state);
        Ok(match state.answer(key, accepted, Instant::now(), false) {
            Answer::Known(known) => known,
            Answer::Refresh => Known::Unknown,
        })
    }

    /// `key`'s resource: what [`Self::lookup`] knows as fresh as `freshness` asks (a
    /// present one only when `accept` takes it), else what `read` finds now, which is
    /// recorded for the next lookups. `None`: the resource is not there.
    pub async fn get<E, L, LF, R, RF>(
        &self,
        key: &str,
        freshness: Freshness,
        list: L,
        accept: impl FnOnce(&T) -> bool,
        read: R,
    ) -> Result<Option<T>, E>
    where
        L: FnOnce() -> LF,
        LF: Future<Output = Result<Listing<T>, E>>,
        R: FnOnce() -> RF,
        RF: Future<Output = Result<Option<T>, E>>,
    {
        match self.lookup(key, freshness, list).await? {
            Known::Present(found) if accept(&found) => return Ok(Some(found)),
            Known::Absent => return Ok(None),
            Known::Present(_) | Known::Unknown => {}
        }
        let started = Instant::now();
        let found = read().await?;
        self.record(key, started, found.clone());
        Ok(found)
    }

    /// Records what a direct read of `key` that started at `started` found (`None`:
    /// nothing), so that the next lookups of the key need no call of their own.
    pub fn record(&self, key: &str, started: Instant, found: Option<T>) {
        let took = started.elapsed();
        let mut state = self.lock();
        state.read_took = if state.read_took.is_zero() {
            took
        } else {
            state.read_took.mul_f64(0.8) + took.mul_f64(0.2)
        };
        let newer = state
            .reads
            .get(key)
            .is_none_or(|record| record.started < started);
        if newer {
            state.reads.insert(
                key.to_owned(),
                Record {
                    started,
                    value: found,
                },
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }
}

impl<T: Send + 'static> Snapshot<T> {
    /// A guard to hold across a write to `key`'s resource: once it is dropped, no
    /// record that started before then answers for `key` (whether the write succeeded,
    /// failed or lost its answer). While it is held, the records from before the write
    /// still answer: the writer may use the read that decided the write (a security
    /// group's delete revokes the rules its observe saw) without reading again.
    pub fn write_guard(&self, key: &str) -> WriteGuard {
        WriteGuard {
            snapshot: self.state.clone(),
            key: key.to_owned(),
        }
    }
}

/// The state of a snapshot, locked even when a panic poisoned it.
fn lock<T>(state: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A snapshot's record of writes, whatever it keeps of each resource: what a
/// [`WriteGuard`] marks.
trait Written: Send + Sync {
    /// Marks `key` written now.
    fn written(&self, key: &str);
}

impl<T: Send> Written for Mutex<State<T>> {
    fn written(&self, key: &str) {
        lock(self).writes.insert(key.to_owned(), Instant::now());
    }
}

impl<T: Clone> State<T> {
    /// What may be said of `key` at `now` to a lookup accepting `max_age`; `count` says
    /// whether this lookup adds to the demand (once per lookup).
    fn answer(&mut self, key: &str, max_age: Duration, now: Instant, count: bool) -> Answer<T> {
        if count {
            self.asked.insert(key.to_owned(), (now, max_age));
        }
        let written = self.writes.get(key).copied();
        let usable = |started: Instant| {
            now.saturating_duration_since(started) <= max_age
                && written.is_none_or(|written| started > written)
        };
        let read = self.reads.get(key).filter(|read| usable(read.started));
        let listing = self
            .listing
            .as_ref()
            .filter(|listing| usable(listing.started));
        match (read, listing) {
            (Some(read), listing) if listing.is_none_or(|l| l.started < read.started) => read
                .value
                .clone()
                .map_or(Known::Absent, Known::Present)
                .into(),
            (_, Some(listing)) => listing
                .value
                .get(key)
                .cloned()
                .map_or(Known::Unknown, Known::Present)
                .into(),
            (_, None) => {
                let fresh_listing = self
                    .listing
                    .as_ref()
                    .is_some_and(|l| now.saturating_duration_since(l.started) <= max_age);
                let demand = self.demand(max_age, now);
                if !fresh_listing && self.refresh_pays(demand) {
                    Answer::Refresh
                } else {
                    // The listing is fresh but from before this key's last write, or
                    // too few objects want one this fresh: one key costs one read.
                    Known::Unknown.into()
                }
            }
        }
    }

    /// What a direct read at most `max_age` old, made after `key`'s last write, saw.
    fn read(&self, key: &str, max_age: Duration, now: Instant) -> Known<T> {
        let written = self.writes.get(key).copied();
        self.reads
            .get(key)
            .filter(|read| {
                now.saturating_duration_since(read.started) <= max_age
                    && written.is_none_or(|written| read.started > written)
            })
            .map_or(Known::Unknown, |read| {
                read.value.clone().map_or(Known::Absent, Known::Present)
            })
    }

    /// Whether a listing costs no more than direct reads for `demand` keys, in calls
    /// (its pages) and in time.
    fn refresh_pays(&self, demand: usize) -> bool {
        let reads_take = self
            .read_took
            .saturating_mul(u32::try_from(demand).unwrap_or(u32::MAX));
        demand >= self.pages && (self.read_took.is_zero() || reads_take >= self.listing_took)
    }

    /// How many keys asked, within the last `max_age`, for an answer at least that
    /// fresh; forgets lookups older than what they accepted.
    fn demand(&mut self, max_age: Duration, now: Instant) -> usize {
        self.asked
            .retain(|_, (at, accepted)| now.saturating_duration_since(*at) <= *accepted);
        self.asked
            .values()
            .filter(|(at, accepted)| {
                *accepted <= max_age && now.saturating_duration_since(*at) <= max_age
            })
            .count()
    }

    /// Keeps a listing that started at `started`, and forgets what it supersedes.
    fn store(&mut self, started: Instant, listing: Listing<T>, took: Duration) {
        if self.listing.as_ref().is_some_and(|l| l.started > started) {
            return;
        }
        self.pages = listing.pages.max(1);
        self.listing_took = took;
        self.listed_at = Some(Instant::now());
        self.reads.retain(|_, read| read.started > started);
        self.writes.retain(|_, written| *written >= started);
        self.listing = Some(Record {
            started,
            value: listing.entries.into_iter().collect(),
        });
    }
}

/// Marks its key written again when dropped; see [`Snapshot::write_guard`]. It owns
/// its share of the snapshot and names no type of it, so the runtime can hold the
/// guard a kind's client hands out.
#[must_use = "the write is marked done when the guard is dropped"]
pub struct WriteGuard {
    snapshot: Arc<dyn Written>,
    key: String,
}

impl fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.snapshot.written(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn listing(keys: &[&str], pages: usize) -> Listing<String> {
        Listing {
            entries: keys
                .iter()
                .map(|key| ((*key).to_owned(), format!("{key} as listed")))
                .collect(),
            pages,
        }
    }

    /// A lookup with a listing call that counts itself.
    async fn lookup(
        snapshot: &Snapshot<String>,
        key: &str,
        max_age: Duration,
        listed: &AtomicUsize,
        keys: &[&str],
    ) -> Known<String> {
        snapshot
            .lookup(key, Freshness::Shared(max_age), || async {
                listed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(listing(keys, 1))
            })
            .await
            .unwrap()
    }

    fn present(value: &str) -> Known<String> {
        Known::Present(value.to_owned())
    }

    #[tokio::test]
    async fn one_listing_answers_every_key_it_has_and_none_it_lacks() {
        let snapshot = Snapshot::default();
        let listed = AtomicUsize::new(0);
        let keys = ["a", "b"];
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &keys).await,
            Known::Unknown,
            "a lone object reads directly"
        );
        assert_eq!(listed.load(Ordering::SeqCst), 0);
        assert_eq!(
            lookup(&snapshot, "b", MINUTE, &listed, &keys).await,
            present("b as listed"),
            "two share a listing"
        );
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &keys).await,
            present("a as listed")
        );
        assert_eq!(
            lookup(&snapshot, "b", MINUTE, &listed, &keys).await,
            present("b as listed")
        );
        assert_eq!(
            lookup(&snapshot, "c", MINUTE, &listed, &keys).await,
            Known::Unknown,
            "a key the listing lacks is read directly, never reported missing"
        );
        assert_eq!(listed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_age_never_lists() {
        let snapshot = Snapshot::default();
        let listed = AtomicUsize::new(0);
        assert_eq!(
            lookup(&snapshot, "a", Duration::ZERO, &listed, &["a"]).await,
            Known::Unknown
        );
        assert_eq!(listed.load(Ordering::SeqCst), 0);
    }

    /// `count` lookups of keys `k0`… at once, accepting `max_age`, whose listing (of
    /// every key) takes `listing_takes`: how many found their key, and how many
    /// listings were made.
    async fn concurrent_lookups(
        count: usize,
        max_age: Duration,
        listing_takes: Duration,
    ) -> (usize, usize) {
        let snapshot = Snapshot::<String>::default();
        let listed = Arc::new(AtomicUsize::new(0));
        let lookups: Vec<_> = (0..count)
            .map(|i| {
                let (snapshot, listed) = (snapshot.clone(), listed.clone());
                tokio::spawn(async move {
                    snapshot
                        .lookup(&format!("k{i}"), Freshness::Shared(max_age), || async {
                            listed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(listing_takes).await;
                            let keys: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
                            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                            Ok::<_, ()>(listing(&keys, 1))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut present = 0;
        for lookup in lookups {
            present += usize::from(matches!(lookup.await.unwrap(), Known::Present(_)));
        }
        (present, listed.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_listing() {
        let (present, listed) = concurrent_lookups(50, MINUTE, Duration::from_millis(20)).await;
        assert!(present >= 49, "all but a first, lone one: {present}");
        assert_eq!(listed, 1);
    }

    #[tokio::test]
    async fn a_written_key_is_read_directly_until_a_newer_record_exists() {
        let snapshot = Snapshot::default();
        let listed = AtomicUsize::new(0);
        lookup(&snapshot, "a", MINUTE, &listed, &["a", "b"]).await;
        lookup(&snapshot, "b", MINUTE, &listed, &["a", "b"]).await;
        assert_eq!(listed.load(Ordering::SeqCst), 1, "listed before the write");
        drop(snapshot.write_guard("a"));
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &["a", "b"]).await,
            Known::Unknown,
            "the listing predates the write"
        );
        assert_eq!(
            lookup(&snapshot, "b", MINUTE, &listed, &["a", "b"]).await,
            present("b as listed"),
            "other keys still use the listing"
        );
        assert_eq!(
            listed.load(Ordering::SeqCst),
            1,
            "no re-listing for one key"
        );

        snapshot.record("a", Instant::now(), Some("a as read".into()));
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &["a", "b"]).await,
            present("a as read"),
            "the direct read after the write answers"
        );
        let before_write = Instant::now();
        let guard = snapshot.write_guard("a");
        snapshot.record("a", before_write, Some("a as read before".into()));
        drop(guard);
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &["a", "b"]).await,
            Known::Unknown,
            "a read that started before the write ended is not used"
        );
    }

    #[tokio::test]
    async fn the_read_that_decided_a_write_serves_the_writer_and_nothing_after_it() {
        let snapshot = Snapshot::default();
        let seen = |snapshot: &Snapshot<String>| snapshot.lock().read("a", MINUTE, Instant::now());
        snapshot.record("a", Instant::now(), Some("a as observed".into()));
        let guard = snapshot.write_guard("a");
        assert_eq!(
            seen(&snapshot),
            present("a as observed"),
            "during the write"
        );
        drop(guard);
        assert_eq!(seen(&snapshot), Known::Unknown, "once the write ended");
    }

    #[tokio::test]
    async fn only_a_direct_read_since_the_last_write_says_a_resource_is_absent() {
        let snapshot = Snapshot::default();
        let listed = AtomicUsize::new(0);
        lookup(&snapshot, "a", MINUTE, &listed, &["a"]).await;
        lookup(&snapshot, "b", MINUTE, &listed, &["a"]).await;
        assert_eq!(listed.load(Ordering::SeqCst), 1, "a listing that has it");
        snapshot.record("a", Instant::now(), None);
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &["a"]).await,
            Known::Absent,
            "the newer read outranks the listing"
        );
        assert_eq!(
            lookup(&snapshot, "a", Duration::from_nanos(1), &listed, &["a"]).await,
            Known::Unknown,
            "a read older than the lookup accepts does not answer"
        );
        drop(snapshot.write_guard("a"));
        assert_eq!(
            lookup(&snapshot, "a", MINUTE, &listed, &["a"]).await,
            Known::Unknown,
            "after a write (a create), absence is read again"
        );
    }

    #[test]
    fn a_refresh_waits_until_as_many_objects_want_it_as_it_has_pages() {
        let mut state = State::<String>::default();
        let start = Instant::now();
        state.store(start, listing(&["a", "b", "c", "d"], 3), Duration::ZERO);
        let later = start + 2 * MINUTE;
        let wait = Duration::from_secs(15);
        let unknown = Answer::Known(Known::Unknown);
        assert_eq!(state.answer("a", wait, later, true), unknown);
        assert_eq!(state.answer("b", wait, later, true), unknown);
        assert_eq!(
            state.answer("c", wait, later, true),
            Answer::Refresh,
            "three objects want an answer this fresh: three pages pay off"
        );
        assert_eq!(
            state.answer("d", 10 * MINUTE, later, true),
            Answer::Known(present("d as listed")),
            "a lookup that accepts an older answer still uses the listing"
        );
    }

    #[test]
    fn a_slow_listing_waits_until_enough_objects_want_it_to_pay_in_time() {
        let mut state = State::<String>::default();
        let start = Instant::now();
        state.store(start, listing(&["a"], 1), Duration::from_secs(10));
        state.read_took = Duration::from_millis(100);
        let later = start + 2 * MINUTE;
        let wait = Duration::from_secs(15);
        for i in 0..99 {
            assert_eq!(
                state.answer(&format!("k{i}"), wait, later, true),
                Answer::Known(Known::Unknown),
                "{i} reads of 100 ms take less than the 10 s listing"
            );
        }
        assert_eq!(state.answer("k99", wait, later, true), Answer::Refresh);
    }

    #[tokio::test]
    async fn a_listing_slower_than_the_age_asked_for_answers_those_who_waited_for_it() {
        // The listing takes longer than the age the lookups accept.
        let (present, listed) =
            concurrent_lookups(8, Duration::from_millis(20), Duration::from_millis(100)).await;
        assert!(present >= 7, "all but a first, lone one: {present}");
        assert_eq!(listed, 1, "one listing, not one per waiter");
    }

    #[tokio::test]
    async fn an_object_never_seen_is_answered_by_its_reads_only_and_asks_for_no_listing() {
        let snapshot = Snapshot::<String>::default();
        let never = || async { Err::<Listing<String>, ()>(()) };
        for key in ["a", "b", "c"] {
            let known = snapshot.lookup(key, Freshness::Reads(MINUTE), never).await;
            assert_eq!(known, Ok(Known::Unknown), "no listing, however many ask");
        }
        snapshot.record("a", Instant::now(), None);
        let known = snapshot.lookup("a", Freshness::Reads(MINUTE), never).await;
        assert_eq!(known, Ok(Known::Absent), "its own direct read answers");
        assert_eq!(
            snapshot.lookup("a", Freshness::Direct, never).await,
            Ok(Known::Unknown)
        );
    }

    #[test]
    fn a_listing_forgets_the_reads_and_writes_it_supersedes() {
        let mut state = State::<String>::default();
        let start = Instant::now();
        state.reads.insert(
            "a".into(),
            Record {
                started: start,
                value: Some("old".into()),
            },
        );
        state.writes.insert("a".into(), start);
        state.store(start + MINUTE, listing(&["a"], 1), Duration::ZERO);
        assert!(state.reads.is_empty() && state.writes.is_empty());
        assert_eq!(
            state.answer("a", MINUTE, start + MINUTE, true),
            Answer::Known(present("a as listed"))
        );
    }

    #[test]
    fn a_grouped_listing_keeps_every_resource_of_a_key_in_order() {
        let listing = Listing {
            entries: vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), 2),
                ("a".to_owned(), 3),
            ],
            pages: 2,
        }
        .grouped();
        assert_eq!(
            listing.entries,
            vec![
                ("a".to_owned(), vec![1, 3].into_boxed_slice()),
                ("b".to_owned(), vec![2].into_boxed_slice()),
            ]
        );
        assert_eq!(listing.pages, 2);
    }
}
