//! WasmApp → Deployment on the `feather` RuntimeClass.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar as CoreEnvVar,
    EnvVarSource as CoreEnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretVolumeSource, SleepAction, TCPSocketAction, Volume as CoreVolume,
    VolumeMount as CoreVolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ANNOTATION_ALLOWED_OUTBOUND_HOSTS, ANNOTATION_AUTOSCALED, ANNOTATION_MAX_CONCURRENCY,
    ANNOTATION_REQUEST_TIMEOUT, CONTAINER_NAME, PORT_ENV, PORT_NAME, RUNTIME_CLASS, child_meta,
    merged, required_name, selector_labels, with_spec_hash,
};
use crate::types::{EnvVar, HttpProbe, ResourceAmounts, Resources, Volume};
use crate::{Result, WasmApp};

/// Seconds a terminating pod keeps serving before it gets SIGTERM (`preStop` sleep), so the
/// endpoint controllers and kube-proxy take it out of the Service first.
pub const PRESTOP_SLEEP_SECONDS: i64 = 5;
/// How long the shim lets in-flight requests finish after SIGTERM when the app sets no
/// request timeout (the shim's own drain limit).
pub const DEFAULT_DRAIN_SECONDS: i64 = 30;
/// Slack on top of the drain budget before the kubelet sends SIGKILL.
pub const DRAIN_MARGIN_SECONDS: i64 = 5;
/// Readiness probe period when the app names no readiness path (a TCP check of the port).
pub const DEFAULT_READINESS_PERIOD_SECONDS: i32 = 2;
/// Most extra pods during a rollout; none of the old ones goes before a new one is ready.
pub const MAX_SURGE: &str = "25%";

/// The Deployment that runs `app`, stamped with its spec hash.
///
/// Rollouts lose no request: `maxUnavailable: 0` keeps every old pod until a new one is
/// ready (readiness from the app's HTTP path, else a TCP check of the port); a terminating pod
/// first sleeps [`PRESTOP_SLEEP_SECONDS`] in a `preStop` sleep action (run by the kubelet: a
/// wasm pod has no shell for `exec sleep`) while it leaves the Service's endpoints, then gets
/// SIGTERM, on which the shim drains in-flight requests; the grace period covers both.
///
/// Only `args` is set on the container, never `command`: the image's entrypoint (for images
/// built FROM scratch, `/app.wasm`) stays `args[0]` of the OCI process, which is how the shim
/// finds the wasm file.
pub fn deployment(app: &WasmApp) -> Result<Deployment> {
    let name = required_name(app)?;
    let spec = &app.spec;
    let autoscaled = spec.autoscaling.is_some();

    let mut annotations = BTreeMap::new();
    if autoscaled {
        annotations.insert(ANNOTATION_AUTOSCALED.to_string(), "true".to_string());
    }
    let metadata = child_meta(app, selector_labels(app), annotations)?;

    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(container_env(app)),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: spec.port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: spec.resources.as_ref().map(resource_requirements),
        readiness_probe: Some(
            spec.readiness_probe
                .as_ref()
                .map_or_else(tcp_readiness_probe, http_probe),
        ),
        liveness_probe: spec.liveness_probe.as_ref().map(http_probe),
        volume_mounts: (!spec.volume_mounts.is_empty()).then(|| {
            spec.volume_mounts
                .iter()
                .map(|mount| CoreVolumeMount {
                    name: mount.name.clone(),
                    mount_path: mount.mount_path.clone(),
                    read_only: mount.read_only.then_some(true),
                    ..CoreVolumeMount::default()
                })
                .collect()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRESTOP_SLEEP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        runtime_class_name: Some(RUNTIME_CLASS.to_string()),
        containers: vec![container],
        // Service links would put one set of env vars per Service in the namespace into the
        // guest's WASI environment: noise for a wasm app, and unbounded.
        enable_service_links: Some(false),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| {
            spec.image_pull_secrets
                .iter()
                .map(|secret| LocalObjectReference {
                    name: secret.clone(),
                })
                .collect()
        }),
        service_account_name: spec.service_account_name.clone(),
        volumes: (!spec.volumes.is_empty()).then(|| spec.volumes.iter().map(pod_volume).collect()),
        termination_grace_period_seconds: Some(termination_grace_seconds(app)),
        ..PodSpec::default()
    };

    let pod_annotations = merged(&spec.pod_annotations, shim_annotations(app));
    let deployment = Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            // With autoscaling the HPA owns the count: leaving the field out of our apply
            // gives up our ownership of it, so the two never fight.
            replicas: (!autoscaled).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(app)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String(MAX_SURGE.to_string())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(merged(&spec.pod_labels, selector_labels(app))),
                    annotations: (!pod_annotations.is_empty()).then_some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    with_spec_hash(deployment, &name)
}

/// The annotations the shim reads its per-pod settings from.
fn shim_annotations(app: &WasmApp) -> BTreeMap<String, String> {
    let spec = &app.spec;
    let mut annotations = BTreeMap::new();
    if let Some(timeout) = &spec.request_timeout {
        annotations.insert(ANNOTATION_REQUEST_TIMEOUT.to_string(), timeout.clone());
    }
    if let Some(concurrency) = spec.max_concurrency {
        annotations.insert(
            ANNOTATION_MAX_CONCURRENCY.to_string(),
            concurrency.to_string(),
        );
    }
    // Always written, so removing the last host from the app also reaches the pods.
    annotations.insert(
        ANNOTATION_ALLOWED_OUTBOUND_HOSTS.to_string(),
        spec.allowed_outbound_hosts.join(","),
    );
    annotations
}

/// `PORT` first (the shim listens on it), then the user's variables in order.
fn container_env(app: &WasmApp) -> Vec<CoreEnvVar> {
    let mut env = vec![CoreEnvVar {
        name: PORT_ENV.to_string(),
        value: Some(app.spec.port.to_string()),
        value_from: None,
    }];
    env.extend(
        app.spec
            .env
            .iter()
            .filter(|var| var.name != PORT_ENV)
            .map(core_env_var),
    );
    env
}

fn core_env_var(var: &EnvVar) -> CoreEnvVar {
    CoreEnvVar {
        name: var.name.clone(),
        value: var.value.clone(),
        value_from: var.value_from.as_ref().map(|source| CoreEnvVarSource {
            config_map_key_ref: source.config_map_key_ref.clone(),
            secret_key_ref: source.secret_key_ref.clone(),
            ..CoreEnvVarSource::default()
        }),
    }
}

fn resource_requirements(resources: &Resources) -> ResourceRequirements {
    fn amounts(amounts: &ResourceAmounts) -> Option<BTreeMap<String, Quantity>> {
        let mut out = BTreeMap::new();
        if let Some(cpu) = &amounts.cpu {
            out.insert("cpu".to_string(), Quantity(cpu.clone()));
        }
        if let Some(memory) = &amounts.memory {
            out.insert("memory".to_string(), Quantity(memory.clone()));
        }
        (!out.is_empty()).then_some(out)
    }
    ResourceRequirements {
        limits: resources.limits.as_ref().and_then(amounts),
        requests: resources.requests.as_ref().and_then(amounts),
        ..ResourceRequirements::default()
    }
}

fn http_probe(probe: &HttpProbe) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(probe.path.clone()),
            port: IntOrString::String(PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        failure_threshold: probe.failure_threshold,
        ..Probe::default()
    }
}

/// The readiness check of an app without a readiness path: the shim's listener accepts.
fn tcp_readiness_probe() -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.to_string()),
            host: None,
        }),
        period_seconds: Some(DEFAULT_READINESS_PERIOD_SECONDS),
        ..Probe::default()
    }
}

/// Grace period of a terminating pod: the `preStop` sleep, then the drain (the longest a
/// request may run, else the shim's drain limit), plus a margin.
pub fn termination_grace_seconds(app: &WasmApp) -> i64 {
    let drain = app
        .spec
        .request_timeout
        .as_deref()
        .and_then(duration_seconds)
        .unwrap_or(DEFAULT_DRAIN_SECONDS);
    PRESTOP_SLEEP_SECONDS + drain + DRAIN_MARGIN_SECONDS
}

/// Whole seconds (rounded up, at least 1) of a duration the CRD accepts for
/// `spec.requestTimeout`: a number with one unit of `ms`, `s`, `m` or `h`. Capped at one
/// hour.
fn duration_seconds(text: &str) -> Option<i64> {
    let (number, unit) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .into_iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, unit)))?;
    let seconds = number.parse::<f64>().ok()? * unit;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    // In range after the clamp, so the cast cannot truncate.
    Some(seconds.ceil().clamp(1.0, 3600.0) as i64)
}

fn pod_volume(volume: &Volume) -> CoreVolume {
    CoreVolume {
        name: volume.name.clone(),
        config_map: volume
            .config_map
            .as_ref()
            .map(|name| ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
        secret: volume.secret.as_ref().map(|name| SecretVolumeSource {
            secret_name: Some(name.clone()),
            ..SecretVolumeSource::default()
        }),
        empty_dir: volume.empty_dir.as_ref().map(|dir| EmptyDirVolumeSource {
            size_limit: dir.size_limit.clone().map(Quantity),
            ..EmptyDirVolumeSource::default()
        }),
        persistent_volume_claim: volume.persistent_volume_claim.as_ref().map(|claim| {
            PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: None,
            }
        }),
        ..CoreVolume::default()
    }
}
