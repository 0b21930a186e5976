//! Reconcile scenarios against a mock API server (tower-test). The mock answers by rules and
//! records every request, so each test asserts on exactly what the reconciler sent. This file
//! is the mock; `scenarios` holds the reconcile scenarios, `cache` those about the
//! controller's caches of children (no-op reconciles, hand edits, cache misses).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::backoff::Backoff;
use crate::builders::{self, ANNOTATION_AUTOSCALED};
use crate::controller::error_policy;
use crate::events::Publisher;
use crate::memo::RecentStatuses;
use crate::metrics::{ApiCall, Metrics};
use crate::reconcile::{Children, Context, RESYNC_INTERVAL, reconcile};
use crate::status;
use crate::types::Autoscaling;
use crate::{Error, WasmApp, WasmAppSpec};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/demo/deployments/hello";
const SERVICE: &str = "/api/v1/namespaces/demo/services/hello";
const HPA: &str = "/apis/autoscaling/v2/namespaces/demo/horizontalpodautoscalers/hello";
const STATUS: &str = "/apis/feather.dev/v1alpha1/namespaces/demo/wasmapps/hello/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/demo/events";

/// One request the reconciler made.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Recorded {
    fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// What the mock holds: objects it answers GETs with, and failures to inject.
#[derive(Clone, Default)]
struct World {
    deployment: Option<Value>,
    service: Option<Value>,
    hpa: Option<Value>,
    /// Paths whose GET answers 500.
    failing_gets: Vec<&'static str>,
    /// Whether the controller's caches hold the children above (else they are empty and the
    /// reconciler GETs what it needs).
    cached: bool,
}

impl World {
    fn cached(self) -> Self {
        Self {
            cached: true,
            ..self
        }
    }
}

/// A cache holding `object` (if any), as a controller's watch would have filled it.
fn cache_of<K>(object: Option<&Value>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + 'static,
{
    let (reader, mut writer) = reflector::store();
    if let Some(object) = object {
        let object: K = serde_json::from_value(object.clone()).expect("cached object");
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    reader
}

fn children(world: &World) -> Children {
    if !world.cached {
        return Children::empty();
    }
    Children {
        deployments: cache_of(world.deployment.as_ref()),
        services: cache_of(world.service.as_ref()),
        hpas: cache_of(world.hpa.as_ref()),
    }
}

fn app(spec: WasmAppSpec) -> WasmApp {
    let mut app = WasmApp::new("hello", spec);
    app.metadata.namespace = Some("demo".into());
    app.metadata.uid = Some("6f0e3f1c-4b1a-4c8e-9a57-000000000001".into());
    app.metadata.generation = Some(1);
    app.metadata.resource_version = Some("100".into());
    app
}

fn simple_app() -> WasmApp {
    app(WasmAppSpec {
        image: "registry.local:5000/hello:1.0".into(),
        replicas: 3,
        ..WasmAppSpec::default()
    })
}

fn not_found(path: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

/// Run `reconcile` for `app` against a mock answering from `world`; return its result, the
/// recorded requests and the metrics.
async fn run(app: WasmApp, world: World) -> (Result<Action, Error>, Vec<Recorded>, Arc<Metrics>) {
    run_with(app, world, &Memo::default()).await
}

/// What the operator remembers between reconciles, to share between runs of one test.
#[derive(Clone, Default)]
struct Memo {
    recent: Arc<RecentStatuses>,
}

/// [`run`] with what earlier reconciles left in `memo`.
async fn run_with(
    app: WasmApp,
    world: World,
    memo: &Memo,
) -> (Result<Action, Error>, Vec<Recorded>, Arc<Metrics>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "demo");
    let app_json = serde_json::to_value(&app).expect("app json");
    let cache = children(&world);
    let server = tokio::spawn(async move {
        let mut recorded = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json body")
            };
            let path = parts.uri.path().to_string();
            let entry = Recorded {
                method: parts.method.clone(),
                path: path.clone(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body: body.clone(),
            };
            let (code, answer) = answer(&world, &app_json, &entry);
            recorded.push(entry);
            let response = Response::builder()
                .status(code)
                .body(Body::from(
                    serde_json::to_vec(&answer).expect("answer json"),
                ))
                .expect("response");
            send.send_response(response);
        }
        recorded
    });
    let ctx = Arc::new(Context {
        events: Publisher::new(
            client.clone(),
            Reporter {
                controller: "feather-operator".into(),
                instance: Some("test".into()),
            },
        ),
        client,
        metrics: Arc::new(Metrics::default()),
        backoff: Backoff::default(),
        children: cache,
        recent: memo.recent.clone(),
    });
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(app), ctx.clone()),
    )
    .await
    .expect("reconcile finished");
    // Dropping every client ends the mock's request stream.
    let metrics = ctx.metrics.clone();
    drop(ctx);
    let recorded = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("mock server finished")
        .expect("mock server task");
    (result, recorded, metrics)
}

/// The mock's rules: GET answers from the world (404 when absent), apply and status patches
/// echo what was sent as the server would store it, events are accepted.
fn answer(world: &World, app_json: &Value, request: &Recorded) -> (StatusCode, Value) {
    let path = request.path.as_str();
    match request.method {
        Method::GET if world.failing_gets.contains(&path) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}),
        ),
        Method::GET => {
            let object = match path {
                DEPLOYMENT => world.deployment.clone(),
                SERVICE => world.service.clone(),
                HPA => world.hpa.clone(),
                _ => None,
            };
            object.map_or_else(|| not_found(path), |o| (StatusCode::OK, o))
        }
        Method::PATCH if path == STATUS => {
            let mut stored = app_json.clone();
            stored["status"] = request.body["status"].clone();
            stored["metadata"]["resourceVersion"] = json!("101");
            (StatusCode::OK, stored)
        }
        Method::PATCH | Method::POST => (StatusCode::OK, request.body.clone()),
        Method::DELETE => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
        _ => not_found(path),
    }
}

/// The Deployment as the API server would hold it after our apply, with a rollout status.
fn stored_deployment(app: &WasmApp, ready: i32) -> Deployment {
    let mut deployment = builders::deployment(app).expect("deployment");
    deployment.metadata.generation = Some(1);
    deployment.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(3),
        updated_replicas: Some(3),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        ..DeploymentStatus::default()
    });
    deployment
}

fn world_with_children(app: &WasmApp, ready: i32) -> World {
    World {
        deployment: Some(serde_json::to_value(stored_deployment(app, ready)).expect("json")),
        service: Some(
            serde_json::to_value(builders::service(app).expect("service")).expect("json"),
        ),
        ..World::default()
    }
}

fn writes(recorded: &[Recorded]) -> Vec<(Method, String)> {
    recorded
        .iter()
        .filter(|r| r.is_write())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

/// An app whose children and status are as the operator left them.
fn settled_app() -> (WasmApp, World) {
    let mut app = simple_app();
    let deployment = stored_deployment(&app, 3);
    let now = Time(Timestamp::now());
    app.status = Some(status::desired_status(&app, Some(&deployment), None, &now));
    let world = world_with_children(&app, 3);
    (app, world)
}

mod cache;
mod scenarios;
