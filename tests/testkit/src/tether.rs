//! The real `tether run` binary as a test's controller: scoped to the test's namespace,
//! pointed at the shared control plane, with its log kept in a file to search.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    ControlPlane,
    process::{Supervised, free_port, http_get, signal, wait_until},
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

    /// The controller's requests to the API server so far, from its `/metrics`.
    pub fn kube_requests(&self) -> KubeRequests {
        KubeRequests::parse(&self.admin_get("/metrics").unwrap_or_default())
    }

    fn wait_ready(&mut self) {
        let process = &mut self.process;
        let log = &self.log;
        wait_until(
            "tether run answering /readyz",
            Duration::from_secs(90),
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

    /// Stops the controller dead with SIGSTOP, as a long stall would (a paused VM, a
    /// starved node): nothing in it runs, timers included, until [`Tether::resume`].
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Lets a paused controller run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// The controller's exit status, once it has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait()
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

/// Counts of requests to the API server by "verb resource" (`patch dbinstances/status`),
/// as `tether_kube_requests_total` reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeRequests(pub BTreeMap<String, f64>);

impl KubeRequests {
    /// The counts in a `/metrics` text.
    pub fn parse(metrics: &str) -> Self {
        let mut counts = BTreeMap::new();
        for line in metrics.lines() {
            let Some((labels, count)) = line
                .strip_prefix("tether_kube_requests_total{")
                .and_then(|rest| rest.rsplit_once("} "))
            else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                    .map(|value| value.trim_end_matches('"'))
                    .unwrap_or_default()
            };
            let key = format!("{} {}", label("verb"), label("resource"));
            *counts.entry(key).or_default() += count.parse::<f64>().unwrap_or(0.0);
        }
        Self(counts)
    }

    /// The requests with one of `verbs` made since `before`, by "verb resource",
    /// leaving out those with none.
    pub fn since(&self, before: &KubeRequests, verbs: &[&str]) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter(|(key, _)| {
                key.split_once(' ')
                    .is_some_and(|(verb, _)| verbs.contains(&verb))
            })
            .map(|(key, n)| (key.clone(), n - before.0.get(key).copied().unwrap_or(0.0)))
            .filter(|(_, n)| *n > 0.0)
            .collect()
    }

    /// The requests with one of `verbs` since `before`, per object of `objects`: the
    /// total, and a line by "verb resource".
    pub fn per_object(
        &self,
        before: &KubeRequests,
        objects: usize,
        verbs: &[&str],
    ) -> (f64, String) {
        let counts = self.since(before, verbs);
        let total: f64 = counts.values().sum();
        let by_request = counts
            .iter()
            .map(|(key, n)| format!("{key} {:.2}", n / objects as f64))
            .collect::<Vec<_>>()
            .join(", ");
        (total / objects as f64, by_request)
    }
}

/// The API server's verbs that write.
pub const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];
/// The API server's verbs that read one object or a list (watches aside).
pub const READS: [&str; 2] = ["get", "list"];

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
    let mut args = args.to_vec();
    args.extend(["--admin-addr".to_owned(), admin_addr]);
    // Under supervise.py: a killed test harness leaves no `tether run` behind.
    Supervised::spawn_watched("tether run", binary, &args, log, |command| {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().map(|(name, value)| (name, value)));
    })
    .expect("starting tether run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_verb_and_resource_since_a_first_scrape() {
        let before = KubeRequests::parse(
            "tether_kube_requests_total{verb=\"patch\",resource=\"dbinstances/status\",metadata_only=\"false\"} 2\n",
        );
        let after = KubeRequests::parse(concat!(
            "# TYPE tether_kube_requests counter\n",
            "tether_kube_requests_total{verb=\"patch\",resource=\"dbinstances/status\",metadata_only=\"false\"} 6\n",
            "tether_kube_requests_total{verb=\"create\",resource=\"events\",metadata_only=\"false\"} 4\n",
            "tether_kube_requests_total{verb=\"watch\",resource=\"secrets\",metadata_only=\"true\"} 1\n",
            "tether_kube_requests_total{verb=\"get\",resource=\"secrets\",metadata_only=\"false\"} 9\n",
        ));
        assert_eq!(
            after.per_object(&before, 2, &WRITES),
            (
                4.0,
                "create events 2.00, patch dbinstances/status 2.00".to_owned()
            )
        );
        assert_eq!(
            after.per_object(&before, 3, &READS),
            (3.0, "get secrets 3.00".to_owned())
        );
    }
}
