//! A real containerd started for one test: its own root, state dir and sockets under a
//! tempdir, the feather shim first on its PATH; stopped and cleaned up on drop (with any shim
//! process it started). Needs root.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod oci;
pub mod task;

/// The engine's guest builder (C components through wit-bindgen and wasm-tools), shared with its
/// tests; `tests/guests` here links to the engine's guest sources so its paths resolve.
#[path = "../../../engine/tests/common/guests.rs"]
pub mod guests;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace the ctr tests use.
pub const NAMESPACE: &str = "feather-test";
pub const RUNTIME: &str = "io.containerd.feather.v1";

/// The shim's SIGTERM drain grace under test (`FEATHER_DRAIN_GRACE`).
pub const DRAIN_GRACE_IN_TESTS: &str = "1h";

/// Which containerd to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// containerd 2.x built from its Go module by `e2e/components.sh build containerd`.
    V2,
    /// Debian's containerd 1.6 (`/usr/bin/containerd`).
    V1_6,
    /// containerd 1.7 built from its Go module by `scripts/build-containerd-1.7.sh`.
    V1_7,
}

/// Where `scripts/build-containerd-1.7.sh` puts containerd 1.7 (keep its version in step).
pub const CONTAINERD_1_7_DIR: &str = "containerd-v1.7.35";

pub fn feather_cache() -> PathBuf {
    std::env::var_os("FEATHER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/featherweight")
        })
}

/// Path of a binary of the given flavor; panics with what to run when it is missing.
pub fn binary(flavor: Flavor, name: &str) -> PathBuf {
    let path = match flavor {
        Flavor::V2 => feather_cache().join("bin").join(name),
        Flavor::V1_6 => PathBuf::from("/usr/bin").join(name),
        Flavor::V1_7 => feather_cache().join(CONTAINERD_1_7_DIR).join(name),
    };
    assert!(
        path.exists(),
        "{} is missing: run `make shim-test-deps` (containerd 2.x and crictl are built by \
         `e2e/components.sh build containerd crictl`, containerd 1.7 by \
         `shim/containerd/scripts/build-containerd-1.7.sh`; containerd 1.6 comes from \
         `scripts/install-deps.sh`)",
        path.display()
    );
    path
}

pub fn shim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-feather-v1"))
}

pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests start containerd and need root"
    );
}

/// Extra configuration for the CRI plugin (only the CRI test enables it).
#[derive(Debug, Clone)]
pub struct CriSetup {
    pub cni_conf_dir: PathBuf,
    pub sandbox_image: String,
}

pub struct Containerd {
    pub flavor: Flavor,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Child,
}

impl Containerd {
    pub fn start(flavor: Flavor, cri: Option<CriSetup>) -> Self {
        require_root();
        // Fails early, naming what to build, when the binaries are missing.
        binary(flavor, "containerd");
        binary(flavor, "ctr");
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("fw-ctd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("c.sock");
        let config = config_toml(flavor, dir.path(), &socket, cri.as_ref());
        let config_path = dir.path().join("config.toml");
        fs::write(&config_path, config).expect("write config");
        let child = spawn_containerd(flavor, dir.path());
        let containerd = Self {
            flavor,
            dir,
            socket,
            child,
        };
        containerd.wait_ready();
        containerd
    }

    /// Stops containerd (not its shims, as on a real node) and starts it again on the same
    /// root, state and sockets.
    pub fn restart(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        self.child = spawn_containerd(self.flavor, self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.socket.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not come up; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn shim_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("shim.log")).unwrap_or_default()
    }

    pub fn ctr_command(&self, namespace: &str) -> Command {
        let mut command = Command::new(binary(self.flavor, "ctr"));
        command
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace);
        command
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(NAMESPACE)
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// Runs ctr and panics with its output and the logs when it fails.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed: {}\n--- stdout\n{}\n--- stderr\n{}\n--- shim log\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.shim_log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Processes of our shim binary that talk to this containerd.
    pub fn shim_pids(&self) -> Vec<u32> {
        let socket = self.socket.display().to_string();
        let mut pids = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_shim = args
                .first()
                .is_some_and(|a| a.ends_with("containerd-shim-feather-v1"));
            let ours = args
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == socket);
            let serving = args.iter().any(|a| a == "-socket");
            if is_shim && ours && serving {
                pids.push(pid);
            }
        }
        pids
    }

    /// The `-socket` argument of a shim process.
    pub fn shim_socket(pid: u32) -> Option<PathBuf> {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.windows(2)
            .find(|w| w[0] == "-socket")
            .map(|w| PathBuf::from(w[1].trim_start_matches("unix://")))
    }

    /// Waits until no shim process of this containerd is left.
    pub fn wait_no_shim(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.shim_pids().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Mount points under this containerd's directory.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.path().display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(&prefix))
            .map(String::from)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let shims = self.shim_pids();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in shims {
            let socket = Self::shim_socket(pid);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            if let Some(socket) = socket {
                let _ = fs::remove_file(&socket);
                let _ = fs::remove_file(socket.with_extension("lock"));
            }
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = nix::mount::umount2(Path::new(&mount), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn spawn_containerd(flavor: Flavor, dir: &Path) -> Child {
    let shim_dir = shim_binary().parent().expect("shim dir").to_path_buf();
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        shim_dir.display()
    );
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("log");
    Command::new(binary(flavor, "containerd"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .env("FEATHER_CACHE_DIR", dir.join("wasm-cache"))
        .env("FEATHER_SHIM_LOG", dir.join("shim.log"))
        // Far longer than any test's hang guard: a SIGKILL that drained instead of stopping
        // would hang the test (and fail it) rather than pass after the default 30 s grace.
        .env("FEATHER_DRAIN_GRACE", DRAIN_GRACE_IN_TESTS)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn containerd")
}

fn config_toml(flavor: Flavor, dir: &Path, socket: &Path, cri: Option<&CriSetup>) -> String {
    let root = dir.join("root");
    let state = dir.join("state");
    let mut config = match flavor {
        Flavor::V2 => "version = 3\n".to_string(),
        Flavor::V1_6 | Flavor::V1_7 => "version = 2\n".to_string(),
    };
    // Top-level keys must come before the first table.
    if cri.is_none() {
        config.push_str("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
    }
    config.push_str(&format!(
        "root = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n",
        root.display(),
        state.display(),
        socket.display(),
        socket.display()
    ));
    match (flavor, cri) {
        (_, None) => {}
        (Flavor::V2, Some(cri)) => config.push_str(&format!(
            r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.feather]
  runtime_type = "{RUNTIME}"
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{}"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{}"
"#,
            cri.cni_conf_dir.display(),
            cri.sandbox_image
        )),
        (Flavor::V1_6 | Flavor::V1_7, Some(cri)) => config.push_str(&format!(
            r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.feather]
  runtime_type = "{RUNTIME}"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{}"
"#,
            cri.sandbox_image,
            cri.cni_conf_dir.display()
        )),
    }
    config
}

/// Writes `<dir>/rootfs/<name>` from WAT source and returns the rootfs directory.
pub fn rootfs_with_wasm(dir: &Path, name: &str, wat_source: &str) -> PathBuf {
    let rootfs = dir.join(format!("rootfs-{}", name.trim_end_matches(".wasm")));
    fs::create_dir_all(&rootfs).expect("rootfs dir");
    let wasm = wat::parse_str(wat_source).expect("valid WAT");
    fs::write(rootfs.join(name), wasm).expect("write wasm");
    rootfs
}

pub const HELLO_WAT: &str = include_str!("../../../engine/tests/guests/hello.wat");
pub const EXIT_CODE_WAT: &str = include_str!("../../../engine/tests/guests/exit_code.wat");
pub const SLEEP_WAT: &str = include_str!("../../../engine/tests/guests/sleep_forever.wat");

/// Polls `condition` every 50 ms until it holds or `within` passes.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the HTTP guest (`tests/guests/hello.c`, wasi:http) answers to every request.
pub const HTTP_GUEST_BODY: &str = "hello from wasm";

/// The HTTP component the CRI test and the benchmark serve.
pub fn http_component() -> Vec<u8> {
    guests::c_component("hello", guests::World::HttpProxy)
}

/// The HTTP component with one route per behaviour (`tests/guests/http_routes.c`: `/slow?ms=N`,
/// `/alloc?mb=N`, ...).
pub fn routes_component() -> Vec<u8> {
    guests::c_component("http_routes", guests::World::HttpProxy)
}

/// Writes `<dir>/rootfs-<name>/<name>` with the given bytes and returns the rootfs directory.
pub fn rootfs_with_bytes(dir: &Path, name: &str, wasm: &[u8]) -> PathBuf {
    let rootfs = dir.join(format!("rootfs-{}", name.trim_end_matches(".wasm")));
    fs::create_dir_all(&rootfs).expect("rootfs dir");
    fs::write(rootfs.join(name), wasm).expect("write wasm");
    rootfs
}
