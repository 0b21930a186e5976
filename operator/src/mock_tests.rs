//! Reconcile scenarios against a mock API server (tower-test). The mock answers by rules and
//! records every request, so each test asserts on exactly what the reconciler sent.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use crate::backoff::Backoff;
use crate::builders::{self, ANNOTATION_AUTOSCALED};
use crate::controller::error_policy;
use crate::metrics::Metrics;
use crate::reconcile::{Context, RESYNC_INTERVAL, reconcile};
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
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "demo");
    let app_json = serde_json::to_value(&app).expect("app json");
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
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "feather-operator".into(),
                instance: Some("test".into()),
            },
        ),
        client,
        metrics: Arc::new(Metrics::default()),
        backoff: Backoff::default(),
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

#[tokio::test]
async fn create_applies_deployment_and_service_then_writes_status_and_events() {
    let (result, recorded, _) = run(simple_app(), World::default()).await;
    assert_eq!(
        result.expect("reconcile ok"),
        Action::requeue(RESYNC_INTERVAL)
    );

    let applies: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path != STATUS)
        .collect();
    assert_eq!(
        applies.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        [DEPLOYMENT, SERVICE]
    );
    for apply in &applies {
        assert_eq!(apply.content_type, "application/apply-patch+yaml");
        assert!(
            apply.query.contains("fieldManager=feather-operator"),
            "{}",
            apply.query
        );
        assert!(apply.query.contains("force=true"), "{}", apply.query);
    }
    let deployment = &applies[0].body;
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["runtimeClassName"],
        "feather"
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["kind"],
        "WasmApp"
    );

    let status_patch = recorded
        .iter()
        .find(|r| r.path == STATUS)
        .expect("status written");
    assert!(status_patch.query.contains("fieldManager=feather-operator"));
    let status = &status_patch.body["status"];
    assert_eq!(status["url"], "http://hello.demo.svc.cluster.local");
    assert_eq!(
        status["selector"],
        "app.kubernetes.io/managed-by=feather-operator,app.kubernetes.io/name=hello"
    );
    assert_eq!(status["observedGeneration"], 1);
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready condition");
    assert_eq!(ready["status"], "False");

    let events: Vec<&Recorded> = recorded.iter().filter(|r| r.path == EVENTS).collect();
    assert!(!events.is_empty(), "no event published");
    assert_eq!(events[0].body["reason"], "Applied");
    let note = events[0].body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("created Deployment hello") && note.contains("created Service hello"),
        "{note}"
    );
    // No HPA without autoscaling, and nothing deleted.
    assert!(
        recorded
            .iter()
            .all(|r| r.path != HPA && r.method != Method::DELETE)
    );
}

#[tokio::test]
async fn noop_reconcile_writes_nothing() {
    let mut app = simple_app();
    let deployment = stored_deployment(&app, 3);
    let now = Time(Timestamp::now());
    app.status = Some(status::desired_status(&app, Some(&deployment), None, &now));
    let world = world_with_children(&app, 3);

    let (result, recorded, _) = run(app, world).await;
    assert_eq!(
        result.expect("reconcile ok"),
        Action::requeue(RESYNC_INTERVAL)
    );
    assert_eq!(writes(&recorded), Vec::<(Method, String)>::new());
    // Only the two reads that tell it nothing changed.
    let reads: Vec<&str> = recorded.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(reads, [DEPLOYMENT, SERVICE]);
}

#[tokio::test]
async fn status_follows_the_deployment() {
    let mut app = simple_app();
    // Last time the operator looked, one of three pods was ready ...
    let then = Time(Timestamp::now());
    app.status = Some(status::desired_status(
        &app,
        Some(&stored_deployment(&app, 1)),
        None,
        &then,
    ));
    assert!(!status::is_true(
        app.status.as_ref(),
        status::CONDITION_READY
    ));
    // ... now all three are.
    let world = world_with_children(&app, 3);

    let (result, recorded, _) = run(app, world).await;
    result.expect("reconcile ok");
    let written = writes(&recorded);
    assert_eq!(
        written.first(),
        Some(&(Method::PATCH, STATUS.to_string())),
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .all(|(_, path)| path == STATUS || path == EVENTS),
        "{written:?}"
    );

    let status = &recorded
        .iter()
        .find(|r| r.path == STATUS)
        .expect("status")
        .body["status"];
    assert_eq!(status["readyReplicas"], 3);
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("AllReplicasReady"))
    );
    let event = recorded
        .iter()
        .find(|r| r.path == EVENTS)
        .expect("event on the change");
    assert_eq!(event.body["reason"], "AllReplicasReady");
    assert_eq!(event.body["type"], "Normal");
}

#[tokio::test]
async fn a_changed_spec_reapplies_only_what_changed() {
    let old = simple_app();
    let mut world = world_with_children(&old, 3);
    let mut app = old.clone();
    app.spec.image = "registry.local:5000/hello:2.0".into();
    app.metadata.generation = Some(2);
    // The Service does not depend on the image: it must not be applied again.
    world.service =
        Some(serde_json::to_value(builders::service(&app).expect("svc")).expect("json"));

    let (result, recorded, _) = run(app, world).await;
    result.expect("reconcile ok");
    let applied: Vec<&str> = recorded
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path != STATUS)
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(applied, [DEPLOYMENT]);
    let body = &recorded
        .iter()
        .find(|r| r.path == DEPLOYMENT && r.method == Method::PATCH)
        .expect("apply")
        .body;
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local:5000/hello:2.0"
    );
}

#[tokio::test]
async fn autoscaling_applies_an_hpa_and_turning_it_off_deletes_it() {
    let mut app = simple_app();
    app.spec.autoscaling = Some(Autoscaling {
        min_replicas: 1,
        max_replicas: 5,
        target_cpu_utilization_percentage: 80,
    });
    let (result, recorded, _) = run(app.clone(), World::default()).await;
    result.expect("reconcile ok");
    let hpa = recorded
        .iter()
        .find(|r| r.path == HPA && r.method == Method::PATCH)
        .expect("HPA applied");
    assert_eq!(hpa.body["spec"]["maxReplicas"], 5);
    let deployment = recorded
        .iter()
        .find(|r| r.path == DEPLOYMENT && r.method == Method::PATCH)
        .expect("deployment applied");
    assert!(deployment.body["spec"].get("replicas").is_none());
    assert_eq!(
        deployment.body["metadata"]["annotations"][ANNOTATION_AUTOSCALED],
        "true"
    );

    // Turn autoscaling off: the observed Deployment still says autoscaled.
    let world = world_with_children(&app, 3);
    app.spec.autoscaling = None;
    let (result, recorded, _) = run(app, world).await;
    result.expect("reconcile ok");
    assert!(
        recorded
            .iter()
            .any(|r| r.method == Method::DELETE && r.path == HPA),
        "HPA not deleted"
    );
}

#[tokio::test]
async fn a_foreign_deployment_is_not_taken_over() {
    let app = simple_app();
    let mut foreign = stored_deployment(&app, 3);
    foreign.metadata.owner_references = None;
    let world = World {
        deployment: Some(serde_json::to_value(foreign).expect("json")),
        ..World::default()
    };
    let (result, recorded, _) = run(app, world).await;
    let error = result.expect_err("must refuse");
    assert!(
        matches!(
            error,
            Error::NotOwned {
                kind: "Deployment",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        !recorded
            .iter()
            .any(|r| r.path == DEPLOYMENT && r.method == Method::PATCH)
    );
    // The refusal is visible on the app.
    let status = &recorded
        .iter()
        .find(|r| r.path == STATUS)
        .expect("status")
        .body["status"];
    let degraded = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not owned by WasmApp demo/hello")
    );
}

#[tokio::test]
async fn errors_requeue_with_backoff() {
    let app = simple_app();
    let world = World {
        failing_gets: vec![DEPLOYMENT],
        ..World::default()
    };
    let (result, recorded, metrics) = run(app.clone(), world).await;
    let error = result.expect_err("the GET fails");
    assert!(
        matches!(
            error,
            Error::Kube {
                action: "get",
                kind: "Deployment",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("demo/hello"), "{error}");
    // Nothing applied after a failed read; the failure is recorded as Degraded.
    assert!(
        !recorded
            .iter()
            .any(|r| r.method == Method::PATCH && r.path != STATUS)
    );
    let status = &recorded
        .iter()
        .find(|r| r.path == STATUS)
        .expect("status")
        .body["status"];
    let degraded = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded["reason"], "ApplyFailed");

    // error_policy needs a context; nothing in it talks to the API server.
    let (offline, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(offline, "demo");
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "feather-operator".into()),
        client,
        metrics,
        backoff: Backoff::default(),
    });
    let app = Arc::new(app);
    let delays: Vec<Action> = (0..4)
        .map(|_| error_policy(app.clone(), &error, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4, 8].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    assert_eq!(ctx.metrics.errors("kube_get"), 4);
}

#[tokio::test]
async fn startup_says_how_to_install_a_missing_crd() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "demo");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one request");
        assert_eq!(request.uri().path(), "/apis/feather.dev/v1alpha1/wasmapps");
        let (code, body) = not_found(request.uri().path());
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
    });
    let error =
        crate::controller::check_crd_installed(&client, &crate::controller::Scope::default())
            .await
            .expect_err("the CRD is missing");
    server.await.expect("mock server");
    let message = error.to_string();
    assert!(
        message.contains("wasmapps.feather.dev is not installed"),
        "{message}"
    );
    assert!(
        message.contains("kubectl apply -f crds/wasmapps.feather.dev.yaml"),
        "{message}"
    );
}
