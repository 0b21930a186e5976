//! What a workload is given: its WASI inputs and its limits. Nothing else reaches the guest.

use crate::Stats;
use std::path::PathBuf;
use std::time::Duration;

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Directory on the host (must exist).
    pub host_path: PathBuf,
    /// Path under which the guest sees it (e.g. `/data`).
    pub guest_path: String,
    /// When true the guest can read but not create, write, rename or delete.
    pub read_only: bool,
}

/// Where a guest's stdout or stderr goes.
#[derive(Debug, Default)]
pub enum Output {
    /// Discarded.
    #[default]
    Null,
    /// Appended to this open file. FIFOs (containerd's stdio) are written without blocking the
    /// executor; other files through tokio's blocking pool.
    File(std::fs::File),
}

/// Limits of one workload.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum linear memory of one instance in bytes (a growth beyond fails like an
    /// out-of-memory `memory.grow`). `None`: the engine's `max_memory_per_instance`.
    pub max_memory_bytes: Option<u64>,
    /// Wall-clock deadline of one command run or one HTTP request. `None`: no deadline.
    pub deadline: Option<Duration>,
    /// HTTP: requests executing at once (each has its own instance).
    pub max_concurrency: usize,
    /// HTTP: how long a request beyond `max_concurrency` may wait for a slot before 503.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: None,
            deadline: None,
            max_concurrency: 100,
            queue_timeout: Duration::from_millis(100),
        }
    }
}

/// The complete set of inputs of one workload (one container).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// A name for logs (the container id); appears in every tracing span of the workload.
    pub name: String,
    /// argv, including argv\[0\] (the program name) as the guest should see it.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Directories the guest may use; nothing else of the host filesystem is visible.
    pub preopens: Vec<Preopen>,
    /// Guest stdout. For HTTP servers, shared by every request's instance.
    pub stdout: Output,
    /// Guest stderr. For HTTP servers, shared by every request's instance.
    pub stderr: Output,
    /// Memory, time and concurrency limits.
    pub limits: Limits,
    /// Hosts the guest may reach with `wasi:http/outgoing-handler`: `example.com` (any port),
    /// `example.com:8080` (that port only), `*.example.com` (subdomains), or `*` (any host).
    /// Matching is case-insensitive. Requests to other hosts fail in the guest with
    /// `HTTP-request-denied`. Empty: no outbound HTTP.
    pub allowed_outbound_hosts: Vec<String>,
    /// Counters the caller reads for containerd's `Stats`.
    pub stats: Stats,
}

/// How a command run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest returned from `_start`/`run` (code 0 or 1 for a component's `result`) or called
    /// `proc_exit`/`exit` with this code.
    Exited(i32),
    /// The guest trapped (unreachable, out-of-bounds, stack overflow, out of memory, ...);
    /// the message is wasmtime's description with the guest backtrace.
    Trapped(String),
    /// The run exceeded [`Limits::deadline`].
    DeadlineExceeded,
    /// Stopped by [`crate::StopSignal::kill`], or by [`crate::StopSignal::drain`] when the
    /// guest did not finish within the grace period.
    Killed,
}

impl ExitStatus {
    /// The process-style exit code: the guest's own code, else the code a Linux process would
    /// report in the same situation (`runc` convention of 128 + signal):
    /// trap 134 (SIGABRT), deadline 124 (like `timeout(1)`), killed 137 (SIGKILL).
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Trapped(_) => 134,
            ExitStatus::DeadlineExceeded => 124,
            ExitStatus::Killed => 137,
        }
    }
}
