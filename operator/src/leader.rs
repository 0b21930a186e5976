//! Leader election on a `coordination.k8s.io/v1` Lease, through `kube-lease-manager` (it
//! renews the lease with server-side apply and takes over an expired one).

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Which Lease, and how long a holder keeps it without renewing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease object.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lock stays valid after its last renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

/// This replica's place in the election.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Leadership {
    /// Join the election for `config.name` (the Lease is created if missing).
    pub async fn join(client: Client, config: &LeaseConfig) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration_seconds)
            .with_grace(config.grace_seconds)
            .with_field_manager(format!("{}-lease", crate::FIELD_MANAGER))
            .build()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "joining the leader election on Lease {}/{}: {error}",
                    config.namespace,
                    config.name
                )
            })?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task })
    }

    /// Whether this replica holds the lease now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Wait until this replica holds the lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.state.wait_for(|leader| *leader).await.map_err(|_| {
            anyhow::anyhow!("the lease manager stopped before this replica became leader")
        })?;
        info!("became leader");
        Ok(())
    }

    /// A future that resolves when this replica no longer holds the lease (or the manager
    /// stopped), usable as a controller shutdown trigger.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut state = self.state.clone();
        async move {
            // An Err means the manager task ended, which also means we are not leading.
            let _ = state.wait_for(|leader| !*leader).await;
        }
    }

    /// Give the lease up so a standby can take over at once, not after it expires.
    pub async fn release(self) -> anyhow::Result<()> {
        let Self { state, task } = self;
        drop(state); // closing the channel makes the manager release and stop
        match task.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(anyhow::anyhow!("releasing the lease: {error}")),
            Err(error) => Err(anyhow::anyhow!("lease manager task failed: {error}")),
        }
    }
}
