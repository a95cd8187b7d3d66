//! `tether run`: connect to the cluster, check the CRDs, run the admin endpoints and,
//! once this replica leads (with `--leader-elect`), the controllers; stop cleanly on
//! SIGTERM or Ctrl-C, releasing the lease, and at once when the lease is lost.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::{net::TcpListener, signal::unix::SignalKind, sync::watch};

use crate::{
    admin, crds,
    health::Health,
    kube_client::{RateLimitLayer, RequestCountLayer, WriteGateLayer},
    leader::{Leadership, LeaseSettings, SHORTEST_LEASE, WriteGate},
    metrics::Metrics,
    providers, reconciler,
};

/// Options of `tether run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the admin server (`/healthz`, `/readyz`, `/metrics`). Use
    /// `0.0.0.0:8080` in a pod.
    #[arg(long, env = "TETHER_ADMIN_ADDR", default_value = "127.0.0.1:8080")]
    pub admin_addr: SocketAddr,

    /// Kubeconfig file to use; defaults to `$KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// How often a Ready object's cloud resource is checked again (the
    /// `tether.dev/poll-interval` annotation overrides it per object), e.g. `10m`.
    #[arg(long, env = "TETHER_POLL_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How often an object whose cloud resource is being created, changed or deleted,
    /// or whose references are not Ready yet, is checked again.
    #[arg(long, env = "TETHER_WAIT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub wait_interval: Duration,

    /// How many objects of one kind are reconciled at once.
    #[arg(long, env = "TETHER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Reconcile objects in these namespaces only, comma-separated (default: all
    /// namespaces). `--namespace` is the same.
    #[arg(
        long,
        alias = "namespace",
        env = "TETHER_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,

    /// Run the controllers only while this replica holds the leader lease, so that
    /// several replicas can run for availability and one acts.
    #[arg(long, env = "TETHER_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the leader lease (in a pod: its own, from `POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the leader lease.
    #[arg(long, default_value = "tether")]
    pub lease_name: String,

    /// How long the lease holds without renewal: the longest a crashed leader keeps
    /// the others waiting (a leader that stops releases it at once), e.g. `15s`; at
    /// least `3s`. The leader renews it every third of that, and stops writing when a
    /// third of it is left without a renewal.
    #[arg(long, default_value = "15s", value_parser = parse_lease_duration)]
    pub lease_duration: Duration,

    /// A client-side limit on requests a second to the Kubernetes API server, on
    /// average (every request passes it, watches included). None by default: the API
    /// server protects itself with API Priority and Fairness (GA since Kubernetes 1.29;
    /// tether needs 1.30), and tether bounds its own load (`--concurrency` reconciles
    /// per kind, writes only on change). controller-runtime dropped its default
    /// client-side limit for the same reason (kubernetes-sigs/controller-runtime#3119).
    /// Set it on an API server without APF, or to keep tether well under what its
    /// flow schema allows.
    #[arg(long, env = "TETHER_KUBE_QPS", value_parser = parse_qps)]
    pub kube_qps: Option<f64>,

    /// Requests to the Kubernetes API server that may go at once, above `--kube-qps`,
    /// after a quiet spell (the size of its token bucket; default twice `--kube-qps`).
    #[arg(long, env = "TETHER_KUBE_BURST", requires = "kube_qps", value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_burst: Option<u32>,
}

/// The burst of a `--kube-qps` given without `--kube-burst`: two seconds' worth.
fn default_burst(qps: f64) -> u32 {
    // Saturating: a float-to-int `as` clamps to the integer's range.
    ((qps * 2.0).ceil() as u32).max(1)
}

fn parse_qps(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|qps| qps.is_finite() && *qps > 0.0)
        .ok_or_else(|| format!("{value:?} is not a positive number of requests a second"))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    value
        .parse::<kube::core::Duration>()
        .ok()
        .filter(|duration| !duration.is_negative())
        .map(Duration::from)
        .ok_or_else(|| format!("{value:?} is not a duration such as 30s or 5m"))
}

fn parse_lease_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration < SHORTEST_LEASE {
        return Err(format!(
            "{value:?} is too short for a lease: the leader renews it every third of it, in \
             whole seconds, so it must be at least {}s",
            SHORTEST_LEASE.as_secs()
        ));
    }
    Ok(duration)
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
    #[error("lost the leader lease {name}: another replica leads now")]
    LostLease { name: String },
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(crate::memory::trim_periodically());
    #[cfg(feature = "dhat-heap")]
    tokio::spawn(crate::memory::profile::write_on_sigusr1());
    // With leader election, nothing is written (but the lease) unless this replica
    // leads by the clock: the cluster's writes pass the gate here, AWS's in the
    // reconciler.
    let write_gate = if args.leader_elect {
        WriteGate::elected()
    } else {
        WriteGate::default()
    };
    let layers = Layers {
        rate_limit: match args.kube_qps {
            Some(qps) => RateLimitLayer::new(qps, args.kube_burst.unwrap_or(default_burst(qps))),
            None => RateLimitLayer::unlimited(),
        },
        requests: RequestCountLayer::new(metrics.clone()),
        write_gate: WriteGateLayer::new(write_gate.clone()),
    };
    let client = client(args.kubeconfig.as_deref(), &layers).await?;
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
    let health = Arc::new(Health::default());
    let reports = admin::Reports {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let settings = reconciler::Settings {
        poll_interval: args.poll_interval,
        wait_interval: args.wait_interval,
        concurrency: args.concurrency,
        instance: std::env::var("POD_NAME").ok(),
        namespace: None,
        metrics,
        health,
        write_gate,
    };
    let lease = args.leader_elect.then(|| LeaseSettings {
        namespace: args.lease_namespace,
        name: args.lease_name,
        identity: identity(),
        duration: args.lease_duration,
    });
    let signals = async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, stopping"),
        }
        let _ = stop.send(true);
        std::future::pending::<()>().await;
    };
    let admin = admin::serve(listener, reports, stopped());
    let leading = async {
        let outcome = lead(client, settings, lease, args.watch_namespaces, stopped).await;
        // Stopped, or lost the lease: the admin server stops too.
        let _ = stop.send(true);
        outcome
    };
    let outcome = tokio::select! {
        ((), outcome) = async { tokio::join!(admin, leading) } => outcome,
        () = signals => unreachable!("waiting for a signal never ends by itself"),
    };
    tracing::info!("stopped");
    outcome
}

/// Runs the controllers until `stopped`: at once without a lease, else while this
/// replica holds it. Stopping gives running reconciles their grace, then releases the
/// lease. Losing the lease drops the controllers at once, running reconciles with them
/// (they could only write for a replica that no longer leads), and is an error: the
/// process exits, and the pod restarts and stands by.
async fn lead<S, F>(
    client: kube::Client,
    settings: reconciler::Settings,
    lease: Option<LeaseSettings>,
    namespaces: Vec<String>,
    stopped: S,
) -> Result<(), Error>
where
    S: Fn() -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(lease) = lease else {
        settings.metrics.set_leader(true);
        settings.health.running();
        controllers(client, settings, namespaces, stopped()).await;
        return Ok(());
    };
    let name = lease.name.clone();
    tracing::info!(lease = %name, namespace = %lease.namespace, identity = %lease.identity, "standing by for the leader lease");
    settings.health.standing_by();
    let mut leadership = Leadership::start(client.clone(), lease, settings.write_gate.clone());
    tokio::select! {
        () = leadership.acquired() => {}
        () = stopped() => {
            leadership.release().await;
            return Ok(());
        }
    }
    settings.metrics.set_leader(true);
    settings.health.running();
    let lost = leadership.lost();
    tokio::select! {
        () = controllers(client, settings.clone(), namespaces, stopped()) => {
            settings.metrics.set_leader(false);
            leadership.release().await;
            Ok(())
        }
        () = lost => {
            settings.metrics.set_leader(false);
            tracing::error!(lease = %name, "lost the leader lease: stopping at once, without waiting for running reconciles");
            Err(Error::LostLease { name })
        }
    }
}

/// The controllers of every kind, for all namespaces or once per namespace listed.
async fn controllers(
    client: kube::Client,
    settings: reconciler::Settings,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    if namespaces.is_empty() {
        return providers::run(client, settings, shutdown).await;
    }
    futures::future::join_all(namespaces.into_iter().map(|namespace| {
        let settings = reconciler::Settings {
            namespace: Some(namespace),
            ..settings.clone()
        };
        providers::run(client.clone(), settings, shutdown.clone())
    }))
    .await;
}

/// This replica's name in the lease: the pod's, or one made from the host and process.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tether".to_owned());
        format!("{host}-{}", std::process::id())
    })
}

/// The layers on the client's service stack.
struct Layers {
    rate_limit: RateLimitLayer,
    requests: RequestCountLayer,
    write_gate: WriteGateLayer,
}

async fn client(
    kubeconfig: Option<&std::path::Path>,
    layers: &Layers,
) -> Result<kube::Client, Error> {
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
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(Error::Client)?
        .with_layer(&layers.requests)
        .with_layer(&layers.rate_limit)
        .with_layer(&layers.write_gate)
        .build())
}
