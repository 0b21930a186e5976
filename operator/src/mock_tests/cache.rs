//! Reconciles that read children from the controller's caches: an unchanged app costs no
//! request, a hand-edited child is applied again, a child the cache lacks is read first.

use super::*;

#[tokio::test]
async fn noop_reconcile_writes_nothing() {
    // With the children in the controller's caches: no request at all.
    let (app, world) = settled_app();
    let (result, recorded, metrics) = run(app, world.cached()).await;
    assert_eq!(
        result.expect("reconcile ok"),
        Action::requeue(RESYNC_INTERVAL)
    );
    assert_eq!(writes(&recorded), Vec::<(Method, String)>::new());
    assert!(recorded.is_empty(), "{recorded:?}");
    assert_eq!(metrics.api_calls(ApiCall::Apply), 0);

    // With cold caches: only the two reads that tell it nothing changed.
    let (app, world) = settled_app();
    let (result, recorded, metrics) = run(app, world).await;
    result.expect("reconcile ok");
    assert_eq!(writes(&recorded), Vec::<(Method, String)>::new());
    let mut reads: Vec<&str> = recorded.iter().map(|r| r.path.as_str()).collect();
    reads.sort_unstable();
    assert_eq!(reads, [SERVICE, DEPLOYMENT]);
    assert_eq!(metrics.api_calls(ApiCall::Get), 2);
}

#[tokio::test]
async fn a_hand_edited_child_is_applied_again() {
    // Someone ran `kubectl scale deployment hello --replicas=5` and `kubectl set image`: the
    // spec hash annotation is untouched, the fields are not.
    let (app, mut world) = settled_app();
    let mut edited = stored_deployment(&app, 3);
    if let Some(spec) = edited.spec.as_mut() {
        spec.replicas = Some(5);
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.containers[0].image = Some("evil.example/other:9".into());
        }
    }
    world.deployment = Some(serde_json::to_value(edited).expect("json"));
    let (result, recorded, _) = run(app, world.cached()).await;
    result.expect("reconcile ok");
    let applied: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path != STATUS)
        .collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].path, DEPLOYMENT);
    assert!(
        applied[0].query.contains("force=true"),
        "{}",
        applied[0].query
    );
    assert_eq!(applied[0].body["spec"]["replicas"], 3);
    assert_eq!(
        applied[0].body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local:5000/hello:1.0"
    );
    let event = recorded
        .iter()
        .find(|r| r.path == EVENTS)
        .expect("an event about the revert");
    let note = event.body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("reverted edits to Deployment hello"),
        "{note}"
    );
}

#[tokio::test]
async fn a_child_missing_from_the_cache_is_read_before_it_is_created() {
    // A cached Service, no cached Deployment: the Deployment is looked up (it may exist
    // without the operator's label) and created; the Service costs nothing.
    let (app, mut world) = settled_app();
    world.deployment = None;
    world.cached = true;
    let (result, recorded, _) = run(app, world).await;
    result.expect("reconcile ok");
    let calls: Vec<(Method, &str)> = recorded
        .iter()
        .filter(|r| r.path != STATUS && r.path != EVENTS)
        .map(|r| (r.method.clone(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        [(Method::GET, DEPLOYMENT), (Method::PATCH, DEPLOYMENT)]
    );
}

#[tokio::test]
async fn a_status_written_but_not_yet_in_the_cache_is_not_written_again() {
    // Two reconciles in a row see the same cached app (its watch event has not come yet):
    // the second one neither writes the status again nor repeats the Event.
    let (mut app, world) = settled_app();
    app.status = None;
    let memo = Memo::default();
    let (result, recorded, _) = run_with(app.clone(), world.clone().cached(), &memo).await;
    result.expect("reconcile ok");
    assert_eq!(
        writes(&recorded),
        [
            (Method::PATCH, STATUS.to_string()),
            (Method::POST, EVENTS.to_string())
        ]
    );
    let (result, recorded, _) = run_with(app, world.cached(), &memo).await;
    result.expect("reconcile ok");
    assert!(recorded.is_empty(), "{recorded:?}");
}
