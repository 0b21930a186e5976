//! The long-running shim process: one per containerd namespace, serving every wasm container.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::r#async::Server;
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use feather_engine::{Engine, EngineConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::container::DRAIN_GRACE;
use crate::events::Events;
use crate::grpc::Containerd;
use crate::registry::Registry;
use crate::service::{Shared, TaskService};
use crate::spec::parse_duration;

/// The service name containerd 2.x calls, and the one 1.6/1.7 call (identical messages).
pub const TASK_V3: &str = "containerd.task.v3.Task";
pub const TASK_V2: &str = "containerd.task.v2.Task";

/// How long a SIGTERM'd shim waits for its tasks to stop before it exits anyway.
const SIGTERM_GRACE: Duration = Duration::from_secs(10);

/// What the server process needs to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub namespace: String,
    /// containerd's gRPC socket (for the content store).
    pub containerd_address: String,
    /// containerd's ttrpc socket (for events).
    pub ttrpc_address: String,
    /// Our socket, `unix://` prefix optional.
    pub socket: String,
}

pub fn socket_path(address: &str) -> PathBuf {
    PathBuf::from(address.strip_prefix("unix://").unwrap_or(address))
}

/// Engine settings for the node: environment overrides let tests and benchmarks use their own
/// cache directory and instance pool size.
pub fn engine_config() -> Result<EngineConfig, String> {
    let mut config = EngineConfig::default();
    if let Ok(dir) = std::env::var("FEATHER_CACHE_DIR") {
        config.cache_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if let Ok(value) = std::env::var("FEATHER_MAX_INSTANCES") {
        config.max_instances = value
            .parse()
            .map_err(|_| format!("FEATHER_MAX_INSTANCES={value:?} is not a number"))?;
    }
    Ok(config)
}

/// How long SIGTERM lets an HTTP component finish in-flight requests: `FEATHER_DRAIN_GRACE`
/// (a duration like `30s`, `2m`), else [`DRAIN_GRACE`]. Set it to the longest
/// `terminationGracePeriodSeconds` of the node's pods: kubelet's SIGKILL ends a drain anyway.
pub fn drain_grace() -> Result<Duration, String> {
    parse_drain_grace(std::env::var("FEATHER_DRAIN_GRACE").ok().as_deref())
}

fn parse_drain_grace(value: Option<&str>) -> Result<Duration, String> {
    match value {
        Some(value) if !value.trim().is_empty() => parse_duration(value).ok_or_else(|| {
            format!("FEATHER_DRAIN_GRACE={value:?} is not a duration like 30s or 2m")
        }),
        _ => Ok(DRAIN_GRACE),
    }
}

/// Binds our socket. When the path is taken by a live shim, returns `Ok(None)`: that process
/// already serves this namespace. A stale file (a shim that crashed) is replaced.
fn bind_socket(path: &Path) -> Result<Option<UnixListener>, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("create socket dir {}: {e}", parent.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("remove stale socket {}: {e}", path.display()))?;
            UnixListener::bind(path)
                .map(Some)
                .map_err(|e| format!("bind {}: {e}", path.display()))
        }
        Err(e) => Err(format!("bind {}: {e}", path.display())),
    }
}

/// Runs the server until it decides to exit (see `registry`), or until SIGTERM/SIGINT.
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    let socket_path = socket_path(&config.socket);
    let Some(listener) = bind_socket(&socket_path)? else {
        tracing::info!(socket = %socket_path.display(), "another shim serves this socket");
        return Ok(());
    };
    let engine = Engine::new(engine_config()?).map_err(|e| format!("wasm engine: {e}"))?;
    let drain_grace = drain_grace()?;
    let publisher = RemotePublisher::new(&config.ttrpc_address)
        .await
        .map_err(|e| {
            format!(
                "connect to containerd events at {}: {e}",
                config.ttrpc_address
            )
        })?;
    let shared = Arc::new(Shared {
        engine,
        containerd: Containerd::new(&config.containerd_address, &config.namespace),
        events: Arc::new(Events::new(publisher, &config.namespace)),
        registry: Registry::default(),
        exit: CancellationToken::new(),
        socket_path: socket_path.clone(),
        pid: std::process::id(),
        drain_grace,
    });
    let service = TaskService {
        shared: Arc::clone(&shared),
    };
    let mut services = create_task(Arc::new(service.clone()));
    let v2 = create_task(Arc::new(service.clone()))
        .remove(TASK_V3)
        .ok_or_else(|| format!("containerd-shim-protos registers no {TASK_V3} service"))?;
    services.insert(TASK_V2.to_string(), v2);
    let listener = Listener::try_from(listener)
        .map_err(|e| format!("listen on {}: {e}", socket_path.display()))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services.into_iter().collect::<HashMap<_, _>>());
    server
        .start()
        .await
        .map_err(|e| format!("start ttrpc server: {e}"))?;
    tracing::info!(
        socket = %socket_path.display(),
        namespace = %config.namespace,
        pid = shared.pid,
        "shim serving"
    );

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    tokio::select! {
        _ = shared.exit.cancelled() => {}
        _ = sigterm.recv() => stop_everything(&service, "SIGTERM").await,
        _ = sigint.recv() => stop_everything(&service, "SIGINT").await,
    }
    tracing::info!("shim exiting");
    if let Err(e) = server.shutdown().await {
        tracing::warn!("ttrpc shutdown: {e}");
    }
    Ok(())
}

/// The node is going down (or an operator asked): stop every task like a SIGTERM to each
/// container (HTTP drains), give them a grace period, and exit.
async fn stop_everything(service: &TaskService, why: &str) {
    let containers = service.shared.registry.all();
    tracing::info!(tasks = containers.len(), "{why}: stopping every task");
    for container in &containers {
        let _ = container
            .kill(nix::libc::SIGTERM as u32, &service.shared.events)
            .await;
    }
    let all_stopped = async {
        for container in &containers {
            container.wait().await;
        }
    };
    if tokio::time::timeout(SIGTERM_GRACE, all_stopped)
        .await
        .is_err()
    {
        for container in &containers {
            let _ = container
                .kill(nix::libc::SIGKILL as u32, &service.shared.events)
                .await;
        }
    }
    if let Err(e) = std::fs::remove_file(&service.shared.socket_path) {
        tracing::debug!("remove socket: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_socket_is_reused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s").join("sock");
        let first = bind_socket(&path).expect("binds").expect("fresh");
        assert!(bind_socket(&path).expect("ok").is_none(), "live: reuse");
        drop(first);
        assert!(bind_socket(&path).expect("ok").is_some(), "stale: replaced");
    }

    #[test]
    fn drain_grace_defaults_to_30s_and_names_the_variable_when_invalid() {
        assert_eq!(parse_drain_grace(None), Ok(DRAIN_GRACE));
        assert_eq!(parse_drain_grace(Some("")), Ok(DRAIN_GRACE));
        assert_eq!(parse_drain_grace(Some("2m")), Ok(Duration::from_secs(120)));
        let err = parse_drain_grace(Some("soon")).expect_err("must fail");
        assert!(
            err.contains("FEATHER_DRAIN_GRACE") && err.contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn socket_path_strips_the_scheme() {
        assert_eq!(socket_path("unix:///run/x"), PathBuf::from("/run/x"));
        assert_eq!(socket_path("/run/x"), PathBuf::from("/run/x"));
    }
}
