//! The task service containerd calls (`containerd.task.v3.Task`, also registered as
//! `containerd.task.v2.Task` for containerd 1.6/1.7: the messages are the same).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status as TaskStatus, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use feather_engine::Engine;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::container::{Container, KillError, Status, now};
use crate::create::{CreateContext, create_container};
use crate::events::Events;
use crate::grpc::Containerd;
use crate::registry::{RESERVATION_PREFIX, Registry};

pub struct Shared {
    pub engine: Engine,
    pub containerd: Containerd,
    pub events: Arc<Events>,
    pub registry: Registry,
    /// Cancelled when the process decided to exit.
    pub exit: CancellationToken,
    /// Our listening socket: removed first on exit, so no new `start` can find us.
    pub socket_path: PathBuf,
    pub pid: u32,
    /// How long SIGTERM lets in-flight HTTP requests finish (`FEATHER_DRAIN_GRACE`).
    pub drain_grace: std::time::Duration,
}

#[derive(Clone)]
pub struct TaskService {
    pub shared: Arc<Shared>,
}

fn status(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn not_supported(what: &str) -> ttrpc::Error {
    status(
        Code::UNIMPLEMENTED,
        format!("{what} is not supported by the feather wasm runtime"),
    )
}

impl TaskService {
    fn container(&self, id: &str) -> ttrpc::Result<Arc<Container>> {
        self.shared
            .registry
            .get(id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id} not found")))
    }

    fn refuse_exec(exec_id: &str, operation: &str) -> ttrpc::Result<()> {
        if exec_id.is_empty() {
            Ok(())
        } else {
            Err(not_supported(&format!(
                "{operation} of exec process {exec_id}"
            )))
        }
    }

    /// Exits the process if it holds nothing: removes the socket first so that no new `start`
    /// connects, then lets the reply to the current call go out before stopping the server.
    pub fn exit_if_idle(&self) -> bool {
        if !self.shared.registry.try_begin_exit() {
            return false;
        }
        if let Err(e) = std::fs::remove_file(&self.shared.socket_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("remove socket {}: {e}", self.shared.socket_path.display());
        }
        let exit = self.shared.exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            exit.cancel();
        });
        true
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        self.shared
            .registry
            .begin_create(&req.id)
            .map_err(|e| status(Code::ALREADY_EXISTS, e.to_string()))?;
        let ctx = CreateContext {
            engine: &self.shared.engine,
            containerd: &self.shared.containerd,
            registry: &self.shared.registry,
            pid: self.shared.pid,
            drain_grace: self.shared.drain_grace,
        };
        let created = create_container(&ctx, &req)
            .instrument(tracing::info_span!("create", container = %req.id))
            .await;
        match created {
            Ok(container) => {
                self.shared
                    .registry
                    .finish_create(&req.id, Some(Arc::clone(&container)));
                self.shared.events.created(&container.facts).await;
                tracing::info!(container = %req.id, bundle = %req.bundle, "created");
                Ok(CreateTaskResponse {
                    pid: self.shared.pid,
                    ..Default::default()
                })
            }
            Err(message) => {
                self.shared.registry.finish_create(&req.id, None);
                tracing::warn!(container = %req.id, "create failed: {message}");
                Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("create container {}: {message}", req.id),
                ))
            }
        }
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        Self::refuse_exec(&req.exec_id, "start")?;
        let container = self.container(&req.id)?;
        container
            .start(Arc::clone(&self.shared.events))
            .map_err(|e| status(Code::FAILED_PRECONDITION, format!("start {}: {e}", req.id)))?;
        self.shared.events.started(&container.facts).await;
        Ok(StartResponse {
            pid: self.shared.pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        Self::refuse_exec(&req.exec_id, "state")?;
        let container = self.container(&req.id)?;
        let facts = &container.facts;
        let exit = container.exit();
        let task_status = match container.status() {
            Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Stopped => TaskStatus::STOPPED,
        };
        Ok(StateResponse {
            id: facts.id.clone(),
            bundle: facts.bundle.clone(),
            pid: facts.pid,
            status: task_status.into(),
            stdin: facts.stdin.clone(),
            stdout: facts.stdout.clone(),
            stderr: facts.stderr.clone(),
            terminal: false,
            exit_status: exit.as_ref().map(|e| e.code).unwrap_or_default(),
            exited_at: MessageField::from_option(exit.map(|e| e.at)),
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Self::refuse_exec(&req.exec_id, "wait")?;
        let container = self.container(&req.id)?;
        let exit = container.wait().await;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        Self::refuse_exec(&req.exec_id, "kill")?;
        let container = self.container(&req.id)?;
        tracing::info!(container = %req.id, signal = req.signal, "kill");
        container
            .kill(req.signal, &self.shared.events)
            .await
            .map_err(|e| match e {
                KillError::Finished => status(Code::NOT_FOUND, format!("{}: {e}", req.id)),
                KillError::BadSignal(_) => {
                    status(Code::INVALID_ARGUMENT, format!("kill {}: {e}", req.id))
                }
            })?;
        Ok(Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        Self::refuse_exec(&req.exec_id, "delete")?;
        let container = self.container(&req.id)?;
        if container.status() == Status::Running {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("delete {}: task is running, kill it first", req.id),
            ));
        }
        self.shared.registry.remove(&req.id);
        let exit = container
            .exit()
            .unwrap_or_else(|| crate::container::Exit { code: 0, at: now() });
        self.shared
            .events
            .deleted(&container.facts, exit.code, &exit.at)
            .await;
        tracing::info!(container = %req.id, held = self.shared.registry.len(), "deleted");
        Ok(DeleteResponse {
            pid: container.facts.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let container = self.container(&req.id)?;
        let mut response = PidsResponse::new();
        if container.status() != Status::Stopped {
            response.processes.push(ProcessInfo {
                pid: container.facts.pid,
                ..Default::default()
            });
        }
        Ok(response)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let container = self.container(&req.id)?;
        let snapshot = container.stats.snapshot();
        let cpu_nanos = u64::try_from(snapshot.guest_cpu.as_nanos()).unwrap_or(u64::MAX);
        let metrics = Metrics {
            cpu: MessageField::some(CPUStat {
                usage: MessageField::some(CPUUsage {
                    total: cpu_nanos,
                    user: cpu_nanos,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: MessageField::some(MemoryStat {
                rss: snapshot.memory_bytes,
                total_rss: snapshot.memory_bytes,
                usage: MessageField::some(MemoryEntry {
                    usage: snapshot.memory_bytes,
                    limit: container.settings.memory_limit_bytes,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = metrics
            .write_to_bytes()
            .map_err(|e| status(Code::INTERNAL, format!("encode stats of {}: {e}", req.id)))?;
        Ok(StatsResponse {
            stats: MessageField::some(Any {
                type_url: "io.containerd.cgroups.v1.Metrics".to_string(),
                value,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let response = ConnectResponse {
            shim_pid: self.shared.pid,
            task_pid: self.shared.pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };
        if let Some(id) = req.id.strip_prefix(RESERVATION_PREFIX) {
            self.shared
                .registry
                .reserve(id)
                .map_err(|e| status(Code::UNAVAILABLE, e.to_string()))?;
            return Ok(response);
        }
        self.container(&req.id)?;
        Ok(response)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // containerd 1.6/1.7 send Shutdown after every task delete, 2.x when a sandbox ends: in
        // a shared process it means "exit if you hold nothing", never "exit now".
        let exiting = self.exit_if_idle();
        tracing::info!(
            container = %req.id,
            exiting,
            held = self.shared.registry.len(),
            "shutdown requested"
        );
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Err(not_supported("exec"))
    }

    async fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> ttrpc::Result<Empty> {
        Err(not_supported("pause"))
    }

    async fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> ttrpc::Result<Empty> {
        Err(not_supported("resume"))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(not_supported("checkpoint"))
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        _req: ResizePtyRequest,
    ) -> ttrpc::Result<Empty> {
        Err(not_supported("terminal resize"))
    }

    async fn close_io(&self, _ctx: &TtrpcContext, _req: CloseIORequest) -> ttrpc::Result<Empty> {
        // There is no stdin to close: wasm tasks get none. Succeeding keeps `ctr run` happy.
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        // Resource updates (kubelet's in-place resize) cannot change a running instance's
        // limits; accepting them silently would lie, so they are refused.
        Err(not_supported(&format!("updating resources of {}", req.id)))
    }
}
