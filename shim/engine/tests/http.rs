//! HTTP components served by the engine: responses, per-request isolation and limits, outbound
//! allowlist, stop. Guests: `tests/guests/hello.c` and `tests/guests/http_routes.c`.

mod common;

use bytes::Bytes;
use common::engine;
use common::guests::{World, c_component};
use feather_engine::{Limits, Program, ProgramKind, RunOptions, Stats, StopSignal};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A server under test: the engine serving a component on an ephemeral loopback port.
struct Running {
    addr: SocketAddr,
    stop: StopSignal,
    task: JoinHandle<Result<(), feather_engine::EngineError>>,
}

async fn load(name: &str) -> Program {
    let program = engine()
        .load(c_component(name, World::HttpProxy))
        .await
        .expect("load component");
    assert_eq!(program.kind(), ProgramKind::HttpComponent);
    program
}

async fn serve(name: &str, opts: RunOptions) -> Running {
    let program = load(name).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = StopSignal::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { program.serve(listener, opts, stop).await }
    });
    Running { addr, stop, task }
}

/// [`serve`] with default options, counting into the returned [`Stats`].
async fn serve_counted(name: &str) -> (Running, Stats) {
    let stats = Stats::new();
    let opts = RunOptions {
        stats: stats.clone(),
        ..RunOptions::default()
    };
    (serve(name, opts).await, stats)
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

/// Send one request on a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    try_request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn shut_down(server: Running) {
    server.stop.kill();
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns after kill")
        .expect("serve task")
        .expect("serve result");
}

#[tokio::test]
async fn hello_component_answers_and_each_request_gets_a_fresh_instance() {
    let (server, stats) = serve_counted("hello").await;
    for _ in 0..3 {
        let reply = request(server.addr, "GET", "/", &[], "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "hello from wasm\n");
    }
    let s = stats.snapshot();
    assert_eq!(s.requests_total, 3);
    assert_eq!(s.instances_total, 3, "one instance per request");
    assert_eq!(s.requests_failed, 0);
    shut_down(server).await;
    let s = stats.snapshot();
    assert_eq!(s.instances_live, 0);
    assert_eq!(s.memory_bytes, 0);
}

#[tokio::test]
async fn echo_sees_method_path_headers_and_body() {
    let server = serve("http_routes", RunOptions::default()).await;
    let reply = request(
        server.addr,
        "POST",
        "/echo/some/path?q=1",
        &[("x-test", "abc"), ("content-type", "text/plain")],
        "ping body",
    )
    .await;
    assert_eq!(reply.status, 200);
    let body = reply.body;
    assert!(body.contains("method: POST\n"), "{body}");
    assert!(body.contains("path: /echo/some/path?q=1\n"), "{body}");
    assert!(body.contains("x-test: abc\n"), "{body}");
    assert!(body.ends_with("body: ping body\n"), "{body}");
    assert_eq!(
        reply.headers.get("x-echo").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    shut_down(server).await;
}

#[tokio::test]
async fn a_trap_is_a_500_and_the_server_keeps_serving() {
    let (server, stats) = serve_counted("http_routes").await;
    let reply = request(server.addr, "GET", "/trap", &[], "").await;
    assert_eq!(reply.status, 500);
    let reply = request(server.addr, "GET", "/", &[], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "routes guest\n");
    assert_eq!(stats.snapshot().requests_failed, 1);
    shut_down(server).await;
}

#[tokio::test]
async fn a_trap_after_the_response_headers_breaks_the_body_and_counts_once() {
    let (server, stats) = serve_counted("http_routes").await;
    // The status line is out before the guest traps. Known gap, not asserted here: the
    // chunked body then ends cleanly ("partial"), because wasmtime-wasi-http 48 turns a
    // body whose finish sender was dropped (store torn down after the trap) into a normal
    // end of stream; `wasmtime serve` behaves the same.
    let late = try_request(server.addr, "GET", "/late-trap", &[], "").await;
    if let Ok(reply) = &late {
        assert_eq!(reply.status, 200);
    }
    let reply = request(server.addr, "GET", "/", &[], "").await;
    assert_eq!(reply.status, 200);
    // After serve returns every request task has ended: the counters are final.
    shut_down(server).await;
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.requests_total, 2);
    assert_eq!(snapshot.requests_failed, 1);
}

#[tokio::test]
async fn an_error_code_answer_is_a_500_counted_once_even_if_the_guest_then_traps() {
    let (server, stats) = serve_counted("http_routes").await;
    let reply = request(server.addr, "GET", "/error-code", &[], "").await;
    assert_eq!(reply.status, 500);
    shut_down(server).await;
    assert_eq!(stats.snapshot().requests_failed, 1);
}

#[tokio::test]
async fn the_deadline_turns_a_slow_request_into_504() {
    let opts = RunOptions {
        limits: Limits {
            deadline: Some(Duration::from_millis(300)),
            ..Limits::default()
        },
        ..RunOptions::default()
    };
    let server = serve("http_routes", opts).await;
    let started = std::time::Instant::now();
    let reply = request(server.addr, "GET", "/slow?ms=60000", &[], "").await;
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < Duration::from_secs(30));
    // A busy loop is interrupted the same way (epochs), and the server goes on.
    let reply = request(server.addr, "GET", "/spin", &[], "").await;
    assert_eq!(reply.status, 504);
    let reply = request(server.addr, "GET", "/slow?ms=1", &[], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "slept 1 ms\n");
    shut_down(server).await;
}

#[tokio::test]
async fn memory_limit_per_instance_fails_only_that_request() {
    let stats = Stats::new();
    let opts = RunOptions {
        limits: Limits {
            max_memory_bytes: Some(16 << 20),
            ..Limits::default()
        },
        stats: stats.clone(),
        ..RunOptions::default()
    };
    let server = serve("http_routes", opts).await;
    let reply = request(server.addr, "GET", "/alloc?mb=4", &[], "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = request(server.addr, "GET", "/alloc?mb=64", &[], "").await;
    assert_eq!(reply.status, 500);
    let reply = request(server.addr, "GET", "/", &[], "").await;
    assert_eq!(reply.status, 200);
    shut_down(server).await;
    assert_eq!(stats.snapshot().memory_bytes, 0);
}

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_queue_briefly_then_get_503() {
    let stats = Stats::new();
    let opts = RunOptions {
        limits: Limits {
            max_concurrency: 1,
            queue_timeout: Duration::from_millis(100),
            ..Limits::default()
        },
        stats: stats.clone(),
        ..RunOptions::default()
    };
    let server = serve("http_routes", opts).await;
    let addr = server.addr;
    let slow = tokio::spawn(async move { request(addr, "GET", "/slow?ms=1500", &[], "").await });
    // Wait until the slow request holds the only slot.
    while stats.snapshot().instances_live == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The live instance's linear memory shows in the workload's gauge.
    assert!(stats.snapshot().memory_bytes > 0, "{:?}", stats.snapshot());
    let reply = request(addr, "GET", "/", &[], "").await;
    assert_eq!(reply.status, 503);
    assert_eq!(slow.await.expect("slow request").status, 200);
    let reply = request(addr, "GET", "/", &[], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(stats.snapshot().requests_rejected, 1);
    shut_down(server).await;
}

/// A plain hyper server standing in for an outside service.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"upstream says hi"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn outbound_http_reaches_only_allowlisted_hosts() {
    let up = upstream().await;
    let target = format!("127.0.0.1:{}", up.port());
    let opts = RunOptions {
        allowed_outbound_hosts: vec![target.clone()],
        ..RunOptions::default()
    };
    let server = serve("http_routes", opts).await;
    let reply = request(
        server.addr,
        "GET",
        "/outbound",
        &[("x-target", target.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "upstream: upstream says hi\n");
    // Same upstream under another name: not on the list.
    let other = format!("localhost:{}", up.port());
    let reply = request(
        server.addr,
        "GET",
        "/outbound",
        &[("x-target", other.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("HTTP-request-denied"), "{}", reply.body);
    shut_down(server).await;

    // No allowlist: nothing goes out.
    let server = serve("http_routes", RunOptions::default()).await;
    let reply = request(
        server.addr,
        "GET",
        "/outbound",
        &[("x-target", target.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("HTTP-request-denied"), "{}", reply.body);
    shut_down(server).await;
}

#[tokio::test]
async fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let (server, stats) = serve_counted("http_routes").await;
    let addr = server.addr;
    let slow = tokio::spawn(async move { request(addr, "GET", "/slow?ms=500", &[], "").await });
    while stats.snapshot().instances_live == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop.drain(Duration::from_secs(10));
    let reply = slow.await.expect("in-flight request");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "slept 500 ms\n");
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns after the drain")
        .expect("serve task")
        .expect("serve result");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after drain"
    );
}

#[tokio::test]
async fn drain_cancels_what_outlives_the_grace() {
    let (server, stats) = serve_counted("http_routes").await;
    let addr = server.addr;
    let slow =
        tokio::spawn(async move { try_request(addr, "GET", "/slow?ms=60000", &[], "").await });
    while stats.snapshot().instances_live == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    server.stop.drain(Duration::from_millis(200));
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns after the grace")
        .expect("serve task")
        .expect("serve result");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The cut-off request got a 503 or its connection closed; never a 200.
    if let Ok(reply) = slow.await.expect("request task") {
        assert_eq!(reply.status, 503);
    }
    assert_eq!(stats.snapshot().instances_live, 0);
}

#[tokio::test]
async fn guest_stdout_goes_to_the_given_file() {
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let opts = RunOptions {
        stdout: feather_engine::Output::File(out.reopen().expect("reopen")),
        ..RunOptions::default()
    };
    let server = serve("http_routes", opts).await;
    let reply = request(server.addr, "GET", "/log", &[], "").await;
    assert_eq!(reply.status, 200);
    shut_down(server).await;
    let logged = std::fs::read_to_string(out.path()).expect("read stdout");
    assert_eq!(logged, "log line from the guest\n");
}
