//! Builds OCI image-layout tarballs for `ctr images import`: a wasm artifact (non-tar wasm
//! layer) and a minimal image usable as the CRI pod sandbox image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

struct Blob {
    digest: String,
    size: usize,
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Blob {
    let hex = hex::encode(Sha256::digest(bytes));
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).expect("blobs dir");
    fs::write(dir.join(&hex), bytes).expect("write blob");
    Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len(),
    }
}

fn finish_layout(
    layout: &Path,
    manifest: &serde_json::Value,
    name: &str,
    platform: serde_json::Value,
) -> PathBuf {
    let manifest_bytes = serde_json::to_vec(manifest).expect("manifest json");
    let manifest_blob = write_blob(layout, &manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "platform": platform,
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest"),
            }
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index.json");
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let tar = layout.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of {}", layout.display());
    tar
}

/// A wasm OCI artifact: OCI config with `architecture: wasm`, one `application/wasm` layer
/// (the module itself, not a tarball). Platform `wasip1/wasm`.
pub fn wasm_artifact_tar(dir: &Path, name: &str, wasm: &[u8]) -> PathBuf {
    let layout = dir.join("artifact-layout");
    let layer = write_blob(&layout, wasm);
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {"Entrypoint": ["/app.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config = write_blob(&layout, &serde_json::to_vec(&config).expect("config"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/wasm", "digest": layer.digest, "size": layer.size}]
    });
    finish_layout(
        &layout,
        &manifest,
        name,
        serde_json::json!({"architecture": "wasm", "os": "wasip1"}),
    )
}

/// A linux/amd64 image with one tar layer holding `files` (path, bytes), `Entrypoint` set.
pub fn rootfs_image_tar(
    dir: &Path,
    name: &str,
    entrypoint: &str,
    files: &[(&str, &[u8])],
) -> PathBuf {
    let tag = name.replace(['/', ':', '.'], "-");
    let layout = dir.join(format!("image-{tag}"));
    let content = dir.join(format!("content-{tag}"));
    fs::create_dir_all(&content).expect("content dir");
    for (path, bytes) in files {
        let target = content.join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().expect("parent")).expect("dirs");
        fs::write(&target, bytes).expect("write file");
    }
    let layer_tar = dir.join(format!("layer-{tag}.tar"));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&content)
        .arg("-cf")
        .arg(&layer_tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let layer_bytes = fs::read(&layer_tar).expect("layer");
    let layer = write_blob(&layout, &layer_bytes);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [entrypoint]},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]}
    });
    let config = write_blob(&layout, &serde_json::to_vec(&config).expect("config"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest, "size": layer.size}]
    });
    finish_layout(
        &layout,
        &manifest,
        name,
        serde_json::json!({"architecture": "amd64", "os": "linux"}),
    )
}
