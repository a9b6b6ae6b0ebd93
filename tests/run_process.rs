//! `relay-operator run` as a process: `/healthz`, `/readyz` and `/metrics` of the running
//! binary, against an in-process fake API server (caches sync → ready) and against an
//! unreachable one (alive, never ready).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};

/// Kills the operator when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kubeconfig(server: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("relay-kubeconfig-{}-{}", std::process::id(), free_port()));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: u, user: {{token: test}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\n\
         current-context: c\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(server: &str) -> (Running, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}"), "--log-level", "warn"])
        .env("KUBECONFIG", kubeconfig(server))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), port)
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().ok()?;
    let response = client.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Poll `path` until it answers `status`, for at most `limit`.
async fn wait_for(port: u16, path: &str, status: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if get(port, path).await.is_some_and(|(s, _)| s == status) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A fake API server: empty lists, and watches that stay open without events.
async fn fake_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|request: Request<Body>| async move {
        let watch = request.uri().query().unwrap_or_default().contains("watch=true");
        if watch {
            let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
            return Response::new(Body::from_stream(never));
        }
        let list = r#"{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#;
        Response::builder().header("content-type", "application/json").body(Body::from(list)).unwrap()
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn ready_once_caches_sync_and_metrics_are_served() {
    let (_operator, port) = start(&fake_api().await);
    assert!(wait_for(port, "/healthz", 200, Duration::from_secs(20)).await, "/healthz never answered");
    assert!(wait_for(port, "/readyz", 200, Duration::from_secs(20)).await, "/readyz never turned ready");
    let (status, metrics) = get(port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for name in
        ["relay_operator_managed_pods", "relay_operator_reload_hook_calls_total", "relay_operator_build_info"]
    {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
}

#[tokio::test]
async fn alive_but_not_ready_without_an_api_server() {
    let (_operator, port) = start("https://127.0.0.1:1");
    assert!(wait_for(port, "/healthz", 200, Duration::from_secs(20)).await, "/healthz never answered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(port, "/readyz").await.map(|(s, _)| s), Some(503), "ready without synced caches");
    assert_eq!(get(port, "/metrics").await.map(|(s, _)| s), Some(200));
}
