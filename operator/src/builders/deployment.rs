//! WasmApp → Deployment on the `feather` RuntimeClass.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar as CoreEnvVar,
    EnvVarSource as CoreEnvVarSource, HTTPGetAction, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretVolumeSource, Volume as CoreVolume, VolumeMount as CoreVolumeMount,
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

/// The Deployment that runs `app`, stamped with its spec hash.
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
        readiness_probe: spec.readiness_probe.as_ref().map(http_probe),
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
