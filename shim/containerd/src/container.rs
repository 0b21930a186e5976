//! One container held by the shim: its state machine (created → running → stopped), the
//! workload that runs when it starts, and the exit status every waiter receives.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use feather_engine::{Program, RunOptions, Stats, StopSignal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events::{Events, TaskFacts};

/// How long an HTTP component may finish in-flight requests after SIGTERM before it is stopped,
/// unless `FEATHER_DRAIN_GRACE` says otherwise. kubelet sends SIGKILL after the pod's grace
/// period anyway; this bounds a plain `ctr task kill`.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Per-container settings decided at create time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network namespace the task's listeners live in (for a pod sandbox: the pod's).
    pub netns: Option<PathBuf>,
    /// How long SIGTERM lets in-flight HTTP requests finish.
    pub drain_grace: Duration,
    /// The per-instance memory limit in force (spec limit capped by the engine's), for `Stats`.
    pub memory_limit_bytes: u64,
}

/// What runs when the task starts.
pub enum Workload {
    /// The pod sandbox: nothing runs, the task lives until it is killed.
    Sandbox,
    /// A WASI command or `wasi:cli/run` component: runs to completion.
    Command {
        program: Program,
        options: RunOptions,
    },
    /// A `wasi:http` component, served on a listener bound in the pod's network namespace.
    Http {
        program: Program,
        options: RunOptions,
        listener: TcpListener,
    },
}

impl Workload {
    fn kind(&self) -> &'static str {
        match self {
            Workload::Sandbox => "sandbox",
            Workload::Command { .. } => "command",
            Workload::Http { .. } => "http",
        }
    }
}

/// Exit status as containerd reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub code: u32,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

struct Mutable {
    status: Status,
    workload: Option<Workload>,
    /// The signal that ended (or is ending) the task; decides the 128+signal exit code.
    signal: Option<i32>,
}

pub struct Container {
    pub facts: TaskFacts,
    pub stats: Stats,
    pub settings: Settings,
    /// The engine's stop handle (drain or kill the guest).
    stop: StopSignal,
    /// Cancelled on the first terminating signal: what the sandbox and commands wait for.
    stopping: CancellationToken,
    state: Mutex<Mutable>,
    exit: watch::Sender<Option<Exit>>,
}

pub fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Signals whose default action does not end a process; a wasm guest cannot handle signals,
/// so these are accepted and ignored, like a process that never installed a handler.
fn is_ignored_by_default(signal: i32) -> bool {
    use nix::sys::signal::Signal;
    matches!(
        Signal::try_from(signal),
        Ok(Signal::SIGCHLD | Signal::SIGURG | Signal::SIGWINCH | Signal::SIGCONT)
    )
}

impl Container {
    pub fn new(
        facts: TaskFacts,
        workload: Workload,
        stats: Stats,
        settings: Settings,
    ) -> Arc<Self> {
        let (exit, _) = watch::channel(None);
        Arc::new(Self {
            facts,
            stats,
            settings,
            stop: StopSignal::new(),
            stopping: CancellationToken::new(),
            state: Mutex::new(Mutable {
                status: Status::Created,
                workload: Some(workload),
                signal: None,
            }),
            exit,
        })
    }

    fn state(&self) -> MutexGuard<'_, Mutable> {
        // A panic while holding this lock cannot leave the fields half-updated (each update is
        // a single assignment), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> Status {
        self.state().status
    }

    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits until the task has stopped; every caller gets the same status.
    pub async fn wait(&self) -> Exit {
        let mut receiver = self.exit.subscribe();
        loop {
            if let Some(exit) = receiver.borrow_and_update().clone() {
                return exit;
            }
            if receiver.changed().await.is_err() {
                // The sender lives as long as `self`; this is unreachable while we are borrowed.
                return Exit {
                    code: 255,
                    at: now(),
                };
            }
        }
    }

    /// Starts the workload on the shared runtime. The guest runs inside its own tokio task, so
    /// a panic or trap there ends this container only.
    pub fn start(self: &Arc<Self>, events: Arc<Events>) -> Result<(), String> {
        let workload = {
            let mut state = self.state();
            match state.status {
                Status::Created => {}
                Status::Running => return Err("task is already running".into()),
                Status::Stopped => return Err("task has already exited".into()),
            }
            state.status = Status::Running;
            state
                .workload
                .take()
                .ok_or_else(|| "task has nothing to run".to_string())?
        };
        let container = Arc::clone(self);
        let span = tracing::info_span!("task", container = %self.facts.id, kind = workload.kind());
        tokio::spawn(
            async move {
                let stop = container.stop.clone();
                let stopping = container.stopping.clone();
                let id = container.facts.id.clone();
                let guest =
                    tokio::spawn(run_workload(workload, stop, stopping, id).in_current_span());
                let code = match guest.await {
                    Ok(code) => code,
                    Err(join_error) => {
                        tracing::error!("the guest's task failed: {join_error}");
                        134
                    }
                };
                container.finish(code, &events).await;
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Records the exit, wakes every waiter and tells containerd.
    async fn finish(&self, natural_code: u32, events: &Events) {
        let exit = {
            let mut state = self.state();
            if state.status == Status::Stopped {
                return;
            }
            state.status = Status::Stopped;
            state.workload = None;
            let code = match state.signal {
                Some(signal) => 128 + signal as u32,
                None => natural_code,
            };
            Exit { code, at: now() }
        };
        tracing::info!(container = %self.facts.id, exit_code = exit.code, "task exited");
        self.exit.send_replace(Some(exit.clone()));
        events.exited(&self.facts, exit.code, &exit.at).await;
    }

    /// Delivers a signal the way a process would receive it: SIGKILL stops at once, other
    /// terminating signals drain an HTTP component (in-flight requests finish) and stop a
    /// command; signals that are ignored by default do nothing.
    pub async fn kill(&self, signal: u32, events: &Events) -> Result<(), KillError> {
        let signal = i32::try_from(signal).map_err(|_| KillError::BadSignal(signal))?;
        if signal == 0 {
            return match self.status() {
                Status::Stopped => Err(KillError::Finished),
                _ => Ok(()),
            };
        }
        if nix::sys::signal::Signal::try_from(signal).is_err() {
            return Err(KillError::BadSignal(signal as u32));
        }
        if is_ignored_by_default(signal) {
            return Ok(());
        }
        let was = {
            let mut state = self.state();
            if state.status == Status::Stopped {
                return Err(KillError::Finished);
            }
            state.signal.get_or_insert(signal);
            if signal == nix::libc::SIGKILL {
                state.signal = Some(signal);
            }
            state.status
        };
        match was {
            // Never started: nothing runs, the task ends here (the listener closes with it).
            Status::Created => self.finish(128 + signal as u32, events).await,
            _ if signal == nix::libc::SIGKILL => {
                self.stopping.cancel();
                self.stop.kill();
            }
            _ => {
                self.stopping.cancel();
                self.stop.drain(self.settings.drain_grace);
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("process already finished")]
    Finished,
    #[error("signal {0} is not a valid signal number")]
    BadSignal(u32),
}

/// Runs one workload to its end and returns its natural exit code (the signal-based code is
/// applied by the caller).
async fn run_workload(
    workload: Workload,
    stop: StopSignal,
    stopping: CancellationToken,
    id: String,
) -> u32 {
    match workload {
        Workload::Sandbox => {
            stopping.cancelled().await;
            0
        }
        Workload::Command { program, options } => {
            // A command has no way to handle signals: a terminating signal ends it at once.
            let killer = stop.clone();
            let watcher = tokio::spawn(async move {
                stopping.cancelled().await;
                killer.kill();
            });
            let result = program.run(options, stop).await;
            watcher.abort();
            match result {
                Ok(status) => {
                    if let feather_engine::ExitStatus::Trapped(reason) = &status {
                        tracing::warn!(container = %id, "guest trapped: {reason}");
                    }
                    status.code() as u32
                }
                Err(e) => {
                    tracing::error!(container = %id, "run: {e}");
                    1
                }
            }
        }
        Workload::Http {
            program,
            options,
            listener,
        } => match program.serve(listener, options, stop).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(container = %id, "serve: {e}");
                1
            }
        },
    }
}
