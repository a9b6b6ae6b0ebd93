//! Running the operator binary as a process, against an in-process fake API server.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};

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

/// Requests a fake API server received, as `METHOD path?query`.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A fake API server: empty lists, and watches that stay open without events. Returns its
/// address and every request it received.
pub async fn fake_api() -> (String, Seen) {
    fake_api_serving(Vec::new()).await
}

/// Like [`fake_api`], but a list of a collection whose path ends with `suffix` holds `object`
/// (for each `(suffix, object)`), and any write is answered with the object it names.
pub async fn fake_api_serving(objects: Vec<(&'static str, serde_json::Value)>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let log = seen.clone();
    let objects = std::sync::Arc::new(objects);
    let app = axum::Router::new().fallback(move |request: Request<Body>| async move {
        let target = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        log.lock().unwrap().push(format!("{} {target}", request.method()));
        let path = request.uri().path().to_string();
        let json = |value: serde_json::Value| {
            Response::builder().header("content-type", "application/json").body(Body::from(value.to_string())).unwrap()
        };
        if request.method() != axum::http::Method::GET {
            let named = objects.iter().find(|(_, o)| path.contains(&format!("/{}", o["metadata"]["name"].as_str().unwrap_or("-"))));
            return json(named.map(|(_, o)| o.clone()).unwrap_or_else(|| serde_json::json!({})));
        }
        if request.uri().query().unwrap_or_default().contains("watch=true") {
            let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
            return Response::new(Body::from_stream(never));
        }
        let items: Vec<serde_json::Value> =
            objects.iter().filter(|(suffix, _)| path.ends_with(suffix)).map(|(_, o)| o.clone()).collect();
        json(serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}
