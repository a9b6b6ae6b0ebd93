//! The operator's HTTP endpoint: Prometheus metrics and Kubernetes probes.
//!
//! | path       | answer                                                                 |
//! |------------|------------------------------------------------------------------------|
//! | `/metrics` | 200, Prometheus text format (`text/plain; version=0.0.4`)              |
//! | `/healthz` | 200 `ok` while the process serves HTTP (liveness)                      |
//! | `/readyz`  | 503 `not ready` until [`HttpState::ready`] is set, then 200 `ok`        |
//!
//! The readiness flag is an `Arc<AtomicBool>` that the controller sets once its caches have
//! synced (and may clear again, e.g. after losing the leader lease).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::Error;
use super::metrics::{CONTENT_TYPE, Metrics};

/// Shared state of the HTTP server.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// Metrics rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Readiness flag reported at `/readyz`; `true` means ready.
    pub ready: Arc<AtomicBool>,
}

impl HttpState {
    /// State with the given metrics and a fresh, not-ready flag.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics, ready: Arc::new(AtomicBool::new(false)) }
    }
}

/// The router serving `/metrics`, `/healthz` and `/readyz`; any other path is 404.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` resolves; in-flight requests are finished first.
///
/// # Errors
/// [`Error::Bind`] if `addr` cannot be bound, [`Error::Serve`] if the server fails.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    serve_listener(listener, state, shutdown).await
}

/// Like [`serve`], on an already bound listener (bind `127.0.0.1:0` in tests and read
/// [`TcpListener::local_addr`] to learn the port).
///
/// # Errors
/// [`Error::Serve`] if the server fails.
pub async fn serve_listener(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics and probes");
    }
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await.map_err(Error::Serve)
}

/// Encoding reads every cached RelayService and TestDeployment (about 80 ms for 1,000
/// services in a release build), so it runs off the async workers the controllers use.
async fn metrics(State(state): State<HttpState>) -> Response {
    match tokio::task::spawn_blocking(move || state.metrics.encode()).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding the metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends one HTTP/1.1 request with `Connection: close`; returns (status, headers, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    async fn start()
    -> (SocketAddr, HttpState, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), Error>>)
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState::new(Arc::new(Metrics::new().unwrap()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        (addr, state, tx, task)
    }

    #[tokio::test]
    async fn endpoints_and_readiness_flip() {
        let (addr, state, stop, task) = start().await;

        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, _, _) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        state.ready.store(true, Ordering::Release);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        state.ready.store(false, Ordering::Release);
        assert_eq!(get(addr, "/readyz").await.0, 503);

        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        assert!(body.contains("# TYPE relay_operator_leader gauge"), "{body}");

        assert_eq!(get(addr, "/nope").await.0, 404);

        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn serve_reports_bind_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState::new(Arc::new(Metrics::new().unwrap()));
        let err = serve(addr, state, async {}).await.unwrap_err();
        assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    }
}
