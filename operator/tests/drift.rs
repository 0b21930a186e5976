//! Against a real kube-apiserver (as `apiserver.rs`): the Deployment the operator writes keeps
//! its rollout settings through the API server, an unchanged app is never applied again, and
//! hand edits of the Deployment are reverted.

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use support::env::{TestEnv, http_get, wasmapp};
use support::{eventually, kubectl};

/// Number of #[tokio::test]s below: the last to finish stops a control plane this run started.
const TESTS: usize = 1;
const WAIT: Duration = Duration::from_secs(60);

/// The value of the counter `name` (with its labels) in a Prometheus text body.
fn counter(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

const APPLIES: &str = "feather_operator_api_requests_total{call=\"apply\"}";
const RECONCILES: &str = "feather_operator_reconciles_total";

/// Make the operator reconcile `hello` once more (an annotation on the app is a watch event)
/// and return the apply count once that reconcile has run.
async fn reconcile_again(env: &TestEnv, addr: &str, mark: &str) -> u64 {
    let before = http_get(addr, "/metrics").await.unwrap_or_default();
    let reconciles = counter(&before, RECONCILES).unwrap_or(0);
    let (ok, _, err) = kubectl(
        env.kubeconfig(),
        &[
            "annotate",
            "wasmapp",
            "hello",
            "-n",
            &env.namespace,
            "--overwrite",
            &format!("test.feather.dev/mark={mark}"),
        ],
    );
    assert!(ok, "annotate: {err}");
    eventually("one more reconcile", WAIT, || async {
        let body = http_get(addr, "/metrics").await?;
        (counter(&body, RECONCILES)? > reconciles).then(|| counter(&body, APPLIES).unwrap_or(0))
    })
    .await
}

/// `kubectl get` of the WasmApp `hello` with a jsonpath.
fn app_field(kubeconfig: &Path, namespace: &str, jsonpath: &str) -> String {
    let jsonpath = format!("jsonpath={jsonpath}");
    kubectl(
        kubeconfig,
        &["get", "wasmapp", "hello", "-n", namespace, "-o", &jsonpath],
    )
    .1
}

#[tokio::test]
async fn hand_edits_of_the_deployment_are_reverted_and_an_unchanged_app_is_not_rewritten() {
    let Some(mut env) = TestEnv::start("hand_edits_of_the_deployment_are_reverted", TESTS).await
    else {
        return;
    };
    let addr = "127.0.0.1:18091";
    env.start_operator(&["--leader-elect=false", "--health-addr", addr], "drift");
    // Fields the API server normalizes or defaults (0.5 → 500m, probe defaults, empty
    // strings dropped), so a false "drift" would show as an apply on every reconcile. Zero
    // replicas: no pods.
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({
            "image": "registry.local:5000/hello:1.0", "replicas": 0, "args": ["--a", "b"],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY", "value": ""}],
            "resources": {"limits": {"cpu": "0.5", "memory": "64Mi"},
                          "requests": {"cpu": "100m", "memory": "32Mi"}},
            "requestTimeout": "2s", "allowedOutboundHosts": ["api.example.com"],
            "readinessProbe": {"path": "/ready", "periodSeconds": 3},
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1000Ki"}}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
            "podLabels": {"tier": "web"}, "serviceAnnotations": {"lb": "internal"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "wasm",
                             "effect": "NoSchedule"}]
        }),
    ));
    assert!(ok, "{err}");
    let deployments = env.deployments();
    let ns = env.namespace.clone();
    let kubeconfig = env.kubeconfig().to_path_buf();
    eventually("the app Ready (scaled to zero)", WAIT, || async {
        let ready = app_field(
            &kubeconfig,
            &ns,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "True").then_some(())
    })
    .await;

    // The rollout settings survive the API server (the preStop sleep action is GA in 1.34).
    let deployment = deployments.get("hello").await.expect("the Deployment");
    let spec = deployment.spec.expect("spec");
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let pod = spec.template.spec.expect("pod spec");
    let sleep = pod.containers[0]
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|p| p.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(sleep, Some(5), "preStop sleep dropped by the API server");
    assert_eq!(pod.termination_grace_period_seconds, Some(12));

    // An unchanged app: another reconcile applies nothing (the Deployment and the Service
    // were applied once each, whatever the server normalized).
    let applies = reconcile_again(&env, addr, "1").await;
    assert_eq!(applies, 2, "an unchanged app was applied again");

    // Hand edits of replicas and image: the operator puts both back.
    let (ok, _, err) = kubectl(
        env.kubeconfig(),
        &["scale", "deployment", "hello", "-n", &ns, "--replicas=1"],
    );
    assert!(ok, "kubectl scale deployment: {err}");
    let (ok, _, err) = kubectl(
        env.kubeconfig(),
        &[
            "set",
            "image",
            "deployment/hello",
            "-n",
            &ns,
            "app=registry.local:5000/other:9",
        ],
    );
    assert!(ok, "kubectl set image: {err}");
    eventually("replicas and image reverted", WAIT, || async {
        let d = deployments.get("hello").await.ok()?;
        let spec = d.spec?;
        let image = spec.template.spec?.containers.into_iter().next()?.image?;
        (spec.replicas == Some(0) && image == "registry.local:5000/hello:1.0").then_some(())
    })
    .await;
    eventually("an event about the revert", WAIT, || async {
        let (_, events, _) = kubectl(
            &kubeconfig,
            &[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "involvedObject.name=hello",
            ],
        );
        events
            .contains("reverted edits to Deployment hello")
            .then_some(())
    })
    .await;
    // Once reverted, it stays quiet again.
    let reverted = reconcile_again(&env, addr, "2").await;
    assert_eq!(reconcile_again(&env, addr, "3").await, reverted);
}
