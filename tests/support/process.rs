//! Running the operator binary as a process, against the fake API server on a socket.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};

use super::fake_api::{FakeApi, Reply};

/// Kills the operator when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn kubeconfig(server: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("relay-kubeconfig-{}-{}", std::process::id(), free_port()));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: u, user: {{token: test}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\n\
         current-context: c\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn start(server: &str) -> (Running, u16) {
    start_with(server, &[], &[])
}

/// [`start`] with extra arguments of `run` and environment variables.
pub fn start_with(server: &str, args: &[&str], env: &[(&str, &str)]) -> (Running, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}"), "--log-level", "warn"])
        .args(args)
        .envs(env.iter().copied())
        .env("KUBECONFIG", kubeconfig(server))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), port)
}

pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().ok()?;
    let response = client.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Poll `path` until it answers `status`, for at most `limit`.
pub async fn wait_for(port: u16, path: &str, status: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if get(port, path).await.is_some_and(|(s, _)| s == status) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The fake API on a socket for the binary: [`FakeApi`]'s state machine behind HTTP/1.1,
/// its watches open and silent. Returns its address.
pub async fn serve(api: FakeApi) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |request: Request<Body>| async move {
        let method = request.method().to_string();
        let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        let content_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap_or_default();
        match api.answer(&method, &path, &content_type, &body).await {
            Reply::Json(code, value) => Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(value.to_string()))
                .unwrap(),
            Reply::Text(text) => Response::new(Body::from(text)),
            Reply::Watch => {
                let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
                Response::new(Body::from_stream(never))
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// An empty cluster on a socket: its address and the fake API (for the requests received).
pub async fn fake_api() -> (String, FakeApi) {
    let api = FakeApi::with_manual_sync();
    (serve(api.clone()).await, api)
}
