//! Pure functions from a `WasmApp` to the objects that run it. No I/O here: the reconciler
//! applies what these return, and the unit tests check them field by field.

mod deployment;
mod service;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use deployment::{
    DEFAULT_DRAIN_SECONDS, DRAIN_MARGIN_SECONDS, MAX_SURGE, PRESTOP_SLEEP_SECONDS, deployment,
    termination_grace_seconds,
};
pub use service::{horizontal_pod_autoscaler, service};

use crate::{Error, FIELD_MANAGER, Result, WasmApp};

/// RuntimeClass (and containerd handler) that runs wasm pods.
pub const RUNTIME_CLASS: &str = "feather";
/// Name of the single container of an app's pods.
pub const CONTAINER_NAME: &str = "app";
/// Name of the container port, referenced by the Service and the probes.
pub const PORT_NAME: &str = "http";
/// Port the Service exposes.
pub const SERVICE_PORT: i32 = 80;
/// Environment variable the shim reads the listening port from.
pub const PORT_ENV: &str = "PORT";

/// Label with the app's name (part of the pod selector).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label naming the operator as manager (part of the pod selector).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Pod annotation the shim reads: per-request deadline (a duration such as `30s`).
pub const ANNOTATION_REQUEST_TIMEOUT: &str = "feather.dev/request-timeout";
/// Pod annotation the shim reads: most requests served at once by one pod.
pub const ANNOTATION_MAX_CONCURRENCY: &str = "feather.dev/max-concurrency";
/// Pod annotation the shim reads: comma-separated hosts outbound HTTP may reach; absent or
/// empty means none.
pub const ANNOTATION_ALLOWED_OUTBOUND_HOSTS: &str = "feather.dev/allowed-outbound-hosts";
/// Annotation on every child: hash of what the operator applied. A child whose hash matches the
/// desired one and that still has every field the operator sets ([`crate::drift`]) is not
/// applied again, which makes a no-op reconcile write nothing. The hash catches a field the
/// operator stopped setting (the field comparison alone cannot see a removal); the field
/// comparison catches hand edits (which leave the hash as it was).
pub const ANNOTATION_SPEC_HASH: &str = "feather.dev/spec-hash";
/// Annotation on the Deployment: `"true"` while an HPA owns its replica count, so the
/// reconciler knows to delete the HPA when autoscaling is turned off.
pub const ANNOTATION_AUTOSCALED: &str = "feather.dev/autoscaled";

/// Labels that select an app's pods. They never change for an app (a Deployment's selector
/// is immutable).
pub fn selector_labels(app: &WasmApp) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), app.name_any()),
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
    ])
}

/// The selector in string form, as the scale subresource wants it in `status.selector`.
pub fn selector_string(app: &WasmApp) -> String {
    selector_labels(app)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// In-cluster URL of the app's Service.
pub fn service_url(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc.cluster.local")
}

/// Merge user-supplied labels or annotations with the operator's own; the operator's win so a
/// user cannot break the selector or the shim's settings.
fn merged(
    user: &BTreeMap<String, String>,
    operator: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = user.clone();
    out.extend(operator);
    out
}

/// Metadata shared by every child: the app's name and namespace, the given labels and
/// annotations, and a controller owner reference so deleting the app garbage-collects it.
fn child_meta(
    app: &WasmApp,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(required_name(app)?),
        namespace: Some(required_namespace(app)?),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![owner_reference(app)?]),
        ..ObjectMeta::default()
    })
}

/// The controller owner reference pointing at the app.
pub fn owner_reference(app: &WasmApp) -> Result<OwnerReference> {
    app.controller_owner_ref(&())
        .ok_or_else(|| Error::MissingMetadata {
            name: app.name_any(),
            field: "uid",
        })
}

/// The app's name, or an error naming the missing field.
pub fn required_name(app: &WasmApp) -> Result<String> {
    app.meta().name.clone().ok_or(Error::MissingMetadata {
        name: String::new(),
        field: "name",
    })
}

/// The app's namespace, or an error naming the missing field.
pub fn required_namespace(app: &WasmApp) -> Result<String> {
    app.namespace().ok_or_else(|| Error::MissingMetadata {
        name: app.name_any(),
        field: "namespace",
    })
}

/// Stamp `obj` with [`ANNOTATION_SPEC_HASH`]: a hash of its serialized form before the stamp.
/// Serialization of the k8s-openapi types is deterministic (maps are BTreeMaps, fields in
/// declaration order), so the same app always yields the same hash.
pub fn with_spec_hash<K>(mut obj: K, app_name: &str) -> Result<K>
where
    K: Resource + Serialize,
{
    let bytes = serde_json::to_vec(&obj).map_err(|source| Error::Serialize {
        kind: "child object",
        name: app_name.to_string(),
        source,
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_SPEC_HASH.to_string(), digest[..16].to_string());
    Ok(obj)
}

/// The spec hash an object carries, if any.
pub fn spec_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()?
        .get(ANNOTATION_SPEC_HASH)
        .map(String::as_str)
}
