//! Keeps the allocator small: one glibc arena, and memory freed after a burst handed
//! back to the operating system. glibc's allocator
//! keeps the pages it freed inside its heaps for reuse, so after 1,000 creates a
//! quiet controller still held its peak (`make bench-scale`: 65 MiB an hour later,
//! 51 MiB for the same objects after a restart). A trim every minute returns them;
//! it costs about a millisecond. Other allocators (musl, or where this is not glibc)
//! have no such call and are left alone.

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
