//! Finding a container's wasm: an OCI wasm artifact in containerd's content store, or a file in
//! the container's root filesystem named by `args[0]`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::grpc::{Containerd, GrpcError, NOT_FOUND};

/// Layer media types that carry a wasm module or component.
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];
/// Config media type of wasm OCI artifacts (CNCF wasm TAG spec).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
const INDEX_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, Deserialize)]
struct JsonDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<JsonPlatform>,
}

#[derive(Debug, Deserialize)]
struct JsonPlatform {
    #[serde(default)]
    architecture: String,
}

#[derive(Debug, Deserialize)]
struct JsonIndex {
    #[serde(default)]
    manifests: Vec<JsonDescriptor>,
}

#[derive(Debug, Deserialize)]
struct JsonManifest {
    config: JsonDescriptor,
    #[serde(default)]
    layers: Vec<JsonDescriptor>,
}

#[derive(Debug, Deserialize)]
struct JsonConfig {
    #[serde(default)]
    architecture: String,
}

/// Where the wasm bytes came from, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Artifact { image: String, layer_digest: String },
    Rootfs { path: PathBuf },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Artifact {
                image,
                layer_digest,
            } => write!(f, "image {image} layer {layer_digest}"),
            Origin::Rootfs { path } => write!(f, "rootfs file {}", path.display()),
        }
    }
}

/// Looks the container's image up in containerd; returns the wasm layer when the image is an
/// OCI wasm artifact, `None` when the container has no image or the image is a regular one.
pub async fn artifact_wasm(
    containerd: &Containerd,
    container_id: &str,
    cri_image_name: Option<&str>,
) -> Result<Option<(Vec<u8>, Origin)>, String> {
    let mut image = match containerd.container_image(container_id).await {
        Ok(image) => image,
        Err(GrpcError::Status { code, .. }) if code == NOT_FOUND => String::new(),
        Err(e) => return Err(format!("container {container_id}: {e}")),
    };
    if image.is_empty() {
        image = cri_image_name.unwrap_or_default().to_string();
    }
    if image.is_empty() {
        return Ok(None);
    }
    let target = match containerd.image_target(&image).await {
        Ok(target) => target,
        // An image that is not in containerd's store (e.g. a CRI annotation naming a ref that was
        // resolved to another name) is not an artifact we can read: fall back to the rootfs.
        Err(GrpcError::Status { code, .. }) if code == NOT_FOUND => return Ok(None),
        Err(e) => return Err(format!("image {image}: {e}")),
    };
    let mut manifest_digest = target.digest.clone();
    if INDEX_MEDIA_TYPES.contains(&target.media_type.as_str()) {
        let index: JsonIndex = read_json(containerd, &image, &target.digest, "index").await?;
        let chosen = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == "wasm")
            })
            .or_else(|| index.manifests.first())
            .ok_or_else(|| format!("image {image}: index {} lists no manifests", target.digest))?;
        manifest_digest = chosen.digest.clone();
    }
    let manifest: JsonManifest =
        read_json(containerd, &image, &manifest_digest, "manifest").await?;
    let is_wasm_config = manifest.config.media_type == WASM_CONFIG_MEDIA_TYPE || {
        let config: JsonConfig =
            read_json(containerd, &image, &manifest.config.digest, "config").await?;
        config.architecture == "wasm"
    };
    if !is_wasm_config {
        return Ok(None);
    }
    let layer = manifest
        .layers
        .iter()
        .find(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .ok_or_else(|| {
            let found: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            format!(
                "image {image}: a wasm artifact without a wasm layer (layer media types {found:?}, \
                 expected one of {WASM_LAYER_MEDIA_TYPES:?})"
            )
        })?;
    let bytes = containerd
        .read_blob(&layer.digest)
        .await
        .map_err(|e| format!("image {image}: read layer {}: {e}", layer.digest))?;
    Ok(Some((
        bytes,
        Origin::Artifact {
            image,
            layer_digest: layer.digest.clone(),
        },
    )))
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    containerd: &Containerd,
    image: &str,
    digest: &str,
    what: &str,
) -> Result<T, String> {
    let blob = containerd
        .read_blob(digest)
        .await
        .map_err(|e| format!("image {image}: read {what} {digest}: {e}"))?;
    serde_json::from_slice(&blob).map_err(|e| format!("image {image}: {what} {digest}: {e}"))
}

/// Resolves `args[0]` inside `rootfs` without letting `..` or absolute symlinks escape it.
pub fn rootfs_wasm_path(rootfs: &Path, arg0: &str) -> Result<PathBuf, String> {
    if arg0.is_empty() {
        return Err("process.args[0] is empty: it must name the wasm file in the image".into());
    }
    let mut path = rootfs.to_path_buf();
    for component in Path::new(arg0).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "process.args[0] {arg0:?} leaves the root filesystem"
                ));
            }
        }
    }
    Ok(path)
}

/// Reads the wasm file named by `args[0]` from the root filesystem.
pub fn rootfs_wasm(rootfs: &Path, arg0: &str) -> Result<(Vec<u8>, Origin), String> {
    let path = rootfs_wasm_path(rootfs, arg0)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("process.args[0] {arg0:?}: read {}: {e}", path.display()))?;
    Ok((bytes, Origin::Rootfs { path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args0_is_resolved_inside_the_rootfs() {
        let root = Path::new("/run/c/rootfs");
        assert_eq!(
            rootfs_wasm_path(root, "/app.wasm").expect("ok"),
            PathBuf::from("/run/c/rootfs/app.wasm")
        );
        assert_eq!(
            rootfs_wasm_path(root, "bin/./x.wasm").expect("ok"),
            PathBuf::from("/run/c/rootfs/bin/x.wasm")
        );
        assert!(rootfs_wasm_path(root, "/../etc/passwd").is_err());
        assert!(rootfs_wasm_path(root, "").is_err());
    }

    #[test]
    fn missing_file_names_arg0_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = rootfs_wasm(dir.path(), "/missing.wasm").expect_err("must fail");
        assert!(
            err.contains("/missing.wasm") && err.contains("No such file"),
            "{err}"
        );
    }

    #[test]
    fn manifest_json_shapes_parse() {
        let manifest: JsonManifest = serde_json::from_str(
            r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:c","size":2},
                "layers":[{"mediaType":"application/wasm","digest":"sha256:l","size":8}]}"#,
        )
        .expect("parses");
        assert_eq!(manifest.config.media_type, WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest.layers[0].digest, "sha256:l");
    }
}
