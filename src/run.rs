//! `tether run`: connect to the cluster, check the CRDs, serve the admin endpoints and
//! stop cleanly on SIGTERM or Ctrl-C.

use std::{net::SocketAddr, path::PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::{net::TcpListener, signal::unix::SignalKind};

use crate::{admin, crds};

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
    admin::serve(listener, async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, stopping"),
        }
    })
    .await;
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
