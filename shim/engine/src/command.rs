//! Running commands: WASI p1 `_start` modules and `wasi:cli/run` components.

use crate::engine::{Pre, short};
use crate::state::{HasLimiter, Workload, new_store};
use crate::stats::timed;
use crate::{EngineError, ExitStatus, Program, RunOptions, StopSignal};
use std::time::{Duration, Instant};
use tracing::Instrument;
use wasmtime::Store;

impl Program {
    /// Run a command to completion and report how it ended.
    ///
    /// The guest sees only what `opts` gives it. It ends with [`ExitStatus::Exited`] (its own
    /// code), [`ExitStatus::Trapped`] (trap, stack overflow, memory limit, failed
    /// instantiation), [`ExitStatus::DeadlineExceeded`] (`opts.limits.deadline`) or
    /// [`ExitStatus::Killed`] (`stop`). Guest failures are statuses, never errors or crashes:
    /// `Err` means the options were unusable (bad preopen, unopenable output, wrong kind).
    /// Returns after the guest's stdout/stderr were written out.
    pub async fn run(&self, opts: RunOptions, stop: StopSignal) -> Result<ExitStatus, EngineError> {
        if !self.kind().is_command() {
            return Err(self.wrong_kind("run", "a WASI command module or a wasi:cli/run component"));
        }
        let span =
            tracing::info_span!("run", workload = %opts.name, digest = %short(self.digest()));
        let max_memory = self.engine().config().max_memory_per_instance;
        async move {
            let (workload, writers) = Workload::new(opts, max_memory)?;
            let deadline = workload.limits.deadline.map(|d| Instant::now() + d);
            let deadline_passed = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let guest = timed(&workload.stats, self.run_guest(&workload, deadline));
            let status = tokio::select! {
                status = guest => status,
                () = deadline_passed => ExitStatus::DeadlineExceeded,
                () = stop.must_end() => ExitStatus::Killed,
            };
            workload.finish(writers).await;
            match &status {
                ExitStatus::Trapped(message) => tracing::warn!("guest trapped: {message}"),
                other => tracing::info!(code = other.code(), status = ?other, "guest ended"),
            }
            Ok(status)
        }
        .instrument(span)
        .await
    }

    /// Create one instance of this program (any kind) with empty WASI inputs under `limits`,
    /// then drop it; returns the time from store creation to a ready instance, teardown
    /// included (what each HTTP request pays before the guest runs). Use it at
    /// container-create time to learn early that the program cannot start (e.g. its initial
    /// memory exceeds the memory limit, or the instance pool is full), and in benchmarks.
    pub async fn instantiate_once(&self, limits: &crate::Limits) -> Result<Duration, EngineError> {
        let opts = RunOptions {
            name: "instantiate-check".into(),
            limits: limits.clone(),
            ..RunOptions::default()
        };
        let max_memory = self.engine().config().max_memory_per_instance;
        let (workload, writers) = Workload::new(opts, max_memory)?;
        let engine = self.engine().wasmtime();
        let digest = self.digest().to_string();
        let failed = |cause| EngineError::Instantiate {
            digest: digest.clone(),
            cause,
        };
        let started = Instant::now();
        let result = match &self.inner.pre {
            Pre::Command(pre) => {
                let mut store = new_store(engine, workload.command_state()?, None);
                pre.instantiate_async(&mut store).await.map(drop)
            }
            Pre::Cli(pre) => {
                let mut store = new_store(engine, workload.component_state()?, None);
                pre.instantiate_async(&mut store).await.map(drop)
            }
            Pre::Http(pre) => {
                let mut store = new_store(engine, workload.component_state()?, None);
                pre.instantiate_async(&mut store).await.map(drop)
            }
        };
        let elapsed = started.elapsed();
        workload.finish(writers).await;
        result.map_err(failed)?;
        Ok(elapsed)
    }

    async fn run_guest(&self, workload: &Workload, deadline: Option<Instant>) -> ExitStatus {
        let engine = self.engine().wasmtime();
        match &self.inner.pre {
            Pre::Command(pre) => {
                let data = match workload.command_state() {
                    Ok(d) => d,
                    Err(e) => return ExitStatus::Trapped(format!("set up WASI: {e}")),
                };
                let mut store = new_store(engine, data, deadline);
                let instance = match pre.instantiate_async(&mut store).await {
                    Ok(i) => i,
                    Err(e) => return failed_instantiation(&store, e),
                };
                let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                    Ok(f) => f,
                    Err(e) => return ExitStatus::Trapped(format!("_start: {e:#}")),
                };
                match start.call_async(&mut store, ()).await {
                    Ok(()) => ExitStatus::Exited(0),
                    Err(e) => classify(&store, e, deadline),
                }
            }
            Pre::Cli(pre) => {
                let data = match workload.component_state() {
                    Ok(d) => d,
                    Err(e) => return ExitStatus::Trapped(format!("set up WASI: {e}")),
                };
                let mut store = new_store(engine, data, deadline);
                let command = match pre.instantiate_async(&mut store).await {
                    Ok(c) => c,
                    Err(e) => return failed_instantiation(&store, e),
                };
                match command.wasi_cli_run().call_run(&mut store).await {
                    Ok(Ok(())) => ExitStatus::Exited(0),
                    Ok(Err(())) => ExitStatus::Exited(1),
                    Err(e) => classify(&store, e, deadline),
                }
            }
            Pre::Http(_) => ExitStatus::Trapped("an HTTP component cannot be run".into()),
        }
    }
}

fn failed_instantiation<T: HasLimiter>(store: &Store<T>, e: wasmtime::Error) -> ExitStatus {
    ExitStatus::Trapped(format!("instantiation failed{}: {e:#}", memory_note(store)))
}

/// Turn the error a guest call ended with into an exit status.
pub(crate) fn classify<T: HasLimiter>(
    store: &Store<T>,
    e: wasmtime::Error,
    deadline: Option<Instant>,
) -> ExitStatus {
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ExitStatus::Exited(exit.0);
    }
    if is_deadline(&e, deadline) {
        return ExitStatus::DeadlineExceeded;
    }
    ExitStatus::Trapped(format!("{e:?}{}", memory_note(store)))
}

/// Whether the error is the epoch interrupt raised once the deadline passed.
pub(crate) fn is_deadline(e: &wasmtime::Error, deadline: Option<Instant>) -> bool {
    matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) && deadline.is_some_and(|d| Instant::now() >= d)
}

/// " (memory limit of N bytes reached)" when the limiter refused a growth in this store.
pub(crate) fn memory_note<T: HasLimiter>(store: &Store<T>) -> String {
    let limiter = store.data().limiter_ref();
    if limiter.limit_hit {
        format!(
            " (memory limit of {} bytes reached)",
            limiter.limit().unwrap_or_default()
        )
    } else {
        String::new()
    }
}
