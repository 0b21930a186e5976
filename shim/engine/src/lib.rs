//! Featherweight's wasm engine: runs WebAssembly workloads with wasmtime for the containerd shim.
//!
//! # Shape
//!
//! * [`Engine`]: one per process (cheap to clone, `Arc` inside). Owns the single
//!   `wasmtime::Engine` (pooling allocator, copy-on-write memory images, epoch interruption with
//!   a ticker thread, async), the on-disk compiled-artifact cache and an in-memory map so every
//!   workload running the same wasm shares one compiled artifact.
//! * [`Engine::load`] turns wasm bytes into a [`Program`]: compiled (or taken from the cache),
//!   its [`ProgramKind`] detected from the binary, and its imports linked once (`InstancePre`).
//! * [`Program::run`] runs a command (WASI p1 `_start` module or `wasi:cli/run` component) to
//!   completion and returns an [`ExitStatus`]; [`Program::serve`] serves a
//!   `wasi:http/incoming-handler` component on a listener, one fresh instance per request.
//! * [`RunOptions`] is the whole WASI context and limit set of one workload: nothing of the host
//!   leaks in unless it is named there (args, env, preopens, stdout/stderr files, outbound
//!   allowlist). No sockets are ever granted to the guest.
//! * [`StopSignal`] stops a workload: [`StopSignal::drain`] (SIGTERM: stop accepting, finish
//!   in-flight requests up to a grace period, then cancel) or [`StopSignal::kill`] (SIGKILL: at once).
//! * [`Stats`] is a cheap handle the caller creates per workload, passes in [`RunOptions::stats`]
//!   and reads at any time ([`Stats::snapshot`]) for containerd's `Stats` call.
//!
//! # Example (the containerd shim's use)
//!
//! ```no_run
//! # async fn demo() -> Result<(), feather_engine::EngineError> {
//! use feather_engine::*;
//! let engine = Engine::new(EngineConfig::default())?;
//! let program = engine.load(std::fs::read("/app.wasm").map_err(|e| EngineError::io("read /app.wasm", e))?).await?;
//! let stats = Stats::new();
//! let stop = StopSignal::new();
//! let opts = RunOptions { args: vec!["app.wasm".into()], stats: stats.clone(), ..RunOptions::default() };
//! match program.kind() {
//!     ProgramKind::HttpComponent => {
//!         let listener = std::net::TcpListener::bind("0.0.0.0:8080").map_err(|e| EngineError::io("bind", e))?;
//!         program.serve(listener, opts, stop.clone()).await?;
//!     }
//!     _ => {
//!         let status = program.run(opts, stop.clone()).await?;
//!         println!("exit code {}", status.code());
//!     }
//! }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)] // one audited exception: cache.rs deserializes artifacts it verified

mod cache;
mod command;
mod config;
mod engine;
mod error;
mod http;
mod kind;
mod options;
mod outbound;
mod output;
mod state;
mod stats;
mod stop;

pub use config::EngineConfig;
pub use engine::{ArtifactSource, Engine, Program};
pub use error::EngineError;
pub use kind::ProgramKind;
pub use options::{ExitStatus, Limits, Output, Preopen, RunOptions};
pub use stats::{Stats, WorkloadStats};
pub use stop::StopSignal;
