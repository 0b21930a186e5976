//! Shared by the real-apiserver tests and the benchmark: find or start the local control plane
//! (etcd, kube-apiserver, kube-controller-manager from `e2e/cluster`), install the CRD, give
//! each test its own namespace, run the operator binary, dump state when a test fails.
//!
//! Cluster lifecycle: one control plane per test binary run. If one already answers it is used
//! and left running; if this process starts it, this process stops it (when the last test of
//! the binary finishes, or, for a filtered run, right after the process exits).
#![allow(dead_code)] // each test binary uses a different part

#[cfg(test)]
pub mod env;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn feather_cache() -> PathBuf {
    std::env::var_os("FEATHER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/featherweight"))
}

/// A control plane the tests can use.
#[derive(Debug)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    started_here: bool,
}

/// Why the real-apiserver tests cannot run here.
#[derive(Clone, Debug)]
pub struct Skip(pub String);

static CLUSTER: OnceLock<Result<Cluster, Skip>> = OnceLock::new();
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Print the loud SKIP line, or panic instead when FEATHER_REQUIRE_CLUSTER is set (CI sets it
/// once the harness exists, so a missing cluster can never pass silently there).
pub fn skip(test: &str, reason: &Skip) {
    if std::env::var_os("FEATHER_REQUIRE_CLUSTER").is_some() {
        panic!(
            "{test}: the control plane is required (FEATHER_REQUIRE_CLUSTER) but: {}",
            reason.0
        );
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and a
    // skip must never pass silently.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n{line}\nSKIP {test}: {}\n{line}",
        reason.0,
        line = "*".repeat(72)
    );
}

fn kubectl_path() -> PathBuf {
    let cached = feather_cache().join("bin/kubectl");
    if cached.exists() {
        cached
    } else {
        PathBuf::from("kubectl")
    }
}

/// `kubectl --kubeconfig <cluster> args...`, returning (success, stdout, stderr).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_stdin(kubeconfig, args, None)
}

/// Like [`kubectl`], with `stdin` piped in (for `-f -`).
pub fn kubectl_stdin(
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut command = Command::new(kubectl_path());
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return (false, String::new(), format!("running kubectl: {error}")),
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        let _ = pipe.write_all(input.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(error) => (
            false,
            String::new(),
            format!("waiting for kubectl: {error}"),
        ),
    }
}

fn answers(kubeconfig: &Path) -> bool {
    kubeconfig.exists()
        && kubectl(
            kubeconfig,
            &["get", "--raw=/readyz", "--request-timeout=5s"],
        )
        .0
}

fn harness_env_kubeconfig(script: &Path) -> Option<PathBuf> {
    let out = Command::new(script).arg("env").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|line| line.trim().strip_prefix("export KUBECONFIG="))
        .map(|value| PathBuf::from(value.trim_matches(|c| c == '"' || c == '\'')))
}

fn find_or_start() -> Result<Cluster, Skip> {
    if let Some(path) = std::env::var_os("FEATHER_TEST_KUBECONFIG") {
        let kubeconfig = PathBuf::from(path);
        return if answers(&kubeconfig) {
            Ok(Cluster {
                kubeconfig,
                started_here: false,
            })
        } else {
            Err(Skip(format!(
                "FEATHER_TEST_KUBECONFIG={} does not answer /readyz",
                kubeconfig.display()
            )))
        };
    }
    let script = repo_root().join("e2e/cluster");
    if !script.exists() {
        return Err(Skip(
            "e2e/cluster (the local cluster harness) is not in this checkout yet".into(),
        ));
    }
    let kubeconfig = harness_env_kubeconfig(&script)
        .ok_or_else(|| Skip("`e2e/cluster env` printed no `export KUBECONFIG=...` line".into()))?;
    if answers(&kubeconfig) {
        eprintln!("using the running control plane ({})", kubeconfig.display());
        return Ok(Cluster {
            kubeconfig,
            started_here: false,
        });
    }
    let bin = feather_cache().join("bin");
    let missing: Vec<&str> = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .into_iter()
        .filter(|name| !bin.join(name).exists())
        .collect();
    if !missing.is_empty() {
        return Err(Skip(format!(
            "{} not built in {} (run `e2e/components.sh build etcd kubernetes`)",
            missing.join(", "),
            bin.display()
        )));
    }
    eprintln!("starting the control plane: e2e/cluster up --control-plane-only");
    let status = Command::new(&script)
        .args(["up", "--control-plane-only"])
        .status()
        .map_err(|e| Skip(format!("running e2e/cluster up: {e}")))?;
    if !status.success() || !answers(&kubeconfig) {
        // Not a skip: the parts are there but do not work.
        panic!("`e2e/cluster up --control-plane-only` failed ({status}); see its log above");
    }
    stop_after_exit(&script);
    Ok(Cluster {
        kubeconfig,
        started_here: true,
    })
}

/// Backstop for runs that end before the last test (a filter, a panic in setup): a detached
/// shell stops the control plane once this process is gone.
fn stop_after_exit(script: &Path) {
    let pid = std::process::id();
    let marker = stopped_marker();
    let _ = std::fs::remove_file(&marker);
    let _ = Command::new("setsid")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; [ -e '{}' ] || exec '{}' down",
            marker.display(),
            script.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn stopped_marker() -> PathBuf {
    std::env::temp_dir().join(format!(
        "feather-operator-tests-{}.stopped",
        std::process::id()
    ))
}

/// The cluster with the CRD installed, or why not.
pub fn cluster() -> Result<&'static Cluster, Skip> {
    CLUSTER
        .get_or_init(|| {
            let cluster = find_or_start()?;
            install_crd(&cluster.kubeconfig);
            Ok(cluster)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Server-side apply the checked-in CRD and wait until it is Established.
pub fn install_crd(kubeconfig: &Path) {
    let crd = repo_root().join("crds/wasmapps.feather.dev.yaml");
    let crd = crd.to_string_lossy().into_owned();
    let (ok, _, err) = kubectl(
        kubeconfig,
        &["apply", "--server-side", "--force-conflicts", "-f", &crd],
    );
    assert!(ok, "installing the CRD: {err}");
    let (ok, _, err) = kubectl(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/wasmapps.feather.dev",
        ],
    );
    assert!(ok, "the CRD did not become Established: {err}");
}

/// Called once per finished test; the last of `total` stops a control plane this process
/// started.
pub fn test_finished(total: usize) {
    if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 < total {
        return;
    }
    if let Some(Ok(cluster)) = CLUSTER.get()
        && cluster.started_here
    {
        eprintln!("stopping the control plane this test run started");
        let _ = Command::new(repo_root().join("e2e/cluster"))
            .arg("down")
            .status();
        let _ = std::fs::write(stopped_marker(), b"");
    }
}

/// Poll `check` every 250 ms until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A running `feather-operator` process, stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    /// Start `binary` against `kubeconfig` with `args`, logging to a file under `dir`.
    pub fn start(binary: &Path, kubeconfig: &Path, args: &[&str], dir: &Path, tag: &str) -> Self {
        let log = dir.join(format!("operator-{tag}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .expect("starting feather-operator");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait up to 20 s (then SIGKILL); returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}
