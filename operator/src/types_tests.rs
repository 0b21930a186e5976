//! The CRD's schema and CEL rules, checked client-side with kube's CEL evaluator (the same
//! rules the API server enforces; `operator/tests/apiserver.rs` checks them for real).

use kube::CustomResourceExt;
use kube::core::cel::{Validator, compile_schema};
use serde_json::{Value, json};

use crate::WasmApp;

fn schema() -> Value {
    let crd = WasmApp::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json")
}

fn manifest(spec: Value) -> Value {
    json!({
        "apiVersion": "feather.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": {"name": "hello", "namespace": "demo"},
        "spec": spec,
    })
}

/// The messages of the rules `spec` breaks (empty when it passes).
fn violations(spec: Value) -> Vec<String> {
    match Validator::new().validate(&schema(), &manifest(spec), None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.as_slice().iter().map(ToString::to_string).collect(),
    }
}

fn assert_refused(spec: Value, expected: &str) {
    let found = violations(spec);
    assert!(
        found.iter().any(|message| message.contains(expected)),
        "expected a violation mentioning {expected:?}, got {found:?}"
    );
}

#[test]
fn every_cel_rule_compiles() {
    let compiled = compile_schema(&schema());
    let errors: Vec<String> = compiled
        .compilation_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_full_valid_app_passes() {
    let spec = json!({
        "image": "registry.local:5000/hello:1.0",
        "replicas": 2,
        "port": 9000,
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ],
        "resources": {"limits": {"memory": "64Mi", "cpu": "1"}, "requests": {"memory": "32Mi", "cpu": "100m"}},
        "requestTimeout": "1.5s",
        "maxConcurrency": 8,
        "allowedOutboundHosts": ["api.example.com", "*.example.org:443"],
        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
        "volumeMounts": [{"name": "v", "mountPath": "/data"}],
        "readinessProbe": {"path": "/ready"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
    });
    assert_eq!(violations(spec), Vec::<String>::new());
    assert_eq!(violations(json!({"image": "x"})), Vec::<String>::new());
}

#[test]
fn replicas_below_zero_are_refused() {
    assert_refused(
        json!({"image": "x", "replicas": -1}),
        "spec.replicas must be 0 or more",
    );
}

#[test]
fn ports_outside_1_to_65535_are_refused() {
    assert_refused(
        json!({"image": "x", "port": 0}),
        "spec.port must be between 1 and 65535",
    );
    assert_refused(
        json!({"image": "x", "port": 70000}),
        "spec.port must be between 1 and 65535",
    );
}

#[test]
fn autoscaling_min_above_max_is_refused() {
    assert_refused(
        json!({"image": "x", "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
        "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
    );
}

#[test]
fn memory_that_is_not_a_quantity_is_refused() {
    assert_refused(
        json!({"image": "x", "resources": {"limits": {"memory": "lots"}}}),
        "spec.resources memory must be a positive Kubernetes quantity",
    );
}

#[test]
fn memory_request_above_limit_is_refused() {
    assert_refused(
        json!({"image": "x", "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "1Gi"}}}),
        "spec.resources.requests.memory must not exceed spec.resources.limits.memory",
    );
}

#[test]
fn env_needs_exactly_one_of_value_and_value_from() {
    assert_refused(
        json!({"image": "x", "env": [{"name": "A", "value": "1", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}),
        "set exactly one of value or valueFrom",
    );
    assert_refused(
        json!({"image": "x", "env": [{"name": "A"}]}),
        "set exactly one of value or valueFrom",
    );
    assert_refused(
        json!({"image": "x", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        "spec.env[].name must be unique",
    );
}

#[test]
fn mounts_must_name_a_volume() {
    assert_refused(
        json!({"image": "x", "volumeMounts": [{"name": "missing", "mountPath": "/data"}]}),
        "spec.volumeMounts[].name must name a volume listed in spec.volumes",
    );
    assert_refused(
        json!({"image": "x", "volumes": [{"name": "v", "emptyDir": {}}], "volumeMounts": [{"name": "v", "mountPath": "data"}]}),
        "mountPath must be an absolute path",
    );
}

#[test]
fn volumes_need_exactly_one_source() {
    assert_refused(
        json!({"image": "x", "volumes": [{"name": "v"}]}),
        "set exactly one of configMap, secret, emptyDir or persistentVolumeClaim",
    );
    assert_refused(
        json!({"image": "x", "volumes": [{"name": "v", "secret": "s", "configMap": "c"}]}),
        "set exactly one of configMap, secret, emptyDir or persistentVolumeClaim",
    );
}

#[test]
fn request_timeout_must_be_a_positive_duration() {
    assert_refused(
        json!({"image": "x", "requestTimeout": "forever"}),
        "spec.requestTimeout must be a positive duration",
    );
    assert_refused(
        json!({"image": "x", "requestTimeout": "0s"}),
        "spec.requestTimeout must be a positive duration",
    );
}

#[test]
fn probe_paths_must_be_absolute_and_concurrency_positive() {
    assert_refused(
        json!({"image": "x", "livenessProbe": {"path": "healthz"}}),
        "probe path must start with /",
    );
    assert_refused(
        json!({"image": "x", "maxConcurrency": 0}),
        "spec.maxConcurrency must be at least 1",
    );
    assert_refused(
        json!({"image": "x", "allowedOutboundHosts": ["a,b"]}),
        "spec.allowedOutboundHosts entries",
    );
}

#[test]
fn crd_has_scale_and_status_subresources_and_printer_columns() {
    let crd = WasmApp::crd();
    let version = &crd.spec.versions[0];
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().expect("scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Image", "URL", "Age"]);
    assert_eq!(crd.spec.names.short_names, Some(vec!["wa".to_string()]));
    // Defaults are in the schema, so the API server fills them in.
    let schema = schema();
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["default"], 1);
    assert_eq!(spec["port"]["default"], 8080);
    assert_eq!(
        spec["autoscaling"]["properties"]["targetCPUUtilizationPercentage"]["default"],
        80
    );
}

#[test]
fn every_spec_field_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                let described = property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !described {
                    missing.push(here.clone());
                }
                walk(&here, property, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let schema = schema();
    let mut missing = Vec::new();
    walk("spec", &schema["properties"]["spec"], &mut missing);
    walk("status", &schema["properties"]["status"], &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}
