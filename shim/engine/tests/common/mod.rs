//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod guests;

use feather_engine::{Engine, EngineConfig, ExitStatus, Output, RunOptions, StopSignal};
use std::sync::OnceLock;
use std::time::Duration;

/// Logs from the engine when a test runs with `RUST_LOG=debug`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// One engine for the whole test binary, as in production (one per process). No disk cache:
/// the cache tests make engines of their own.
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    init_tracing();
    ENGINE
        .get_or_init(|| {
            Engine::new(EngineConfig {
                cache_dir: None,
                max_instances: 64,
                max_memory_per_instance: 64 << 20,
                epoch_tick: Duration::from_millis(5),
                ..EngineConfig::default()
            })
            .expect("engine")
        })
        .clone()
}

/// What a command run produced.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run wasm with `opts` (stdout/stderr are replaced by temp files that are read back).
pub async fn run_capture(wasm: Vec<u8>, mut opts: RunOptions) -> Ran {
    run_capture_with(wasm, &mut opts, StopSignal::new()).await
}

pub async fn run_capture_with(wasm: Vec<u8>, opts: &mut RunOptions, stop: StopSignal) -> Ran {
    let program = engine().load(wasm).await.expect("load");
    let stdout = tempfile::NamedTempFile::new().expect("stdout file");
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let opts = RunOptions {
        stdout: Output::File(stdout.reopen().expect("reopen stdout")),
        stderr: Output::File(stderr.reopen().expect("reopen stderr")),
        ..std::mem::take(opts)
    };
    let status = program.run(opts, stop).await.expect("run");
    Ran {
        status,
        stdout: std::fs::read_to_string(stdout.path()).expect("read stdout"),
        stderr: std::fs::read_to_string(stderr.path()).expect("read stderr"),
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
