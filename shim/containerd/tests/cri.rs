//! The CRI path as kubelet drives it, with crictl against containerd 2.x's CRI plugin and the
//! `feather` runtime handler: a pod sandbox (held by the shim, no process) and an HTTP component
//! container; an HTTP request to the pod IP from inside the pod's network namespace; stop and
//! remove are clean. Needs root, the CNI plugins in /usr/lib/cni, crictl, and the HTTP guest.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Containerd, CriSetup, Flavor, eventually, oci};

const SANDBOX_IMAGE: &str = "feather.test/pause:1";
const APP_IMAGE: &str = "feather.test/http-hello:v1";

fn crictl(containerd: &Containerd, args: &[&str]) -> String {
    let endpoint = format!("unix://{}", containerd.socket.display());
    let output = Command::new(common::feather_cache().join("bin/crictl"))
        .args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
            "--timeout",
            "60s",
        ])
        .args(args)
        .output()
        .expect("run crictl");
    assert!(
        output.status.success(),
        "crictl {args:?}: {}\n{}\n--- shim log\n{}\n--- containerd log (tail)\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        containerd.shim_log(),
        tail(&containerd.log(), 40)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// GET / from inside a network namespace (a thread that joined it), returns the raw response.
fn http_get_in_netns(netns: &Path, ip: &str, port: u16) -> Result<String, String> {
    let netns = netns.to_path_buf();
    let ip = ip.to_string();
    std::thread::spawn(move || {
        let ns =
            std::fs::File::open(&netns).map_err(|e| format!("open {}: {e}", netns.display()))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        let mut stream = TcpStream::connect((ip.as_str(), port))
            .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(
                format!("GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .map_err(|e| format!("send: {e}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read: {e}"))?;
        Ok(response)
    })
    .join()
    .map_err(|_| "request thread panicked".to_string())?
}

fn write_cni_config(dir: &Path) -> PathBuf {
    let conf_dir = dir.join("cni");
    std::fs::create_dir_all(&conf_dir).expect("cni dir");
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "feather-test",
        "plugins": [{
            "type": "bridge",
            "bridge": "fwtest0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.231.7.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni-ipam").display().to_string()
            }
        }]
    });
    std::fs::write(
        conf_dir.join("10-feather-test.conflist"),
        conflist.to_string(),
    )
    .expect("conflist");
    conf_dir
}

#[test]
fn v2_cri_pod_sandbox_and_http_container() {
    common::require_root();
    let http_wasm = common::http_component();
    let scratch = tempfile::tempdir().expect("tempdir");
    let cni_conf_dir = write_cni_config(scratch.path());
    let containerd = Containerd::start(
        Flavor::V2,
        Some(CriSetup {
            cni_conf_dir,
            sandbox_image: SANDBOX_IMAGE.to_string(),
        }),
    );
    let k8s = |args: &[&str]| {
        let output = containerd
            .ctr_command("k8s.io")
            .args(args)
            .output()
            .expect("ctr");
        assert!(
            output.status.success(),
            "ctr -n k8s.io {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let pause = oci::rootfs_image_tar(
        scratch.path(),
        SANDBOX_IMAGE,
        "/pause",
        &[("pause", b"not run")],
    );
    k8s(&["images", "import", pause.to_str().expect("utf8")]);
    let app = oci::wasm_artifact_tar(scratch.path(), APP_IMAGE, &http_wasm);
    k8s(&[
        "images",
        "import",
        "--platform",
        "wasip1/wasm",
        "--no-unpack",
        app.to_str().expect("utf8"),
    ]);

    let pod_config = scratch.path().join("pod.json");
    std::fs::write(
        &pod_config,
        serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "feather-test-pod", "attempt": 1},
            "log_directory": scratch.path().join("logs").display().to_string(),
            "linux": {}
        })
        .to_string(),
    )
    .expect("pod.json");
    let container_config = scratch.path().join("container.json");
    std::fs::write(
        &container_config,
        serde_json::json!({
            "metadata": {"name": "app"},
            "image": {"image": APP_IMAGE},
            "command": ["/app.wasm"],
            "envs": [{"key": "PORT", "value": "8080"}],
            "log_path": "app.log",
            "linux": {}
        })
        .to_string(),
    )
    .expect("container.json");
    let pod_config = pod_config.to_str().expect("utf8");
    let pod = crictl(&containerd, &["runp", "--runtime", "feather", pod_config]);
    let container = crictl(
        &containerd,
        &[
            "create",
            "--no-pull",
            &pod,
            container_config.to_str().expect("utf8"),
            pod_config,
        ],
    );
    crictl(&containerd, &["start", &container]);

    let inspect: serde_json::Value =
        serde_json::from_str(&crictl(&containerd, &["inspectp", "-o", "json", &pod]))
            .expect("inspectp json");
    let ip = inspect["status"]["network"]["ip"]
        .as_str()
        .expect("pod ip")
        .to_string();
    let netns = inspect["info"]["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|ns| ns["type"] == "network")
        .and_then(|ns| ns["path"].as_str())
        .map(PathBuf::from)
        .expect("network namespace path");
    let mut last = String::new();
    let answered = eventually(Duration::from_secs(20), || {
        match http_get_in_netns(&netns, &ip, 8080) {
            Ok(response) => {
                last = response;
                last.starts_with("HTTP/1.1 200")
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        answered,
        "HTTP to {ip}:8080 in {}: {last}\nshim log:\n{}",
        netns.display(),
        containerd.shim_log()
    );
    assert!(
        last.contains(common::HTTP_GUEST_BODY),
        "the component's answer: {last}"
    );
    assert_eq!(
        containerd.shim_pids().len(),
        1,
        "sandbox and container share one shim process"
    );
    // kubelet's view of the container (CRI ListContainerStats, answered from the shim's Stats):
    // the request served above cost CPU time.
    let stats: serde_json::Value = serde_json::from_str(&crictl(
        &containerd,
        &["stats", "-o", "json", "--id", &container],
    ))
    .expect("stats json");
    let entry = &stats["stats"][0];
    let cpu_nanos = &entry["cpu"]["usageCoreNanoSeconds"]["value"];
    let cpu_nanos = cpu_nanos
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| cpu_nanos.as_u64())
        .unwrap_or(0);
    assert!(cpu_nanos > 0, "CPU time reported through CRI: {stats}");
    assert!(
        entry["memory"].is_object(),
        "memory reported through CRI: {stats}"
    );

    crictl(&containerd, &["stop", &container]);
    crictl(&containerd, &["rm", &container]);
    crictl(&containerd, &["stopp", &pod]);
    crictl(&containerd, &["rmp", &pod]);
    assert_eq!(crictl(&containerd, &["ps", "-a", "-q"]), "");
    assert_eq!(crictl(&containerd, &["pods", "-q"]), "");
    assert!(
        containerd.wait_no_shim(Duration::from_secs(15)),
        "the shim exits once the pod is gone; shim log:\n{}",
        containerd.shim_log()
    );
    assert!(!netns.exists(), "pod netns {} removed", netns.display());
}
