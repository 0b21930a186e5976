//! Wasm apps as OCI artifacts, in the layout of the CNCF "Wasm OCI Artifact" format that the
//! shim reads: one `application/wasm` layer and a config of media type
//! `application/vnd.wasm.config.v0+json`.

use serde::Serialize;
use sha2::{Digest, Sha256};

pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// What a wasm binary's preamble says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (WASI preview 1 command or reactor).
    Module,
    /// A component (WASI preview 2: `wasi:cli/run`, `wasi:http/incoming-handler`).
    Component,
}

impl WasmKind {
    /// The `os` of the artifact config: `wasip1` for modules, `wasip2` for components.
    pub fn os(self) -> &'static str {
        match self {
            Self::Module => "wasip1",
            Self::Component => "wasip2",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WasmError {
    #[error("{name}: not a wasm binary (it does not start with the \\0asm magic)")]
    NotWasm { name: String },
    #[error(
        "{name}: unknown wasm version/layer field {found:02x?} (expected a module or a component)"
    )]
    UnknownVersion { name: String, found: [u8; 4] },
}

/// Reads the 8-byte preamble: magic `\0asm`, then version 1 for modules, or version 0x0d with
/// layer 1 for components.
pub fn detect_kind(name: &str, bytes: &[u8]) -> Result<WasmKind, WasmError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(WasmError::NotWasm {
            name: name.to_string(),
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[4..8]);
    match version {
        [1, 0, 0, 0] => Ok(WasmKind::Module),
        [0x0d, 0, 1, 0] => Ok(WasmKind::Component),
        found => Err(WasmError::UnknownVersion {
            name: name.to_string(),
            found,
        }),
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// argv[0] of the wasm program. Kubernetes' CRI refuses a container whose image names no command
/// ("failed to generate spec: no command specified"), so the artifact carries one, in the
/// place an image config keeps it; the shim reads the wasm from the layer, not from this path.
pub const DEFAULT_ENTRYPOINT: &str = "/app.wasm";

/// The config blob of a wasm artifact.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    pub architecture: &'static str,
    pub os: &'static str,
    pub layer_digests: Vec<String>,
    /// Image-config fields containerd's CRI reads (only `Entrypoint`).
    pub config: RuntimeConfig,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RuntimeConfig {
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
}

/// A wasm artifact ready to push: the config JSON and the layer bytes.
#[derive(Debug)]
pub struct WasmArtifact {
    pub kind: WasmKind,
    pub config_json: Vec<u8>,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

pub fn build(name: &str, wasm: Vec<u8>) -> anyhow::Result<WasmArtifact> {
    let kind = detect_kind(name, &wasm)?;
    let layer_digest = sha256_digest(&wasm);
    let config = WasmConfig {
        architecture: "wasm",
        os: kind.os(),
        layer_digests: vec![layer_digest.clone()],
        config: RuntimeConfig {
            entrypoint: vec![DEFAULT_ENTRYPOINT.to_string()],
        },
    };
    Ok(WasmArtifact {
        kind,
        config_json: serde_json::to_vec(&config)?,
        layer: wasm,
        layer_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn modules_and_components_are_told_apart_by_their_preamble() {
        assert_eq!(detect_kind("m", MODULE), Ok(WasmKind::Module));
        assert_eq!(detect_kind("c", COMPONENT), Ok(WasmKind::Component));
    }

    #[test]
    fn non_wasm_input_is_refused_with_its_name() {
        let err = detect_kind("app.tar", b"ustar\0\0\0\0\0").expect_err("not wasm");
        assert_eq!(
            err.to_string(),
            "app.tar: not a wasm binary (it does not start with the \\0asm magic)"
        );
        assert!(detect_kind("short.wasm", b"\0asm").is_err());
        let err = detect_kind("v2.wasm", b"\0asm\x02\0\0\0").expect_err("unknown version");
        assert!(matches!(err, WasmError::UnknownVersion { .. }), "{err}");
    }

    #[test]
    fn the_config_names_the_layer_digest_and_the_wasi_flavour() {
        let artifact = build("hello.wasm", COMPONENT.to_vec()).expect("artifact");
        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config_json).expect("config is JSON");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["config"]["Entrypoint"][0], "/app.wasm");
        assert_eq!(
            config["layerDigests"][0],
            // sha256 of the 8 preamble bytes above.
            sha256_digest(COMPONENT).as_str()
        );
        assert_eq!(artifact.layer, COMPONENT);
        let module = build("job.wasm", MODULE.to_vec()).expect("artifact");
        assert_eq!(module.kind, WasmKind::Module);
        assert!(
            String::from_utf8(module.config_json)
                .expect("utf8")
                .contains("\"os\":\"wasip1\"")
        );
    }
}
