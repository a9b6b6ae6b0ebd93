//! A fault-injecting proxy between the operator and the API server: plain HTTP on loopback
//! in front of the real kube-apiserver. It passes the operator's own token through (so RBAC
//! and the audit log still see the operator), streams watches, and on demand answers writes
//! with a burst of errors, or ends every open watch and the next ones with `410 Gone`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// What the proxy does to the next requests.
#[derive(Default)]
struct Faults {
    /// Writes still to be refused, and with which status code.
    failing_writes: u32,
    write_status: u16,
    /// Writes refused so far.
    refused: u32,
    /// Watches still to be ended with a `410 Gone` event.
    gone_watches: u32,
    /// Writes still to be held and then answered `504 Timeout`, and for how long.
    slow_writes: u32,
    slow_for: std::time::Duration,
}

/// The running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    faults: Arc<Mutex<Faults>>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    upstream: kube::Client,
    faults: Arc<Mutex<Faults>>,
    cut: tokio::sync::watch::Receiver<u64>,
}

impl FaultProxy {
    /// Proxy to the API server of `admin_kubeconfig` (its server and CA, not its user).
    pub async fn start(admin_kubeconfig: &Path) -> Self {
        let mut kubeconfig = Kubeconfig::read_from(admin_kubeconfig).unwrap();
        // No credentials of its own: the operator's Authorization header goes through.
        for user in &mut kubeconfig.auth_infos {
            user.auth_info = None;
        }
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        let upstream = kube::Client::try_from(config).unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (cut, cut_rx) = tokio::sync::watch::channel(0);
        let shared = Shared { upstream, faults: faults.clone(), cut: cut_rx };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let router = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url: format!("http://{addr}"), faults, cut, task }
    }

    /// A kubeconfig like `operator_kubeconfig` whose server is this proxy.
    pub fn kubeconfig(&self, operator_kubeconfig: &Path, path: &Path) {
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(operator_kubeconfig).unwrap()).unwrap();
        for cluster in config["clusters"].as_array_mut().unwrap() {
            cluster["cluster"] = json!({"server": self.url});
        }
        std::fs::write(path, config.to_string()).unwrap();
    }

    /// Refuse the next `count` writes with `status` (409, 429, 500…).
    pub fn fail_writes(&self, count: u32, status: u16) {
        let mut faults = self.faults.lock().unwrap();
        faults.failing_writes = count;
        faults.write_status = status;
    }

    /// Hold the next `count` writes for `hold`, then answer `504 Timeout` without passing
    /// them on (the API server's own request timeout).
    pub fn time_out_writes(&self, count: u32, hold: std::time::Duration) {
        let mut faults = self.faults.lock().unwrap();
        faults.slow_writes = count;
        faults.slow_for = hold;
    }

    /// End every open watch now; the next `gone` watches start and at once end with a
    /// `410 Gone` event, as the API server does for a resourceVersion too old to resume.
    pub fn cut_watches(&self, gone: u32) {
        self.faults.lock().unwrap().gone_watches = gone;
        self.cut.send_modify(|n| *n += 1);
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u32 {
        self.faults.lock().unwrap().refused
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
    if code == 429 {
        response.headers_mut().insert(http::header::RETRY_AFTER, "1".parse().unwrap());
    }
    response
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let is_write = !matches!(request.method(), &http::Method::GET | &http::Method::HEAD);
    let hold = {
        let mut faults = shared.faults.lock().unwrap();
        let slow = is_write && faults.slow_writes > 0 && !request.uri().path().contains("/events");
        if slow {
            faults.slow_writes -= 1;
            faults.refused += 1;
        }
        slow.then_some(faults.slow_for)
    };
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
        return status(504, "Timeout", "the server was unable to return a response in the time allotted");
    }
    {
        let mut faults = shared.faults.lock().unwrap();
        if is_write && faults.failing_writes > 0 && !request.uri().path().contains("/events") {
            faults.failing_writes -= 1;
            faults.refused += 1;
            let code = faults.write_status;
            return status(code, "InjectedFault", "injected by the e2e fault proxy");
        }
        if request.uri().query().is_some_and(|q| q.contains("watch=true")) && faults.gone_watches > 0 {
            faults.gone_watches -= 1;
            let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "too old resource version (injected by the e2e fault proxy)",
                "reason": "Expired", "code": 410}});
            let mut response = Response::new(Body::from(format!("{event}\n")));
            response.headers_mut().insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
            return response;
        }
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(400, "BadRequest", "unreadable request body");
    };
    let upstream = http::Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
    let response = match shared.upstream.send(upstream).await {
        Ok(response) => response,
        Err(e) => return status(502, "BadGateway", &e.to_string()),
    };
    let (parts, body) = response.into_parts();
    let mut cut = shared.cut.clone();
    cut.mark_unchanged();
    let frames = http_body_util::BodyStream::new(body)
        .filter_map(|frame| async move {
            match frame {
                Ok(frame) => frame.into_data().ok().map(Ok::<_, std::io::Error>),
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            }
        })
        .take_until(async move {
            // Answers other than watches end by themselves first.
            let _ = cut.changed().await;
        });
    Response::from_parts(parts, Body::from_stream(frames))
}
