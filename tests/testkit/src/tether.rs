//! The real `tether run` binary as a test's controller: scoped to the test's namespace,
//! pointed at the shared control plane, with its log kept in a file to search.

use std::{
    fs::File,
    path::PathBuf,
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
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tether {
    /// Starts `binary run` for `namespace` on the shared control plane, logging at
    /// trace level, polling every 10 s and re-checking unsettled objects every second.
    /// AWS credentials come from the environment (the emulator takes any). Returns once
    /// the controller answers `/readyz`; fails with its log if it exits first.
    pub fn start(binary: &str, namespace: &str) -> Tether {
        let dir = tempfile::tempdir().expect("a temp dir for the log");
        let log = dir.path().join("tether.log");
        let kubeconfig = ControlPlane::shared().kubeconfig().to_owned();
        let admin_port = free_port();
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let mut process = Supervised::spawn(
            "tether run",
            Command::new(binary)
                .arg("run")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--admin-addr", &admin_addr, "--namespace", namespace])
                .args(["--poll-interval", "10s", "--wait-interval", "1s"])
                .env("TETHER_LOG", "trace")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env_remove("AWS_PROFILE")
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("creating the log file")),
        )
        .expect("starting tether run");
        wait_until(
            "tether run answering /readyz",
            Duration::from_secs(30),
            || {
                if let Some(status) = process.try_wait() {
                    panic!(
                        "tether run exited with {status} before it was ready:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                http_get(admin_port, "/readyz")
            },
        );
        Tether {
            process,
            log,
            _dir: dir,
        }
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
