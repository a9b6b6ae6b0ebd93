//! One pod's reload hook: a single call ([`HookClient::call_once`]) and a call retried
//! with backoff up to a deadline ([`HookClient::call_with_retry`]).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::debug;
use url::Url;

use super::backoff::RetryPolicy;
use super::outcome::{HookOutcome, classify};
use super::token::BearerToken;
use crate::api::ReloadMethod;

/// Header carrying the desired configuration hash.
pub const CONFIG_HASH_HEADER: &str = "x-config-hash";

/// At most this many bytes of a hook's answer are read (the rest is never received).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Errors building a [`HookClient`].
#[derive(Debug, thiserror::Error)]
pub enum HookClientError {
    /// The underlying HTTP client could not be built.
    #[error("cannot build the reload hook HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Errors building a hook URL from a pod IP, port and path.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookUrlError {
    /// The pod IP is not an IPv4 or IPv6 address.
    #[error("pod IP {0:?} is not an IP address")]
    InvalidIp(String),
    /// The hook path does not start with `/`.
    #[error("hook path {0:?} does not start with '/'")]
    InvalidPath(String),
    /// The resulting URL does not parse, or does not point at the pod.
    #[error("hook URL for path {0:?} is not valid")]
    InvalidUrl(String),
}

/// `http://<podIP>:<port><path>` (IPv6 addresses are bracketed).
pub fn hook_url(pod_ip: &str, port: u16, path: &str) -> Result<Url, HookUrlError> {
    let ip: IpAddr = pod_ip.parse().map_err(|_| HookUrlError::InvalidIp(pod_ip.to_owned()))?;
    if !path.starts_with('/') {
        return Err(HookUrlError::InvalidPath(path.to_owned()));
    }
    let authority = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    let url = Url::parse(&format!("http://{authority}{path}"))
        .map_err(|_| HookUrlError::InvalidUrl(path.to_owned()))?;
    let points_at_pod = match (url.host(), ip) {
        (Some(url::Host::Ipv4(host)), IpAddr::V4(v4)) => host == v4,
        (Some(url::Host::Ipv6(host)), IpAddr::V6(v6)) => host == v6,
        _ => false,
    };
    if !points_at_pod || url.port_or_known_default() != Some(port) {
        return Err(HookUrlError::InvalidUrl(path.to_owned()));
    }
    Ok(url)
}

/// One pod's hook call.
///
/// `Debug` is safe to log: the token prints as `***`.
#[derive(Clone, Debug)]
pub struct HookCall {
    /// Pod name (for logs and reports).
    pub pod: String,
    /// `http://<podIP>:<port><path>`, see [`hook_url`].
    pub url: Url,
    /// HTTP method (POST by default).
    pub method: ReloadMethod,
    /// The desired configuration hash, sent as `X-Config-Hash`.
    pub config_hash: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<BearerToken>,
    /// Timeout of one attempt, covering connect, headers and body.
    pub timeout: Duration,
}

/// The final result of a (retried) hook call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookReport {
    /// Pod name.
    pub pod: String,
    /// Outcome of the last attempt.
    pub outcome: HookOutcome,
    /// Number of attempts made (at least 1).
    pub attempts: u32,
    /// Time from the first attempt to the end of the last one.
    pub elapsed: Duration,
}

impl HookReport {
    /// Whether the pod took the configuration; otherwise `onFailure` applies.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_success()
    }
}

/// Options of a [`HookClient`].
#[derive(Clone, Debug)]
pub struct HookClientOptions {
    /// Timeout of establishing a TCP connection (each call also has its overall timeout).
    pub connect_timeout: Duration,
    /// At most this many body bytes are read from an answer.
    pub max_body_bytes: usize,
}

impl Default for HookClientOptions {
    /// Connect timeout 3 s, body cap [`MAX_BODY_BYTES`].
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(3), max_body_bytes: MAX_BODY_BYTES }
    }
}

/// HTTP client for reload hooks: plain HTTP to pod IPs, no redirects, no proxy,
/// every call bounded in time and in the bytes it reads.
///
/// Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct HookClient {
    http: reqwest::Client,
    max_body_bytes: usize,
}

impl HookClient {
    /// A client with the given options.
    ///
    /// The pool keeps at most one idle connection per pod, for a short time: hooks are
    /// called rarely, and a large fleet must not pin one socket per pod.
    pub fn new(options: HookClientOptions) -> Result<Self, HookClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .user_agent(concat!("relay-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HookClientError::Build)?;
        Ok(Self { http, max_body_bytes: options.max_body_bytes })
    }

    /// Call the hook once, within `call.timeout`.
    pub async fn call_once(&self, call: &HookCall) -> HookOutcome {
        self.attempt(call, call.timeout).await
    }

    /// Call the hook, retrying retryable outcomes with backoff while `policy` allows.
    ///
    /// The deadline runs from the first attempt. Retries never sleep past it, and an
    /// attempt after the first is cut at it, so the whole call lasts at most
    /// `max(call.timeout, policy.deadline)` (plus scheduling slack).
    pub async fn call_with_retry(&self, call: &HookCall, policy: &RetryPolicy) -> HookReport {
        self.call_with_retry_limited(call, policy, None).await
    }

    /// [`Self::call_with_retry`], holding a permit of `limit` (when given) during each
    /// attempt but not while sleeping between attempts. The deadline starts once the
    /// first permit is held.
    pub(crate) async fn call_with_retry_limited(
        &self,
        call: &HookCall,
        policy: &RetryPolicy,
        limit: Option<&Semaphore>,
    ) -> HookReport {
        let mut permit = acquire(limit).await;
        let start = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            let budget = if attempts == 0 {
                call.timeout
            } else {
                call.timeout.min(policy.deadline.saturating_sub(start.elapsed()))
            };
            let outcome = self.attempt(call, budget).await;
            drop(permit.take());
            attempts = attempts.saturating_add(1);
            debug!(
                pod = %call.pod,
                attempt = attempts,
                outcome = outcome.metric_label(),
                detail = %outcome,
                "reload hook attempt"
            );
            let delay = if outcome.is_retryable() {
                policy.next_delay(attempts.saturating_sub(1), start.elapsed())
            } else {
                None
            };
            let Some(delay) = delay else {
                return finish(call, outcome, attempts, start);
            };
            tokio::time::sleep(delay).await;
            permit = acquire(limit).await;
            if start.elapsed() >= policy.deadline {
                // The wait for a slot used up the deadline: keep the last real outcome
                // rather than a zero-budget attempt's `Timeout`.
                return finish(call, outcome, attempts, start);
            }
        }
    }

    async fn attempt(&self, call: &HookCall, budget: Duration) -> HookOutcome {
        let request = match self.request(call) {
            Ok(request) => request,
            Err(outcome) => return outcome,
        };
        let max_body_bytes = self.max_body_bytes;
        let exchange = async move {
            let mut response = match request.send().await {
                Ok(response) => response,
                Err(error) => return transport_outcome(&error),
            };
            let status = response.status().as_u16();
            if !response.status().is_success() {
                // The body of a failure is not interpreted; dropping the response closes it.
                return HookOutcome::HttpStatus(status);
            }
            match read_capped(&mut response, max_body_bytes).await {
                Ok(body) => classify(status, &body, &call.config_hash),
                Err(error) => transport_outcome(&error),
            }
        };
        tokio::time::timeout(budget, exchange).await.unwrap_or(HookOutcome::Timeout)
    }

    fn request(&self, call: &HookCall) -> Result<reqwest::RequestBuilder, HookOutcome> {
        let method = match call.method {
            ReloadMethod::Post => reqwest::Method::POST,
            ReloadMethod::Put => reqwest::Method::PUT,
        };
        let hash = HeaderValue::from_str(&call.config_hash)
            .map_err(|_| HookOutcome::InvalidRequest("configHash is not a valid header value".into()))?;
        let mut request = self.http.request(method, call.url.clone()).header(CONFIG_HASH_HEADER, hash);
        if let Some(token) = &call.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                HookOutcome::InvalidRequest("bearer token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        Ok(request)
    }
}

fn finish(call: &HookCall, outcome: HookOutcome, attempts: u32, start: Instant) -> HookReport {
    let report = HookReport { pod: call.pod.clone(), outcome, attempts, elapsed: start.elapsed() };
    debug!(
        pod = %report.pod,
        attempts = report.attempts,
        outcome = report.outcome.metric_label(),
        elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "reload hook finished"
    );
    report
}

async fn acquire(limit: Option<&Semaphore>) -> Option<tokio::sync::SemaphorePermit<'_>> {
    // The semaphore is never closed; if it were, calls would simply run unbounded.
    match limit {
        Some(semaphore) => semaphore.acquire().await.ok(),
        None => None,
    }
}

/// Read at most `cap` bytes of the body, chunk by chunk; the rest is never read.
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < cap {
        let Some(chunk) = response.chunk().await? else { break };
        let room = cap - body.len();
        body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
    }
    Ok(body)
}

fn transport_outcome(error: &reqwest::Error) -> HookOutcome {
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

    #[test]
    fn hook_url_ipv4_and_ipv6() {
        assert_eq!(
            hook_url("10.1.2.3", 8080, "/reload-config").map(String::from),
            Ok("http://10.1.2.3:8080/reload-config".to_owned())
        );
        assert_eq!(
            hook_url("fd00::1", 9000, "/r?x=1").map(String::from),
            Ok("http://[fd00::1]:9000/r?x=1".to_owned())
        );
        assert_eq!(hook_url("10.1.2.3", 80, "/").map(String::from), Ok("http://10.1.2.3/".to_owned()));
    }

    #[test]
    fn hook_url_rejects_bad_input() {
        assert_eq!(hook_url("pod.local", 80, "/r"), Err(HookUrlError::InvalidIp("pod.local".into())));
        assert_eq!(hook_url("[fd00::1]", 80, "/r"), Err(HookUrlError::InvalidIp("[fd00::1]".into())));
        assert_eq!(hook_url("10.0.0.1", 80, "reload"), Err(HookUrlError::InvalidPath("reload".into())));
        assert_eq!(hook_url("10.0.0.1", 80, ""), Err(HookUrlError::InvalidPath("".into())));
    }

    #[test]
    fn hook_url_keeps_the_pod_as_host() {
        // Whatever the path holds, it stays a path of the pod's URL.
        let url = hook_url("10.0.0.1", 80, "/@evil.example:1/x").map(String::from);
        assert_eq!(url, Ok("http://10.0.0.1/@evil.example:1/x".to_owned()));
        let url = hook_url("10.0.0.1", 80, "//evil.example/x").map(|u| u.host_str().map(str::to_owned));
        assert_eq!(url, Ok(Some("10.0.0.1".to_owned())));
    }

    #[test]
    fn call_debug_hides_the_token() {
        let call = HookCall {
            pod: "relay-0".into(),
            url: Url::parse("http://10.0.0.1:8080/reload-config").expect("url"),
            method: ReloadMethod::Post,
            config_hash: "abc".into(),
            bearer_token: Some(BearerToken::new("s3cr3t")),
            timeout: Duration::from_secs(1),
        };
        let debug = format!("{call:?} {call:#?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    #[tokio::test]
    async fn invalid_header_values_are_not_retried() {
        let client = HookClient::new(HookClientOptions::default()).expect("client");
        let call = HookCall {
            pod: "relay-0".into(),
            url: Url::parse("http://127.0.0.1:9/reload-config").expect("url"),
            method: ReloadMethod::Post,
            config_hash: "abc\ndef".into(),
            bearer_token: None,
            timeout: Duration::from_secs(1),
        };
        let policy = RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            deadline: Duration::from_secs(1),
        };
        let report = client.call_with_retry(&call, &policy).await;
        assert!(matches!(report.outcome, HookOutcome::InvalidRequest(_)), "{report:?}");
        assert_eq!(report.attempts, 1);

        let call = HookCall {
            config_hash: "abc".into(),
            bearer_token: Some(BearerToken::new("zz9\r\nX: y")),
            ..call
        };
        let outcome = client.call_once(&call).await;
        assert!(matches!(&outcome, HookOutcome::InvalidRequest(m) if !m.contains("zz9")), "{outcome:?}");
    }
}
