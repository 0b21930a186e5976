//! Serving `wasi:http/incoming-handler` components: HTTP/1.1 with hyper, one fresh instance
//! per request from a `ProxyPre` built at load time.

use crate::command::{is_deadline, memory_note};
use crate::engine::{Pre, short};
use crate::state::{ComponentState, Workload, new_store};
use crate::stats::timed;
use crate::{EngineError, Program, RunOptions, StopSignal};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A slow client may take this long to send its request headers before the connection closes.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-workload server state shared by every connection.
struct Server {
    pre: ProxyPre<ComponentState>,
    engine: wasmtime::Engine,
    workload: Arc<Workload>,
    /// One permit per request executing (= one live instance).
    slots: Arc<Semaphore>,
    /// Cancelled to end every request at once (kill, or drain grace over).
    cancel: CancellationToken,
    /// Request tasks, awaited before `serve` returns.
    requests: TaskTracker,
    next_request: AtomicU64,
}

/// How a request's guest call ended.
enum Outcome {
    Finished,
    Trapped(String),
    DeadlineExceeded,
    Cancelled,
}

impl Program {
    /// Serve this HTTP component on `listener` until `stop` says otherwise.
    ///
    /// Every request gets a fresh instance (a new `Store` from the pre-linked component); at
    /// most `opts.limits.max_concurrency` run at once, others wait up to
    /// `opts.limits.queue_timeout` then get 503. A request past `opts.limits.deadline` gets 504,
    /// a trap or failed instantiation 500; the server keeps serving. On
    /// [`StopSignal::drain`] the listener closes at once, in-flight requests get the grace
    /// period, then whatever is left is cancelled; on [`StopSignal::kill`] everything ends now.
    /// Returns when every connection and request has ended and stdout/stderr are written out.
    pub async fn serve(
        &self,
        listener: std::net::TcpListener,
        opts: RunOptions,
        stop: StopSignal,
    ) -> Result<(), EngineError> {
        let Pre::Http(pre) = &self.inner.pre else {
            return Err(self.wrong_kind("serve", "a wasi:http/incoming-handler component"));
        };
        let addr = listener
            .local_addr()
            .map_err(|e| EngineError::io("listener address", e))?;
        let span = tracing::info_span!("serve", workload = %opts.name, digest = %short(self.digest()), %addr);
        let max_memory = self.engine().config().max_memory_per_instance;
        async move {
            listener
                .set_nonblocking(true)
                .map_err(|e| EngineError::io(format!("listener {addr}: set non-blocking"), e))?;
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| EngineError::io(format!("listener {addr}: register with tokio"), e))?;
            let (workload, writers) = Workload::new(opts, max_memory)?;
            let server = Arc::new(Server {
                pre: pre.clone(),
                engine: self.engine().wasmtime().clone(),
                slots: Arc::new(Semaphore::new(workload.limits.max_concurrency)),
                workload: Arc::new(workload),
                cancel: CancellationToken::new(),
                requests: TaskTracker::new(),
                next_request: AtomicU64::new(1),
            });
            tracing::info!("serving HTTP");
            let graceful = GracefulShutdown::new();
            let connections = TaskTracker::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            let service_server = Arc::clone(&server);
                            let service = hyper::service::service_fn(move |req| {
                                Arc::clone(&service_server).handle(req)
                            });
                            let conn = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_READ_TIMEOUT)
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), service);
                            let conn = graceful.watch(conn);
                            let cancel = server.cancel.clone();
                            connections.spawn(async move {
                                tokio::select! {
                                    result = conn => if let Err(e) = result {
                                        tracing::debug!(%peer, "connection ended: {e}");
                                    },
                                    () = cancel.cancelled() => {}
                                }
                            });
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.drained() => break,
                }
            }
            drop(listener);
            tracing::info!(
                in_flight = graceful.count(),
                killed = stop.is_killed(),
                "stopped accepting; draining"
            );
            tokio::select! {
                () = graceful.shutdown() => tracing::info!("drained"),
                () = stop.must_end() => tracing::info!("grace over or killed: cancelling the rest"),
            }
            server.cancel.cancel();
            connections.close();
            connections.wait().await;
            server.requests.close();
            server.requests.wait().await;
            match Arc::try_unwrap(server) {
                Ok(server) => match Arc::try_unwrap(server.workload) {
                    Ok(workload) => workload.finish(writers).await,
                    Err(_) => tracing::warn!("workload still referenced; output not awaited"),
                },
                Err(_) => tracing::warn!("server still referenced; output not awaited"),
            }
            tracing::info!("server stopped");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Infallible> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let span =
            tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path());
        Ok(self.respond(id, req).instrument(span).await)
    }

    async fn respond(
        self: Arc<Self>,
        id: u64,
        req: hyper::Request<Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let stats = &self.workload.stats;
        stats.request_received();
        let limits = &self.workload.limits;
        let permit = match tokio::time::timeout(
            limits.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                stats.request_rejected();
                tracing::info!("no free instance slot within the queue timeout: 503");
                return error_response(503, id, "server busy, try again");
            }
        };
        let started = Instant::now();
        let deadline = limits.deadline.map(|d| started + d);
        let data = match self.workload.component_state() {
            Ok(data) => data,
            Err(e) => {
                stats.request_failed();
                tracing::error!("cannot set up the guest's WASI context: {e}");
                return error_response(500, id, "guest setup failed");
            }
        };
        let mut store = new_store(&self.engine, data, deadline);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = match store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
        {
            Ok(request) => request,
            Err(e) => {
                tracing::info!("malformed request: {e:#}");
                return error_response(400, id, "malformed request");
            }
        };
        let out = match store.data_mut().http().new_response_outparam(sender) {
            Ok(out) => out,
            Err(e) => {
                stats.request_failed();
                tracing::error!("cannot create the response outparam: {e:#}");
                return error_response(500, id, "guest setup failed");
            }
        };

        // The guest task reports how the call ended here; once the response is on its way
        // nobody listens any more, and the task logs a late failure itself (no second task).
        let (outcome_tx, mut outcome_rx) = tokio::sync::oneshot::channel();
        let server = Arc::clone(&self);
        // Detached: the task tracker is what `serve` waits for.
        drop(
            self.requests.spawn(
                async move {
                    let _slot = permit;
                    let outcome = {
                        let call = async {
                            let proxy = server.pre.instantiate_async(&mut store).await?;
                            proxy
                                .wasi_http_incoming_handler()
                                .call_handle(&mut store, request, out)
                                .await
                        };
                        let timed_call = timed(&server.workload.stats, call);
                        let deadline_passed = async {
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d.into()).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            result = timed_call => match result {
                                Ok(()) => Outcome::Finished,
                                Err(e) if is_deadline(&e, deadline) => Outcome::DeadlineExceeded,
                                Err(e) => Outcome::Trapped(format!("{e:?}")),
                            },
                            () = deadline_passed => Outcome::DeadlineExceeded,
                            () = server.cancel.cancelled() => Outcome::Cancelled,
                        }
                    };
                    let outcome = match outcome {
                        Outcome::Trapped(message) => {
                            Outcome::Trapped(format!("{message}{}", memory_note(&store)))
                        }
                        other => other,
                    };
                    // The instance is gone (memory counted back) before anyone hears the outcome.
                    drop(store);
                    if let Err(outcome) = outcome_tx.send(outcome) {
                        log_late_outcome(&server.workload.stats, outcome);
                    }
                }
                .in_current_span(),
            ),
        );

        match receiver.await {
            Ok(Ok(response)) => {
                tracing::debug!(status = %response.status(), elapsed = ?started.elapsed(), "response");
                // The guest may still be streaming the body: stop listening for its outcome
                // (from now on it logs a late failure itself) and log one that came already.
                outcome_rx.close();
                if let Ok(outcome) = outcome_rx.try_recv() {
                    log_late_outcome(stats, outcome);
                }
                response
            }
            Ok(Err(code)) => {
                stats.request_failed();
                tracing::warn!("guest answered with an error code: {code:?}");
                // Already counted as failed: hold the receiver until the guest ends so its
                // end is not reported (and counted) again as a late failure. Rare path.
                tokio::spawn(outcome_rx);
                error_response(500, id, "guest error")
            }
            // The guest dropped the response outparam without setting it: see how it ended.
            Err(_) => {
                stats.request_failed();
                match outcome_rx.await {
                    Ok(Outcome::DeadlineExceeded) => {
                        tracing::warn!(deadline = ?limits.deadline, "request deadline exceeded: 504");
                        error_response(504, id, "request deadline exceeded")
                    }
                    Ok(Outcome::Cancelled) => error_response(503, id, "server stopping"),
                    Ok(Outcome::Trapped(message)) => {
                        tracing::warn!("guest trapped: {message}");
                        error_response(500, id, "guest error")
                    }
                    Ok(Outcome::Finished) => {
                        tracing::warn!("guest returned without setting a response");
                        error_response(500, id, "guest sent no response")
                    }
                    Err(_) => {
                        tracing::error!("request task ended without an outcome (panicked)");
                        error_response(500, id, "guest error")
                    }
                }
            }
        }
    }
}

/// A guest that already sent its response headers can still fail while streaming the body.
fn log_late_outcome(stats: &crate::Stats, outcome: Outcome) {
    match outcome {
        Outcome::Finished => {}
        Outcome::Trapped(message) => {
            stats.request_failed();
            tracing::warn!("guest trapped after sending its response headers: {message}");
        }
        Outcome::DeadlineExceeded => {
            stats.request_failed();
            tracing::warn!("deadline exceeded while streaming the response body");
        }
        Outcome::Cancelled => tracing::info!("response cancelled by stop"),
    }
}

fn error_response(status: u16, id: u64, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{message} (request {id})\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
