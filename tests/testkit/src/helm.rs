//! helm, as `make setup` builds it (`scripts/build-helm.sh`, into
//! `$TETHER_CACHE/bin/helm`), run on the repository's chart against a test's cluster.
//! Its own state (repositories, cache) is kept in a temporary directory, so a test
//! never reads or writes the user's helm configuration.

use std::path::{Path, PathBuf};

/// Environment variable overriding the path of the helm binary.
pub const BINARY_ENV: &str = "TETHER_HELM_BIN";

/// helm on one cluster (or none, for `lint` and `template`).
pub struct Helm {
    binary: PathBuf,
    kubeconfig: Option<PathBuf>,
    home: tempfile::TempDir,
}

impl Helm {
    /// helm without a cluster: `lint`, `template`.
    pub fn new() -> Helm {
        Helm {
            binary: binary(),
            kubeconfig: None,
            home: tempfile::Builder::new()
                .prefix("tether-helm-")
                .tempdir()
                .expect("a temporary directory for helm"),
        }
    }

    /// helm on the cluster of `kubeconfig`.
    pub fn on(kubeconfig: &Path) -> Helm {
        Helm {
            kubeconfig: Some(kubeconfig.to_owned()),
            ..Helm::new()
        }
    }

    /// The repository's chart, `charts/tether`.
    pub fn chart() -> PathBuf {
        crate::repo_root().join("charts/tether")
    }

    /// Runs `helm args…`; its standard output, or its exit status and both outputs.
    pub async fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, String> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .kill_on_drop(true);
        match &self.kubeconfig {
            Some(kubeconfig) => command.env("KUBECONFIG", kubeconfig),
            // No cluster: helm must not find one in the user's kubeconfig either.
            None => command.env("KUBECONFIG", self.home.path().join("no-kubeconfig")),
        };
        let output = command
            .output()
            .await
            .unwrap_or_else(|error| panic!("running {}: {error}", self.binary.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "helm {} failed ({}):\n{}{stdout}",
                args.iter()
                    .map(|arg| arg.as_ref().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `helm template <release> charts/tether --namespace <namespace> <extra…>`, parsed
    /// into its documents.
    pub async fn template(
        &self,
        release: &str,
        namespace: &str,
        extra: &[&str],
    ) -> Vec<serde_json::Value> {
        let chart = Self::chart();
        let mut args = vec!["template", release];
        args.push(chart.to_str().expect("a UTF-8 path"));
        args.extend(["--namespace", namespace]);
        args.extend(extra);
        let yaml = self
            .run(&args)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        serde_saphyr::from_multiple::<serde_json::Value>(&yaml)
            .expect("helm renders YAML")
            .into_iter()
            .filter(|document| !document.is_null())
            .collect()
    }
}

impl Default for Helm {
    fn default() -> Self {
        Self::new()
    }
}

fn binary() -> PathBuf {
    crate::built_tool("helm", BINARY_ENV, |path| {
        format!(
            "helm is not built: {path} is missing. Run `make setup` (or scripts/build-helm.sh), \
             which builds the version tests/helm/go.mod pins, or set {BINARY_ENV} to a helm 3 binary"
        )
    })
}
