//! Real HTTP hook servers, one per pod on `127.0.0.x` ([`pod_ip`]), all on the same port:
//! the apps the reload phase calls, for `tests/reload_controller.rs` and
//! `benches/reload_propagation.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::fake_api::pod_ip;

/// How a hook server answers.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// The seed relay: `{"status": "success", ...}`, no hash.
    Legacy,
    /// Echo what the mounted file says as `configHash`.
    Echo(Arc<Mutex<String>>),
    /// 503 forever.
    Fail,
    /// The stand-in of a canary: a hook call loads what the mounted file says and echoes
    /// it; while the loaded hash is `bad`, `GET` (the health endpoint) answers 503
    /// `{"status": "degraded", "ws_connected": false}` — or, with `hook_fails`, the hook
    /// itself answers 503 for it.
    Judge { mounted: Arc<Mutex<String>>, bad: Arc<Mutex<String>>, hook_fails: bool },
}

/// One received hook request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookHit {
    pub pod: usize,
    pub hash: String,
    pub authorization: Option<String>,
    pub answered: String,
}

/// Hook servers for pods `0..n` on one port.
pub struct HookServers {
    pub port: u16,
    pub hits: Arc<Mutex<Vec<HookHit>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HookServers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl HookServers {
    /// Start `n` servers answering per `behavior(ordinal)` after `delay`.
    pub async fn start(n: usize, delay: Duration, behavior: impl Fn(usize) -> Behavior) -> Self {
        'port: loop {
            let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = probe.local_addr().expect("addr").port();
            drop(probe);
            let mut listeners = Vec::new();
            for i in 0..n {
                match TcpListener::bind((pod_ip(i), port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'port,
                }
            }
            let hits = Arc::new(Mutex::new(Vec::new()));
            let tasks = listeners
                .into_iter()
                .enumerate()
                .map(|(i, listener)| tokio::spawn(serve(i, listener, behavior(i), delay, hits.clone())))
                .collect();
            return Self { port, hits, tasks };
        }
    }

    pub fn hits(&self) -> Vec<HookHit> {
        self.hits.lock().unwrap().clone()
    }

    /// Calls per pod for `hash`.
    pub fn calls_for(&self, hash: &str) -> BTreeMap<usize, usize> {
        let mut counts = BTreeMap::new();
        for hit in self.hits().iter().filter(|h| h.hash == hash) {
            *counts.entry(hit.pod).or_insert(0) += 1;
        }
        counts
    }
}

async fn serve(
    pod: usize,
    listener: TcpListener,
    behavior: Behavior,
    delay: Duration,
    hits: Arc<Mutex<Vec<HookHit>>>,
) {
    // What the app loaded at its last hook call (Judge).
    let loaded = Arc::new(Mutex::new(String::new()));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let behavior = behavior.clone();
        let hits = hits.clone();
        let loaded = loaded.clone();
        tokio::spawn(async move {
            loop {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 2048];
                let head_end = loop {
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                };
                let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body_read = buffer.len() - head_end - 4;
                while body_read < length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body_read += n,
                    }
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let health_check = head.starts_with("GET ");
                let (status, body) = match &behavior {
                    Behavior::Judge { bad, .. } if health_check => {
                        if *loaded.lock().unwrap() == *bad.lock().unwrap() {
                            (503, r#"{"status": "degraded", "ws_connected": false}"#.to_string())
                        } else {
                            (200, r#"{"status": "healthy", "ws_connected": true}"#.to_string())
                        }
                    }
                    Behavior::Judge { mounted, bad, hook_fails } => {
                        let now = mounted.lock().unwrap().clone();
                        *loaded.lock().unwrap() = now.clone();
                        if *hook_fails && now == *bad.lock().unwrap() {
                            (503, r#"{"status":"error"}"#.to_string())
                        } else {
                            (200, format!(r#"{{"configHash":"{now}"}}"#))
                        }
                    }
                    Behavior::Legacy => {
                        (200, r#"{"status": "success", "message": "Config reloaded"}"#.to_string())
                    }
                    Behavior::Echo(mounted) => {
                        (200, format!(r#"{{"configHash":"{}"}}"#, mounted.lock().unwrap()))
                    }
                    Behavior::Fail => (503, r#"{"status":"error"}"#.to_string()),
                };
                if !health_check {
                    hits.lock().unwrap().push(HookHit {
                        pod,
                        hash: header("x-config-hash").unwrap_or_default(),
                        authorization: header("authorization"),
                        answered: body.clone(),
                    });
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
