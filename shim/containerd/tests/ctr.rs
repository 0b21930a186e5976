//! `ctr run` against a real containerd (2.x and 1.7 built from their Go modules, and Debian's
//! 1.6): output, exit codes, kill, cleanup, one shared shim process. Needs root; each test
//! starts its own containerd (see `common`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Containerd, EXIT_CODE_WAT, Flavor, HELLO_WAT, RUNTIME, SLEEP_WAT, eventually, rootfs_with_wasm,
};

fn run_hello_and_exit_codes(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let hello = rootfs_with_wasm(containerd.dir.path(), "hello.wasm", HELLO_WAT);
    let out = containerd.ctr_ok(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        hello.to_str().expect("utf8"),
        "hello-1",
        "/hello.wasm",
    ]);
    assert_eq!(
        out, "hello from wasm\n",
        "guest stdout through containerd's FIFO"
    );

    let exit = rootfs_with_wasm(containerd.dir.path(), "exit_code.wasm", EXIT_CODE_WAT);
    let output = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        exit.to_str().expect("utf8"),
        "exit-3",
        "/exit_code.wasm",
        "3",
    ]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "guest exit code 3 reported; stderr: {}\nshim log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        containerd.shim_log()
    );

    // `--rm` deleted both containers: nothing is left, and the shim process exited.
    assert_eq!(containerd.ctr_ok(&["task", "ls", "-q"]).trim(), "");
    assert_eq!(containerd.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "the shim exits once it holds no task; still running: {:?}\nshim log:\n{}",
        containerd.shim_pids(),
        containerd.shim_log()
    );
    assert_eq!(containerd.mounts(), Vec::<String>::new(), "no mount left");
}

/// Starts a long-running guest with `ctr run` in the foreground, kills it with `signal`, and
/// returns ctr's exit code (the task's exit status).
fn killed_exit_code(containerd: &Containerd, id: &str, signal: &str) -> Option<i32> {
    let sleeper = rootfs_with_wasm(containerd.dir.path(), "sleep.wasm", SLEEP_WAT);
    let mut run = containerd
        .ctr_command(common::NAMESPACE)
        .args(["run", "--rm", "--runtime", RUNTIME, "--rootfs"])
        .arg(&sleeper)
        .args([id, "/sleep.wasm"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr run");
    let running = eventually(Duration::from_secs(20), || {
        containerd
            .ctr(&["task", "ls"])
            .stdout
            .split(|b| *b == b'\n')
            .any(|line| {
                let line = String::from_utf8_lossy(line);
                line.starts_with(id) && line.contains("RUNNING")
            })
    });
    assert!(
        running,
        "task {id} never ran; shim log:\n{}",
        containerd.shim_log()
    );
    let socket = containerd
        .shim_pids()
        .first()
        .and_then(|pid| Containerd::shim_socket(*pid))
        .expect("a shim process serves the task");
    containerd.ctr_ok(&["task", "kill", "--signal", signal, id]);
    let status = run.wait().expect("ctr run ends");
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "shim left running after the last task was deleted"
    );
    assert!(
        !socket.exists(),
        "shim socket {} left behind",
        socket.display()
    );
    status.code()
}

fn kill_reports_128_plus_signal(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    assert_eq!(
        killed_exit_code(&containerd, "sleep-kill", "SIGKILL"),
        Some(137)
    );
    assert_eq!(
        killed_exit_code(&containerd, "sleep-term", "SIGTERM"),
        Some(143)
    );
    assert_eq!(containerd.mounts(), Vec::<String>::new());
}

/// Several containers at once are served by one process, and it outlives the first delete.
fn one_process_for_many(flavor: Flavor, count: usize) {
    let containerd = Containerd::start(flavor, None);
    let sleeper = rootfs_with_wasm(containerd.dir.path(), "sleep.wasm", SLEEP_WAT);
    let sleeper = sleeper.to_str().expect("utf8");
    let ids: Vec<String> = (0..count).map(|i| format!("many-{i}")).collect();
    // Start them concurrently, as kubelet would: every `start` races for the one process.
    let runs: Vec<_> = ids
        .iter()
        .map(|id| {
            containerd
                .ctr_command(common::NAMESPACE)
                .args([
                    "run",
                    "-d",
                    "--runtime",
                    RUNTIME,
                    "--rootfs",
                    sleeper,
                    id,
                    "/sleep.wasm",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ctr run -d")
        })
        .collect();
    for (run, id) in runs.into_iter().zip(&ids) {
        let output = run.wait_with_output().expect("ctr run -d");
        assert!(
            output.status.success(),
            "ctr run -d {id}: {}\nshim log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            containerd.shim_log()
        );
    }
    let tasks = containerd.ctr_ok(&["task", "ls"]);
    let running = tasks.lines().filter(|l| l.contains("RUNNING")).count();
    assert_eq!(running, count, "all tasks run:\n{tasks}");
    let shims = containerd.shim_pids();
    assert_eq!(
        shims.len(),
        1,
        "exactly one shim process serves {count} containers: {shims:?}"
    );

    for id in &ids {
        containerd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", id]);
    }
    for id in &ids {
        assert!(
            eventually(Duration::from_secs(10), || {
                containerd.ctr(&["task", "delete", id]).status.success()
            }),
            "task delete {id}"
        );
        containerd.ctr_ok(&["containers", "delete", id]);
        if id != ids.last().expect("ids") {
            assert_eq!(
                containerd.shim_pids(),
                shims,
                "the shim outlives a delete while it holds tasks"
            );
        }
    }
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "shim exits after the last delete"
    );
}

/// A module that is not wasm fails `create` with an error naming the file and the problem.
fn invalid_module_fails_create(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let rootfs = containerd.dir.path().join("rootfs-bad");
    std::fs::create_dir_all(&rootfs).expect("dir");
    std::fs::write(rootfs.join("bad.wasm"), b"#!/bin/sh\necho not wasm\n").expect("write");
    let output = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        "bad-1",
        "/bad.wasm",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.wasm") && stderr.contains("magic"),
        "the error names the file and what is wrong: {stderr}"
    );
    let output = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        "missing-1",
        "/missing.wasm",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/missing.wasm"),
        "names the missing file: {stderr}"
    );
    let _ = containerd.ctr(&["containers", "delete", "bad-1", "missing-1"]);
    assert!(
        containerd.wait_no_shim(Duration::from_secs(10)),
        "no shim left after failed creates"
    );
}

/// containerd restarts while a task runs: it reconnects to the same shim process (address in
/// the bundle), sees the task running, and kill/delete still work; events flow again.
fn containerd_restart_finds_running_tasks(flavor: Flavor) {
    let mut containerd = Containerd::start(flavor, None);
    let sleeper = rootfs_with_wasm(containerd.dir.path(), "sleep.wasm", SLEEP_WAT);
    containerd.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--rootfs",
        sleeper.to_str().expect("utf8"),
        "survivor",
        "/sleep.wasm",
    ]);
    let shims = containerd.shim_pids();
    assert_eq!(shims.len(), 1);
    containerd.restart();
    assert_eq!(
        containerd.shim_pids(),
        shims,
        "the shim outlives containerd"
    );
    let tasks = containerd.ctr_ok(&["task", "ls"]);
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with("survivor") && l.contains("RUNNING")),
        "after the restart containerd still sees the task running:\n{tasks}"
    );
    containerd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "survivor"]);
    assert!(
        eventually(Duration::from_secs(10), || {
            containerd
                .ctr(&["task", "ls"])
                .stdout
                .windows(7)
                .any(|w| w == b"STOPPED")
        }),
        "the exit reaches containerd after its restart"
    );
    containerd.ctr_ok(&["task", "delete", "survivor"]);
    containerd.ctr_ok(&["containers", "delete", "survivor"]);
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
}

#[test]
fn v2_containerd_restart_finds_running_tasks() {
    containerd_restart_finds_running_tasks(Flavor::V2);
}

#[test]
fn v1_6_containerd_restart_finds_running_tasks() {
    containerd_restart_finds_running_tasks(Flavor::V1_6);
}

#[test]
fn v2_hello_output_and_exit_codes() {
    run_hello_and_exit_codes(Flavor::V2);
}

#[test]
fn v2_kill_reports_137_and_143() {
    kill_reports_128_plus_signal(Flavor::V2);
}

#[test]
fn v2_fifty_containers_one_shim_process() {
    one_process_for_many(Flavor::V2, 50);
}

#[test]
fn v2_invalid_module_fails_create_with_a_clear_error() {
    invalid_module_fails_create(Flavor::V2);
}

#[test]
fn v1_6_hello_output_and_exit_codes() {
    run_hello_and_exit_codes(Flavor::V1_6);
}

#[test]
fn v1_6_kill_reports_137_and_143() {
    kill_reports_128_plus_signal(Flavor::V1_6);
}

#[test]
fn v1_6_several_containers_one_shim_process() {
    one_process_for_many(Flavor::V1_6, 5);
}

// containerd 1.7 (built from its Go module, `scripts/build-containerd-1.7.sh`): task API v2 and
// a bare address from `start`, like 1.6, and a `Shutdown` after every delete.

#[test]
fn v1_7_hello_output_and_exit_codes() {
    run_hello_and_exit_codes(Flavor::V1_7);
}

#[test]
fn v1_7_kill_reports_137_and_143() {
    kill_reports_128_plus_signal(Flavor::V1_7);
}

#[test]
fn v1_7_several_containers_one_shim_process() {
    one_process_for_many(Flavor::V1_7, 10);
}

#[test]
fn v1_7_containerd_restart_finds_running_tasks() {
    containerd_restart_finds_running_tasks(Flavor::V1_7);
}

#[test]
fn shim_binary_answers_version() {
    let output = Command::new(common::shim_binary())
        .arg("-v")
        .output()
        .expect("run shim");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(RUNTIME));
}
