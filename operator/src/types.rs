//! The `WasmApp` custom resource (`feather.dev/v1alpha1`).
//!
//! Every doc comment on a field becomes the `description` in the CRD schema, which is what
//! `kubectl explain wasmapp.spec.<field>` prints: write them for users, not for Rust readers.
//! Cross-field rules are CEL `x-kubernetes-validations`, enforced by the apiserver at admission
//! (no webhook); each message names the field it is about.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ConfigMapKeySelector, SecretKeySelector, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Group of the CRD.
pub const GROUP: &str = "feather.dev";
/// Version of the CRD.
pub const VERSION: &str = "v1alpha1";
/// Name of the CRD object (`<plural>.<group>`).
pub const CRD_NAME: &str = "wasmapps.feather.dev";

/// Default port the app listens on when `spec.port` is not set.
pub const DEFAULT_PORT: i32 = 8080;

fn default_replicas() -> i32 {
    1
}

fn default_port() -> i32 {
    DEFAULT_PORT
}

fn default_min_replicas() -> i32 {
    1
}

fn default_target_cpu() -> i32 {
    80
}

/// A WebAssembly app run by Featherweight: the operator turns it into a Deployment on the
/// `feather` RuntimeClass, a ClusterIP Service and, when autoscaling is set, an HPA.
// Each printcolumn(...) group repeats keys such as `type_`; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "feather.dev",
    version = "v1alpha1",
    kind = "WasmApp",
    plural = "wasmapps",
    singular = "wasmapp",
    shortname = "wa",
    category = "feather",
    namespaced,
    status = "WasmAppStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A WebAssembly app run by Featherweight: a Deployment on the feather RuntimeClass, a ClusterIP Service and optionally an HPA.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether every wanted replica is ready",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        description = "Ready replicas",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        description = "The wasm image",
        json_path = ".spec.image"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        description = "In-cluster URL of the app's Service",
        json_path = ".status.url"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))")
        .message("spec.volumeMounts[].name must name a volume listed in spec.volumes"),
    validation = Rule::new("!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))")
        .message("spec.volumes[].name must be unique"),
    validation = Rule::new("!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))")
        .message("spec.env[].name must be unique")
)]
pub struct WasmAppSpec {
    /// OCI reference of the wasm app: an OCI wasm artifact or an image built FROM scratch that
    /// holds /app.wasm (for example registry.local:5000/hello:1.0). Required.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// Number of pods to run. Ignored while spec.autoscaling is set (the HPA decides); this is
    /// the field `kubectl scale wasmapp` changes. Defaults to 1.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.replicas must be 0 or more"))]
    pub replicas: i32,

    /// TCP port the app serves HTTP on inside the pod (1-65535). The shim reads it from the
    /// PORT environment variable; the Service maps port 80 to it. Defaults to 8080.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("spec.port must be between 1 and 65535"))]
    pub port: i32,

    /// Arguments passed to the wasm program (WASI argv after the program name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Environment variables of the wasm program, each a literal value or taken from a
    /// ConfigMap or Secret key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,

    /// CPU and memory of each pod. limits.memory is also the memory limit of every wasm
    /// instance (each request runs in a fresh instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Longest time one HTTP request may run (CPU deadline via epochs), as a duration such as
    /// "30s" or "500ms". The request is ended with 503 when it runs out; the pod keeps serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(ms|s|m|h)$') && duration(self) > duration('0s')")
        .message("spec.requestTimeout must be a positive duration such as 30s or 500ms"))]
    pub request_timeout: Option<String>,

    /// Most HTTP requests one pod serves at the same time; more wait in line. Unset means no
    /// limit beyond memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.maxConcurrency must be at least 1"))]
    pub max_concurrency: Option<i32>,

    /// Hosts the app may call over outbound HTTP, as host or host:port (for example
    /// api.example.com or "*.example.com"). Empty means no outbound network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new("self.all(h, h.size() > 0 && h.size() <= 253 && !h.contains(',') && !h.contains(' '))")
        .message("spec.allowedOutboundHosts entries must be non-empty host or host:port values without commas or spaces"))]
    pub allowed_outbound_hosts: Vec<String>,

    /// Volumes the pod gets. Mounted ones become WASI preopened directories of the program.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<Volume>,

    /// Where volumes appear inside the wasm program (WASI preopens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volume_mounts: Vec<VolumeMount>,

    /// HTTP readiness check: the pod gets traffic only while GET <path> on spec.port answers
    /// 2xx/3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<HttpProbe>,

    /// HTTP liveness check: the container is restarted when GET <path> on spec.port fails
    /// failureThreshold times in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<HttpProbe>,

    /// Horizontal autoscaling on CPU. When set, an autoscaling/v2 HorizontalPodAutoscaler owns
    /// the replica count and spec.replicas is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Node labels the pods require, in addition to the wasm node pool the feather
    /// RuntimeClass selects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate, in addition to those of the feather RuntimeClass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// Node and pod (anti-)affinity of the pods, as in a Pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Names of Secrets (type kubernetes.io/dockerconfigjson) used to pull spec.image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub image_pull_secrets: Vec<String>,

    /// ServiceAccount the pods run as. Defaults to the namespace's "default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Extra annotations put on every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Extra labels put on every pod (the app.kubernetes.io/name and managed-by labels are
    /// always set by the operator and win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations put on the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,

    /// Extra labels put on the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_labels: BTreeMap<String, String>,
}

impl Default for WasmAppSpec {
    /// The spec an empty manifest with only `image` gets after the schema defaults apply.
    fn default() -> Self {
        Self {
            image: String::new(),
            replicas: default_replicas(),
            port: default_port(),
            args: Vec::new(),
            env: Vec::new(),
            resources: None,
            request_timeout: None,
            max_concurrency: None,
            allowed_outbound_hosts: Vec::new(),
            volumes: Vec::new(),
            volume_mounts: Vec::new(),
            readiness_probe: None,
            liveness_probe: None,
            autoscaling: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            image_pull_secrets: Vec::new(),
            service_account_name: None,
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            service_annotations: BTreeMap::new(),
            service_labels: BTreeMap::new(),
        }
    }
}

/// One environment variable: exactly one of value or valueFrom.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)")
    .message("spec.env[]: set exactly one of value or valueFrom"))]
pub struct EnvVar {
    /// Name of the variable.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Take the value from a ConfigMap or Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from: exactly one of configMapKeyRef or
/// secretKeyRef.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)")
    .message("spec.env[].valueFrom: set exactly one of configMapKeyRef or secretKeyRef"))]
pub struct EnvVarSource {
    /// A key of a ConfigMap in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
    /// A key of a Secret in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// CPU and memory requests and limits of each pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.requests) || !has(self.requests.memory) || !has(self.limits) || !has(self.limits.memory) || !isQuantity(self.requests.memory) || !isQuantity(self.limits.memory) || quantity(self.requests.memory).compareTo(quantity(self.limits.memory)) <= 0")
    .message("spec.resources.requests.memory must not exceed spec.resources.limits.memory"))]
#[x_kube(validation = Rule::new("!has(self.requests) || !has(self.requests.cpu) || !has(self.limits) || !has(self.limits.cpu) || !isQuantity(self.requests.cpu) || !isQuantity(self.limits.cpu) || quantity(self.requests.cpu).compareTo(quantity(self.limits.cpu)) <= 0")
    .message("spec.resources.requests.cpu must not exceed spec.resources.limits.cpu"))]
pub struct Resources {
    /// Most the pod may use. limits.memory is also each wasm instance's memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
    /// What the scheduler reserves for the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
}

/// Amounts of CPU and memory as Kubernetes quantities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU as a quantity, for example 100m or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))")
        .message("spec.resources cpu must be a positive Kubernetes quantity such as 100m or 1"))]
    pub cpu: Option<String>,
    /// Memory as a quantity, for example 64Mi or 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))")
        .message("spec.resources memory must be a positive Kubernetes quantity such as 64Mi or 1Gi"))]
    pub memory: Option<String>,
}

/// A volume of the pod. Set exactly one source: configMap, secret, emptyDir or
/// persistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.configMap), has(self.secret), has(self.emptyDir), has(self.persistentVolumeClaim)].filter(x, x).size() == 1")
    .message("spec.volumes[]: set exactly one of configMap, secret, emptyDir or persistentVolumeClaim"))]
pub struct Volume {
    /// Name of the volume, referenced by spec.volumeMounts[].name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Name of a ConfigMap whose keys become files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Name of a Secret whose keys become files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A scratch directory that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// Name of a PersistentVolumeClaim in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
}

/// A scratch directory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Largest size of the directory, as a quantity such as 64Mi. Unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)")
        .message("spec.volumes[].emptyDir.sizeLimit must be a Kubernetes quantity such as 64Mi"))]
    pub size_limit: Option<String>,
}

/// Where a volume appears in the wasm program's filesystem (a WASI preopen).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name of a volume in spec.volumes.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Absolute path the program sees the volume at.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.volumeMounts[].mountPath must be an absolute path"))]
    pub mount_path: String,
    /// Mount read-only (the preopen gets no write rights). Defaults to false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// An HTTP GET check against spec.port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Path to GET, for example /healthz.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("probe path must start with /"))]
    pub path: String,
    /// Seconds after the container starts before the first check. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("probe initialDelaySeconds must be 0 or more"))]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between checks. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("probe periodSeconds must be at least 1"))]
    pub period_seconds: Option<i32>,
    /// Failed checks in a row before the probe counts as failed. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("probe failureThreshold must be at least 1"))]
    pub failure_threshold: Option<i32>,
}

/// Horizontal autoscaling bounds and target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// Fewest pods. Defaults to 1.
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,
    /// Most pods. Required.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.maxReplicas must be at least 1"))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the CPU request, the autoscaler aims for. Defaults to 80.
    #[serde(
        default = "default_target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("spec.autoscaling.targetCPUUtilizationPercentage must be between 1 and 1000"))]
    pub target_cpu_utilization_percentage: i32,
}

/// What the operator last saw of the app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WasmAppStatus {
    /// metadata.generation of the WasmApp this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist for the app (from its Deployment).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Ready, Progressing and Degraded, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// In-cluster URL of the app's Service, http://<name>.<namespace>.svc.cluster.local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Label selector of the app's pods in string form (used by the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
