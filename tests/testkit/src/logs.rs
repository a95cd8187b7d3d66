//! Where the servers of a test run write their logs: a directory per test process,
//! `$TETHER_CACHE/logs/<UTC time>-<pid>/`, instead of the test's stderr (the control
//! plane alone logs hundreds of lines there). It outlives the run, unlike the servers'
//! temporary directories, so the logs behind a failed test can be read afterwards.
//! Its path is printed once, when the run starts its first server, and again after
//! every panic; the newest [`KEEP`] runs are kept.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// How many runs' logs are kept.
pub const KEEP: usize = 10;

/// The environment variable that names the log directory, for a program other than a
/// test run (`make dev`'s data plane) that keeps its logs with its own.
pub const LOG_DIR_VARIABLE: &str = "TETHER_TESTKIT_LOG_DIR";

/// The log directory of this test process, made on first use: [`LOG_DIR_VARIABLE`]
/// when it is set (kept as it is, nothing pruned), else a new directory of the run.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(LOG_DIR_VARIABLE) {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
            return dir;
        }
        let root = crate::cache_dir().join("logs");
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let dir = root.join(format!("{time}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        prune(&root);
        // Written to stderr itself, past the test harness's capture: one line a run.
        let _ = writeln!(
            std::io::stderr(),
            "tether-testkit: the servers' logs of this run go to {}",
            dir.display()
        );
        // The hook cannot change while a thread panics (as when a failed test's clean-up
        // keeps a log): the directory is printed above.
        if !std::thread::panicking() {
            let shown = dir.clone();
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |panic| {
                report(panic);
                eprintln!("the servers' logs of this test run: {}", shown.display());
            }));
        }
        dir
    })
}

/// A new file in [`run_dir`] for the log of the server `name`: `<name>.log`, then
/// `<name>-2.log`, … for more servers of that name.
pub fn file(name: &str) -> PathBuf {
    static COUNTS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());
    let count = {
        let mut counts = COUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(name.to_owned()).or_default();
        *count += 1;
        *count
    };
    match count {
        1 => run_dir().join(format!("{name}.log")),
        n => run_dir().join(format!("{name}-{n}.log")),
    }
}

/// The last `lines` lines of the file at `path`, for a failure message.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes all but the newest [`KEEP`] runs' directories, sparing any whose test
/// process still runs (names sort by time).
fn prune(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut runs: Vec<_> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    let old = runs.len().saturating_sub(KEEP);
    for run in &runs[..old] {
        let running = run
            .rsplit_once('-')
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            let _ = std::fs::remove_dir_all(root.join(run));
        }
    }
}
