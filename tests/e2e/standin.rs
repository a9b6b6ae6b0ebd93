//! The stand-in app every pod runs in the e2e suite: the seeds' relay contract, served on
//! the pod's loopback IP at each of its ports.
//!
//! - `GET /health`: 200 `{"status": "healthy", "ws_connected": true}`, or 503 with
//!   `ws_connected: false` while the loaded config says `HEALTHY=false`.
//! - `POST`/`PUT` on any other path (the reload hook): re-reads the mounted config directory
//!   and answers `{"status": "success", …}`, with the loaded `configHash` unless the pod's
//!   env sets `STANDIN_ECHO_HASH=false` (the seed relay does not echo it). A loaded
//!   `RELOAD_FAIL=true` makes it answer 500 instead. With `STANDIN_RELOAD_DELAY_MS` in the
//!   pod's env it reloads at once but answers only after that delay (a slow hook).
//! - `GET /state`: what the process runs now, as JSON (for people poking at a run).
//!
//! Tests read the same state in-process through [`App::state`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// One call of the reload hook as the app saw it.
#[derive(Clone, Debug)]
pub struct ReloadCall {
    /// The `X-Config-Hash` header the operator sent.
    pub sent_hash: Option<String>,
    /// The hash the app had loaded after re-reading its files.
    pub loaded_hash: Option<String>,
}

/// What the process currently runs.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// The parsed config file.
    pub config: BTreeMap<String, String>,
    /// The `config-hash` file next to it, as loaded.
    pub hash: Option<String>,
    /// Every call of the reload hook.
    pub reloads: Vec<ReloadCall>,
}

impl AppState {
    /// Reload calls that carried `hash`.
    pub fn calls_for(&self, hash: &str) -> usize {
        self.reloads.iter().filter(|c| c.sent_hash.as_deref() == Some(hash)).count()
    }
}

struct Shared {
    config_dir: Option<PathBuf>,
    echo_hash: bool,
    answer_delay: std::time::Duration,
    state: Mutex<AppState>,
}

/// A running stand-in app; dropping it stops its listeners.
pub struct App {
    shared: Arc<Shared>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Load the config from `config_dir` and listen on `ip` at every port.
    pub async fn start(
        ip: IpAddr,
        ports: &[u16],
        config_dir: Option<PathBuf>,
        echo_hash: bool,
        answer_delay: std::time::Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { config_dir, echo_hash, answer_delay, state: Mutex::default() });
        load(&shared);
        let router = axum::Router::new()
            .route("/health", get(health))
            .route("/state", get(state))
            .fallback(reload)
            .with_state(shared.clone());
        let mut servers = Vec::new();
        for port in ports {
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, *port)).await?;
            let router = router.clone();
            servers.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
        }
        Ok(Self { shared, servers })
    }

    /// A snapshot of what the process runs.
    pub fn state(&self) -> AppState {
        lock(&self.shared).clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, AppState> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Re-read the config directory into the state (a missing directory loads nothing).
fn load(shared: &Shared) {
    let Some(dir) = &shared.config_dir else { return };
    let (config, hash) = read_config_dir(dir);
    let mut state = lock(shared);
    state.config = config;
    state.hash = hash;
}

/// The config file(s) and the `config-hash` file of a mounted ConfigMap directory, from one
/// version of it, as a careful app reads them: the kubelet swaps `..data` to a new directory
/// at any moment, so files read one by one through the top-level links may mix two versions
/// (the new hash with the old config). The directory `..data` points to is read, and read
/// again if `..data` moved meanwhile.
fn read_config_dir(dir: &Path) -> (BTreeMap<String, String>, Option<String>) {
    loop {
        let Ok(version) = std::fs::read_link(dir.join("..data")) else { return read_files(dir) };
        let read = read_files(&dir.join(&version));
        if std::fs::read_link(dir.join("..data")).is_ok_and(|now| now == version) {
            return read;
        }
    }
}

/// The config file(s) and the `config-hash` file in `dir`.
fn read_files(dir: &Path) -> (BTreeMap<String, String>, Option<String>) {
    let mut config = BTreeMap::new();
    let mut hash = None;
    let Ok(entries) = std::fs::read_dir(dir) else { return (config, hash) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("..") || !path.is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        if name == "config-hash" {
            hash = Some(text.trim().to_owned());
        } else if name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml") {
            let parsed: BTreeMap<String, String> = serde_saphyr::from_str(&text).unwrap_or_default();
            config.extend(parsed);
        } else {
            config.extend(parse_env(&text));
        }
    }
    (config, hash)
}

/// `KEY=value` lines; values may be double- or single-quoted (dotenv style).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let value = if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                inner.replace("\\\"", "\"").replace("\\n", "\n").replace("\\\\", "\\")
            } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                inner.to_owned()
            } else {
                value.to_owned()
            };
            (key.trim().to_owned(), value)
        })
        .collect()
}

/// A JSON response (axum's `Json` needs a feature the operator does not use).
fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let state = lock(&shared).clone();
    if state.config.get("HEALTHY").map(String::as_str) == Some("false") {
        let body = json!({"status": "degraded", "ws_connected": false, "configHash": state.hash});
        json_response(StatusCode::SERVICE_UNAVAILABLE, body)
    } else {
        json_response(
            StatusCode::OK,
            json!({"status": "healthy", "ws_connected": true, "configHash": state.hash}),
        )
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let state = lock(&shared).clone();
    json_response(
        StatusCode::OK,
        json!({"config": state.config, "configHash": state.hash, "reloads": state.reloads.len()}),
    )
}

async fn reload(
    State(shared): State<Arc<Shared>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if method != axum::http::Method::POST && method != axum::http::Method::PUT {
        return StatusCode::NOT_FOUND.into_response();
    }
    load(&shared);
    let (failed, hash) = {
        let mut state = lock(&shared);
        let sent_hash = headers.get("x-config-hash").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let loaded_hash = state.hash.clone();
        state.reloads.push(ReloadCall { sent_hash, loaded_hash });
        (state.config.get("RELOAD_FAIL").map(String::as_str) == Some("true"), state.hash.clone())
    };
    tokio::time::sleep(shared.answer_delay).await;
    if failed {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"status": "error"}));
    }
    let mut body = json!({"status": "success", "message": "config reloaded"});
    if shared.echo_hash {
        body["configHash"] = json!(hash);
    }
    json_response(StatusCode::OK, body)
}
