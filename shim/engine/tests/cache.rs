//! The compiled-artifact disk cache: hits across engines (processes), and bad entries
//! (truncated, corrupt, foreign) discarded and recompiled, never trusted, never a crash.

mod common;

use common::guests::wat_module;
use common::run_capture;
use feather_engine::{ArtifactSource, Engine, EngineConfig, ExitStatus, RunOptions};
use std::path::Path;
use std::time::Duration;

/// A fresh engine on `dir`, as a new shim process would make.
fn engine_on(dir: &Path) -> Engine {
    common::init_tracing();
    Engine::new(EngineConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 8,
        max_memory_per_instance: 16 << 20,
        epoch_tick: Duration::from_millis(5),
        ..EngineConfig::default()
    })
    .expect("engine")
}

async fn load_source(dir: &Path, wasm: &[u8]) -> (ArtifactSource, String) {
    let program = engine_on(dir).load(wasm.to_vec()).await.expect("load");
    (program.source(), program.digest().to_string())
}

fn entry_path(dir: &Path, digest: &str) -> std::path::PathBuf {
    engine_on(dir)
        .cache_entry_path(digest)
        .expect("cache configured")
}

#[tokio::test]
async fn a_second_engine_loads_from_the_cache_and_the_program_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = wat_module("hello");
    let (first, digest) = load_source(dir.path(), &wasm).await;
    assert_eq!(first, ArtifactSource::Compiled);
    assert!(entry_path(dir.path(), &digest).is_file());
    let (second, _) = load_source(dir.path(), &wasm).await;
    assert_eq!(second, ArtifactSource::DiskCache);

    let program = engine_on(dir.path()).load(wasm).await.expect("load");
    assert_eq!(program.source(), ArtifactSource::DiskCache);
    let stdout = tempfile::NamedTempFile::new().expect("stdout");
    let opts = RunOptions {
        stdout: feather_engine::Output::File(stdout.reopen().expect("reopen")),
        ..RunOptions::default()
    };
    let status = program
        .run(opts, feather_engine::StopSignal::new())
        .await
        .expect("run");
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(
        std::fs::read_to_string(stdout.path()).expect("read"),
        "hello from wasm\n"
    );
}

#[tokio::test]
async fn bad_entries_are_discarded_and_recompiled() {
    let wasm = wat_module("exit_code");
    // Each way an entry can be bad: truncated, a flipped byte, someone else's file, empty.
    type Spoil = fn(Vec<u8>) -> Vec<u8>;
    let damage: [(&str, Spoil); 4] = [
        ("truncated", |b| b[..b.len() / 2].to_vec()),
        ("corrupt", |mut b| {
            let i = b.len() - 100;
            b[i] ^= 0xff;
            b
        }),
        ("foreign", |_| b"\x7fELF not ours at all".to_vec()),
        ("empty", |_| Vec::new()),
    ];
    for (what, spoil) in damage {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, digest) = load_source(dir.path(), &wasm).await;
        let path = entry_path(dir.path(), &digest);
        let good = std::fs::read(&path).expect("entry");
        std::fs::write(&path, spoil(good.clone())).expect("spoil entry");

        let (source, _) = load_source(dir.path(), &wasm).await;
        assert_eq!(
            source,
            ArtifactSource::Compiled,
            "{what} entry must not be used"
        );
        assert_eq!(
            std::fs::read(&path).expect("rewritten entry"),
            good,
            "{what} entry replaced by a good one"
        );
        let (source, _) = load_source(dir.path(), &wasm).await;
        assert_eq!(source, ArtifactSource::DiskCache, "after {what}");
    }
}

#[tokio::test]
async fn an_entry_for_other_wasm_under_this_key_is_refused_by_kind() {
    // A component's artifact planted where a core module's entry belongs: wasmtime's header
    // says "component", the loader expects a module, so it is discarded.
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wat_module("hello");
    let component = common::guests::c_component("cli_hello", common::guests::World::CliCommand);
    let (_, module_digest) = load_source(dir.path(), &module).await;
    let (_, component_digest) = load_source(dir.path(), &component).await;
    std::fs::copy(
        entry_path(dir.path(), &component_digest),
        entry_path(dir.path(), &module_digest),
    )
    .expect("plant entry");
    let (source, _) = load_source(dir.path(), &module).await;
    assert_eq!(source, ArtifactSource::Compiled);
    let ran = run_capture(module, RunOptions::default()).await;
    assert_eq!(ran.stdout, "hello from wasm\n");
}

#[tokio::test]
async fn concurrent_loads_of_one_wasm_compile_once_and_share_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_on(dir.path());
    let wasm = wat_module("env_var");
    let loads: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            let wasm = wasm.clone();
            tokio::spawn(async move { engine.load(wasm).await.expect("load") })
        })
        .collect();
    let mut programs = Vec::new();
    for l in loads {
        programs.push(l.await.expect("load task"));
    }
    assert!(programs.iter().all(|p| p.shares_code_with(&programs[0])));
    assert_eq!(programs[0].source(), ArtifactSource::Compiled);
    // No temp files left behind by the atomic write.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read cache dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn two_engines_writing_the_same_entry_at_once_leave_a_valid_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = wat_module("trap");
    let a = engine_on(dir.path());
    let b = engine_on(dir.path());
    let (pa, pb) = tokio::join!(a.load(wasm.clone()), b.load(wasm.clone()));
    let (pa, pb) = (pa.expect("load a"), pb.expect("load b"));
    assert_eq!(pa.digest(), pb.digest());
    let (source, _) = load_source(dir.path(), &wasm).await;
    assert_eq!(source, ArtifactSource::DiskCache);
}

#[tokio::test]
async fn an_unwritable_cache_dir_is_an_error_naming_it() {
    let file = tempfile::NamedTempFile::new().expect("file");
    let err = Engine::new(EngineConfig {
        cache_dir: Some(file.path().join("cache")),
        ..EngineConfig::default()
    })
    .map(|_| ())
    .expect_err("a cache dir under a regular file");
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}
