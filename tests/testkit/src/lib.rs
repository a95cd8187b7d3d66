//! Test harness for tether: a real Kubernetes control plane, AWS emulators (moto and
//! LocalStack) and a fault-injecting proxy in front of them.
//!
//! One control plane and one emulator of each kind serve a whole test binary; every
//! test gets a fresh namespace. Processes are tied to the test process through a pipe
//! on their standard input, so they stop even when the test process is killed. Their
//! logs go to a directory per run under `$TETHER_CACHE/logs` ([`logs`]), not to the
//! test's output.
//!
//! Environment:
//! - `TETHER_TEST_KUBECONFIG`: use this existing cluster (kind, k3d, …) instead of
//!   starting the local control plane.
//! - `TETHER_CACHE`: where `make setup` put the control plane, helm and the
//!   emulators' virtualenvs (default `~/.cache/tether`).
//! - `TETHER_TESTKIT_LOG_DIR`: the servers' log directory, in place of a new one per
//!   run under `$TETHER_CACHE/logs` (`make dev`'s `tether-data-plane` uses it).

// Test support: a panic here fails the test that called it, at its place.
#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod control_plane;
pub mod emulator;
pub mod fault_proxy;
pub mod helm;
pub mod logs;
pub mod process;
pub mod tether;

pub use cluster::TestNamespace;
pub use control_plane::ControlPlane;
pub use emulator::Emulator;
pub use fault_proxy::{Fault, FaultProxy};
pub use helm::Helm;
pub use tether::{Extra, Tether};

/// The directory holding built tools and virtualenvs (`$TETHER_CACHE`, else
/// `~/.cache/tether`).
pub fn cache_dir() -> std::path::PathBuf {
    match std::env::var_os("TETHER_CACHE") {
        Some(dir) => dir.into(),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            std::path::Path::new(&home).join(".cache/tether")
        }
    }
}

/// The program `make setup` built as `$TETHER_CACHE/bin/<name>`, or the one the
/// environment variable `env` names; fails with `missing(path)` (saying how to get
/// it) when there is none.
pub fn built_tool(
    name: &str,
    env: &str,
    missing: impl FnOnce(std::path::Display) -> String,
) -> std::path::PathBuf {
    let path = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("bin").join(name));
    assert!(path.is_file(), "{}", missing(path.display()));
    path
}

/// The root of the tether repository: the nearest directory holding `Cargo.lock`
/// above the working directory (cargo runs tests in their package's directory).
///
/// Found at run time, not from `env!("CARGO_MANIFEST_DIR")`: a target directory
/// shared between checkouts can hold a testkit compiled in another checkout.
pub fn repo_root() -> std::path::PathBuf {
    let start = std::env::current_dir().expect("a working directory");
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no Cargo.lock above {}", start.display()))
        .to_path_buf()
}
