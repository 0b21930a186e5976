//! Engine benchmark: `make bench-engine` (= `cargo bench -p feather-engine --bench engine`).
//!
//! Prints, each beside its baseline measured in the same run:
//! 1. compile time of the hello HTTP component: cold (compile + cache write) vs cache hit;
//! 2. instantiation of the hello component from a warm engine (p50/p99): our engine (pooling
//!    allocator, CoW images, limiter, epochs) vs a default-config wasmtime engine;
//! 3. HTTP over loopback with `wrk --latency` at c=1 and c=64: our server vs `wasmtime serve`
//!    (wasmtime-cli at the same version) on the same component vs a native hyper hello server.
//!
//! Servers run as separate processes (this binary re-executed with `serve-feather` or
//! `serve-native`, and `wasmtime serve`) so that each gets the same treatment from wrk.

#[path = "../tests/common/guests.rs"]
mod guests;

use feather_engine::{ArtifactSource, Engine, EngineConfig, Limits, RunOptions, StopSignal};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELLO_BODY: &str = "hello from wasm\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("serve-feather") => serve_feather(&args[2..]),
        Some("serve-native") => serve_native(&args[2..]),
        _ => orchestrate(),
    };
    if let Err(e) = result {
        eprintln!("bench-engine: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error>;

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn engine_config(cache_dir: &Path) -> EngineConfig {
    EngineConfig {
        cache_dir: Some(cache_dir.to_path_buf()),
        ..EngineConfig::default()
    }
}

/// Child mode: serve `wasm` with our engine on 127.0.0.1:`port`.
fn serve_feather(args: &[String]) -> Result<(), BoxError> {
    let [wasm, port, cache] = args else {
        return Err("usage: serve-feather WASM PORT CACHE_DIR".into());
    };
    runtime()?.block_on(async {
        let engine = Engine::new(engine_config(Path::new(cache)))?;
        let program = engine.load(std::fs::read(wasm)?).await?;
        let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>()?))?;
        let opts = RunOptions {
            name: "bench".into(),
            limits: Limits {
                deadline: Some(Duration::from_secs(30)),
                max_concurrency: 256,
                ..Limits::default()
            },
            ..RunOptions::default()
        };
        program.serve(listener, opts, StopSignal::new()).await?;
        Ok(())
    })
}

/// Child mode: a native hyper HTTP/1.1 server answering every request with the same body.
fn serve_native(args: &[String]) -> Result<(), BoxError> {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let [port] = args else {
        return Err("usage: serve-native PORT".into());
    };
    let port: u16 = port.parse()?;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(HELLO_BODY.as_bytes()),
                    )))
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn orchestrate() -> Result<(), BoxError> {
    println!("== feather-engine benchmark (release build) ==");
    let hello = guests::c_component("hello", guests::World::HttpProxy);
    let work = tempfile::tempdir()?;
    let wasm_path = work.path().join("hello.wasm");
    std::fs::write(&wasm_path, &hello)?;
    println!("component: tests/guests/hello.c, {} bytes", hello.len());
    println!("machine: {}\n", load_average());

    compile_times(&hello, work.path())?;
    instantiation(&hello, work.path())?;
    http_servers(&wasm_path, work.path())?;
    Ok(())
}

fn compile_times(wasm: &[u8], work: &Path) -> Result<(), BoxError> {
    let rt = runtime()?;
    let mut cold = Vec::new();
    let mut hit = Vec::new();
    for round in 0..5 {
        let dir = work.join(format!("cache-compile-{round}"));
        let (c, h) = rt.block_on(async {
            let engine = Engine::new(engine_config(&dir))?;
            let t = Instant::now();
            let p = engine.load(wasm.to_vec()).await?;
            let c = t.elapsed();
            assert_eq!(p.source(), ArtifactSource::Compiled);
            drop((p, engine));
            // A new engine (a new shim process) with the same cache directory.
            let engine = Engine::new(engine_config(&dir))?;
            let t = Instant::now();
            let p = engine.load(wasm.to_vec()).await?;
            let h = t.elapsed();
            assert_eq!(p.source(), ArtifactSource::DiskCache);
            Ok::<_, BoxError>((c, h))
        })?;
        cold.push(c);
        hit.push(h);
    }
    cold.sort();
    hit.sort();
    println!("-- load hello component (median of 5; new engine each time) --");
    println!("  cold (compile + cache write): {:>10.2?}", cold[2]);
    println!("  disk cache hit:               {:>10.2?}", hit[2]);
    println!(
        "  speedup:                      {:>9.1}x\n",
        cold[2].as_secs_f64() / hit[2].as_secs_f64()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn instantiation(wasm: &[u8], work: &Path) -> Result<(), BoxError> {
    const N: usize = 20_000;
    let rt = runtime()?;
    let ours = rt.block_on(async {
        let engine = Engine::new(engine_config(&work.join("cache-inst")))?;
        let program = engine.load(wasm.to_vec()).await?;
        let limits = Limits::default();
        for _ in 0..1000 {
            program.instantiate_once(&limits).await?;
        }
        let mut times = Vec::with_capacity(N);
        for _ in 0..N {
            times.push(program.instantiate_once(&limits).await?);
        }
        Ok::<_, BoxError>(times)
    })?;
    let baseline = rt.block_on(baseline_instantiate(wasm, N))?;
    let show = |name: &str, mut t: Vec<Duration>| {
        t.sort();
        println!(
            "  {name:<44} p50 {:>9.2?}  p99 {:>9.2?}",
            percentile(&t, 0.50),
            percentile(&t, 0.99)
        );
    };
    println!("-- instantiate hello component, warm ({N} instances, store + instance + drop) --");
    show("feather-engine (pooling, CoW, limiter, WASI ctx)", ours);
    show("baseline: wasmtime default config, bare store", baseline);
    println!();
    Ok(())
}

/// wasmtime with its default (on-demand) allocator, a bare WASI context, same component.
async fn baseline_instantiate(wasm: &[u8], n: usize) -> Result<Vec<Duration>, BoxError> {
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
    use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
    struct State {
        wasi: WasiCtx,
        http: WasiHttpCtx,
        table: ResourceTable,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }
    impl WasiHttpView for State {
        fn http(&mut self) -> WasiHttpCtxView<'_> {
            WasiHttpCtxView {
                ctx: &mut self.http,
                table: &mut self.table,
                hooks: Default::default(),
            }
        }
    }
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, wasm)?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let mut times = Vec::with_capacity(n);
    for i in 0..(n + 1000) {
        let t = Instant::now();
        let mut store = wasmtime::Store::new(
            &engine,
            State {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
            },
        );
        pre.instantiate_async(&mut store).await?;
        drop(store);
        if i >= 1000 {
            times.push(t.elapsed());
        }
    }
    Ok(times)
}

struct Server {
    name: &'static str,
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(server: &mut Server) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            return Err(format!("{} exited early: {status}", server.name).into());
        }
        if let Ok(body) = http_get(server.port)
            && body.contains(HELLO_BODY)
        // chunked or content-length framing
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{} not ready within 60 s", server.name).into())
}

/// One GET / with a raw HTTP/1.1 request; returns the whole response.
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn wasmtime_cli() -> Option<PathBuf> {
    let tools = std::env::var_os("FEATHER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/featherweight"))
        .join("tools/bin/wasmtime");
    if tools.is_file() {
        return Some(tools);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("wasmtime"))
            .find(|p| p.is_file())
    })
}

fn http_servers(wasm_path: &Path, work: &Path) -> Result<(), BoxError> {
    let me = std::env::current_exe()?;
    let mut servers = Vec::new();

    let port = free_port()?;
    let cache = work.join("cache-serve");
    servers.push(Server {
        name: "feather-engine",
        child: Command::new(&me)
            .arg("serve-feather")
            .arg(wasm_path)
            .arg(port.to_string())
            .arg(&cache)
            .stdout(Stdio::null())
            .spawn()?,
        port,
    });
    match wasmtime_cli() {
        Some(wasmtime) => {
            let version = Command::new(&wasmtime).arg("--version").output()?;
            println!(
                "baseline: {} ({})",
                String::from_utf8_lossy(&version.stdout).trim(),
                wasmtime.display()
            );
            let port = free_port()?;
            servers.push(Server {
                name: "wasmtime serve",
                child: Command::new(wasmtime)
                    .arg("serve")
                    .arg(format!("--addr=127.0.0.1:{port}"))
                    .arg(wasm_path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
                port,
            });
        }
        None => println!(
            "!! wasmtime-cli not found: run `scripts/install-guest-tools.sh --wasmtime` for the \
             `wasmtime serve` baseline"
        ),
    }
    let port = free_port()?;
    servers.push(Server {
        name: "native hyper",
        child: Command::new(&me)
            .arg("serve-native")
            .arg(port.to_string())
            .spawn()?,
        port,
    });
    for s in &mut servers {
        wait_ready(s)?;
    }

    let seconds = env_u32("BENCH_SECONDS", 10);
    let rounds = env_u32("BENCH_ROUNDS", 3).max(1);
    println!(
        "-- HTTP GET / over loopback: wrk --latency, keep-alive (HTTP/1.1 persistent \
         connections), {seconds} s per run after a 2 s warm-up, {rounds} round(s) taken in turn \
         across the servers; median per cell --"
    );
    println!("  load before: {}", load_average());
    // results[conns index][server index] = one WrkResult per round
    let conn_counts = [1u32, 64];
    let mut results: Vec<Vec<Vec<WrkResult>>> = conn_counts
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    for (ci, &conns) in conn_counts.iter().enumerate() {
        let threads = conns.min(2);
        for _ in 0..rounds {
            for (si, s) in servers.iter().enumerate() {
                wrk(s.port, threads, conns, 2)?;
                results[ci][si].push(wrk(s.port, threads, conns, seconds)?);
            }
        }
    }
    println!("  load after:  {}", load_average());
    println!(
        "  {:<16} {:>5} {:>12} {:>10} {:>10}",
        "server", "conns", "requests/s", "p50", "p99"
    );
    let mut medians: Vec<Vec<Cell>> = Vec::new();
    for (ci, &conns) in conn_counts.iter().enumerate() {
        let mut row = Vec::new();
        for (si, s) in servers.iter().enumerate() {
            let cell = Cell::median(&results[ci][si]);
            println!(
                "  {:<16} {:>5} {:>12.0} {:>10.2?} {:>10.2?}",
                s.name, conns, cell.requests_per_sec, cell.p50, cell.p99
            );
            row.push(cell);
        }
        medians.push(row);
    }
    println!(
        "  ratios feather-engine / baseline (req/s: higher is better; latency: lower is better)"
    );
    for (ci, &conns) in conn_counts.iter().enumerate() {
        let ours = &medians[ci][0];
        for (si, s) in servers.iter().enumerate().skip(1) {
            let base = &medians[ci][si];
            println!(
                "  c={conns:<3} vs {:<16} req/s {:>5.2}x   p50 {:>5.2}x   p99 {:>5.2}x",
                s.name,
                ours.requests_per_sec / base.requests_per_sec,
                ours.p50.as_secs_f64() / base.p50.as_secs_f64(),
                ours.p99.as_secs_f64() / base.p99.as_secs_f64(),
            );
        }
    }
    println!();
    Ok(())
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The load averages from /proc/loadavg (1, 5, 15 min) and the core count.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avgs: Vec<&str> = load.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {} on {cores} cores", avgs.join(" "))
}

/// The median of each figure over the rounds of one server at one concurrency.
struct Cell {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl Cell {
    fn median(runs: &[WrkResult]) -> Cell {
        let mid = runs.len() / 2;
        let mut rps: Vec<f64> = runs.iter().map(|r| r.requests_per_sec).collect();
        rps.sort_by(f64::total_cmp);
        let mut p50: Vec<Duration> = runs.iter().map(|r| r.p50).collect();
        p50.sort();
        let mut p99: Vec<Duration> = runs.iter().map(|r| r.p99).collect();
        p99.sort();
        Cell {
            requests_per_sec: rps[mid],
            p50: p50[mid],
            p99: p99[mid],
        }
    }
}

struct WrkResult {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn wrk(port: u16, threads: u32, conns: u32, seconds: u32) -> Result<WrkResult, BoxError> {
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{text}").into());
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    Ok(WrkResult {
        requests_per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?,
        p50: field("50%")
            .and_then(|v| parse_wrk_duration(&v))
            .ok_or_else(|| format!("no 50% line in wrk output:\n{text}"))?,
        p99: field("99%")
            .and_then(|v| parse_wrk_duration(&v))
            .ok_or_else(|| format!("no 99% line in wrk output:\n{text}"))?,
    })
}

/// wrk's latency figures: `41.00us`, `1.23ms`, `2.00s`, `1.50m`.
fn parse_wrk_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}
