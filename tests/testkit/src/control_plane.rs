//! The Kubernetes control plane the tests run on: the upstream kube-apiserver with
//! embedded etcd and the garbage-collector and namespace controllers, built from
//! `tests/control-plane` by `scripts/build-control-plane.sh`, or an existing cluster
//! named by `TETHER_TEST_KUBECONFIG`.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{logs, process::Supervised};

/// Environment variable naming the kubeconfig of an existing cluster to test against.
pub const EXISTING_CLUSTER_ENV: &str = "TETHER_TEST_KUBECONFIG";
/// Environment variable overriding the path of the control-plane binary.
pub const BINARY_ENV: &str = "TETHER_CONTROL_PLANE_BIN";

/// A running control plane (or an existing cluster) and its admin kubeconfig.
pub struct ControlPlane {
    kubeconfig: PathBuf,
    /// How long the control plane took to become ready (zero for an existing cluster).
    pub startup: Duration,
    _process: Option<Supervised>,
    _data_dir: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on first use.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var_os(EXISTING_CLUSTER_ENV) {
            Some(path) => ControlPlane {
                kubeconfig: path.into(),
                startup: Duration::ZERO,
                _process: None,
                _data_dir: None,
            },
            None => ControlPlane::start(),
        })
    }

    /// Starts a control plane of its own, for a test that needs a pristine cluster
    /// (for example one without tether's CRDs). Stopped when dropped.
    pub fn start() -> ControlPlane {
        let binary = binary();
        let data_dir = tempfile::Builder::new()
            .prefix("tether-control-plane-")
            .tempdir()
            .expect("creating a temporary directory");
        let kubeconfig = data_dir.path().join("kubeconfig");
        let log = logs::file("control-plane");
        let log_file = File::create(&log)
            .unwrap_or_else(|error| panic!("creating {}: {error}", log.display()));
        let started = Instant::now();
        let mut process = Supervised::spawn(
            "control plane",
            Command::new(&binary)
                .arg("--data-dir")
                .arg(data_dir.path())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--exit-with-stdin")
                // The shared control plane lives in a static that is never dropped,
                // so its temporary directory would outlive the test run.
                .arg("--remove-data-dir-on-exit")
                .stdout(Stdio::piped())
                .stderr(log_file),
        )
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let stdout = process.child_mut().stdout.take().expect("piped stdout");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("ready "));
        let Some(ready) = ready else {
            let status = process.stop(Duration::from_secs(5));
            panic!(
                "the control plane exited before it was ready ({status:?}); its log, {}, ends:\n{}",
                log.display(),
                logs::tail(&log, 40)
            );
        };
        let startup = started.elapsed();
        eprintln!(
            "control plane {ready} (harness saw it after {startup:.2?}; log: {})",
            log.display()
        );
        ControlPlane {
            kubeconfig,
            startup,
            _process: Some(process),
            _data_dir: Some(data_dir),
        }
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client for the current tokio runtime.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("reading the kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("a valid kubeconfig");
        kube::Client::try_from(config).expect("building a client")
    }
}

fn binary() -> PathBuf {
    crate::built_tool("tether-control-plane", BINARY_ENV, |path| {
        format!(
            "the local control plane is not built: {path} is missing. Run `make setup` \
             (or scripts/build-control-plane.sh), or set {EXISTING_CLUSTER_ENV} to the kubeconfig of \
             an existing cluster"
        )
    })
}
