//! The real `tether run` binary as a test's controller: scoped to the test's namespace,
//! pointed at the shared control plane, with its log kept in a file to search.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    ControlPlane,
    process::{Supervised, free_port, http_get, wait_until},
};

/// A running `tether run`, stopped when dropped.
pub struct Tether {
    process: Supervised,
    binary: String,
    namespace: String,
    kubeconfig: PathBuf,
    admin_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tether {
    /// Starts `binary run` for `namespace` on the shared control plane, logging at
    /// trace level, polling every 10 s and re-checking unsettled objects every second.
    /// AWS credentials come from the environment (the emulator takes any). Returns once
    /// the controller answers `/readyz`; fails with its log if it exits first.
    pub fn start(binary: &str, namespace: &str) -> Tether {
        Self::start_on(binary, namespace, ControlPlane::shared().kubeconfig())
    }

    /// Like [`Tether::start`], on the cluster of `kubeconfig` (a control plane of the
    /// test's own).
    pub fn start_on(binary: &str, namespace: &str, kubeconfig: &Path) -> Tether {
        let dir = tempfile::tempdir().expect("a temp dir for the log");
        let log = dir.path().join("tether.log");
        let admin_port = free_port();
        let process = spawn(binary, namespace, kubeconfig, admin_port, &log);
        let mut tether = Tether {
            process,
            binary: binary.to_owned(),
            namespace: namespace.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            admin_port,
            log,
            _dir: dir,
        };
        tether.wait_ready();
        tether
    }

    /// Kills the controller with SIGKILL (no chance to finish anything) and starts a
    /// new one in its place, logging to the same file; returns once it is ready.
    pub fn kill_and_restart(&mut self) {
        self.process.kill();
        self.admin_port = free_port();
        self.process = spawn(
            &self.binary,
            &self.namespace,
            &self.kubeconfig,
            self.admin_port,
            &self.log,
        );
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let process = &mut self.process;
        let log = &self.log;
        wait_until(
            "tether run answering /readyz",
            Duration::from_secs(30),
            || {
                if let Some(status) = process.try_wait() {
                    panic!(
                        "tether run exited with {status} before it was ready:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                http_get(self.admin_port, "/readyz")
            },
        );
    }

    /// Everything the controller has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the controller with SIGTERM; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.process
            .stop(Duration::from_secs(10))
            .is_some_and(|status| status.success())
    }
}

impl Drop for Tether {
    /// Keeps the whole log of a failed test's controller with the servers' logs (its
    /// temporary directory goes with it).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.process.stop(Duration::from_secs(10));
            let kept = crate::logs::file(&format!("tether-{}", self.namespace));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("tether run's whole log: {}", kept.display());
            }
        }
    }
}

/// Starts `binary run` for `namespace`, appending its log to `log`.
fn spawn(
    binary: &str,
    namespace: &str,
    kubeconfig: &Path,
    admin_port: u16,
    log: &Path,
) -> Supervised {
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("opening the log file");
    Supervised::spawn(
        "tether run",
        Command::new(binary)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--admin-addr", &admin_addr, "--namespace", namespace])
            .args(["--poll-interval", "10s", "--wait-interval", "1s"])
            .env("TETHER_LOG", "trace")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("starting tether run")
}
