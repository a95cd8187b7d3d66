//! The heap profile of a build with `--features dhat-heap`: dhat records every
//! allocation from the start, and SIGUSR1 writes what is live at that moment (`t-end`
//! in the file), by the call site that allocated it, to `$TETHER_DHAT_FILE` (default
//! `dhat-heap.json`). `scripts/heap-top.py` prints the largest sites; the file also
//! opens in dhat's viewer (`dh_view.html` of Valgrind). Profiling stops once written.

use std::{path::PathBuf, sync::Mutex};

use tokio::signal::unix::{SignalKind, signal};

/// The running profiler, until SIGUSR1 takes it.
static PROFILER: Mutex<Option<dhat::Profiler>> = Mutex::new(None);

/// Starts recording; call first thing in `main`.
pub fn start() {
    let file = std::env::var_os("TETHER_DHAT_FILE")
        .map_or_else(|| PathBuf::from("dhat-heap.json"), PathBuf::from);
    let profiler = dhat::Profiler::builder()
        .file_name(file)
        // Whole backtraces: dhat's trimming cuts a debug build's deep async stacks
        // down to the thread's start.
        .trim_backtraces(None)
        .build();
    *PROFILER.lock().unwrap_or_else(|e| e.into_inner()) = Some(profiler);
}

/// Waits for SIGUSR1, then writes the profile.
pub async fn write_on_sigusr1() {
    let Ok(mut signals) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot listen for SIGUSR1: no heap profile will be written");
        return;
    };
    if signals.recv().await.is_some() {
        let profiler = PROFILER.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Dropping the profiler writes the file.
        drop(profiler);
        tracing::info!("wrote the heap profile");
    }
}
