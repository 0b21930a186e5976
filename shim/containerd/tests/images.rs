//! Images imported into a real containerd: an OCI wasm artifact (the wasm is a non-tar layer,
//! read by the shim from containerd's content store) and a regular image whose tar layer holds
//! the module (read through the snapshot mounts). Needs root.

mod common;

use std::time::Duration;

use common::{Containerd, Flavor, HELLO_WAT, RUNTIME, oci};

fn import(containerd: &Containerd, tar: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["images", "import"];
    args.extend_from_slice(extra);
    let tar = tar.to_str().expect("utf8");
    args.push(tar);
    containerd.ctr_ok(&args);
}

#[test]
fn v2_oci_wasm_artifact_runs() {
    let containerd = Containerd::start(Flavor::V2, None);
    let wasm = wat::parse_str(HELLO_WAT).expect("wat");
    let name = "feather.test/hello-artifact:v1";
    let tar = oci::wasm_artifact_tar(containerd.dir.path(), name, &wasm);
    import(
        &containerd,
        &tar,
        &["--platform", "wasip1/wasm", "--no-unpack"],
    );
    let out = containerd.ctr_ok(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--platform",
        "wasip1/wasm",
        name,
        "artifact-1",
    ]);
    assert_eq!(out, "hello from wasm\n");
    let log = containerd.shim_log();
    assert!(
        log.contains(&format!("image {name} layer sha256:")),
        "the module came from the artifact's wasm layer:\n{log}"
    );
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
    assert_eq!(containerd.mounts(), Vec::<String>::new(), "no mount left");
}

fn rootfs_image_runs(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let wasm = wat::parse_str(HELLO_WAT).expect("wat");
    let name = "feather.test/hello-scratch:v1";
    let tar = oci::rootfs_image_tar(
        containerd.dir.path(),
        name,
        "/app.wasm",
        &[("app.wasm", &wasm)],
    );
    import(&containerd, &tar, &[]);
    let out = containerd.ctr_ok(&["run", "--rm", "--runtime", RUNTIME, name, "scratch-1"]);
    assert_eq!(out, "hello from wasm\n");
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
    assert_eq!(
        containerd.mounts(),
        Vec::<String>::new(),
        "the rootfs was mounted only to read the module"
    );
}

#[test]
fn v2_image_with_the_module_in_a_tar_layer_runs() {
    rootfs_image_runs(Flavor::V2);
}

#[test]
fn v1_6_image_with_the_module_in_a_tar_layer_runs() {
    rootfs_image_runs(Flavor::V1_6);
}
