//! AWS emulators for the tests: moto server (EC2, RDS, STS, Secrets Manager, IAM) and
//! LocalStack (EC2, STS, Secrets Manager), each from a virtualenv that
//! `scripts/setup-emulators.sh` prepares, on 127.0.0.1 and a free port.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{
    logs,
    process::{Supervised, free_port, http_get, wait_until},
};

/// Which emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorKind {
    /// moto server: serves RDS as well as EC2.
    Moto,
    /// LocalStack community edition: EC2, STS and Secrets Manager, no RDS.
    LocalStack,
}

impl EmulatorKind {
    fn name(self) -> &'static str {
        match self {
            Self::Moto => "moto",
            Self::LocalStack => "localstack",
        }
    }

    /// Environment variable naming an already running emulator to use instead.
    pub fn endpoint_env(self) -> &'static str {
        match self {
            Self::Moto => "TETHER_TEST_MOTO_ENDPOINT",
            Self::LocalStack => "TETHER_TEST_LOCALSTACK_ENDPOINT",
        }
    }

    fn readiness_path(self) -> &'static str {
        match self {
            Self::Moto => "/moto-api/",
            Self::LocalStack => "/_localstack/init/ready",
        }
    }

    fn is_ready(self, body: &str) -> bool {
        match self {
            Self::Moto => true,
            Self::LocalStack => body.replace(' ', "").contains(r#""completed":true"#),
        }
    }
}

/// A running emulator.
pub struct Emulator {
    /// Which emulator this is.
    pub kind: EmulatorKind,
    endpoint: String,
    /// How long it took to answer its readiness check (zero when given by endpoint).
    pub startup: Duration,
    _process: Option<Supervised>,
    _state_dir: Option<tempfile::TempDir>,
}

impl Emulator {
    /// The moto server shared by every test of this test binary, started on first use.
    pub fn moto() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(|| Emulator::shared(EmulatorKind::Moto))
    }

    /// The LocalStack shared by every test of this test binary, started on first use.
    pub fn localstack() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(|| Emulator::shared(EmulatorKind::LocalStack))
    }

    /// The shared emulator of `kind`.
    pub fn of(kind: EmulatorKind) -> &'static Emulator {
        match kind {
            EmulatorKind::Moto => Self::moto(),
            EmulatorKind::LocalStack => Self::localstack(),
        }
    }

    fn shared(kind: EmulatorKind) -> Emulator {
        match std::env::var(kind.endpoint_env()) {
            Ok(endpoint) => Emulator {
                kind,
                endpoint,
                startup: Duration::ZERO,
                _process: None,
                _state_dir: None,
            },
            Err(_) => Emulator::start(kind),
        }
    }

    /// Starts a new emulator of `kind`; stopped when dropped.
    pub fn start(kind: EmulatorKind) -> Emulator {
        let venv = crate::cache_dir().join(format!("venv-{}", kind.name()));
        let python = venv.join("bin/python");
        assert!(
            python.is_file(),
            "the {} emulator is not installed: {} is missing. Run `make setup` (or \
             scripts/setup-emulators.sh {}), or set {} to the endpoint of a running one",
            kind.name(),
            python.display(),
            kind.name(),
            kind.endpoint_env()
        );
        let state_dir = tempfile::Builder::new()
            .prefix(&format!("tether-{}-", kind.name()))
            .tempdir()
            .expect("creating a temporary directory");
        let port = free_port();
        let log = logs::file(kind.name());
        let mut command = Command::new(&python);
        command
            .arg(crate::repo_root().join("tests/testkit/supervise.py"))
            .arg(&log)
            // The shared emulators live in statics that are never dropped.
            .env("SUPERVISE_REMOVE_DIR", state_dir.path());
        match kind {
            EmulatorKind::Moto => {
                command.arg(venv.join("bin/moto_server")).args([
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
            }
            EmulatorKind::LocalStack => {
                command
                    .arg(&python)
                    .args(["-m", "localstack.runtime.main"])
                    .envs(localstack_env(port, state_dir.path()));
            }
        }
        let started = Instant::now();
        let mut process = Supervised::spawn(kind.name(), &mut command)
            .unwrap_or_else(|error| panic!("starting {}: {error}", kind.name()));
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until(
            &format!("{} readiness", kind.name()),
            Duration::from_secs(120),
            || {
                if let Some(status) = process.try_wait() {
                    panic!(
                        "{} exited with {status} before it was ready; its log, {}, ends:\n{}",
                        kind.name(),
                        log.display(),
                        logs::tail(&log, 40)
                    );
                }
                let body = http_get(port, kind.readiness_path())?;
                if kind.is_ready(&body) {
                    Ok(())
                } else {
                    Err(format!("not ready yet: {body}"))
                }
            },
        );
        let startup = started.elapsed();
        eprintln!(
            "{} ready at {endpoint} after {startup:.2?} (log: {})",
            kind.name(),
            log.display()
        );
        Emulator {
            kind,
            endpoint,
            startup,
            _process: Some(process),
            _state_dir: Some(state_dir),
        }
    }

    /// The emulator's URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// LocalStack without Docker, bound to 127.0.0.1 only, with every file under
/// `state_dir` and no call beyond loopback (see tests/emulators/README.md).
fn localstack_env(port: u16, state_dir: &Path) -> Vec<(&'static str, String)> {
    let dir = |name: &str| -> String {
        let path: PathBuf = state_dir.join(name);
        path.to_string_lossy().into_owned()
    };
    // A closed loopback port: LocalStack's catalogue and analytics look-ups fail fast.
    let nowhere = "http://127.0.0.1:9/v1".to_owned();
    vec![
        ("OVERRIDE_IN_DOCKER", "0".into()),
        ("FILESYSTEM_ROOT", dir("filesystem")),
        ("CONFIG_DIR", dir("config")),
        ("GATEWAY_SERVER", "hypercorn".into()),
        ("GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
        ("DNS_ADDRESS", "0".into()),
        ("DISABLE_EVENTS", "1".into()),
        ("SKIP_SSL_CERT_DOWNLOAD", "1".into()),
        ("API_ENDPOINT", nowhere.clone()),
        ("ANALYTICS_API", nowhere),
        ("SERVICES", "ec2,sts,secretsmanager,iam".into()),
        ("LS_LOG", "warn".into()),
    ]
}
