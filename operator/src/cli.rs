//! Command line and environment of `feather-operator`, and the process around the controller:
//! health/metrics server, CRD check, leader election, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{ArgAction, Parser, ValueEnum};
use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::{self, Scope};
use crate::leader::{Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::server::{self, HealthState};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reconciles WasmApp objects (feather.dev/v1alpha1) into Deployments on the feather
/// RuntimeClass, Services and HPAs.
#[derive(Clone, Debug, Parser)]
#[command(name = "feather-operator", version)]
pub struct Args {
    /// Watch WasmApps in this namespace only (default: all namespaces).
    #[arg(long, env = "FEATHER_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "FEATHER_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    pub health_addr: SocketAddr,

    /// Run only while holding the leader Lease (set false for a single replica).
    #[arg(long, env = "FEATHER_LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "FEATHER_LEASE_NAME", default_value = "feather-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE or the service
    /// account, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the election (default: POD_NAME, else hostname and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Seconds the leader's lock stays valid without renewal.
    #[arg(long, env = "FEATHER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds before expiry at which the leader renews.
    #[arg(long, env = "FEATHER_LEASE_GRACE_SECONDS", default_value_t = 5)]
    pub lease_grace_seconds: u64,

    /// Most reconciles in flight at once (0: no limit).
    #[arg(long, env = "FEATHER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "FEATHER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Args {
    fn lease_config(&self) -> LeaseConfig {
        let namespace = self.lease_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string())
        });
        LeaseConfig {
            name: self.lease_name.clone(),
            namespace,
            identity: self.identity(),
            duration_seconds: self.lease_duration_seconds,
            grace_seconds: self.lease_grace_seconds,
        }
    }

    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "feather-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Install the tracing subscriber for `format`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// A receiver that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received; shutting down"),
            _ = int.recv() => info!("SIGINT received; shutting down"),
        }
        let _ = sender.send(true);
    });
    Ok(receiver)
}

async fn wait_true(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|value| *value).await;
}

/// Run the operator until SIGTERM (Ok) or until it loses leadership (Err: the process exits
/// and its restart rejoins the election with a clean cache).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let client = Client::try_default().await.map_err(|error| {
        anyhow::anyhow!(
            "no Kubernetes client config (KUBECONFIG, ~/.kube/config or in-cluster): {error}"
        )
    })?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(HealthState::new(metrics.clone()));
    let (addr, _server) = server::serve(args.health_addr, health.clone()).await?;
    info!(%addr, "serving /healthz, /readyz and /metrics");

    let scope = Scope {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
    };
    controller::check_crd_installed(&client, &scope).await?;
    health.set_ready(true);

    let identity = args.identity();
    let leadership = if args.leader_elect {
        let config = args.lease_config();
        info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "joining leader election");
        let mut leadership = Leadership::join(client.clone(), &config).await?;
        tokio::select! {
            acquired = leadership.acquired() => acquired?,
            _ = wait_true(shutdown.clone()) => {
                leadership.release().await?;
                return Ok(());
            }
        }
        Some(leadership)
    } else {
        None
    };

    let running = controller::build(client, &scope, metrics, identity);
    health.set_apps(running.store.clone());
    let lost = leadership.as_ref().map(|l| l.lost());
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            match lost {
                Some(lost) => tokio::select! {
                    _ = wait_true(shutdown) => {},
                    _ = lost => warn!("lost the leader lease; stopping"),
                },
                None => wait_true(shutdown).await,
            }
        }
    };
    running.run(stop).await;

    match leadership {
        Some(leadership) if !*shutdown.borrow() && !leadership.is_leader() => {
            Err(anyhow::anyhow!("lost the leader lease"))
        }
        Some(leadership) => leadership.release().await,
        None => Ok(()),
    }
}
