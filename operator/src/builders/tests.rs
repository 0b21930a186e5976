//! Builder tests: one per spec field (or group of fields that map together), plus a golden
//! snapshot of the objects built from an app that sets everything.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapKeySelector, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSpec, SecretKeySelector, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::WasmAppSpec;
use crate::types::{
    Autoscaling, EmptyDir, EnvVar, EnvVarSource, HttpProbe, ResourceAmounts, Resources, Volume,
    VolumeMount,
};

mod rollout;

fn app_with(spec: WasmAppSpec) -> WasmApp {
    let mut app = WasmApp::new("hello", spec);
    app.metadata.namespace = Some("demo".into());
    app.metadata.uid = Some("0b9a5c1e-7d43-4f7e-9a57-1d2b3c4d5e6f".into());
    app.metadata.generation = Some(3);
    app
}

fn minimal() -> WasmApp {
    app_with(WasmAppSpec {
        image: "registry.local:5000/hello:1.0".into(),
        ..WasmAppSpec::default()
    })
}

/// An app that sets every spec field.
pub(crate) fn full() -> WasmApp {
    app_with(WasmAppSpec {
        image: "registry.local:5000/hello:1.0".into(),
        replicas: 3,
        port: 9000,
        args: vec!["--greeting".into(), "hi".into()],
        env: vec![
            EnvVar {
                name: "MODE".into(),
                value: Some("prod".into()),
                value_from: None,
            },
            EnvVar {
                name: "COLOR".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "color".into(),
                        optional: None,
                    }),
                    secret_key_ref: None,
                }),
            },
            EnvVar {
                name: "TOKEN".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: None,
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "token".into(),
                        optional: Some(true),
                    }),
                }),
            },
        ],
        resources: Some(Resources {
            limits: Some(ResourceAmounts {
                cpu: Some("500m".into()),
                memory: Some("64Mi".into()),
            }),
            requests: Some(ResourceAmounts {
                cpu: Some("100m".into()),
                memory: Some("32Mi".into()),
            }),
        }),
        request_timeout: Some("30s".into()),
        max_concurrency: Some(16),
        allowed_outbound_hosts: vec!["api.example.com".into(), "*.example.org:8443".into()],
        volumes: vec![
            Volume {
                name: "config".into(),
                config_map: Some("settings".into()),
                ..Volume::default()
            },
            Volume {
                name: "keys".into(),
                secret: Some("creds".into()),
                ..Volume::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDir {
                    size_limit: Some("16Mi".into()),
                }),
                ..Volume::default()
            },
            Volume {
                name: "data".into(),
                persistent_volume_claim: Some("hello-data".into()),
                ..Volume::default()
            },
        ],
        volume_mounts: vec![
            VolumeMount {
                name: "config".into(),
                mount_path: "/etc/hello".into(),
                read_only: true,
            },
            VolumeMount {
                name: "scratch".into(),
                mount_path: "/tmp".into(),
                read_only: false,
            },
        ],
        readiness_probe: Some(HttpProbe {
            path: "/ready".into(),
            initial_delay_seconds: Some(1),
            period_seconds: Some(5),
            failure_threshold: Some(2),
        }),
        liveness_probe: Some(HttpProbe {
            path: "/healthz".into(),
            ..HttpProbe::default()
        }),
        autoscaling: None,
        node_selector: BTreeMap::from([("disk".into(), "ssd".into())]),
        tolerations: vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("wasm".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }],
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["a".into()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        }),
        image_pull_secrets: vec!["regcred".into()],
        service_account_name: Some("hello-sa".into()),
        pod_annotations: BTreeMap::from([
            ("team".into(), "edge".into()),
            // The operator's own annotation wins over a user's attempt to set it.
            (ANNOTATION_MAX_CONCURRENCY.into(), "999".into()),
        ]),
        pod_labels: BTreeMap::from([
            ("tier".into(), "web".into()),
            (LABEL_NAME.into(), "spoofed".into()),
        ]),
        service_annotations: BTreeMap::from([("lb".into(), "internal".into())]),
        service_labels: BTreeMap::from([("exposed".into(), "yes".into())]),
    })
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn container(deployment: &Deployment) -> &Container {
    &pod_spec(deployment).containers[0]
}

fn pod_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn build(app: &WasmApp) -> Deployment {
    deployment(app).expect("deployment builds")
}

#[test]
fn deployment_runs_on_the_feather_runtime_class_with_the_image() {
    let d = build(&minimal());
    assert_eq!(pod_spec(&d).runtime_class_name.as_deref(), Some("feather"));
    assert_eq!(
        container(&d).image.as_deref(),
        Some("registry.local:5000/hello:1.0")
    );
    assert_eq!(container(&d).name, "app");
    assert_eq!(d.metadata.name.as_deref(), Some("hello"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("demo"));
    // No command: the image's entrypoint stays args[0] for the shim.
    assert_eq!(container(&d).command, None);
    assert_eq!(pod_spec(&d).enable_service_links, Some(false));
}

#[test]
fn deployment_is_labelled_and_selects_its_pods() {
    let d = build(&full());
    let expected = BTreeMap::from([
        (LABEL_NAME.to_string(), "hello".to_string()),
        (LABEL_MANAGED_BY.to_string(), "feather-operator".to_string()),
    ]);
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&expected));
    assert_eq!(d.metadata.labels.as_ref(), Some(&expected));
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(pod_labels.get("tier").map(String::as_str), Some("web"));
    // The selector label cannot be overridden by spec.podLabels.
    assert_eq!(
        pod_labels.get(LABEL_NAME).map(String::as_str),
        Some("hello")
    );
    assert_eq!(
        selector_string(&full()),
        "app.kubernetes.io/managed-by=feather-operator,app.kubernetes.io/name=hello"
    );
}

#[test]
fn every_child_has_a_controller_owner_reference_to_the_app() {
    let mut app = full();
    app.spec.autoscaling = Some(Autoscaling {
        min_replicas: 1,
        max_replicas: 4,
        target_cpu_utilization_percentage: 70,
    });
    let owners = [
        build(&app).metadata.owner_references,
        service(&app).expect("service").metadata.owner_references,
        horizontal_pod_autoscaler(&app)
            .expect("hpa")
            .expect("some")
            .metadata
            .owner_references,
    ];
    for owner in owners {
        let owner = owner.expect("owner references");
        assert_eq!(owner.len(), 1);
        assert_eq!(owner[0].kind, "WasmApp");
        assert_eq!(owner[0].api_version, "feather.dev/v1alpha1");
        assert_eq!(owner[0].name, "hello");
        assert_eq!(owner[0].uid, "0b9a5c1e-7d43-4f7e-9a57-1d2b3c4d5e6f");
        assert_eq!(owner[0].controller, Some(true));
    }
}

#[test]
fn an_app_without_uid_is_refused_naming_the_field() {
    let mut app = minimal();
    app.metadata.uid = None;
    let error = build_error(&app);
    assert!(error.contains("metadata.uid"), "{error}");
}

fn build_error(app: &WasmApp) -> String {
    deployment(app).expect_err("must fail").to_string()
}

#[test]
fn replicas_are_set_without_autoscaling_and_left_to_the_hpa_with_it() {
    let d = build(&full());
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert!(horizontal_pod_autoscaler(&full()).expect("hpa").is_none());

    let mut app = full();
    app.spec.autoscaling = Some(Autoscaling {
        min_replicas: 2,
        max_replicas: 10,
        target_cpu_utilization_percentage: 60,
    });
    let d = build(&app);
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), None);
    let annotations = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(ANNOTATION_AUTOSCALED).map(String::as_str),
        Some("true")
    );
    let hpa = horizontal_pod_autoscaler(&app).expect("hpa").expect("some");
    let spec = hpa.spec.expect("hpa spec");
    assert_eq!(spec.min_replicas, Some(2));
    assert_eq!(spec.max_replicas, 10);
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!(spec.scale_target_ref.name, "hello");
    assert_eq!(
        spec.scale_target_ref.api_version.as_deref(),
        Some("apps/v1")
    );
    let metric = &spec.metrics.expect("metrics")[0];
    let resource = metric.resource.as_ref().expect("resource metric");
    assert_eq!(resource.name, "cpu");
    assert_eq!(resource.target.type_, "Utilization");
    assert_eq!(resource.target.average_utilization, Some(60));
}

#[test]
fn port_becomes_container_port_and_port_env() {
    let d = build(&full());
    let c = container(&d);
    let port = &c.ports.as_ref().expect("ports")[0];
    assert_eq!(port.container_port, 9000);
    assert_eq!(port.name.as_deref(), Some("http"));
    let env = c.env.as_ref().expect("env");
    assert_eq!(env[0].name, "PORT");
    assert_eq!(env[0].value.as_deref(), Some("9000"));
}

#[test]
fn args_are_passed_without_a_command() {
    let d = build(&full());
    assert_eq!(
        container(&d).args,
        Some(vec!["--greeting".into(), "hi".into()])
    );
    assert_eq!(container(&build(&minimal())).args, None);
}

#[test]
fn env_keeps_values_and_value_from_in_order() {
    let d = build(&full());
    let env = container(&d).env.clone().expect("env");
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["PORT", "MODE", "COLOR", "TOKEN"]);
    assert_eq!(env[1].value.as_deref(), Some("prod"));
    let color = env[2]
        .value_from
        .as_ref()
        .and_then(|v| v.config_map_key_ref.as_ref())
        .expect("cm ref");
    assert_eq!(
        (color.name.as_str(), color.key.as_str()),
        ("settings", "color")
    );
    let token = env[3]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    assert_eq!(
        (token.name.as_str(), token.key.as_str(), token.optional),
        ("creds", "token", Some(true))
    );
}

#[test]
fn a_user_port_variable_does_not_shadow_the_operators() {
    let mut app = minimal();
    app.spec.env.push(EnvVar {
        name: "PORT".into(),
        value: Some("1".into()),
        value_from: None,
    });
    let env = container(&build(&app)).env.clone().expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].value.as_deref(), Some("8080"));
}

#[test]
fn resources_map_to_limits_and_requests() {
    let d = build(&full());
    let resources = container(&d).resources.clone().expect("resources");
    let limits = resources.limits.expect("limits");
    let requests = resources.requests.expect("requests");
    assert_eq!(limits.get("memory"), Some(&Quantity("64Mi".into())));
    assert_eq!(limits.get("cpu"), Some(&Quantity("500m".into())));
    assert_eq!(requests.get("memory"), Some(&Quantity("32Mi".into())));
    assert_eq!(requests.get("cpu"), Some(&Quantity("100m".into())));
    assert_eq!(container(&build(&minimal())).resources, None);
}

#[test]
fn timeout_concurrency_and_outbound_hosts_become_shim_annotations() {
    let annotations = pod_annotations(&build(&full()));
    assert_eq!(
        annotations
            .get(ANNOTATION_REQUEST_TIMEOUT)
            .map(String::as_str),
        Some("30s")
    );
    // The operator's value wins over the 999 the user put in podAnnotations.
    assert_eq!(
        annotations
            .get(ANNOTATION_MAX_CONCURRENCY)
            .map(String::as_str),
        Some("16")
    );
    assert_eq!(
        annotations
            .get(ANNOTATION_ALLOWED_OUTBOUND_HOSTS)
            .map(String::as_str),
        Some("api.example.com,*.example.org:8443")
    );
    assert_eq!(annotations.get("team").map(String::as_str), Some("edge"));

    let annotations = pod_annotations(&build(&minimal()));
    assert_eq!(annotations.get(ANNOTATION_REQUEST_TIMEOUT), None);
    assert_eq!(annotations.get(ANNOTATION_MAX_CONCURRENCY), None);
    // Present and empty: no outbound hosts, also after a user removed the last one.
    assert_eq!(
        annotations
            .get(ANNOTATION_ALLOWED_OUTBOUND_HOSTS)
            .map(String::as_str),
        Some("")
    );
}

#[test]
fn volumes_and_mounts_map_each_source() {
    let d = build(&full());
    let volumes = pod_spec(&d).volumes.clone().expect("volumes");
    assert_eq!(
        volumes[0].config_map.as_ref().map(|c| c.name.as_str()),
        Some("settings")
    );
    assert_eq!(
        volumes[1]
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("creds")
    );
    assert_eq!(
        volumes[2]
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.clone()),
        Some(Quantity("16Mi".into()))
    );
    assert_eq!(
        volumes[3]
            .persistent_volume_claim
            .as_ref()
            .map(|p| p.claim_name.as_str()),
        Some("hello-data")
    );
    let mounts = container(&d).volume_mounts.clone().expect("mounts");
    assert_eq!(
        (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
        ("config", "/etc/hello")
    );
    assert_eq!(mounts[0].read_only, Some(true));
    assert_eq!(mounts[1].read_only, None);
}

#[test]
fn probes_get_their_path_on_the_named_port() {
    let d = build(&full());
    let readiness = container(&d).readiness_probe.clone().expect("readiness");
    let get = readiness.http_get.expect("httpGet");
    assert_eq!(get.path.as_deref(), Some("/ready"));
    assert_eq!(get.port, IntOrString::String("http".into()));
    assert_eq!(readiness.initial_delay_seconds, Some(1));
    assert_eq!(readiness.period_seconds, Some(5));
    assert_eq!(readiness.failure_threshold, Some(2));
    let liveness = container(&d).liveness_probe.clone().expect("liveness");
    assert_eq!(
        liveness.http_get.and_then(|g| g.path).as_deref(),
        Some("/healthz")
    );
    assert_eq!(liveness.period_seconds, None);
    assert_eq!(container(&build(&minimal())).liveness_probe, None);
}

#[test]
fn scheduling_fields_pass_through() {
    let app = full();
    let d = build(&app);
    let pod = pod_spec(&d);
    assert_eq!(pod.node_selector.as_ref(), Some(&app.spec.node_selector));
    assert_eq!(pod.tolerations.as_ref(), Some(&app.spec.tolerations));
    assert_eq!(pod.affinity.as_ref(), app.spec.affinity.as_ref());
    let minimal = build(&minimal());
    assert_eq!(pod_spec(&minimal).node_selector, None);
    assert_eq!(pod_spec(&minimal).tolerations, None);
}

#[test]
fn pull_secrets_and_service_account_pass_through() {
    let d = build(&full());
    let pod = pod_spec(&d);
    let secrets = pod.image_pull_secrets.clone().expect("pull secrets");
    assert_eq!(secrets[0].name, "regcred");
    assert_eq!(pod.service_account_name.as_deref(), Some("hello-sa"));
}

#[test]
fn service_maps_port_80_to_the_app_port_with_user_metadata() {
    let s = service(&full()).expect("service");
    let spec = s.spec.as_ref().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.as_ref().expect("ports")[0];
    assert_eq!(port.port, 80);
    assert_eq!(port.target_port, Some(IntOrString::Int(9000)));
    assert_eq!(spec.selector, Some(selector_labels(&full())));
    let labels = s.metadata.labels.clone().expect("labels");
    assert_eq!(labels.get("exposed").map(String::as_str), Some("yes"));
    assert_eq!(
        labels.get(LABEL_MANAGED_BY).map(String::as_str),
        Some("feather-operator")
    );
    let annotations = s.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations.get("lb").map(String::as_str), Some("internal"));
    assert!(annotations.contains_key(ANNOTATION_SPEC_HASH));
    assert_eq!(
        service_url("hello", "demo"),
        "http://hello.demo.svc.cluster.local"
    );
}

#[test]
fn spec_hash_is_stable_and_changes_with_the_spec() {
    let first = build(&full());
    let again = build(&full());
    assert!(spec_hash(&first).is_some());
    assert_eq!(spec_hash(&first), spec_hash(&again));
    let mut changed = full();
    changed.spec.image = "registry.local:5000/hello:2.0".into();
    assert_ne!(spec_hash(&first), spec_hash(&build(&changed)));
    // Status and generation are not part of the children: they must not change the hash.
    let mut regenerated = full();
    regenerated.metadata.generation = Some(99);
    assert_eq!(spec_hash(&first), spec_hash(&build(&regenerated)));
}

/// Golden snapshot of everything built from [`full`]. Regenerate with
/// `FEATHER_UPDATE_GOLDEN=1 cargo test -p feather-operator --lib builders`.
#[test]
fn golden_snapshot_of_the_full_app() {
    let mut app = full();
    let mut objects = vec![
        serde_yaml::to_string(&build(&app)).expect("yaml"),
        serde_yaml::to_string(&service(&app).expect("service")).expect("yaml"),
    ];
    app.spec.autoscaling = Some(Autoscaling {
        min_replicas: 2,
        max_replicas: 10,
        target_cpu_utilization_percentage: 60,
    });
    objects
        .push(serde_yaml::to_string(&horizontal_pod_autoscaler(&app).expect("hpa")).expect("yaml"));
    let actual = objects.join("---\n");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/builders/testdata/full-app.yaml");
    if std::env::var_os("FEATHER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs from the built objects (set FEATHER_UPDATE_GOLDEN=1 to accept):\n{actual}",
        path.display()
    );
}
