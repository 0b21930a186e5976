//! Task events published to containerd (TaskCreate, TaskStart, TaskExit, TaskDelete).

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim_protos::ttrpc::context::Context;

/// Publishes task events for one containerd namespace. The publisher queues, retries and
/// reconnects when containerd restarts (containerd-shim's `RemotePublisher`).
pub struct Events {
    publisher: RemotePublisher,
    namespace: String,
}

/// What an event needs to know about a task.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    pub id: String,
    pub bundle: String,
    pub pid: u32,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Self {
            publisher,
            namespace: namespace.to_string(),
        }
    }

    async fn publish(&self, topic: &str, id: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            // Events are advisory for containerd (Wait carries the exit status); losing one
            // must not fail the task operation that produced it.
            tracing::warn!(container = id, topic, "publish event: {e}");
        }
    }

    pub async fn created(&self, task: &TaskFacts) {
        let event = TaskCreate {
            container_id: task.id.clone(),
            bundle: task.bundle.clone(),
            io: Some(TaskIO {
                stdin: task.stdin.clone(),
                stdout: task.stdout.clone(),
                stderr: task.stderr.clone(),
                terminal: false,
                ..Default::default()
            })
            .into(),
            pid: task.pid,
            ..Default::default()
        };
        self.publish(TASK_CREATE_EVENT_TOPIC, &task.id, Box::new(event))
            .await;
    }

    pub async fn started(&self, task: &TaskFacts) {
        let event = TaskStart {
            container_id: task.id.clone(),
            pid: task.pid,
            ..Default::default()
        };
        self.publish(TASK_START_EVENT_TOPIC, &task.id, Box::new(event))
            .await;
    }

    pub async fn exited(&self, task: &TaskFacts, exit_status: u32, exited_at: &Timestamp) {
        let event = TaskExit {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid: task.pid,
            exit_status,
            exited_at: Some(exited_at.clone()).into(),
            ..Default::default()
        };
        self.publish(TASK_EXIT_EVENT_TOPIC, &task.id, Box::new(event))
            .await;
    }

    pub async fn deleted(&self, task: &TaskFacts, exit_status: u32, exited_at: &Timestamp) {
        let event = TaskDelete {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid: task.pid,
            exit_status,
            exited_at: Some(exited_at.clone()).into(),
            ..Default::default()
        };
        self.publish(TASK_DELETE_EVENT_TOPIC, &task.id, Box::new(event))
            .await;
    }
}
