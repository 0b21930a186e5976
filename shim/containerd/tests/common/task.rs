//! Task-level helpers for the tests that drive `ctr`: foreground runs, task status and metrics,
//! plain HTTP requests to a component's listener.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Containerd, NAMESPACE, RUNTIME};

/// A port the kernel had free on the loopback a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// How the error of [`http_get`] starts when nothing accepted the connection.
pub const NO_CONNECTION: &str = "cannot connect to";

/// One `GET path` on a fresh connection to `127.0.0.1:port`: the raw response, or why it failed.
/// `read_timeout` only keeps a broken server from hanging the test.
pub fn http_get(port: u16, path: &str, read_timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("{NO_CONNECTION} :{port}: {e}"))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if response.is_empty() {
        return Err("connection closed without a response".into());
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_code(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

/// Waits for a child process (e.g. a foreground `ctr run`) for at most `within`; on overrun it is
/// killed and the test fails with `what`. The limit only guards against hangs.
pub fn wait_child(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Containerd {
    /// `ctr run --rm` in the foreground as a child process (its exit code is the task's):
    /// `extra` flags go before `--rootfs`, `args` after the container id.
    pub fn spawn_run(&self, extra: &[&str], rootfs: &Path, id: &str, args: &[&str]) -> Child {
        self.ctr_command(NAMESPACE)
            .args(["run", "--rm", "--runtime", RUNTIME])
            .args(extra)
            .arg("--rootfs")
            .arg(rootfs)
            .arg(id)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctr run")
    }

    /// `ctr run --rm` to completion: (exit code, stdout). `extra` flags go before `--rootfs`.
    pub fn run_to_exit(
        &self,
        extra: &[&str],
        rootfs: &Path,
        id: &str,
        args: &[&str],
    ) -> (Option<i32>, String) {
        let output = self
            .ctr_command(NAMESPACE)
            .args(["run", "--rm", "--runtime", RUNTIME])
            .args(extra)
            .arg("--rootfs")
            .arg(rootfs)
            .arg(id)
            .args(args)
            .output()
            .expect("run ctr run");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// The STATUS column of `ctr task ls` for task `id`; `None` when containerd lists no such task.
    pub fn task_status(&self, id: &str) -> Option<String> {
        let listing = self.ctr_ok(&["task", "ls"]);
        listing.lines().skip(1).find_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (columns.first() == Some(&id)).then(|| columns.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Waits until task `id` is RUNNING; fails the test (with the shim log) otherwise.
    pub fn wait_running(&self, id: &str) {
        let running = super::eventually(Duration::from_secs(30), || {
            self.task_status(id).as_deref() == Some("RUNNING")
        });
        assert!(
            running,
            "task {id} never ran; shim log:\n{}",
            self.shim_log()
        );
    }

    /// `ctr task metrics --format json`: containerd's task metrics (cgroups v1 `Metrics`).
    pub fn metrics(&self, id: &str) -> serde_json::Value {
        let json = self.ctr_ok(&["task", "metrics", "--format", "json", id]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("metrics of {id}: {e}: {json}"))
    }

    /// Linear memory held by the task's live instances, from its metrics.
    pub fn memory_usage(&self, id: &str) -> u64 {
        self.metrics(id)["memory"]["usage"]["usage"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until an HTTP component on `port` answers `GET /` with 200.
    pub fn wait_http(&self, port: u16) {
        let mut last = String::new();
        let answered = super::eventually(Duration::from_secs(30), || {
            match http_get(port, "/", Duration::from_secs(10)) {
                Ok(response) => {
                    last = response;
                    status_code(&last) == Some(200)
                }
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        assert!(
            answered,
            "nothing answers on :{port}: {last}\nshim log:\n{}",
            self.shim_log()
        );
    }
}
