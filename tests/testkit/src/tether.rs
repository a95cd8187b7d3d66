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
    args: Vec<String>,
    env: Vec<(String, String)>,
    admin_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Arguments and environment a test adds to `tether run` (e.g. `--leader-elect`, or
/// `AWS_ACCESS_KEY_ID` to tell replicas apart in the proxy's calls).
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// Arguments after the harness's own.
    pub args: Vec<String>,
    /// Environment variables, set after the harness's own.
    pub env: Vec<(String, String)>,
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
        Self::start_with(binary, namespace, kubeconfig, Extra::default())
    }

    /// Like [`Tether::start_on`], with `extra` arguments and environment.
    pub fn start_with(binary: &str, namespace: &str, kubeconfig: &Path, extra: Extra) -> Tether {
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        let mut args: Vec<String> = [
            "run",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--poll-interval",
            "10s",
            "--wait-interval",
            "1s",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.args);
        let mut env: Vec<(String, String)> = [
            ("TETHER_LOG", "trace"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .to_vec();
        env.extend(extra.env);
        Self::start_command(binary, args, env)
    }

    /// Starts `binary args…` (a `run` command line without `--admin-addr`: this adds
    /// one on 127.0.0.1 and a free port) with `env` added to the test's environment
    /// less its AWS credentials and profile: a command line of the test's own, such
    /// as a Deployment's. Returns once the controller answers `/readyz`; fails with
    /// its log if it exits first.
    pub fn start_command(binary: &str, args: Vec<String>, env: Vec<(String, String)>) -> Tether {
        let dir = tempfile::tempdir().expect("a temp dir for the log");
        let log = dir.path().join("tether.log");
        let admin_port = free_port();
        let process = spawn(binary, &args, &env, admin_port, &log);
        let mut tether = Tether {
            process,
            binary: binary.to_owned(),
            args,
            env,
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
            &self.args,
            &self.env,
            self.admin_port,
            &self.log,
        );
        self.wait_ready();
    }

    /// Kills the controller with SIGKILL and leaves it dead.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The body of `GET path` on the admin server (e.g. `/metrics`), or the status
    /// line of an answer other than 200.
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        http_get(self.admin_port, path)
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

    /// The process id of the running controller (for its /proc figures).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Everything the controller has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the controller with SIGTERM; returns whether it exited cleanly within
    /// 10 s.
    pub fn stop(&mut self) -> bool {
        self.stop_within(Duration::from_secs(10))
    }

    /// Stops the controller with SIGTERM; returns whether it exited cleanly within
    /// `grace` (it is killed after that).
    pub fn stop_within(&mut self, grace: Duration) -> bool {
        self.process
            .stop(grace)
            .is_some_and(|status| status.success())
    }
}

impl Drop for Tether {
    /// Keeps the whole log of a failed test's controller with the servers' logs (its
    /// temporary directory goes with it).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.process.stop(Duration::from_secs(10));
            let name = self
                .args
                .iter()
                .position(|arg| arg == "--namespace" || arg == "--watch-namespaces")
                .and_then(|at| self.args.get(at + 1))
                .map_or("all", String::as_str);
            let kept = crate::logs::file(&format!("tether-{name}-{}", std::process::id()));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("tether run's whole log: {}", kept.display());
            }
        }
    }
}

/// Starts `binary args… --admin-addr 127.0.0.1:<admin_port>` with `env`, appending
/// its log to `log`.
fn spawn(
    binary: &str,
    args: &[String],
    env: &[(String, String)],
    admin_port: u16,
    log: &Path,
) -> Supervised {
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("opening the log file");
    let mut command = Command::new(binary);
    command.args(args).args(["--admin-addr", &admin_addr]);
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        command.env_remove(name);
    }
    command
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::null())
        .stderr(log);
    Supervised::spawn("tether run", &mut command).expect("starting tether run")
}
