//! `Create`: from a bundle to a container that is ready to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api::CreateTaskRequest;
use feather_engine::{Engine, Limits, Output, Preopen, ProgramKind, RunOptions, Stats};

use crate::container::{Container, Settings, Workload};
use crate::events::TaskFacts;
use crate::grpc::Containerd;
use crate::netns::bind_in_netns;
use crate::registry::Registry;
use crate::source::{Origin, artifact_wasm, rootfs_wasm};
use crate::spec::{CRI_IMAGE_NAME_ANNOTATION, CRI_SANDBOX_ID_ANNOTATION, TaskSpec};
use crate::stdio::open_output;

/// How long a request waits for a free concurrency slot before it is refused with 503.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(100);

/// Everything `create` needs from the process.
pub struct CreateContext<'a> {
    pub engine: &'a Engine,
    pub containerd: &'a Containerd,
    pub registry: &'a Registry,
    pub pid: u32,
    /// How long SIGTERM lets in-flight HTTP requests finish (`FEATHER_DRAIN_GRACE`).
    pub drain_grace: Duration,
}

/// The network namespace a container's listener must be bound in.
///
/// CRI points a pod's containers at the sandbox *process's* namespace (`/proc/<pid>/ns/net`),
/// and the sandbox's pid is this shim's own: the real namespace is the one the sandbox was
/// created with, found through the `io.kubernetes.cri.sandbox-id` annotation.
fn listener_netns(ctx: &CreateContext<'_>, spec: &TaskSpec) -> Result<Option<PathBuf>, String> {
    let Some(path) = &spec.netns_path else {
        return Ok(None);
    };
    if *path != Path::new("/proc").join(ctx.pid.to_string()).join("ns/net") {
        return Ok(Some(path.clone()));
    }
    let sandbox_id = spec
        .annotations
        .get(CRI_SANDBOX_ID_ANNOTATION)
        .ok_or_else(|| {
            format!(
                "linux.namespaces network path {} is this shim's own namespace and annotation \
             {CRI_SANDBOX_ID_ANNOTATION} names no pod sandbox",
                path.display()
            )
        })?;
    let sandbox = ctx.registry.get(sandbox_id).ok_or_else(|| {
        format!("pod sandbox {sandbox_id} (annotation {CRI_SANDBOX_ID_ANNOTATION}) is not held by this shim")
    })?;
    Ok(sandbox.settings.netns.clone())
}

/// Builds the container for a `CreateTaskRequest`; every error names the container and what
/// was wrong.
pub async fn create_container(
    ctx: &CreateContext<'_>,
    req: &CreateTaskRequest,
) -> Result<Arc<Container>, String> {
    if req.terminal {
        return Err("terminal (tty) is not supported by wasm tasks".into());
    }
    if !req.checkpoint.is_empty() {
        return Err("restoring from a checkpoint is not supported by wasm tasks".into());
    }
    let bundle = PathBuf::from(&req.bundle);
    let spec = TaskSpec::load(&bundle).map_err(|e| e.to_string())?;
    let facts = TaskFacts {
        id: req.id.clone(),
        bundle: req.bundle.clone(),
        pid: ctx.pid,
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
    };
    let stats = Stats::new();
    let engine_max_memory = ctx.engine.config().max_memory_per_instance;
    if let Some(limit) = spec.memory_limit_bytes
        && limit > engine_max_memory
    {
        tracing::warn!(
            container = %req.id,
            "linux.resources.memory.limit {limit} is above the engine's per-instance maximum \
             {engine_max_memory}: instances get {engine_max_memory}"
        );
    }
    let mut settings = Settings {
        netns: None,
        drain_grace: ctx.drain_grace,
        memory_limit_bytes: spec
            .memory_limit_bytes
            .map_or(engine_max_memory, |limit| limit.min(engine_max_memory)),
    };
    if spec.is_sandbox() {
        tracing::info!(container = %req.id, "pod sandbox: held until killed");
        settings.netns = spec.netns_path.clone();
        return Ok(Container::new(facts, Workload::Sandbox, stats, settings));
    }

    let (bytes, origin) = find_wasm(ctx, req, &spec).await?;
    let program = ctx
        .engine
        .load(bytes)
        .await
        .map_err(|e| format!("{origin}: {e}"))?;
    tracing::info!(container = %req.id, %origin, kind = %program.kind(), "wasm loaded");

    let mut limits = Limits {
        max_memory_bytes: spec.memory_limit_bytes,
        deadline: spec.request_timeout()?,
        queue_timeout: QUEUE_TIMEOUT,
        ..Limits::default()
    };
    if let Some(concurrency) = spec.max_concurrency()? {
        limits.max_concurrency = concurrency as usize;
    }
    let options = RunOptions {
        name: req.id.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        preopens: spec
            .dir_mounts
            .iter()
            .map(|m| Preopen {
                host_path: m.host_path.clone(),
                guest_path: m.guest_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
        stdout: output(&req.stdout, "stdout")?,
        stderr: output(&req.stderr, "stderr")?,
        limits,
        allowed_outbound_hosts: spec.allowed_outbound_hosts(),
        stats: stats.clone(),
    };
    settings.netns = listener_netns(ctx, &spec)?;
    let workload = match program.kind() {
        ProgramKind::HttpComponent => {
            let port = spec.http_port()?;
            let netns = settings.netns.as_deref();
            let listener = bind_in_netns(netns, port)?;
            tracing::info!(container = %req.id, port, netns = ?netns, "listening");
            Workload::Http {
                program,
                options,
                listener,
            }
        }
        ProgramKind::WasiCommand | ProgramKind::CliComponent => {
            Workload::Command { program, options }
        }
    };
    Ok(Container::new(facts, workload, stats, settings))
}

fn output(uri: &str, stream: &'static str) -> Result<Output, String> {
    Ok(match open_output(uri, stream)? {
        Some(file) => Output::File(file),
        None => Output::Null,
    })
}

/// An OCI wasm artifact wins; otherwise `args[0]` in the root filesystem.
async fn find_wasm(
    ctx: &CreateContext<'_>,
    req: &CreateTaskRequest,
    spec: &TaskSpec,
) -> Result<(Vec<u8>, Origin), String> {
    let cri_image = spec
        .annotations
        .get(CRI_IMAGE_NAME_ANNOTATION)
        .map(String::as_str);
    if let Some(found) = artifact_wasm(ctx.containerd, &req.id, cri_image).await? {
        return Ok(found);
    }
    let arg0 = spec.args.first().map(String::as_str).unwrap_or_default();
    if req.rootfs.is_empty() {
        return rootfs_wasm(&spec.root_path, arg0);
    }
    // containerd hands the image's snapshot as mounts; mount them just long enough to read the
    // module, so nothing stays mounted while the task runs or after it is deleted.
    let target = spec.root_path.clone();
    let mounts: Vec<(String, String, Vec<String>)> = req
        .rootfs
        .iter()
        .map(|m| (m.type_.clone(), m.source.clone(), m.options.clone()))
        .collect();
    let arg0 = arg0.to_string();
    tokio::task::spawn_blocking(move || read_from_mounts(&mounts, &target, &arg0))
        .await
        .map_err(|e| format!("read the wasm from the rootfs mounts: {e}"))?
}

fn read_from_mounts(
    mounts: &[(String, String, Vec<String>)],
    target: &Path,
    arg0: &str,
) -> Result<(Vec<u8>, Origin), String> {
    std::fs::create_dir_all(target)
        .map_err(|e| format!("create rootfs dir {}: {e}", target.display()))?;
    let mut mounted = 0;
    let mut result = Ok(());
    for (kind, source, options) in mounts {
        if let Err(e) = containerd_shim::mount::mount_rootfs(
            Some(kind.as_str()).filter(|k| !k.is_empty()),
            Some(source.as_str()),
            options,
            target,
        ) {
            result = Err(format!(
                "mount {kind} {source} on {}: {e}",
                target.display()
            ));
            break;
        }
        mounted += 1;
    }
    let read = result.and_then(|()| rootfs_wasm(target, arg0));
    for _ in 0..mounted {
        unmount(target);
    }
    read
}

/// Detaches a mount at `target`, ignoring "not mounted".
pub fn unmount(target: &Path) {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!("unmount {}: {e}", target.display()),
    }
}
