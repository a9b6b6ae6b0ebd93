//! The kubelet's log endpoint, so `kubectl logs` and the operator's log-tail reads work: the
//! API server proxies `pods/log` to `https://<node InternalIP>:<kubeletEndpoint port>/
//! containerLogs/NS/POD/CONTAINER` (it does not verify the kubelet's certificate when no
//! `--kubelet-certificate-authority` is given). One server for the whole test process, on
//! its own thread (each test has its own runtime), serving what the pod workers record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Logs by `NS/POD/CONTAINER`: the current instance's and the previous (crashed) one's.
#[derive(Default)]
struct Logs {
    current: String,
    previous: Option<String>,
}

static LOGS: OnceLock<Mutex<HashMap<String, Logs>>> = OnceLock::new();
static PORT: OnceLock<u16> = OnceLock::new();

fn logs() -> &'static Mutex<HashMap<String, Logs>> {
    LOGS.get_or_init(Default::default)
}

/// Append `line` to the current instance's log of a container.
pub fn write(namespace: &str, pod: &str, container: &str, line: &str) {
    let mut logs = logs().lock().unwrap();
    let entry = logs.entry(format!("{namespace}/{pod}/{container}")).or_default();
    entry.current.push_str(line);
    entry.current.push('\n');
}

/// The container restarted: its current log becomes the previous one.
pub fn restart(namespace: &str, pod: &str, container: &str) {
    let mut logs = logs().lock().unwrap();
    let entry = logs.entry(format!("{namespace}/{pod}/{container}")).or_default();
    entry.previous = Some(std::mem::take(&mut entry.current));
}

/// The port of the process's log endpoint, started on first use with the control plane's
/// serving certificate from `dir`.
pub fn port(dir: &Path) -> u16 {
    *PORT.get_or_init(|| {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("apiserver.crt"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("apiserver.key")).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            // The listener joins the runtime's reactor inside it.
            runtime.block_on(async move {
                serve(tokio::net::TcpListener::from_std(listener).unwrap(), tls).await
            });
        });
        port
    })
}

async fn serve(listener: tokio::net::TcpListener, tls: ServerConfig) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    while let Ok((socket, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut stream) = acceptor.accept(socket).await else { return };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let target = text.split_whitespace().nth(1).unwrap_or_default();
            let (status, body) = answer(target);
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// `/containerLogs/NS/POD/CONTAINER?previous=true&tailLines=N` → status line and body.
fn answer(target: &str) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(key) = path.strip_prefix("/containerLogs/") else { return ("404 Not Found", String::new()) };
    let param = |name: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{name}=")));
    let logs = logs().lock().unwrap();
    let Some(entry) = logs.get(key) else { return ("404 Not Found", format!("no container {key}")) };
    let text = if param("previous") == Some("true") {
        match &entry.previous {
            Some(previous) => previous.clone(),
            None => return ("400 Bad Request", format!("previous terminated container not found: {key}")),
        }
    } else {
        entry.current.clone()
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = param("tailLines").and_then(|n| n.parse::<usize>().ok()).unwrap_or(lines.len());
    let mut body = lines[lines.len().saturating_sub(tail)..].join("\n");
    body.push('\n');
    if let Some(limit) = param("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        body.truncate(limit.min(body.len()));
    }
    ("200 OK", body)
}
