//! The reconciler's error type. Every variant names the object it is about, so a log line or
//! an event says what failed where.

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Kube {
        /// What the operator tried (get, apply, delete, patch status).
        action: &'static str,
        /// Kind of the object the call was about.
        kind: &'static str,
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The client's error (boxed: it is large and errors are the cold path).
        #[source]
        source: Box<kube::Error>,
    },

    /// The WasmApp lacks a field the API server always sets (namespace, name, uid).
    #[error("WasmApp {name}: metadata.{field} is missing")]
    MissingMetadata {
        /// Name of the app (may be empty when the name itself is missing).
        name: String,
        /// The missing metadata field.
        field: &'static str,
    },

    /// A child object with the app's name exists but is not controlled by this WasmApp: the
    /// operator will not take it over.
    #[error(
        "{kind} {namespace}/{name} exists and is not owned by WasmApp {namespace}/{name}; rename the app or delete the {kind}"
    )]
    NotOwned {
        /// Kind of the foreign object.
        kind: &'static str,
        /// Namespace of both objects.
        namespace: String,
        /// Shared name.
        name: String,
    },

    /// A desired object could not be serialized (a bug: the types are plain data).
    #[error("serializing the desired {kind} of WasmApp {name}: {source}")]
    Serialize {
        /// Kind being serialized.
        kind: &'static str,
        /// Name of the app.
        name: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Short, bounded label for the `errors by kind` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { action, .. } => match *action {
                "get" => "kube_get",
                "apply" => "kube_apply",
                "delete" => "kube_delete",
                "patch status" => "kube_status",
                _ => "kube_other",
            },
            Error::MissingMetadata { .. } => "missing_metadata",
            Error::NotOwned { .. } => "not_owned",
            Error::Serialize { .. } => "serialize",
        }
    }
}

/// Result of the operator's fallible functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
