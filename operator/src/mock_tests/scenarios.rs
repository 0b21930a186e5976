//! Reconcile scenarios: create, status, spec changes, autoscaling, foreign children, errors.

use super::*;

fn assert_applied_by_the_operator(apply: &Recorded) {
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert!(
        apply.query.contains("fieldManager=feather-operator"),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
}

#[tokio::test]
async fn create_applies_deployment_and_service_then_writes_status_and_one_event() {
    let (result, recorded, _) = run(simple_app(), World::default()).await;
    assert_eq!(
        result.expect("reconcile ok"),
        Action::requeue(RESYNC_INTERVAL)
    );

    let mut applies: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path != STATUS)
        .collect();
    // The children are applied at once: sort for a stable order.
    applies.sort_by_key(|r| r.path != DEPLOYMENT);
    assert_eq!(
        applies.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        [DEPLOYMENT, SERVICE]
    );
    for apply in &applies {
        assert_applied_by_the_operator(apply);
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

    // One Event for the reconcile, naming both children.
    let events: Vec<&Recorded> = recorded.iter().filter(|r| r.path == EVENTS).collect();
    assert_eq!(events.len(), 1, "{events:?}");
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
        events: Publisher::new(client.clone(), "feather-operator".into()),
        client,
        metrics,
        backoff: Backoff::default(),
        children: Children::empty(),
        recent: Arc::default(),
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
