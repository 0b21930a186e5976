//! What a container's spec gives the guest, through a real containerd (2.x built from its Go
//! module, and Debian's 1.6): `linux.resources.memory.limit` is the per-instance memory limit;
//! bind mounts are the only preopens (read-only honoured); containerd's task metrics report the
//! guest's memory and CPU. Needs root; the HTTP part needs the guest toolchain
//! (`tests/guests/http_routes.c`); each test starts its own containerd.

mod common;

use std::time::Duration;

use common::task::{free_port, http_get, status_code};
use common::{
    Containerd, Flavor, HELLO_WAT, RUNTIME, eventually, rootfs_with_bytes, rootfs_with_wasm,
};

/// WASI command: grows its memory by 8 MiB once; traps if the growth is refused, else exits 0.
const GROW_8_MIB_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 128)) (i32.const -1)) (then unreachable))))"#;

/// WASI command: prints the name of every preopened directory (fd 3 upwards), one per line.
const LIST_PREOPENS_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name"
    (func $dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0: prestat (tag, name length at 4); 16: iovec; 24: nwritten; 32: "\n"; 1024: a name
  (data (i32.const 32) "\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "_start")
    (local $fd i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $each
        (br_if $done (call $prestat_get (local.get $fd) (i32.const 0)))
        (drop (call $dir_name (local.get $fd) (i32.const 1024) (i32.load (i32.const 4))))
        (call $write (i32.const 1024) (i32.load (i32.const 4)))
        (call $write (i32.const 32) (i32.const 1))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $each)))))"#;

const CAT_FILE_WAT: &str = include_str!("guests/cat_file.wat");
const WRITE_FILE_WAT: &str = include_str!("guests/write_file.wat");
const SPIN_WAT: &str = include_str!("guests/infinite_loop.wat");

const MIB: u64 = 1 << 20;

/// The spec's memory limit is what the guest gets: an 8 MiB growth fails under 4 MiB (trap,
/// 134, and the shim log names exactly that limit) and succeeds under 64 MiB; a small guest runs
/// under 4 MiB; an HTTP component's instances get the limit per request.
fn memory_limit_reaches_the_guest(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let dir = containerd.dir.path();
    let grow = rootfs_with_wasm(dir, "grow.wasm", GROW_8_MIB_WAT);
    let small = (4 * MIB).to_string();
    let large = (64 * MIB).to_string();

    let (code, _) = containerd.run_to_exit(
        &["--memory-limit", &small],
        &grow,
        "grow-4m",
        &["/grow.wasm"],
    );
    assert_eq!(
        code,
        Some(134),
        "the growth beyond 4 MiB is refused and the guest traps; shim log:\n{}",
        containerd.shim_log()
    );
    let log = containerd.shim_log();
    assert!(
        log.contains(&format!("memory limit of {small} bytes reached")),
        "the trap is the spec's limit, not the engine's:\n{log}"
    );
    let (code, _) = containerd.run_to_exit(
        &["--memory-limit", &large],
        &grow,
        "grow-64m",
        &["/grow.wasm"],
    );
    assert_eq!(code, Some(0), "8 MiB fit in 64 MiB");
    let hello = rootfs_with_wasm(dir, "hello.wasm", HELLO_WAT);
    let (code, out) = containerd.run_to_exit(
        &["--memory-limit", &small],
        &hello,
        "hello-4m",
        &["/hello.wasm"],
    );
    assert_eq!((code, out.as_str()), (Some(0), "hello from wasm\n"));

    // HTTP: each request's instance has the limit; the server survives the refused one.
    let routes = rootfs_with_bytes(dir, "app.wasm", &common::routes_component());
    let port = free_port();
    let limit = (16 * MIB).to_string();
    containerd.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        &limit,
        "--env",
        &format!("PORT={port}"),
        "--rootfs",
        routes.to_str().expect("utf8"),
        "alloc-16m",
        "/app.wasm",
    ]);
    containerd.wait_http(port);
    let get = |path: &str| {
        http_get(port, path, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nshim log:\n{}", containerd.shim_log()))
    };
    let refused = get("/alloc?mb=32");
    assert_eq!(
        status_code(&refused),
        Some(500),
        "32 MiB > 16 MiB: {refused}"
    );
    let fits = get("/alloc?mb=4");
    assert_eq!(status_code(&fits), Some(200), "4 MiB < 16 MiB: {fits}");
    assert!(
        containerd
            .shim_log()
            .contains(&format!("memory limit of {limit} bytes reached")),
        "the HTTP instance hit the spec's limit"
    );
    stop_and_delete(&containerd, "alloc-16m");
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
}

fn stop_and_delete(containerd: &Containerd, id: &str) {
    containerd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", id]);
    assert!(
        eventually(Duration::from_secs(30), || {
            containerd.ctr(&["task", "delete", id]).status.success()
        }),
        "task delete {id}"
    );
    containerd.ctr_ok(&["containers", "delete", id]);
}

/// Bind mounts become preopens at their destination: a read-only one can be read but not
/// written, a read-write one written (the file appears on the host); the guest sees exactly the
/// mounted directories (not the rootfs, /proc, /dev or a bind-mounted file) and cannot climb
/// out of them.
fn mounts_become_preopens(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let dir = containerd.dir.path();
    let ro = dir.join("host-ro");
    let rw = dir.join("host-rw");
    std::fs::create_dir_all(&ro).expect("ro dir");
    std::fs::create_dir_all(&rw).expect("rw dir");
    std::fs::write(ro.join("secret.txt"), "from the host\n").expect("secret");
    let file = dir.join("host-file");
    std::fs::write(&file, "a file, not a directory\n").expect("file");
    let ro_mount = format!("type=bind,src={},dst=/data,options=rbind:ro", ro.display());
    let rw_mount = format!("type=bind,src={},dst=/out,options=rbind:rw", rw.display());
    let file_mount = format!(
        "type=bind,src={},dst=/etc/hostname,options=rbind:ro",
        file.display()
    );

    let cat = rootfs_with_wasm(dir, "cat_file.wasm", CAT_FILE_WAT);
    let (code, out) = containerd.run_to_exit(
        &["--mount", &ro_mount],
        &cat,
        "cat-ro",
        &["/cat_file.wasm", "secret.txt"],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "from the host\n"),
        "the guest reads the bind mount; shim log:\n{}",
        containerd.shim_log()
    );
    let (code, out) = containerd.run_to_exit(
        &["--mount", &ro_mount],
        &cat,
        "cat-escape",
        &["/cat_file.wasm", "../../../../../etc/passwd"],
    );
    assert!(
        code != Some(0) && out == "open failed\n",
        "no way out of the preopen: exit {code:?}, output {out:?}"
    );

    let write = rootfs_with_wasm(dir, "write_file.wasm", WRITE_FILE_WAT);
    let (code, _) = containerd.run_to_exit(
        &["--mount", &ro_mount],
        &write,
        "write-ro",
        &["/write_file.wasm", "new.txt"],
    );
    assert_ne!(code, Some(0), "a write to a read-only mount fails");
    assert!(
        !ro.join("new.txt").exists(),
        "nothing was created on the host"
    );
    let (code, _) = containerd.run_to_exit(
        &["--mount", &rw_mount],
        &write,
        "write-rw",
        &["/write_file.wasm", "new.txt"],
    );
    assert_eq!(code, Some(0), "a write to a read-write mount succeeds");
    assert_eq!(
        std::fs::read_to_string(rw.join("new.txt")).expect("written on the host"),
        "written by wasm\n"
    );

    let list = rootfs_with_wasm(dir, "list.wasm", LIST_PREOPENS_WAT);
    let (code, out) = containerd.run_to_exit(
        &[
            "--mount",
            &ro_mount,
            "--mount",
            &rw_mount,
            "--mount",
            &file_mount,
        ],
        &list,
        "list-preopens",
        &["/list.wasm"],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "/data\n/out\n"),
        "the mounted directories and nothing else"
    );
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
}

/// `ctr task metrics` (containerd's Metrics API, cgroups v1 message) for a running wasm task:
/// memory is the guest's linear memory (one 64 KiB page), the limit is the spec's, and CPU
/// grows while the guest spins.
fn metrics_report_memory_and_cpu(flavor: Flavor) {
    let containerd = Containerd::start(flavor, None);
    let spin = rootfs_with_wasm(containerd.dir.path(), "spin.wasm", SPIN_WAT);
    let limit = 32 * MIB;
    containerd.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        &limit.to_string(),
        "--rootfs",
        spin.to_str().expect("utf8"),
        "spin-1",
        "/spin.wasm",
    ]);
    containerd.wait_running("spin-1");
    let cpu = |metrics: &serde_json::Value| metrics["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    let mut first = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            first = containerd.metrics("spin-1");
            cpu(&first) > 0
        }),
        "CPU time is reported: {first}"
    );
    assert_eq!(
        first["memory"]["usage"]["usage"].as_u64(),
        Some(64 << 10),
        "memory is the guest's one page: {first}"
    );
    assert_eq!(
        first["memory"]["usage"]["limit"].as_u64(),
        Some(limit),
        "the limit is the spec's: {first}"
    );
    let mut later = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            later = containerd.metrics("spin-1");
            cpu(&later) > cpu(&first)
        }),
        "CPU time grows while the guest spins: {first} then {later}"
    );
    stop_and_delete(&containerd, "spin-1");
    let output = containerd.ctr(&["task", "metrics", "spin-1"]);
    assert!(!output.status.success(), "no metrics for a deleted task");
    assert!(containerd.wait_no_shim(Duration::from_secs(10)));
}

#[test]
fn v2_memory_limit_reaches_the_guest() {
    memory_limit_reaches_the_guest(Flavor::V2);
}

#[test]
fn v2_mounts_become_preopens() {
    mounts_become_preopens(Flavor::V2);
}

#[test]
fn v2_metrics_report_memory_and_cpu() {
    metrics_report_memory_and_cpu(Flavor::V2);
}

#[test]
fn v1_6_memory_limit_reaches_the_guest() {
    memory_limit_reaches_the_guest(Flavor::V1_6);
}

#[test]
fn v1_6_mounts_become_preopens() {
    mounts_become_preopens(Flavor::V1_6);
}

#[test]
fn v1_6_metrics_report_memory_and_cpu() {
    metrics_report_memory_and_cpu(Flavor::V1_6);
}
