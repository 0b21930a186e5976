//! Per-workload context and per-instance store data.

use crate::outbound::OutboundPolicy;
use crate::output::{GuestOutput, OutputWriter};
use crate::stats::{InstanceGuard, MemoryLimiter};
use crate::{EngineError, Limits, Preopen, RunOptions, Stats};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one workload's instances are made from; built once from [`RunOptions`].
pub(crate) struct Workload {
    args: Vec<String>,
    env: Vec<(String, String)>,
    preopens: Vec<Preopen>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    pub(crate) limits: Limits,
    outbound: OutboundPolicy,
    pub(crate) stats: Stats,
}

/// The writer tasks of a workload's stdout and stderr.
pub(crate) struct Writers {
    stdout: OutputWriter,
    stderr: OutputWriter,
}

impl Workload {
    /// Validate the options and start the output writers (inside a tokio runtime).
    pub(crate) fn new(
        opts: RunOptions,
        engine_max_memory: u64,
    ) -> Result<(Self, Writers), EngineError> {
        let outbound = OutboundPolicy::parse(&opts.allowed_outbound_hosts)?;
        for p in &opts.preopens {
            if !p.host_path.is_dir() {
                return Err(EngineError::Preopen {
                    host_path: p.host_path.clone(),
                    guest_path: p.guest_path.clone(),
                    cause: wasmtime::format_err!("not a directory on the host"),
                });
            }
        }
        let mut limits = opts.limits;
        limits.max_memory_bytes = Some(
            limits
                .max_memory_bytes
                .map_or(engine_max_memory, |m| m.min(engine_max_memory)),
        );
        if limits.max_concurrency == 0 {
            return Err(EngineError::Config(format!(
                "workload {}: limits.max_concurrency must be at least 1",
                opts.name
            )));
        }
        let (stdout, stdout_writer) = GuestOutput::start(opts.stdout, "stdout")
            .map_err(|e| EngineError::io(format!("workload {}: open stdout", opts.name), e))?;
        let (stderr, stderr_writer) = GuestOutput::start(opts.stderr, "stderr")
            .map_err(|e| EngineError::io(format!("workload {}: open stderr", opts.name), e))?;
        Ok((
            Workload {
                args: opts.args,
                env: opts.env,
                preopens: opts.preopens,
                stdout,
                stderr,
                limits,
                outbound,
                stats: opts.stats,
            },
            Writers {
                stdout: stdout_writer,
                stderr: stderr_writer,
            },
        ))
    }

    /// A WASI context from the workload's explicit inputs only: no inherited env, args, stdio,
    /// network (sockets stay denied: no `socket_addr_check`, no tcp/udp/name lookup).
    fn wasi_builder(&self) -> Result<WasiCtxBuilder, EngineError> {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args)
            .envs(&self.env)
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for p in &self.preopens {
            let perms = if p.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&p.host_path, &p.guest_path, perms)
                .map_err(|cause| EngineError::Preopen {
                    host_path: p.host_path.clone(),
                    guest_path: p.guest_path.clone(),
                    cause,
                })?;
        }
        Ok(b)
    }

    fn limiter(&self) -> MemoryLimiter {
        MemoryLimiter::new(self.stats.clone(), self.limits.max_memory_bytes)
    }

    /// Store data for a WASI p1 command.
    pub(crate) fn command_state(&self) -> Result<CommandState, EngineError> {
        Ok(CommandState {
            wasi: self.wasi_builder()?.build_p1(),
            limiter: self.limiter(),
            _instance: self.stats.instance_started(),
        })
    }

    /// Store data for a component (cli or http).
    pub(crate) fn component_state(&self) -> Result<ComponentState, EngineError> {
        Ok(ComponentState {
            wasi: self.wasi_builder()?.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: self.outbound.clone(),
            limiter: self.limiter(),
            _instance: self.stats.instance_started(),
        })
    }

    /// Close this workload's outputs and wait until everything the guests wrote is out.
    pub(crate) async fn finish(self, writers: Writers) {
        let timeout = std::time::Duration::from_secs(5);
        let Workload { stdout, stderr, .. } = self;
        tokio::join!(
            writers.stdout.finish(stdout, timeout),
            writers.stderr.finish(stderr, timeout)
        );
    }
}

/// Store data of a WASI p1 command instance.
pub(crate) struct CommandState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
    _instance: InstanceGuard,
}

/// Store data of a component instance (wasi p2 + wasi:http).
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    pub(crate) limiter: MemoryLimiter,
    _instance: InstanceGuard,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Access to the memory limiter, whatever the store's data type.
pub(crate) trait HasLimiter: Send + 'static {
    fn limiter_mut(&mut self) -> &mut MemoryLimiter;
    fn limiter_ref(&self) -> &MemoryLimiter;
}

impl HasLimiter for CommandState {
    fn limiter_mut(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
    fn limiter_ref(&self) -> &MemoryLimiter {
        &self.limiter
    }
}

impl HasLimiter for ComponentState {
    fn limiter_mut(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
    fn limiter_ref(&self) -> &MemoryLimiter {
        &self.limiter
    }
}

/// A store set up for one instance: memory limiter, and epoch handling that yields to the
/// executor every tick (so kills, timeouts and other guests get their turn) and interrupts
/// the guest once `deadline` has passed.
pub(crate) fn new_store<T: HasLimiter>(
    engine: &wasmtime::Engine,
    data: T,
    deadline: Option<Instant>,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.limiter_mut());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| match deadline {
        Some(d) if Instant::now() >= d => Ok(UpdateDeadline::Interrupt),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
    store
}
