//! The `start` and `delete` actions containerd runs the shim binary with.
//!
//! `start` finds (or starts) the one shim process that serves this containerd namespace,
//! reserves a place in it for the new container, records the address in the bundle and answers
//! containerd in the format it speaks:
//! - containerd 2.3+ sends `BootstrapParams` on stdin and reads a `BootstrapResult` (task v3);
//! - older daemons pass flags and environment; 2.0–2.2 read a JSON reply (task v3), 1.6/1.7 a
//!   bare address (task v2). Those are told apart by asking containerd its version; if that
//!   fails the bare address is the safe answer, since every version accepts it (2.x then talks
//!   task v2, which we also serve).

use std::fs::OpenOptions;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use containerd_shim::Flags;
use containerd_shim::StartOpts;
use containerd_shim::bootstrap::{BootstrapParams, BootstrapResult};
use containerd_shim_protos::api::{ConnectRequest, DeleteResponse, KillRequest};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::ttrpc::context::with_timeout;
use nix::fcntl::{Flock, FlockArg};

use crate::grpc::Containerd;
use crate::registry::RESERVATION_PREFIX;
use crate::serve::socket_path;

/// Every container of a namespace maps to the same socket, hence the same process.
pub const GROUPING_KEY: &str = "feather";
/// How long `start` waits for a freshly spawned server to accept connections.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
const RPC_TIMEOUT_NANOS: i64 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// containerd 2.3+: protobuf on stdin and stdout.
    Bootstrap,
    /// Flags and environment; the reply depends on the containerd version.
    Legacy,
}

/// Decodes what containerd piped to `start`.
pub fn parse_start_input(input: &[u8], flags: &Flags) -> (StartOpts, Protocol) {
    if !input.is_empty()
        && let Ok(params) = BootstrapParams::parse_from_bytes(input)
        && params.instance_id == flags.id
        && params.namespace == flags.namespace
        && !params.containerd_ttrpc_address.is_empty()
    {
        let mut opts = StartOpts::from(params);
        opts.debug |= flags.debug;
        return (opts, Protocol::Bootstrap);
    }
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let mut address = flags.address.clone();
    if address.is_empty() {
        address = env("GRPC_ADDRESS");
    }
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address,
        ttrpc_address: env("TTRPC_ADDRESS"),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    (opts, Protocol::Legacy)
}

/// `major >= 2` from strings like `v2.4.2`, `2.0.0-rc.1`, `1.6.20~ds1`.
pub fn is_containerd_2_or_later(version: &str) -> bool {
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 2)
}

/// The reply to `start` for the protocol containerd used.
pub fn encode_reply(
    address: &str,
    protocol: Protocol,
    containerd_version: Option<&str>,
) -> Vec<u8> {
    match protocol {
        Protocol::Bootstrap => BootstrapResult {
            version: 3,
            address: address.to_string(),
            protocol: "ttrpc".to_string(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap_or_else(|_| address.as_bytes().to_vec()),
        Protocol::Legacy if containerd_version.is_some_and(is_containerd_2_or_later) => {
            serde_json::json!({"version": 3, "address": address, "protocol": "ttrpc"})
                .to_string()
                .into_bytes()
        }
        Protocol::Legacy => address.as_bytes().to_vec(),
    }
}

fn read_stdin() -> Vec<u8> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Vec::new();
    }
    let mut input = Vec::new();
    // Anything unreadable is treated as "no bootstrap params": the legacy path needs none.
    let _ = stdin.lock().take(10 << 20).read_to_end(&mut input);
    input
}

fn bundle_dir(flags: &Flags) -> Result<PathBuf, String> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(|e| format!("current directory (the bundle): {e}"))
}

/// Asks the server at `address` to hold a place for container `id`.
async fn reserve(address: &str, id: &str) -> Result<(), String> {
    let client = Client::connect(address)
        .await
        .map_err(|e| format!("connect {address}: {e}"))?;
    let task = TaskClient::new(client);
    let request = ConnectRequest {
        id: format!("{RESERVATION_PREFIX}{id}"),
        ..Default::default()
    };
    task.connect(with_timeout(RPC_TIMEOUT_NANOS), &request)
        .await
        .map(|_| ())
        .map_err(|e| format!("reserve at {address}: {e}"))
}

/// The `start` action. Returns the bytes to print on stdout.
pub async fn start(flags: &Flags) -> Result<Vec<u8>, String> {
    let (opts, protocol) = parse_start_input(&read_stdin(), flags);
    if opts.ttrpc_address.is_empty() {
        return Err("containerd passed no TTRPC address (env TTRPC_ADDRESS)".into());
    }
    let address = opts.socket_address(GROUPING_KEY);
    let path = socket_path(&address);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("create socket dir {}: {e}", parent.display()))?;
    }
    // Concurrent `start`s (50 pods at once) serialise here so exactly one spawns the server.
    let lock_path = path.with_extension("lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || Flock::lock(lock_file, FlockArg::LockExclusive))
        .await
        .map_err(|e| format!("lock task: {e}"))?
        .map_err(|(_, e)| format!("lock {}: {e}", lock_path.display()))?;

    if let Err(first) = reserve(&address, &opts.id).await {
        tracing::info!(container = %opts.id, "no running shim to reuse ({first}); starting one");
        spawn_server(&opts, &address, &path).await?;
    }
    drop(lock);

    let bundle = bundle_dir(flags)?;
    let address_file = bundle.join("address");
    std::fs::write(&address_file, &address)
        .map_err(|e| format!("write {}: {e}", address_file.display()))?;

    let version = if protocol == Protocol::Legacy {
        Containerd::new(&opts.address, &opts.namespace)
            .version()
            .await
            .inspect_err(|e| {
                tracing::warn!("containerd version unknown, answering a bare address: {e}")
            })
            .ok()
    } else {
        None
    };
    Ok(encode_reply(&address, protocol, version.as_deref()))
}

async fn spawn_server(opts: &StartOpts, address: &str, path: &Path) -> Result<(), String> {
    // A file left by a crashed server would make the new one believe it is taken.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let exe = std::env::current_exe().map_err(|e| format!("locate the shim binary: {e}"))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args([
            "-namespace",
            &opts.namespace,
            "-id",
            &opts.id,
            "-address",
            &opts.address,
            "-socket",
            address,
        ])
        .env("TTRPC_ADDRESS", &opts.ttrpc_address)
        // The first container's bundle will be deleted while the server lives on.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: signals for containerd's process group must not reach it.
        .process_group(0)
        .kill_on_drop(false);
    if opts.debug {
        command.arg("-debug");
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawn the shim server: {e}"))?;
    let deadline = Instant::now() + SPAWN_TIMEOUT;
    loop {
        match reserve(address, &opts.id).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                let _ = child.start_kill();
                return Err(format!(
                    "the shim server did not come up within {SPAWN_TIMEOUT:?}: {e}"
                ));
            }
            Err(_) => {}
        }
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(format!(
                "the shim server exited at start ({exit}); see its log next to {}",
                path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `delete` action: containerd cleans up one container (after a shim crash or a failed
/// start). It touches only this container: never the shared server or other bundles.
pub async fn delete(flags: &Flags) -> Result<Vec<u8>, String> {
    let bundle = bundle_dir(flags)?;
    // If the server still holds this container, stop and forget it there.
    if let Ok(address) = std::fs::read_to_string(bundle.join("address"))
        && let Ok(client) = Client::connect(address.trim()).await
    {
        let task = TaskClient::new(client);
        let kill = KillRequest {
            id: flags.id.clone(),
            signal: nix::libc::SIGKILL as u32,
            ..Default::default()
        };
        if task
            .kill(with_timeout(RPC_TIMEOUT_NANOS), &kill)
            .await
            .is_ok()
        {
            let wait = containerd_shim_protos::api::WaitRequest {
                id: flags.id.clone(),
                ..Default::default()
            };
            let _ = task.wait(with_timeout(RPC_TIMEOUT_NANOS), &wait).await;
        }
        let delete = containerd_shim_protos::api::DeleteRequest {
            id: flags.id.clone(),
            ..Default::default()
        };
        let _ = task.delete(with_timeout(RPC_TIMEOUT_NANOS), &delete).await;
    }
    crate::create::unmount(&bundle.join("rootfs"));
    let response = DeleteResponse {
        pid: 0,
        exit_status: 128 + nix::libc::SIGKILL as u32,
        exited_at: Some(crate::container::now()).into(),
        ..Default::default()
    };
    response
        .write_to_bytes()
        .map_err(|e| format!("encode delete response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            id: "c1".into(),
            namespace: "k8s.io".into(),
            address: "/run/containerd/containerd.sock".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bootstrap_params_on_stdin_select_the_2_3_protocol() {
        let params = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            containerd_grpc_address: "/run/containerd/containerd.sock".into(),
            ..Default::default()
        };
        let input = params.write_to_bytes().expect("encode");
        let (opts, protocol) = parse_start_input(&input, &flags());
        assert_eq!(protocol, Protocol::Bootstrap);
        assert_eq!(opts.ttrpc_address, "/run/containerd/containerd.sock.ttrpc");
    }

    #[test]
    fn empty_stdin_is_the_legacy_protocol() {
        let (opts, protocol) = parse_start_input(&[], &flags());
        assert_eq!(protocol, Protocol::Legacy);
        assert_eq!(opts.address, "/run/containerd/containerd.sock");
        assert_eq!(opts.namespace, "k8s.io");
    }

    #[test]
    fn replies_match_the_containerd_version() {
        let addr = "unix:///run/containerd/s/abc";
        assert_eq!(
            encode_reply(addr, Protocol::Legacy, Some("1.6.20~ds1")),
            addr.as_bytes()
        );
        assert_eq!(encode_reply(addr, Protocol::Legacy, None), addr.as_bytes());
        let json: serde_json::Value =
            serde_json::from_slice(&encode_reply(addr, Protocol::Legacy, Some("v2.1.0")))
                .expect("json");
        assert_eq!(json["version"], 3);
        assert_eq!(json["address"], addr);
        let result =
            BootstrapResult::parse_from_bytes(&encode_reply(addr, Protocol::Bootstrap, None))
                .expect("protobuf");
        assert_eq!((result.version, result.address.as_str()), (3, addr));
    }

    #[test]
    fn version_strings() {
        assert!(is_containerd_2_or_later("v2.4.2"));
        assert!(is_containerd_2_or_later("2.0.0-rc.1"));
        assert!(!is_containerd_2_or_later("1.6.20~ds1"));
        assert!(!is_containerd_2_or_later("v1.7.27"));
        assert!(!is_containerd_2_or_later("garbage"));
    }
}
