//! What the shim reads from an OCI bundle's `config.json`: only the fields a wasm task uses.
//!
//! The spec is parsed into our own small structs rather than a full OCI model so that fields
//! we do not use (seccomp, capabilities, hooks...) can never make `create` fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// CRI marks the pod sandbox (pause) container with this annotation.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// CRI names the pod sandbox a container belongs to.
pub const CRI_SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// CRI puts the image reference of a container here (used to find OCI wasm artifacts).
pub const CRI_IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// Port an HTTP component listens on (the env var `PORT` wins over it).
pub const PORT_ANNOTATION: &str = "feather.dev/port";
/// Per-request deadline, a duration like `30s`, `500ms`, `2m`.
pub const REQUEST_TIMEOUT_ANNOTATION: &str = "feather.dev/request-timeout";
/// Maximum requests served at once by one container.
pub const MAX_CONCURRENCY_ANNOTATION: &str = "feather.dev/max-concurrency";
/// Comma-separated hosts the guest may reach with outbound HTTP.
pub const ALLOWED_OUTBOUND_HOSTS_ANNOTATION: &str = "feather.dev/allowed-outbound-hosts";
/// Port used when neither `PORT` nor the annotation say otherwise.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct RawSpec {
    #[serde(default)]
    process: Option<RawProcess>,
    #[serde(default)]
    root: Option<RawRoot>,
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<RawLinux>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProcess {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRoot {
    #[serde(default)]
    path: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawMount {
    destination: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLinux {
    #[serde(default)]
    namespaces: Vec<RawNamespace>,
    #[serde(default)]
    resources: Option<RawResources>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawResources {
    #[serde(default)]
    memory: Option<RawMemory>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMemory {
    #[serde(default)]
    limit: Option<i64>,
}

/// A host directory the guest may see (a WASI preopen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMount {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
}

/// The parts of the bundle spec a wasm task needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Root filesystem path as the spec names it, absolute (relative paths are bundle-relative).
    pub root_path: PathBuf,
    /// Bind mounts of host directories; kernel filesystems (proc, sysfs, ...) are not exposed.
    pub dir_mounts: Vec<DirMount>,
    pub annotations: HashMap<String, String>,
    /// The network namespace to bind listeners in; `None` means the shim's own namespace.
    pub netns_path: Option<PathBuf>,
    pub memory_limit_bytes: Option<u64>,
}

impl TaskSpec {
    /// Reads and validates `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Self, SpecError> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, bundle, &path)
    }

    /// Parses spec bytes; `path` is only used in error messages.
    pub fn parse(bytes: &[u8], bundle: &Path, path: &Path) -> Result<Self, SpecError> {
        let raw: RawSpec = serde_json::from_slice(bytes).map_err(|source| SpecError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let process = raw.process.unwrap_or_default();
        let mut env = Vec::with_capacity(process.env.len());
        for entry in &process.env {
            let (key, value) = entry.split_once('=').ok_or_else(|| SpecError::Invalid {
                path: path.to_path_buf(),
                field: "process.env",
                message: format!("entry {entry:?} is not KEY=VALUE"),
            })?;
            env.push((key.to_string(), value.to_string()));
        }
        let root = raw.root.map(|r| r.path).unwrap_or_default();
        let root_path = if root.is_empty() {
            bundle.join("rootfs")
        } else if Path::new(&root).is_absolute() {
            PathBuf::from(root)
        } else {
            bundle.join(root)
        };
        let dir_mounts = raw.mounts.iter().filter_map(dir_mount).collect();
        let linux = raw.linux.unwrap_or_default();
        let netns_path = linux
            .namespaces
            .iter()
            .find(|ns| ns.kind == "network")
            .and_then(|ns| ns.path.as_ref())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let memory_limit_bytes = linux
            .resources
            .and_then(|r| r.memory)
            .and_then(|m| m.limit)
            .filter(|limit| *limit > 0)
            .map(|limit| limit as u64);
        Ok(Self {
            args: process.args,
            env,
            root_path,
            dir_mounts,
            annotations: raw.annotations,
            netns_path,
            memory_limit_bytes,
        })
    }

    /// The pod sandbox (pause) container runs nothing; the shim holds it until killed.
    pub fn is_sandbox(&self) -> bool {
        self.annotations
            .get(CONTAINER_TYPE_ANNOTATION)
            .is_some_and(|v| v == "sandbox")
    }

    fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The HTTP port: env `PORT`, else annotation `feather.dev/port`, else 8080.
    pub fn http_port(&self) -> Result<u16, String> {
        if let Some(value) = self.env_value("PORT") {
            return value
                .parse()
                .map_err(|_| format!("env PORT={value:?} is not a port number"));
        }
        if let Some(value) = self.annotations.get(PORT_ANNOTATION) {
            return value.parse().map_err(|_| {
                format!("annotation {PORT_ANNOTATION}={value:?} is not a port number")
            });
        }
        Ok(DEFAULT_HTTP_PORT)
    }

    pub fn request_timeout(&self) -> Result<Option<Duration>, String> {
        self.annotations
            .get(REQUEST_TIMEOUT_ANNOTATION)
            .map(|v| {
                parse_duration(v).ok_or_else(|| {
                    format!(
                        "annotation {REQUEST_TIMEOUT_ANNOTATION}={v:?} is not a duration like 30s"
                    )
                })
            })
            .transpose()
    }

    pub fn max_concurrency(&self) -> Result<Option<u32>, String> {
        self.annotations
            .get(MAX_CONCURRENCY_ANNOTATION)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("annotation {MAX_CONCURRENCY_ANNOTATION}={v:?} is not a positive integer")
                    })
            })
            .transpose()
    }

    pub fn allowed_outbound_hosts(&self) -> Vec<String> {
        self.annotations
            .get(ALLOWED_OUTBOUND_HOSTS_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Keeps bind mounts of host paths; kernel and container-runtime filesystems are not preopened.
fn dir_mount(mount: &RawMount) -> Option<DirMount> {
    let is_bind = mount.kind.as_deref() == Some("bind")
        || mount.options.iter().any(|o| o == "bind" || o == "rbind");
    if !is_bind {
        return None;
    }
    let source = mount.source.as_ref()?;
    // Files CRI binds into every container (/etc/hosts, resolv.conf, termination log) are not
    // directories and have no meaning to a wasm guest; only directories become preopens.
    if !Path::new(source).is_dir() {
        return None;
    }
    Some(DirMount {
        host_path: PathBuf::from(source),
        guest_path: mount.destination.clone(),
        read_only: mount.options.iter().any(|o| o == "ro"),
    })
}

/// Parses Go-style durations used in annotations: `250ms`, `30s`, `2m`, `1h`, `1m30s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * seconds_per_unit);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> TaskSpec {
        let dir = tempfile::tempdir().expect("tempdir");
        TaskSpec::parse(json.as_bytes(), dir.path(), Path::new("config.json")).expect("valid spec")
    }

    #[test]
    fn reads_args_env_netns_memory_and_sandbox_flag() {
        let spec = parse(
            r#"{"process":{"args":["/app.wasm","x"],"env":["A=1","PORT=9000"]},
                "root":{"path":"/tmp/rootfs"},
                "annotations":{"io.kubernetes.cri.container-type":"sandbox"},
                "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}],
                         "resources":{"memory":{"limit":67108864}}}}"#,
        );
        assert_eq!(spec.args, vec!["/app.wasm", "x"]);
        assert_eq!(spec.env[0], ("A".to_string(), "1".to_string()));
        assert_eq!(spec.root_path, PathBuf::from("/tmp/rootfs"));
        assert_eq!(spec.netns_path, Some(PathBuf::from("/var/run/netns/cni-1")));
        assert_eq!(spec.memory_limit_bytes, Some(64 << 20));
        assert!(spec.is_sandbox());
        assert_eq!(spec.http_port(), Ok(9000));
    }

    #[test]
    fn relative_root_is_bundle_relative_and_port_defaults_to_8080() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = TaskSpec::parse(
            br#"{"root":{"path":"rootfs"},"annotations":{}}"#,
            dir.path(),
            Path::new("c"),
        )
        .expect("valid");
        assert_eq!(spec.root_path, dir.path().join("rootfs"));
        assert_eq!(spec.http_port(), Ok(DEFAULT_HTTP_PORT));
        assert!(!spec.is_sandbox());
        assert_eq!(spec.netns_path, None);
    }

    #[test]
    fn only_bind_mounted_directories_become_preopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().display().to_string();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "").expect("write");
        let json = format!(
            r#"{{"mounts":[
              {{"destination":"/proc","type":"proc","source":"proc"}},
              {{"destination":"/data","type":"bind","source":"{host}","options":["rbind","ro"]}},
              {{"destination":"/etc/hosts","type":"bind","source":"{}","options":["rbind"]}}]}}"#,
            file.display()
        );
        let spec = parse(&json);
        assert_eq!(
            spec.dir_mounts,
            vec![DirMount {
                host_path: dir.path().to_path_buf(),
                guest_path: "/data".into(),
                read_only: true
            }]
        );
    }

    #[test]
    fn operator_annotations_are_parsed_and_bad_values_name_the_annotation() {
        let spec = parse(
            r#"{"annotations":{"feather.dev/request-timeout":"1m30s","feather.dev/max-concurrency":"8",
                "feather.dev/allowed-outbound-hosts":"a.example, b.example:443,","feather.dev/port":"3000"}}"#,
        );
        assert_eq!(spec.request_timeout(), Ok(Some(Duration::from_secs(90))));
        assert_eq!(spec.max_concurrency(), Ok(Some(8)));
        assert_eq!(
            spec.allowed_outbound_hosts(),
            vec!["a.example", "b.example:443"]
        );
        assert_eq!(spec.http_port(), Ok(3000));

        let bad = parse(
            r#"{"annotations":{"feather.dev/max-concurrency":"-1","feather.dev/request-timeout":"soon"}}"#,
        );
        assert!(
            bad.max_concurrency()
                .expect_err("must fail")
                .contains("feather.dev/max-concurrency")
        );
        assert!(
            bad.request_timeout()
                .expect_err("must fail")
                .contains("feather.dev/request-timeout")
        );
    }

    #[test]
    fn env_without_equals_is_rejected_with_the_field_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = TaskSpec::parse(
            br#"{"process":{"env":["NOPE"]}}"#,
            dir.path(),
            Path::new("b/config.json"),
        )
        .expect_err("must fail")
        .to_string();
        assert!(err.contains("process.env") && err.contains("NOPE"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
