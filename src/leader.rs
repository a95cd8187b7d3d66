//! Leader election on a `Lease` (kube-lease-manager): of the replicas that share a
//! lease, only the holder runs the controllers, so only one writes to AWS and to the
//! cluster. A replica that loses the lease stops; one that stops releases it, and a
//! standby that sees the lease released takes it at once instead of waiting for it to
//! expire.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// Where and as whom this replica competes for the lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod's name).
    pub identity: String,
    /// How long the lease holds without renewal: the longest a crashed leader keeps
    /// the others waiting.
    pub duration: Duration,
}

/// How long before the lease expires its holder renews it.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5);

/// How long to wait before competing again after an error talking to the API server.
const RETRY: Duration = Duration::from_secs(2);

/// This replica's part in the election, run by a background task.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts competing for the lease.
    pub fn start(kube: kube::Client, settings: LeaseSettings) -> Self {
        let (leading_sender, leading) = watch::channel(false);
        let (stop, stopping) = oneshot::channel();
        let task = tokio::spawn(compete(kube, settings, leading_sender, stopping));
        Self {
            leading,
            stop: Some(stop),
            task,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Completes when this replica, having held the lease, no longer does.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Stops competing and releases the lease if this replica holds it.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Competes for the lease until `stopping`, publishing whether this replica holds it.
async fn compete(
    kube: kube::Client,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
    mut stopping: oneshot::Receiver<()>,
) {
    let leases = Api::<Lease>::namespaced(kube.clone(), &settings.namespace);
    let released = watcher(
        leases,
        watcher::Config::default().fields(&format!("metadata.name={}", settings.name)),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|lease| async move {
        let lease = lease.ok()?;
        let holder = lease.spec.and_then(|spec| spec.holder_identity);
        holder.is_none_or(|holder| holder.is_empty()).then_some(())
    });
    let mut released = std::pin::pin!(released);
    loop {
        // A new manager reads the lease afresh: the way to notice a release at once.
        let manager = match manager(&kube, &settings).await {
            Ok(manager) => manager,
            Err(error) => {
                tracing::warn!(%error, lease = %settings.name, "cannot read the leader lease; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    _ = &mut stopping => return,
                }
            }
        };
        loop {
            let holds = *leading.borrow();
            tokio::select! {
                changed = manager.changed() => match changed {
                    Ok(now) => {
                        if now != holds {
                            tracing::info!(lease = %settings.name, identity = %settings.identity, leading = now, "{}", if now { "acquired the leader lease" } else { "lost the leader lease" });
                        }
                        leading.send_replace(now);
                    }
                    Err(error) => {
                        tracing::warn!(%error, lease = %settings.name, "leader lease");
                        if holds {
                            leading.send_replace(false);
                        }
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                },
                Some(()) = released.next(), if !holds => {
                    tracing::debug!(lease = %settings.name, "the leader released the lease");
                    break;
                }
                _ = &mut stopping => {
                    if let Err(error) = manager.release().await {
                        tracing::warn!(%error, lease = %settings.name, "could not release the leader lease; it expires by itself");
                    } else if holds {
                        tracing::info!(lease = %settings.name, "released the leader lease");
                    }
                    leading.send_replace(false);
                    return;
                }
            }
        }
    }
}

async fn manager(
    kube: &kube::Client,
    settings: &LeaseSettings,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(kube.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration.as_secs())
        .with_grace(RENEW_BEFORE_EXPIRY.as_secs())
        .build()
        .await
}
