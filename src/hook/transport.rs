//! How one attempt of a hook call reaches the pod: directly at its IP, or through the
//! API server's pod proxy. Both send the same request and interpret the answer the same
//! way ([`classify`]); retries are the caller's ([`Transport::call_with_retry`]).

use std::fmt;
use std::time::Duration;

use http_body_util::BodyExt;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::call::HookCall;
use super::options::HookVia;
use super::outcome::{HookOutcome, classify};
use crate::api::ReloadMethod;

/// Header carrying the desired configuration hash.
pub const CONFIG_HASH_HEADER: &str = "x-config-hash";

/// At most this many bytes of a hook's answer are read (the rest is never received).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Errors building a [`Transport`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The HTTP client of the pod-IP transport could not be built.
    #[error("cannot build the reload hook HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Options of the pod-IP transport ([`Transport::pod_ip`]).
#[derive(Clone, Debug)]
pub struct PodIpOptions {
    /// Timeout of establishing a TCP connection (each call also has its overall timeout).
    pub connect_timeout: Duration,
    /// At most this many body bytes are read from an answer.
    pub max_body_bytes: usize,
}

impl Default for PodIpOptions {
    /// Connect timeout 3 s, body cap [`MAX_BODY_BYTES`].
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(3), max_body_bytes: MAX_BODY_BYTES }
    }
}

/// How the operator reaches pods' hooks, chosen once from `--hook-via`.
///
/// Every attempt sends `POST|PUT <path>` with `X-Config-Hash`, is bounded in time by the
/// caller, reads at most a capped number of body bytes, and never follows a redirect.
/// Cheap to clone (connection pools are shared).
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP to `http://<podIP>:<port><path>`, see [`super::hook_url`]; sends the
    /// bearer token when the call has one. Build it with [`Transport::pod_ip`]: no
    /// redirects, no proxy, a connect timeout.
    PodIp {
        /// The HTTP client.
        http: reqwest::Client,
        /// At most this many body bytes are read from an answer.
        max_body_bytes: usize,
    },
    /// Through the API server's pod proxy, [`HookCall::proxy_uri`], authenticated as the
    /// operator (RBAC `pods/proxy`: POST is `create`, PUT is `update`). The API server
    /// consumes `Authorization`, so the call's bearer token is never sent this way. At most
    /// [`MAX_BODY_BYTES`] of an answer are read.
    ApiProxy {
        /// The operator's Kubernetes client.
        client: kube::Client,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PodIp { max_body_bytes, .. } => {
                f.debug_struct("PodIp").field("max_body_bytes", max_body_bytes).finish_non_exhaustive()
            }
            Self::ApiProxy { .. } => f.debug_struct("ApiProxy").finish_non_exhaustive(),
        }
    }
}

impl Transport {
    /// The transport `--hook-via` names; `client` is the operator's Kubernetes client.
    pub fn from_via(via: HookVia, client: kube::Client) -> Result<Self, TransportError> {
        match via {
            HookVia::PodIp => Self::pod_ip(PodIpOptions::default()),
            HookVia::Proxy => Ok(Self::api_proxy(client)),
        }
    }

    /// Direct calls to pod IPs.
    ///
    /// The pool keeps at most one idle connection per pod, for a short time: hooks are
    /// called rarely, and a large fleet must not pin one socket per pod.
    pub fn pod_ip(options: PodIpOptions) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .user_agent(concat!("relay-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TransportError::Build)?;
        Ok(Self::PodIp { http, max_body_bytes: options.max_body_bytes })
    }

    /// Calls through the API server's pod proxy with `client`.
    pub fn api_proxy(client: kube::Client) -> Self {
        Self::ApiProxy { client }
    }

    /// The `--hook-via` value of this transport.
    pub fn via(&self) -> HookVia {
        match self {
            Self::PodIp { .. } => HookVia::PodIp,
            Self::ApiProxy { .. } => HookVia::Proxy,
        }
    }

    /// Where `call` goes: the pod's URL, or the API server path of its proxy. An error
    /// means no attempt can succeed.
    pub fn target(&self, call: &HookCall) -> Result<String, super::HookUrlError> {
        match self {
            Self::PodIp { .. } => call.url().map(String::from),
            Self::ApiProxy { .. } => call.proxy_uri(),
        }
    }

    /// One attempt, cut at `budget`.
    pub(super) async fn attempt(&self, call: &HookCall, budget: Duration) -> HookOutcome {
        let exchange = async {
            match self {
                Self::PodIp { http, max_body_bytes } => direct(http, *max_body_bytes, call).await,
                Self::ApiProxy { client } => proxied(client, call).await,
            }
        };
        tokio::time::timeout(budget, exchange).await.unwrap_or(HookOutcome::Timeout)
    }
}

fn method(call: &HookCall) -> http::Method {
    match call.method {
        ReloadMethod::Post => http::Method::POST,
        ReloadMethod::Put => http::Method::PUT,
    }
}

fn hash_header(call: &HookCall) -> Result<HeaderValue, HookOutcome> {
    HeaderValue::from_str(&call.config_hash)
        .map_err(|_| HookOutcome::InvalidRequest("configHash is not a valid header value".into()))
}

async fn direct(http: &reqwest::Client, max_body_bytes: usize, call: &HookCall) -> HookOutcome {
    let url = match call.url() {
        Ok(url) => url,
        Err(error) => return HookOutcome::InvalidRequest(error.to_string()),
    };
    let hash = match hash_header(call) {
        Ok(hash) => hash,
        Err(outcome) => return outcome,
    };
    let mut request = http.request(method(call), url).header(CONFIG_HASH_HEADER, hash);
    if let Some(token) = &call.bearer_token {
        let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) else {
            return HookOutcome::InvalidRequest("bearer token is not a valid header value".into());
        };
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return reqwest_outcome(&error),
    };
    let status = response.status().as_u16();
    if !response.status().is_success() {
        // The body of a failure is not interpreted; dropping the response closes it.
        return HookOutcome::HttpStatus(status);
    }
    let mut body = Vec::new();
    while body.len() < max_body_bytes {
        match response.chunk().await {
            Ok(Some(chunk)) => append_capped(&mut body, &chunk, max_body_bytes),
            Ok(None) => break,
            Err(error) => return reqwest_outcome(&error),
        }
    }
    classify(status, &body, &call.config_hash)
}

async fn proxied(client: &kube::Client, call: &HookCall) -> HookOutcome {
    let uri = match call.proxy_uri() {
        Ok(uri) => uri,
        Err(error) => return HookOutcome::InvalidRequest(error.to_string()),
    };
    let hash = match hash_header(call) {
        Ok(hash) => hash,
        Err(outcome) => return outcome,
    };
    // No `Authorization`: the client authenticates the operator to the API server, which
    // consumes the header and never forwards it to the pod.
    let request = http::Request::builder()
        .method(method(call))
        .uri(uri)
        .header(CONFIG_HASH_HEADER, hash)
        .body(kube::client::Body::empty());
    let request = match request {
        Ok(request) => request,
        Err(error) => return HookOutcome::InvalidRequest(error.to_string()),
    };
    let response = match client.send(request).await {
        Ok(response) => response,
        Err(error) => return HookOutcome::Other(error_chain(&error)),
    };
    // A status of the API server itself (403 without RBAC `pods/proxy`, 503 when the pod
    // cannot be reached) counts like one of the app.
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return HookOutcome::HttpStatus(status);
    }
    let mut response_body = response.into_body();
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response_body.frame().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    append_capped(&mut body, chunk, MAX_BODY_BYTES);
                }
            }
            None => break,
            Some(Err(error)) => return HookOutcome::Other(error_chain(&error)),
        }
    }
    classify(status, &body, &call.config_hash)
}

/// Append at most what still fits under `cap`; the rest of the body is never read.
fn append_capped(body: &mut Vec<u8>, chunk: &[u8], cap: usize) {
    let room = cap.saturating_sub(body.len());
    body.extend_from_slice(chunk.get(..room).unwrap_or(chunk));
}

fn reqwest_outcome(error: &reqwest::Error) -> HookOutcome {
    if error.is_timeout() {
        HookOutcome::Timeout
    } else if error.is_connect() {
        HookOutcome::Connect(error_chain(error))
    } else if error.is_builder() {
        HookOutcome::InvalidRequest(error_chain(error))
    } else {
        HookOutcome::Other(error_chain(error))
    }
}

/// The error and its sources, `: `-separated (hyper hides the useful part in sources).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::{BearerToken, RetryPolicy};

    fn call() -> HookCall {
        HookCall {
            pod: "relay-0".into(),
            namespace: "demo".into(),
            pod_ip: "127.0.0.1".into(),
            port: 9,
            path: "/reload-config".into(),
            method: ReloadMethod::Post,
            config_hash: "abc".into(),
            bearer_token: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn invalid_header_values_are_not_retried() {
        let transport = Transport::pod_ip(PodIpOptions::default()).expect("client");
        let call = HookCall { config_hash: "abc\ndef".into(), ..call() };
        let policy = RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            deadline: Duration::from_secs(1),
        };
        let report = transport.call_with_retry(&call, &policy, None).await;
        assert!(matches!(report.outcome, HookOutcome::InvalidRequest(_)), "{report:?}");
        assert_eq!(report.attempts, 1);

        let call = HookCall {
            config_hash: "abc".into(),
            bearer_token: Some(BearerToken::new("zz9\r\nX: y")),
            ..call
        };
        let outcome = transport
            .call_with_retry(&call, &RetryPolicy { deadline: Duration::ZERO, ..RetryPolicy::default() }, None)
            .await
            .outcome;
        assert!(matches!(&outcome, HookOutcome::InvalidRequest(m) if !m.contains("zz9")), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_invalid_target_is_an_invalid_request() {
        let transport = Transport::pod_ip(PodIpOptions::default()).expect("client");
        let call = HookCall { pod_ip: "relay-0".into(), ..call() };
        assert_eq!(transport.target(&call), Err(crate::hook::HookUrlError::InvalidIp("relay-0".into())));
        let outcome = transport
            .call_with_retry(&call, &RetryPolicy { deadline: Duration::ZERO, ..RetryPolicy::default() }, None)
            .await
            .outcome;
        assert!(matches!(&outcome, HookOutcome::InvalidRequest(m) if m.contains("relay-0")), "{outcome:?}");
    }

    #[test]
    fn appending_stops_at_the_cap() {
        let mut body = Vec::new();
        append_capped(&mut body, b"abcd", 6);
        append_capped(&mut body, b"efgh", 6);
        append_capped(&mut body, b"ijkl", 6);
        assert_eq!(body, b"abcdef");
    }
}
