//! `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::WasmApp;
use crate::metrics::Metrics;

/// What the endpoints report on.
#[derive(Debug, Default)]
pub struct HealthState {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    apps: RwLock<Option<Store<WasmApp>>>,
}

impl HealthState {
    /// A state reporting `metrics`, not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ready: AtomicBool::new(false),
            apps: RwLock::new(None),
        }
    }

    /// `/readyz` answers 200 from now on (startup checks passed), or 503 again.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Use the controller's cache for the apps-by-condition gauges.
    pub fn set_apps(&self, store: Store<WasmApp>) {
        *self.apps.write().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: startup checks not passed yet\n".into(),
            ),
            "/metrics" => {
                if let Some(store) = self.apps.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    self.metrics.refresh_apps(store);
                }
                match self.metrics.encode() {
                    Ok(body) => {
                        let mut response = text(StatusCode::OK, body);
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        response
                    }
                    Err(error) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding metrics: {error}\n"),
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Bind `addr` now (so a port clash fails at startup) and serve until the returned guard or
/// the process goes away.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<HealthState>,
) -> anyhow::Result<(SocketAddr, ServerGuard)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("binding the health/metrics address {addr}: {error}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accepting a health/metrics connection");
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = state.respond(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%error, %peer, "health/metrics connection ended");
                }
            });
        }
    });
    Ok((local, ServerGuard(task)))
}

/// Stops the server task when dropped.
#[derive(Debug)]
pub struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn readyz_turns_ready_after_startup_and_metrics_are_served() {
        let state = Arc::new(HealthState::new(Arc::new(Metrics::default())));
        let (addr, _guard) = serve("127.0.0.1:0".parse().expect("addr"), state.clone())
            .await
            .expect("serve");
        assert!(get(addr, "/healthz").await.contains(" 200 "));
        assert!(get(addr, "/readyz").await.contains(" 503 "));
        state.set_ready(true);
        assert!(get(addr, "/readyz").await.contains(" 200 "));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("feather_operator_reconciles_total 0"),
            "{metrics}"
        );
        assert!(get(addr, "/nope").await.contains(" 404 "));
    }
}
