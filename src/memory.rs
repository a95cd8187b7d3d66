//! Keeps the allocator small: one glibc arena, and memory freed after a burst handed
//! back to the operating system. glibc's allocator keeps the pages it freed inside its
//! heaps for reuse, so after 1,000 creates a quiet controller still held its peak
//! (`make bench-scale`: 65 MiB an hour later, 51 MiB for the same objects after a
//! restart). A trim every minute returns them; it costs about a millisecond. Other
//! allocators (musl, or where this is not glibc) have no such calls and are left alone.

#[cfg(feature = "dhat-heap")]
pub mod profile;

use std::time::Duration;

/// How often freed memory is handed back.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Keeps glibc's allocator to one arena (malloc heap) for the whole process. By default
/// glibc opens a new arena whenever two threads allocate at once, up to eight per core,
/// and each keeps its own free memory; the Tokio workers of a controller allocate at
/// once all the time. One arena keeps less at rest (`make bench-scale` at 300 + 300:
/// 1-2 MiB less steady and fresh) and contends little with two workers. Call it before
/// any thread starts.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets one of glibc's allocator parameters; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Runs for ever, trimming the allocator's free memory every [`TRIM_EVERY`].
pub async fn trim_periodically() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks; it takes
    // no pointer from us.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::trace!(
        released = released != 0,
        "trimmed the allocator's free memory"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// In the unit tests, every allocation is counted on the thread that makes it, so that
/// a test can measure what a structure holds (tests run on threads of their own).
#[cfg(test)]
pub(crate) mod counted {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    thread_local! {
        /// Bytes allocated and not freed by this thread (requested sizes, without the
        /// allocator's own overhead).
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    fn count(bytes: isize) {
        HELD.with(|held| held.set(held.get() + bytes));
    }

    /// The system allocator, counting.
    struct Counting;

    // SAFETY: every call is passed to the system allocator as it came; counting only
    // updates a thread-local integer, which allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-(layout.size() as isize));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size as isize - layout.size() as isize);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// What `make` returns, and how many bytes this thread allocated in it and still
    /// holds (what the returned value holds, when it is all `make` kept).
    pub(crate) fn held<T>(make: impl FnOnce() -> T) -> (T, usize) {
        let before = HELD.with(Cell::get);
        let made = make();
        let after = HELD.with(Cell::get);
        (made, usize::try_from(after - before).unwrap_or_default())
    }
}
