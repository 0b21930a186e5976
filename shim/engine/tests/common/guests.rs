//! Test guests, built from the readable sources in `tests/guests/` at test time.
//!
//! * `*.wat`: core modules, compiled with the `wat` crate.
//! * `*.c`: components, built with the guest toolchain (`scripts/install-guest-tools.sh`):
//!   HTTP guests with `wit-bindgen c` against the WIT shipped in wasmtime-wasi-http 48.0.8
//!   (`wasi:http/proxy@0.2.12`), clang-19 for wasm32-wasi, and `wasm-tools component new` with
//!   the WASI p1 proxy adapter from `wasi-preview1-component-adapter-provider` (so the component
//!   imports only what the proxy world offers); CLI guests are plain wasi-libc programs adapted
//!   with the command adapter.
//!
//! Built components are cached in `$FEATHER_CACHE/guests/<key>/` where the key hashes the
//! source, the WIT, the adapter and the tool versions, so a rebuild happens only on change.
//! Shared by the integration tests and the benchmark (`#[path]`-included).
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Directory of the guest sources.
pub fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests")
}

/// A core module from `tests/guests/<name>.wat`.
pub fn wat_module(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The world of a C guest.
#[derive(Clone, Copy, Debug)]
pub enum World {
    /// `wasi:http/proxy@0.2.12` (exports `wasi:http/incoming-handler`).
    HttpProxy,
    /// A wasi-libc `main`, adapted to `wasi:cli/command` (exports `wasi:cli/run`).
    CliCommand,
}

/// A component from `tests/guests/<name>.c`, built (or taken from the build cache).
pub fn c_component(name: &str, world: World) -> Vec<u8> {
    // One build at a time within a test binary; across processes the rename below is atomic.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let source = guests_dir().join(format!("{name}.c"));
    let tools = Tools::find();
    let key = build_key(&source, world, &tools);
    let out_dir = cache_root().join("guests").join(&key);
    let out = out_dir.join(format!("{name}.wasm"));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let work = tempfile::tempdir().expect("temp dir for a guest build");
    let component = build(&source, world, &tools, work.path());
    std::fs::create_dir_all(&out_dir).expect("create the guest cache dir");
    let tmp = out_dir.join(format!(".{name}.wasm.{}", std::process::id()));
    std::fs::write(&tmp, &component).expect("write built guest");
    std::fs::rename(&tmp, &out).expect("publish built guest");
    component
}

fn cache_root() -> PathBuf {
    match std::env::var_os("FEATHER_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/featherweight"),
    }
}

/// The WIT folder of the wasmtime-wasi-http crate we link against (its `wasi:http@0.2.12`).
pub fn http_wit_dir() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    let registry = cargo_home.join("registry/src");
    let entries = std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("cargo registry {}: {e}", registry.display()));
    for entry in entries.flatten() {
        let wit = entry.path().join("wasmtime-wasi-http-48.0.8/wit");
        if wit.is_dir() {
            return wit;
        }
    }
    panic!(
        "wasmtime-wasi-http-48.0.8/wit not found under {}; run `cargo fetch`",
        registry.display()
    )
}

struct Tools {
    wit_bindgen: PathBuf,
    wasm_tools: PathBuf,
    clang: PathBuf,
}

impl Tools {
    fn find() -> Tools {
        let find = |env: &str, name: &str| -> PathBuf {
            if let Some(p) = std::env::var_os(env) {
                return PathBuf::from(p);
            }
            let in_tools = cache_root().join("tools/bin").join(name);
            if in_tools.is_file() {
                return in_tools;
            }
            let on_path = std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            });
            on_path.unwrap_or_else(|| {
                panic!(
                    "guest toolchain: `{name}` not found ({env}, $FEATHER_CACHE/tools/bin, PATH). \
                     Install it with `make guest-tools` (scripts/install-guest-tools.sh)."
                )
            })
        };
        Tools {
            wit_bindgen: find("WIT_BINDGEN", "wit-bindgen"),
            wasm_tools: find("WASM_TOOLS", "wasm-tools"),
            clang: find("CLANG", "clang-19"),
        }
    }

    fn versions(&self) -> String {
        [&self.wit_bindgen, &self.wasm_tools, &self.clang]
            .iter()
            .map(|tool| {
                let out = Command::new(tool)
                    .arg("--version")
                    .output()
                    .unwrap_or_else(|e| panic!("{} --version: {e}", tool.display()));
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect()
    }
}

fn adapter(world: World) -> &'static [u8] {
    use wasi_preview1_component_adapter_provider as adapters;
    match world {
        World::HttpProxy => adapters::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
        World::CliCommand => adapters::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    }
}

fn build_key(source: &Path, world: World, tools: &Tools) -> String {
    let mut h = Sha256::new();
    h.update(std::fs::read(source).unwrap_or_else(|e| panic!("{}: {e}", source.display())));
    h.update(format!("{world:?}"));
    h.update(adapter(world));
    h.update(tools.versions());
    if let World::HttpProxy = world {
        let mut wit_files: Vec<PathBuf> = walk(&http_wit_dir());
        wit_files.sort();
        for f in wit_files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).unwrap_or_default());
        }
    }
    hex::encode(&h.finalize()[..16])
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("guest build: {shown}: {e}"));
    assert!(
        out.status.success(),
        "guest build failed: {shown}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build(source: &Path, world: World, tools: &Tools, work: &Path) -> Vec<u8> {
    let core = work.join("core.wasm");
    let mut clang = Command::new(&tools.clang);
    clang.args(["--target=wasm32-wasi", "-O2", "-Wall", "-Werror"]);
    match world {
        World::HttpProxy => {
            let gen_dir = work.join("gen");
            run(Command::new(&tools.wit_bindgen)
                .arg("c")
                .arg(http_wit_dir())
                .args(["--world", "wasi:http/proxy@0.2.12", "--out-dir"])
                .arg(&gen_dir));
            clang
                .arg("-mexec-model=reactor")
                .arg("-Wno-unused-function")
                .arg("-I")
                .arg(&gen_dir)
                .arg(source)
                .arg(gen_dir.join("proxy.c"))
                .arg(gen_dir.join("proxy_component_type.o"));
        }
        World::CliCommand => {
            clang.arg(source);
        }
    }
    run(clang.arg("-o").arg(&core));
    let adapter_path = work.join("adapter.wasm");
    std::fs::write(&adapter_path, adapter(world)).expect("write the WASI adapter");
    let component = work.join("component.wasm");
    run(Command::new(&tools.wasm_tools)
        .args(["component", "new"])
        .arg(&core)
        .arg("--adapt")
        .arg(format!("wasi_snapshot_preview1={}", adapter_path.display()))
        .arg("-o")
        .arg(&component));
    std::fs::read(&component).expect("read the built component")
}
