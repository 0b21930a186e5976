//! Against a real kube-apiserver + etcd (+ kube-controller-manager for garbage collection),
//! started by `e2e/cluster up --control-plane-only` when not already running. Each test works
//! in its own namespace and dumps that namespace (and the operator's log) when it fails. When
//! the control plane cannot be had, every test prints a loud SKIP with the reason.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use support::env::{TestEnv, http_get, wasmapp};
use support::{eventually, kubectl};

/// Number of #[tokio::test]s below: the last to finish stops a control plane this run started.
const TESTS: usize = 7;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn crd_installs_and_kubectl_explain_shows_the_docs() {
    let Some(env) = TestEnv::start("crd_installs_and_kubectl_explain_shows_the_docs", TESTS).await
    else {
        return;
    };
    let (ok, out, err) = kubectl(
        env.kubeconfig(),
        &[
            "get",
            "crd",
            "wasmapps.feather.dev",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ],
    );
    assert!(ok && out == "True", "CRD not established: {out} {err}");
    let (ok, out, err) = kubectl(env.kubeconfig(), &["explain", "wasmapp.spec"]);
    assert!(ok, "kubectl explain failed: {err}");
    for text in [
        "OCI reference of the wasm app",
        "allowedOutboundHosts",
        "autoscaling",
        "requestTimeout",
    ] {
        assert!(
            out.contains(text),
            "`kubectl explain wasmapp.spec` lacks {text:?}:\n{out}"
        );
    }
    let (ok, out, err) = kubectl(
        env.kubeconfig(),
        &["explain", "wasmapp.spec.autoscaling.minReplicas"],
    );
    assert!(ok && out.contains("Fewest pods"), "{out}{err}");
    let (ok, out, _) = kubectl(
        env.kubeconfig(),
        &["api-resources", "--api-group=feather.dev"],
    );
    assert!(
        ok && out.contains("wa") && out.contains("WasmApp"),
        "short name missing: {out}"
    );
}

#[tokio::test]
async fn invalid_wasmapps_are_refused_naming_the_field() {
    let Some(env) = TestEnv::start("invalid_wasmapps_are_refused_naming_the_field", TESTS).await
    else {
        return;
    };
    let cases = [
        (
            json!({"image": "x", "port": 70000}),
            "spec.port must be between 1 and 65535",
        ),
        (
            json!({"image": "x", "replicas": -1}),
            "spec.replicas must be 0 or more",
        ),
        (
            json!({"image": "x", "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
            "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
        ),
        (
            json!({"image": "x", "resources": {"limits": {"memory": "lots"}}}),
            "memory must be a positive Kubernetes quantity",
        ),
        (
            json!({"image": "x", "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "1Gi"}}}),
            "spec.resources.requests.memory must not exceed spec.resources.limits.memory",
        ),
        (
            json!({"image": "x", "env": [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
            "set exactly one of value or valueFrom",
        ),
        (
            json!({"image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/d"}]}),
            "spec.volumeMounts[].name must name a volume listed in spec.volumes",
        ),
        (
            json!({"image": "x", "requestTimeout": "forever"}),
            "spec.requestTimeout must be a positive duration",
        ),
        (json!({"port": 8080}), "spec.image: Required value"),
    ];
    for (index, (spec, expected)) in cases.into_iter().enumerate() {
        let (ok, out, err) = env.apply(&wasmapp(&format!("bad-{index}"), spec.clone()));
        assert!(!ok, "accepted an invalid WasmApp {spec}: {out}");
        assert!(
            err.contains(expected),
            "refusal of {spec} does not say {expected:?}:\n{err}"
        );
    }
    // And defaults are filled in on a valid one.
    let (ok, _, err) = env.apply(&wasmapp("good", json!({"image": "x"})));
    assert!(ok, "a valid WasmApp was refused: {err}");
    let (_, out, _) = kubectl(
        env.kubeconfig(),
        &[
            "get",
            "wasmapp",
            "good",
            "-n",
            &env.namespace,
            "-o",
            "jsonpath={.spec.replicas} {.spec.port}",
        ],
    );
    assert_eq!(out, "1 8080");
}

#[tokio::test]
async fn apply_creates_deployment_service_and_status() {
    let Some(mut env) = TestEnv::start("apply_creates_deployment_service_and_status", TESTS).await
    else {
        return;
    };
    env.start_operator(&["--leader-elect=false"], "single");
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({
            "image": "registry.local:5000/hello:1.0", "replicas": 2, "port": 9000,
            "requestTimeout": "5s", "allowedOutboundHosts": ["api.example.com"]
        }),
    ));
    assert!(ok, "{err}");

    let deployments = env.deployments();
    let deployment = eventually("the Deployment", WAIT, || async {
        deployments.get_opt("hello").await.ok().flatten()
    })
    .await;
    let spec = deployment.spec.expect("deployment spec");
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.runtime_class_name.as_deref(), Some("feather"));
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        deployment.metadata.owner_references.expect("owner")[0].kind,
        "WasmApp"
    );
    let annotations = spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("feather.dev/request-timeout")
            .map(String::as_str),
        Some("5s")
    );

    let services = env.services();
    let service = eventually("the Service", WAIT, || async {
        services.get_opt("hello").await.ok().flatten()
    })
    .await;
    let port = &service.spec.expect("svc spec").ports.expect("ports")[0];
    assert_eq!(port.port, 80);

    let ns = env.namespace.clone();
    let url = eventually("status.url", WAIT, || {
        let ns = ns.clone();
        let kubeconfig = env.kubeconfig().to_path_buf();
        async move {
            let (_, out, _) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "wasmapp",
                    "hello",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.status.url}",
                ],
            );
            (!out.is_empty()).then_some(out)
        }
    })
    .await;
    assert_eq!(url, format!("http://hello.{ns}.svc.cluster.local"));
    let (_, out, _) = kubectl(env.kubeconfig(), &["get", "wasmapp", "hello", "-n", &ns]);
    for column in ["READY", "REPLICAS", "IMAGE", "URL", "AGE"] {
        assert!(
            out.contains(column),
            "printer column {column} missing:\n{out}"
        );
    }

    // The scale subresource: kubectl scale on the WasmApp reaches the Deployment.
    let (ok, _, err) = kubectl(
        env.kubeconfig(),
        &["scale", "wasmapp", "hello", "-n", &ns, "--replicas=4"],
    );
    assert!(ok, "kubectl scale: {err}");
    eventually("replicas 4 on the Deployment", WAIT, || async {
        let d = deployments.get("hello").await.ok()?;
        (d.spec?.replicas == Some(4)).then_some(())
    })
    .await;
    let (_, events, _) = kubectl(
        env.kubeconfig(),
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=hello",
        ],
    );
    assert!(events.contains("Applied"), "no Applied event:\n{events}");
}

#[tokio::test]
async fn an_update_propagates_to_the_deployment() {
    let Some(mut env) = TestEnv::start("an_update_propagates_to_the_deployment", TESTS).await
    else {
        return;
    };
    env.start_operator(&["--leader-elect=false"], "single");
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({"image": "registry.local:5000/hello:1.0"}),
    ));
    assert!(ok, "{err}");
    let deployments = env.deployments();
    eventually("the Deployment", WAIT, || async {
        deployments.get_opt("hello").await.ok().flatten()
    })
    .await;

    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({
            "image": "registry.local:5000/hello:2.0",
            "env": [{"name": "GREETING", "value": "hi"}],
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3}
        }),
    ));
    assert!(ok, "{err}");
    eventually("the new image and env on the Deployment", WAIT, || async {
        let d = deployments.get("hello").await.ok()?;
        let container = d.spec?.template.spec?.containers.into_iter().next()?;
        let env_ok = container.env?.iter().any(|e| e.name == "GREETING");
        (container.image.as_deref() == Some("registry.local:5000/hello:2.0") && env_ok)
            .then_some(())
    })
    .await;
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(env.client.clone(), &env.namespace);
    eventually("the HPA", WAIT, || async {
        hpas.get_opt("hello").await.ok().flatten()
    })
    .await;

    // Autoscaling off again: the HPA goes away.
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({"image": "registry.local:5000/hello:2.0"}),
    ));
    assert!(ok, "{err}");
    eventually("the HPA deleted", WAIT, || async {
        hpas.get_opt("hello")
            .await
            .ok()
            .and_then(|hpa| hpa.is_none().then_some(()))
    })
    .await;
}

#[tokio::test]
async fn deleting_the_app_garbage_collects_its_children() {
    let Some(mut env) =
        TestEnv::start("deleting_the_app_garbage_collects_its_children", TESTS).await
    else {
        return;
    };
    env.start_operator(&["--leader-elect=false"], "single");
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({"image": "registry.local:5000/hello:1.0"}),
    ));
    assert!(ok, "{err}");
    let deployments = env.deployments();
    let services = env.services();
    eventually("the Deployment and Service", WAIT, || async {
        let d = deployments.get_opt("hello").await.ok().flatten();
        let s = services.get_opt("hello").await.ok().flatten();
        (d.is_some() && s.is_some()).then_some(())
    })
    .await;
    let (ok, _, err) = kubectl(
        env.kubeconfig(),
        &[
            "delete",
            "wasmapp",
            "hello",
            "-n",
            &env.namespace,
            "--wait=true",
        ],
    );
    assert!(ok, "{err}");
    eventually(
        "the garbage collector to remove the Deployment and Service",
        Duration::from_secs(90),
        || async {
            let d = deployments.get_opt("hello").await.ok()?;
            let s = services.get_opt("hello").await.ok()?;
            (d.is_none() && s.is_none()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn two_operator_replicas_elect_one_leader() {
    let Some(mut env) = TestEnv::start("two_operator_replicas_elect_one_leader", TESTS).await
    else {
        return;
    };
    let ns = env.namespace.clone();
    let common = [
        "--leader-elect=true",
        "--lease-namespace",
        &ns,
        "--lease-name",
        "feather-operator-test",
        "--lease-duration-seconds",
        "6",
        "--lease-grace-seconds",
        "2",
    ];
    let mut a_args = common.to_vec();
    a_args.extend(["--identity", "replica-a"]);
    let mut b_args = common.to_vec();
    b_args.extend(["--identity", "replica-b"]);
    let a = env.start_operator(&a_args, "a");
    let b = env.start_operator(&b_args, "b");

    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &ns);
    let holder = eventually("a lease holder", WAIT, || async {
        leases
            .get_opt("feather-operator-test")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    })
    .await;
    assert!(
        holder == "replica-a" || holder == "replica-b",
        "unexpected holder {holder}"
    );
    // Exactly one replica leads: the other stays a standby.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders: Vec<&str> = [(a, "replica-a"), (b, "replica-b")]
        .into_iter()
        .filter(|(index, _)| env.operators[*index].log_text().contains("became leader"))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        leaders,
        [holder.as_str()],
        "leaders by log: {leaders:?}, lease holder {holder}"
    );

    // The leader reconciles.
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({"image": "registry.local:5000/hello:1.0"}),
    ));
    assert!(ok, "{err}");
    let deployments = env.deployments();
    eventually("the Deployment", WAIT, || async {
        deployments.get_opt("hello").await.ok().flatten()
    })
    .await;

    // SIGTERM the leader: it releases the lease and the standby takes over.
    let (leader, standby) = if holder == "replica-a" {
        (a, "replica-b")
    } else {
        (b, "replica-a")
    };
    let status = env.operators[leader].stop().expect("exit status");
    assert!(
        status.success(),
        "the leader did not exit cleanly on SIGTERM: {status}"
    );
    let new_holder = eventually("the standby to take the lease", WAIT, || async {
        let holder = leases
            .get_opt("feather-operator-test")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity?;
        (holder == standby).then_some(holder)
    })
    .await;
    assert_eq!(new_holder, standby);
    // And the new leader reconciles: a change reaches the Deployment.
    let (ok, _, err) = env.apply(&wasmapp(
        "hello",
        json!({"image": "registry.local:5000/hello:3.0"}),
    ));
    assert!(ok, "{err}");
    eventually("the new leader to apply the change", WAIT, || async {
        let d = deployments.get("hello").await.ok()?;
        let image = d
            .spec?
            .template
            .spec?
            .containers
            .into_iter()
            .next()?
            .image?;
        (image.ends_with(":3.0")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn operator_status_and_metrics_endpoints_answer() {
    let Some(mut env) = TestEnv::start("operator_status_and_metrics_endpoints_answer", TESTS).await
    else {
        return;
    };
    // A fixed port for this one test so it can be queried.
    let addr = "127.0.0.1:18089";
    env.start_operator(&["--leader-elect=false", "--health-addr", addr], "metrics");
    let (ok, _, err) = env.apply(&wasmapp("hello", json!({"image": "x"})));
    assert!(ok, "{err}");
    let deployments = env.deployments();
    eventually("the Deployment", WAIT, || async {
        deployments.get_opt("hello").await.ok().flatten()
    })
    .await;
    let metrics = eventually("/metrics with a reconcile", WAIT, || async {
        let body = http_get(addr, "/metrics").await?;
        body.contains("feather_operator_reconciles_total")
            .then_some(body)
    })
    .await;
    assert!(
        metrics.contains("feather_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("feather_operator_apps_by_condition"),
        "{metrics}"
    );
    assert_eq!(http_get(addr, "/healthz").await.as_deref(), Some("ok\n"));
    assert_eq!(http_get(addr, "/readyz").await.as_deref(), Some("ok\n"));
}
