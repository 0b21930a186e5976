//! `feather push` and `feather image push` against a real OCI registry (distribution v3, the
//! harness's `registry` component), then the artifact pulled back and checked.
//! Starts the registry itself on a free loopback port with a temporary storage dir; SKIPs
//! loudly when the registry binary is not built (`e2e/components.sh build registry`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

struct Registry {
    child: Child,
    addr: String,
    _storage: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_binary() -> Option<PathBuf> {
    let cache = std::env::var("FEATHER_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/featherweight", env!("HOME")));
    let bin = PathBuf::from(cache).join("bin/registry");
    bin.exists().then_some(bin)
}

fn start_registry() -> Option<Registry> {
    let Some(bin) = registry_binary() else {
        eprintln!(
            "SKIP: no registry binary in $FEATHER_CACHE/bin (build it: e2e/components.sh build registry)"
        );
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let storage = tempfile::tempdir().expect("tempdir");
    let config = storage.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.path().join("data").display()
        ),
    )
    .expect("registry config");
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .spawn()
        .expect("start registry");
    let registry = Registry {
        child,
        addr,
        _storage: storage,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&registry.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not listen on {}",
            registry.addr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(registry)
}

fn feather(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_feather"))
        .args(args)
        .output()
        .expect("run feather");
    assert!(
        out.status.success(),
        "feather {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn plain_http_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// What a pull of `reference` found.
struct Pulled {
    manifest: oci_client::manifest::OciImageManifest,
    /// The manifest's digest as the registry reports it.
    digest: String,
    config: Vec<u8>,
    layer: Vec<u8>,
}

async fn pull(reference: &str) -> Pulled {
    let reference: Reference = reference.parse().expect("reference");
    let client = plain_http_client();
    let (manifest, digest) = client
        .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("manifest");
    let mut config = Vec::new();
    client
        .pull_blob(&reference, &manifest.config, &mut config)
        .await
        .expect("config blob");
    let mut layer = Vec::new();
    client
        .pull_blob(&reference, &manifest.layers[0], &mut layer)
        .await
        .expect("layer blob");
    Pulled {
        manifest,
        digest,
        config,
        layer,
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[tokio::test]
async fn pushed_wasm_component_comes_back_as_a_wasm_artifact() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("app.wasm");
    // A component preamble plus a custom section: enough for the format check.
    let bytes = b"\0asm\x0d\0\x01\0\0\x05\x04name".to_vec();
    std::fs::write(&wasm, &bytes).expect("write wasm");
    let reference = format!("{}/featherweight/examples/app:v1", registry.addr);

    let printed = feather(&["push", wasm.to_str().expect("utf8 path"), &reference]);
    assert!(printed.contains("Component"), "{printed}");

    let Pulled {
        manifest,
        config,
        layer,
        ..
    } = pull(&reference).await;
    assert_eq!(
        manifest.config.media_type,
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, "application/wasm");
    assert_eq!(manifest.layers[0].digest, sha256(&bytes));
    assert_eq!(layer, bytes);
    let config: serde_json::Value = serde_json::from_slice(&config).expect("config JSON");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    // CRI needs a command: the artifact names one.
    assert_eq!(config["config"]["Entrypoint"][0], "/app.wasm");
    assert_eq!(config["layerDigests"][0], sha256(&bytes).as_str());
}

#[tokio::test]
async fn pushed_image_has_the_binary_and_entrypoint() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("tool");
    std::fs::write(&bin, b"#!/static/binary").expect("write");
    let reference = format!("{}/featherweight/tool:0.1.0", registry.addr);
    let digest_file = dir.path().join("tool.digest");
    let printed = feather(&[
        "image",
        "push",
        &reference,
        "--file",
        &format!("{}:/tool", bin.display()),
        "--entrypoint",
        "/tool",
        "--user",
        "65532:65532",
        "--digest-file",
        digest_file.to_str().expect("utf8 path"),
    ]);

    // The digest written is the one the registry serves the tag's manifest under, and a pull
    // by that digest finds the same image.
    let digest = std::fs::read_to_string(&digest_file).expect("digest file");
    let digest = digest.trim_end();
    let Pulled {
        manifest,
        digest: served_digest,
        config,
        layer,
    } = pull(&reference).await;
    assert_eq!(served_digest, digest);
    assert!(printed.contains(digest), "{printed}");
    let by_digest = pull(&format!("{}/featherweight/tool@{digest}", registry.addr)).await;
    assert_eq!(
        by_digest.manifest.layers[0].digest,
        manifest.layers[0].digest
    );
    assert_eq!(
        manifest.config.media_type,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    let config: serde_json::Value = serde_json::from_slice(&config).expect("config JSON");
    assert_eq!(config["config"]["Entrypoint"][0], "/tool");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&layer).as_str());
    let mut archive = tar::Archive::new(layer.as_slice());
    let names: Vec<String> = archive
        .entries()
        .expect("tar")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, vec!["tool".to_string()]);
}
