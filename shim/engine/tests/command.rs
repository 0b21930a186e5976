//! Commands (WASI p1 modules and wasi:cli/run components): what the guest sees and how runs
//! end. Every bad guest runs in this test process: the process surviving is part of the test.

mod common;

use common::guests::{World, c_component, wat_module};
use common::{args, engine, run_capture, run_capture_with};
use feather_engine::{
    EngineError, ExitStatus, Limits, Preopen, ProgramKind, RunOptions, Stats, StopSignal,
};
use std::time::Duration;

#[tokio::test]
async fn hello_writes_stdout_and_exits_zero() {
    let ran = run_capture(wat_module("hello"), RunOptions::default()).await;
    assert_eq!(ran.status, ExitStatus::Exited(0));
    assert_eq!(ran.stdout, "hello from wasm\n");
    assert_eq!(ran.stderr, "");
}

#[tokio::test]
async fn exit_code_is_the_guests() {
    for code in ["0", "3", "42"] {
        let opts = RunOptions {
            args: args(&["exit_code.wasm", code]),
            ..RunOptions::default()
        };
        let ran = run_capture(wat_module("exit_code"), opts).await;
        assert_eq!(ran.status, ExitStatus::Exited(code.parse().unwrap_or(-1)));
        assert_eq!(ran.status.code(), code.parse::<i32>().unwrap_or(-1));
    }
}

#[tokio::test]
async fn env_is_exactly_what_was_given() {
    let opts = RunOptions {
        env: vec![
            ("OTHER".into(), "x".into()),
            ("GREETING".into(), "hi there".into()),
        ],
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("env_var"), opts).await;
    assert_eq!(ran.stdout, "hi there\n");

    // The host's environment does not leak in: HOME and PATH are set for this test process.
    for host_var in ["HOME", "PATH"] {
        assert!(std::env::var_os(host_var).is_some());
    }
    let ran = run_capture(wat_module("env_var"), RunOptions::default()).await;
    assert_eq!(ran.stdout, "GREETING unset\n");
}

fn preopen(dir: &std::path::Path, read_only: bool) -> Vec<Preopen> {
    vec![Preopen {
        host_path: dir.to_path_buf(),
        guest_path: "/data".into(),
        read_only,
    }]
}

#[tokio::test]
async fn reads_a_preopened_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input.txt"), "file content\n").expect("write input");
    let opts = RunOptions {
        args: args(&["cat_file.wasm", "input.txt"]),
        preopens: preopen(dir.path(), true),
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("cat_file"), opts).await;
    assert_eq!(ran.status, ExitStatus::Exited(0));
    assert_eq!(ran.stdout, "file content\n");
}

#[tokio::test]
async fn cannot_open_files_outside_the_preopens() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    std::fs::write(root.path().join("secret.txt"), "SECRET\n").expect("write secret");
    std::os::unix::fs::symlink(root.path().join("secret.txt"), data.join("link.txt"))
        .expect("symlink");
    let secret_abs = root.path().join("secret.txt");
    for path in [
        "../secret.txt",
        "link.txt",
        secret_abs.to_str().unwrap_or("/"),
        "/etc/passwd",
    ] {
        let opts = RunOptions {
            args: args(&["cat_file.wasm", path]),
            preopens: preopen(&data, true),
            ..RunOptions::default()
        };
        let ran = run_capture(wat_module("cat_file"), opts).await;
        assert_eq!(ran.stdout, "open failed\n", "path {path}");
        assert!(
            matches!(ran.status, ExitStatus::Exited(errno) if errno != 0),
            "path {path}: {:?}",
            ran.status
        );
    }
    // Without any preopen there is no fd 3 at all.
    let opts = RunOptions {
        args: args(&["cat_file.wasm", "input.txt"]),
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("cat_file"), opts).await;
    assert_eq!(ran.stdout, "open failed\n");
}

#[tokio::test]
async fn read_only_preopens_refuse_writes_and_read_write_ones_allow_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |read_only| RunOptions {
        args: args(&["write_file.wasm", "out.txt"]),
        preopens: preopen(dir.path(), read_only),
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("write_file"), write(true)).await;
    assert!(
        matches!(ran.status, ExitStatus::Exited(errno) if errno != 0),
        "{:?}",
        ran.status
    );
    assert!(!dir.path().join("out.txt").exists());

    let ran = run_capture(wat_module("write_file"), write(false)).await;
    assert_eq!(ran.status, ExitStatus::Exited(0));
    let written = std::fs::read_to_string(dir.path().join("out.txt")).expect("out.txt");
    assert_eq!(written, "written by wasm\n");
}

#[tokio::test]
async fn a_trap_is_a_nonzero_exit_and_output_before_it_is_kept() {
    let ran = run_capture(wat_module("trap"), RunOptions::default()).await;
    assert_eq!(ran.stdout, "about to trap\n");
    match &ran.status {
        ExitStatus::Trapped(message) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_ne!(ran.status.code(), 0);
}

#[tokio::test]
async fn stack_overflow_traps_without_crashing() {
    let ran = run_capture(wat_module("stack_overflow"), RunOptions::default()).await;
    match &ran.status {
        ExitStatus::Trapped(message) => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_bomb_hits_the_limit_and_traps() {
    let stats = Stats::new();
    let opts = RunOptions {
        limits: Limits {
            max_memory_bytes: Some(8 << 20),
            ..Limits::default()
        },
        stats: stats.clone(),
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("memory_bomb"), opts).await;
    match &ran.status {
        ExitStatus::Trapped(message) => {
            assert!(
                message.contains("memory limit of 8388608 bytes"),
                "{message}"
            )
        }
        other => panic!("expected a trap at the memory limit, got {other:?}"),
    }
    let after = stats.snapshot();
    assert_eq!(after.memory_bytes, 0, "memory released with the instance");
    assert_eq!(after.instances_live, 0);
    assert_eq!(after.instances_total, 1);
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_deadline() {
    let opts = RunOptions {
        limits: Limits {
            deadline: Some(Duration::from_millis(200)),
            ..Limits::default()
        },
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("infinite_loop"), opts).await;
    assert_eq!(ran.status, ExitStatus::DeadlineExceeded);
    assert_eq!(ran.status.code(), 124);
}

#[tokio::test]
async fn a_guest_blocked_in_the_host_is_stopped_by_the_deadline() {
    let opts = RunOptions {
        limits: Limits {
            deadline: Some(Duration::from_millis(200)),
            ..Limits::default()
        },
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("sleep_forever"), opts).await;
    assert_eq!(ran.status, ExitStatus::DeadlineExceeded);
}

#[tokio::test]
async fn kill_stops_a_spinning_guest() {
    let stop = StopSignal::new();
    let killer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        killer.kill();
    });
    let mut opts = RunOptions::default();
    let ran = run_capture_with(wat_module("infinite_loop"), &mut opts, stop).await;
    assert_eq!(ran.status, ExitStatus::Killed);
    assert_eq!(ran.status.code(), 137);
}

#[tokio::test]
async fn drain_lets_a_command_finish_within_the_grace_then_kills_it() {
    // A command that finishes on its own is not disturbed by a drain with a long grace.
    let stop = StopSignal::new();
    stop.drain(Duration::from_secs(30));
    let mut opts = RunOptions::default();
    let ran = run_capture_with(wat_module("hello"), &mut opts, stop).await;
    assert_eq!(ran.status, ExitStatus::Exited(0));
    // One that never finishes is killed once the grace is over.
    let stop = StopSignal::new();
    stop.drain(Duration::from_millis(100));
    let ran = run_capture_with(wat_module("infinite_loop"), &mut opts, stop).await;
    assert_eq!(ran.status, ExitStatus::Killed);
}

#[tokio::test]
async fn stats_count_instances_and_guest_time() {
    let stats = Stats::new();
    let opts = RunOptions {
        limits: Limits {
            deadline: Some(Duration::from_millis(100)),
            ..Limits::default()
        },
        stats: stats.clone(),
        ..RunOptions::default()
    };
    let ran = run_capture(wat_module("infinite_loop"), opts).await;
    assert_eq!(ran.status, ExitStatus::DeadlineExceeded);
    let s = stats.snapshot();
    assert_eq!(s.instances_total, 1);
    assert_eq!(s.instances_live, 0);
    // The guest spun until the deadline: it was on CPU for a good part of it.
    assert!(s.guest_cpu >= Duration::from_millis(20), "{s:?}");
    assert!(s.guest_wall >= Duration::from_millis(100), "{s:?}");
}

#[tokio::test]
async fn loading_refuses_what_it_cannot_run_and_names_it() {
    let engine = engine();
    let err = |r: Result<feather_engine::Program, EngineError>| match r {
        Ok(p) => panic!("expected an error, loaded a {}", p.kind()),
        Err(e) => e.to_string(),
    };
    let reactor = err(engine.load(wat_module("reactor")).await);
    assert!(
        reactor.contains("without a `_start`") && reactor.contains("[add]"),
        "{reactor}"
    );
    let text = err(engine.load(b"(module)".to_vec()).await);
    assert!(text.contains("text"), "{text}");
    let junk = err(engine.load(b"PK\x03\x04 a zip file".to_vec()).await);
    assert!(junk.contains("504b0304"), "{junk}");
    let unknown_import = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#,
    )
    .expect("wat");
    let link = err(engine.load(unknown_import).await);
    assert!(link.contains("launch_missiles"), "{link}");
}

#[tokio::test]
async fn the_same_wasm_is_loaded_once() {
    let engine = engine();
    let a = engine.load(wat_module("hello")).await.expect("load");
    let b = engine.load(wat_module("hello")).await.expect("load");
    assert_eq!(a.kind(), ProgramKind::WasiCommand);
    assert_eq!(a.digest(), b.digest());
    assert!(
        a.shares_code_with(&b),
        "one compiled artifact for both loads"
    );
}

#[tokio::test]
async fn serve_refuses_a_command_by_kind() {
    let program = engine().load(wat_module("hello")).await.expect("load");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let err = program
        .serve(listener, RunOptions::default(), StopSignal::new())
        .await
        .expect_err("serve on a command");
    assert!(
        err.to_string().contains("WASI preview 1 command module"),
        "{err}"
    );
}

#[tokio::test]
async fn cli_component_runs_with_args_env_and_exit_code() {
    let wasm = c_component("cli_hello", World::CliCommand);
    let program = engine().load(wasm.clone()).await.expect("load");
    assert_eq!(program.kind(), ProgramKind::CliComponent);
    let opts = RunOptions {
        args: args(&["cli_hello", "one", "two"]),
        env: vec![("GREETING".into(), "bonjour".into())],
        ..RunOptions::default()
    };
    let ran = run_capture(wasm.clone(), opts).await;
    assert_eq!(ran.status, ExitStatus::Exited(0));
    assert_eq!(ran.stdout, "bonjour from a cli component: one two\n");
    assert_eq!(ran.stderr, "done\n");

    // A non-zero exit of a component is reported as 1 (wasi:cli/exit carries only ok/err).
    let opts = RunOptions {
        args: args(&["cli_hello", "fail"]),
        ..RunOptions::default()
    };
    let ran = run_capture(wasm, opts).await;
    assert_eq!(ran.status, ExitStatus::Exited(1));
}
