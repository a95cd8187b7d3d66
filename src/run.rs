//! `tether run`: connect to the cluster, check the CRDs, run the controllers and the
//! admin endpoints, and stop cleanly on SIGTERM or Ctrl-C.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::{net::TcpListener, signal::unix::SignalKind, sync::watch};

use crate::{admin, crds, providers, reconciler};

/// Options of `tether run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the admin server (`/healthz`, `/readyz`). Use `0.0.0.0:8080` in a pod.
    #[arg(long, env = "TETHER_ADMIN_ADDR", default_value = "127.0.0.1:8080")]
    pub admin_addr: SocketAddr,

    /// Kubeconfig file to use; defaults to `$KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// How often a Ready object's cloud resource is checked again (the
    /// `tether.dev/poll-interval` annotation overrides it per object), e.g. `5m`.
    #[arg(long, env = "TETHER_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How often an object whose cloud resource is being created, changed or deleted,
    /// or whose references are not Ready yet, is checked again.
    #[arg(long, env = "TETHER_WAIT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub wait_interval: Duration,

    /// How many objects of one kind are reconciled at once.
    #[arg(long, env = "TETHER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Reconcile objects in this namespace only (default: all namespaces).
    #[arg(long, env = "TETHER_NAMESPACE")]
    pub namespace: Option<String>,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    value
        .parse::<kube::core::Duration>()
        .ok()
        .filter(|duration| !duration.is_negative())
        .map(Duration::from)
        .ok_or_else(|| format!("{value:?} is not a duration such as 30s or 5m"))
}

/// Why the controller could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("configuring the Kubernetes client: {0}")]
    ClientConfig(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("reaching the Kubernetes API server: {0}")]
    Connect(#[source] kube::Error),
    #[error(transparent)]
    Crds(#[from] crds::Error),
    #[error("binding the admin server to {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let version = client.apiserver_version().await.map_err(Error::Connect)?;
    tracing::info!(server = %version.git_version, "connected to the Kubernetes API server");
    crds::check_installed(&client).await?;
    tracing::info!(
        crds = crds::all().len(),
        "CustomResourceDefinitions are installed"
    );

    let mut terminate =
        tokio::signal::unix::signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let listener = TcpListener::bind(args.admin_addr)
        .await
        .map_err(|source| Error::AdminBind {
            addr: args.admin_addr,
            source,
        })?;
    let admin_addr = listener.local_addr().unwrap_or(args.admin_addr);
    tracing::info!(%admin_addr, "admin server listening");

    let (stop, stopping) = watch::channel(false);
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let settings = reconciler::Settings {
        poll_interval: args.poll_interval,
        wait_interval: args.wait_interval,
        concurrency: args.concurrency,
        instance: std::env::var("POD_NAME").ok(),
        namespace: args.namespace,
    };
    tokio::join!(
        admin::serve(listener, stopped()),
        providers::run(client, settings, stopped()),
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, stopping"),
            }
            let _ = stop.send(true);
        },
    );
    tracing::info!("stopped");
    Ok(())
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.to_path_buf(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(Error::ClientConfig)?,
    };
    kube::Client::try_from(config).map_err(Error::Client)
}
