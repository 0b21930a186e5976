//! Signals and crashes against a real containerd (2.x and 1.7 built from their Go modules, and
//! Debian's 1.6): SIGTERM drains an in-flight HTTP request, SIGKILL cuts it, and a `kill -9` of
//! the shim process leaves containerd with exited tasks and able to start new ones. Needs root
//! and the guest toolchain (`tests/guests/http_routes.c`); each test starts its own containerd.
//!
//! The harness runs the shim with `FEATHER_DRAIN_GRACE=1h`, so a SIGKILL that drained instead of
//! stopping would hang until the hang guard fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::task::{NO_CONNECTION, free_port, http_get, status_code, wait_child};
use common::{
    Containerd, Flavor, HELLO_WAT, NAMESPACE, RUNTIME, SLEEP_WAT, eventually, rootfs_with_bytes,
    rootfs_with_wasm,
};

/// Long enough that the request is certainly still in flight when SIGTERM arrives.
const SLOW_MS: u64 = 10_000;
/// Guards against hangs only; far below the drain grace the harness sets (1 h).
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Starts the routes component in the foreground (`ctr run --rm`), waits until it answers, sends
/// a slow request and waits until it is executing in the guest (an instance holds memory).
struct InFlight {
    run: std::process::Child,
    port: u16,
    request: std::thread::JoinHandle<Result<String, String>>,
}

fn start_with_request_in_flight(containerd: &Containerd, id: &str, slow_ms: u64) -> InFlight {
    let rootfs = rootfs_with_bytes(
        containerd.dir.path(),
        "app.wasm",
        &common::routes_component(),
    );
    let port = free_port();
    let env = format!("PORT={port}");
    let run = containerd.spawn_run(&["--env", &env], &rootfs, id, &["/app.wasm"]);
    containerd.wait_running(id);
    containerd.wait_http(port);
    // The probe's instance may outlive its response by a moment; then nothing is live.
    assert!(
        eventually(Duration::from_secs(30), || containerd.memory_usage(id) == 0),
        "an idle HTTP component holds no instance"
    );
    let path = format!("/slow?ms={slow_ms}");
    let request = std::thread::spawn(move || http_get(port, &path, HANG_GUARD));
    let in_flight = eventually(Duration::from_secs(30), || {
        containerd.memory_usage(id) > 0 || request.is_finished()
    });
    assert!(
        in_flight && !request.is_finished(),
        "the slow request never ran in the guest: {:?}\nshim log:\n{}",
        request.is_finished().then_some("it already finished"),
        containerd.shim_log()
    );
    InFlight { run, port, request }
}

/// SIGTERM (`ctr task kill`'s default): the listener closes at once, the in-flight request still
/// gets its 200, and only then does the task exit, with 143 (128 + SIGTERM) as runc reports.
fn sigterm_drains_in_flight_requests(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let InFlight {
        mut run,
        port,
        request,
    } = start_with_request_in_flight(&containerd, "drain-1", SLOW_MS);

    containerd.ctr_ok(&["task", "kill", "drain-1"]);
    let refused = eventually(Duration::from_secs(30), || {
        http_get(port, "/", Duration::from_secs(5)).is_err_and(|e| e.starts_with(NO_CONNECTION))
    });
    assert!(refused, "after SIGTERM the listener must close");
    // Read the status first: the request still pending afterwards proves it was read mid-drain.
    let status_while_draining = containerd.task_status("drain-1");
    assert!(
        !request.is_finished(),
        "the in-flight request ended by the time the listener closed: cut instead of drained?"
    );
    assert_eq!(
        status_while_draining.as_deref(),
        Some("RUNNING"),
        "the task runs while its request drains"
    );

    let response = request.join().expect("request thread");
    let response = response.unwrap_or_else(|e| {
        panic!(
            "the in-flight request failed during the drain: {e}\nshim log:\n{}",
            containerd.shim_log()
        )
    });
    assert_eq!(status_code(&response), Some(200), "{response}");
    assert!(
        response.contains(&format!("\r\nslept {SLOW_MS} ms\n")),
        "the guest's own answer: {response}"
    );
    let status = wait_child(&mut run, HANG_GUARD, "ctr run after SIGTERM");
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "the shim exits once its last task is deleted"
    );
}

/// SIGKILL stops at once: the in-flight request (the guest sleeps an hour) is cut, no 200, and
/// the task exits 137 well before the 1 h drain grace would have allowed.
fn sigkill_cuts_in_flight_requests(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let InFlight {
        mut run, request, ..
    } = start_with_request_in_flight(&containerd, "kill-1", 3_600_000);

    containerd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "kill-1"]);
    let status = wait_child(
        &mut run,
        HANG_GUARD,
        "ctr run after SIGKILL (did it drain?)",
    );
    assert_eq!(status.code(), Some(137), "128 + SIGKILL");
    match request.join().expect("request thread") {
        Ok(response) => assert_ne!(
            status_code(&response),
            Some(200),
            "a request cut by SIGKILL cannot have completed: {response}"
        ),
        Err(e) => assert!(
            !e.starts_with(NO_CONNECTION),
            "the request was connected; it must end by the kill: {e}"
        ),
    }
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
}

/// Collects the output of `ctr events` (one line per event) while it runs.
struct EventLog {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl EventLog {
    fn start(containerd: &Containerd) -> Self {
        let mut child = containerd
            .ctr_command(NAMESPACE)
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let stdout = child.stdout.take().expect("events stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("events lock").push(line);
            }
        });
        EventLog { child, lines }
    }

    /// The `/tasks/exit` event of container `id`, if containerd published one.
    fn exit_of(&self, id: &str) -> Option<String> {
        let needle = format!("\"container_id\":\"{id}\"");
        self.lines
            .lock()
            .expect("events lock")
            .iter()
            .find(|line| line.contains("/tasks/exit") && line.contains(&needle))
            .cloned()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket of a killed shim: a new shim normally takes the path over (and removes it when it
/// exits); if the test fails first, nothing would, so it is removed here when nobody listens.
struct StaleSocket(std::path::PathBuf);

impl Drop for StaleSocket {
    fn drop(&mut self) {
        if std::os::unix::net::UnixStream::connect(&self.0).is_err() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// `kill -9` of the shim process (it serves every task of the namespace): containerd notices,
/// reports each task exited (event with 137, no task left RUNNING), the containers can be
/// deleted, and a new container starts in a new shim process.
fn killed_shim_leaves_exited_tasks(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let sleeper = rootfs_with_wasm(containerd.dir.path(), "sleep.wasm", SLEEP_WAT);
    let sleeper = sleeper.to_str().expect("utf8");
    let events = EventLog::start(&containerd);
    let ids = ["victim-1", "victim-2"];
    for id in ids {
        containerd.ctr_ok(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--rootfs",
            sleeper,
            id,
            "/sleep.wasm",
        ]);
        containerd.wait_running(id);
    }
    let shims = containerd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim process serves both: {shims:?}");
    let _stale = Containerd::shim_socket(shims[0]).map(StaleSocket);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the shim");

    for id in ids {
        let exited = eventually(Duration::from_secs(60), || events.exit_of(id).is_some());
        assert!(
            exited,
            "containerd published no exit for {id}; containerd log:\n{}",
            containerd.log()
        );
        let event = events.exit_of(id).unwrap_or_default();
        assert!(
            event.contains("\"exit_status\":137"),
            "exit status 137 (128 + SIGKILL) from the shim's delete action: {event}"
        );
        let status = containerd.task_status(id);
        assert!(
            status.is_none() || status.as_deref() == Some("STOPPED"),
            "task {id} is not left running: {status:?}"
        );
    }
    for id in ids {
        // The task may already be gone (containerd cleaned it up): only the container remains.
        let _ = containerd.ctr(&["task", "delete", id]);
        containerd.ctr_ok(&["containers", "delete", id]);
    }

    let hello = rootfs_with_wasm(containerd.dir.path(), "hello.wasm", HELLO_WAT);
    let (code, out) = containerd.run_to_exit(&[], &hello, "after-1", &["/hello.wasm"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "hello from wasm\n"),
        "a new container runs after the crash; shim log:\n{}",
        containerd.shim_log()
    );
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "no shim left: {:?}",
        containerd.shim_pids()
    );
    assert!(
        !containerd.shim_pids().contains(&shims[0]),
        "the killed shim is gone"
    );
    assert_eq!(containerd.mounts(), Vec::<String>::new(), "no mount left");
}

#[test]
fn v2_sigterm_drains_in_flight_requests() {
    sigterm_drains_in_flight_requests(Flavor::V2);
}

#[test]
fn v2_sigkill_cuts_in_flight_requests() {
    sigkill_cuts_in_flight_requests(Flavor::V2);
}

#[test]
fn v2_killed_shim_leaves_exited_tasks() {
    killed_shim_leaves_exited_tasks(Flavor::V2);
}

#[test]
fn v1_6_sigterm_drains_in_flight_requests() {
    sigterm_drains_in_flight_requests(Flavor::V1_6);
}

#[test]
fn v1_6_killed_shim_leaves_exited_tasks() {
    killed_shim_leaves_exited_tasks(Flavor::V1_6);
}

#[test]
fn v1_7_killed_shim_leaves_exited_tasks() {
    killed_shim_leaves_exited_tasks(Flavor::V1_7);
}
