//! What one pod's hook call is ([`HookCall`]), where it goes ([`hook_url`],
//! [`HookCall::proxy_uri`]) and how it ended ([`HookReport`]).

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::outcome::HookOutcome;
use super::token::BearerToken;
use crate::api::ReloadMethod;

/// Errors building a hook's address from a pod's IP or name, its port and the hook path.
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
    /// A pod or namespace name that cannot be a path segment of the API server's pod proxy.
    #[error("{0:?} is not a valid pod or namespace name")]
    InvalidName(String),
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

/// One pod's hook call: everything either transport needs to reach the pod.
///
/// `Debug` is safe to log: the token prints as `***`.
#[derive(Clone, Debug)]
pub struct HookCall {
    /// Pod name (the API proxy's target; in logs and reports).
    pub pod: String,
    /// The pod's namespace (the API proxy's target).
    pub namespace: String,
    /// The pod's IP (the direct transport's target).
    pub pod_ip: String,
    /// Container port of the hook.
    pub port: u16,
    /// Path of the hook, starting with `/` (a query may follow).
    pub path: String,
    /// HTTP method (POST by default).
    pub method: ReloadMethod,
    /// The desired configuration hash, sent as `X-Config-Hash`.
    pub config_hash: String,
    /// Sent as `Authorization: Bearer <token>` when set, by the pod-IP transport only:
    /// through the API server's pod proxy it cannot reach the app (see
    /// [`super::HookVia::Proxy`]).
    pub bearer_token: Option<BearerToken>,
    /// Timeout of one attempt, covering connect, headers and body.
    pub timeout: Duration,
}

impl HookCall {
    /// `http://<podIP>:<port><path>`, see [`hook_url`].
    pub fn url(&self) -> Result<Url, HookUrlError> {
        hook_url(&self.pod_ip, self.port, &self.path)
    }

    /// `/api/v1/namespaces/<namespace>/pods/<pod>:<port>/proxy<path>`: the hook through
    /// the API server's pod proxy.
    ///
    /// The path is resolved like a URL path first (dot segments removed, unsafe
    /// characters percent-encoded), so it stays below the pod's `proxy` subresource.
    pub fn proxy_uri(&self) -> Result<String, HookUrlError> {
        for name in [&self.namespace, &self.pod] {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !valid {
                return Err(HookUrlError::InvalidName(name.clone()));
            }
        }
        // Any address resolves the path the same way; only path and query are kept.
        let url = hook_url("127.0.0.1", self.port, &self.path)?;
        let query = url.query().map(|query| format!("?{query}")).unwrap_or_default();
        Ok(format!(
            "/api/v1/namespaces/{}/pods/{}:{}/proxy{}{query}",
            self.namespace,
            self.pod,
            self.port,
            url.path()
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(path: &str) -> HookCall {
        HookCall {
            pod: "relay-0".into(),
            namespace: "demo".into(),
            pod_ip: "10.0.0.1".into(),
            port: 8080,
            path: path.into(),
            method: ReloadMethod::Post,
            config_hash: "abc".into(),
            bearer_token: Some(BearerToken::new("s3cr3t")),
            timeout: Duration::from_secs(1),
        }
    }

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
    fn call_url_is_the_pods() {
        assert_eq!(
            call("/reload-config").url().map(String::from),
            Ok("http://10.0.0.1:8080/reload-config".into())
        );
        let call = HookCall { pod_ip: "relay-0".into(), ..call("/r") };
        assert_eq!(call.url(), Err(HookUrlError::InvalidIp("relay-0".into())));
    }

    #[test]
    fn proxy_uri_names_the_pod_and_port() {
        assert_eq!(
            call("/reload-config").proxy_uri(),
            Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/reload-config".into())
        );
        assert_eq!(
            call("/r?x=1").proxy_uri(),
            Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/r?x=1".into())
        );
        assert_eq!(call("/").proxy_uri(), Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/".into()));
        // The pod IP is not needed.
        let call = HookCall { pod_ip: String::new(), ..call("/r") };
        assert_eq!(call.proxy_uri(), Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/r".into()));
    }

    #[test]
    fn proxy_uri_stays_below_the_pods_proxy() {
        for path in ["/../../../secrets", "/a/%2e%2e/%2E%2E/../secrets", "/./../secrets"] {
            assert_eq!(
                call(path).proxy_uri(),
                Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/secrets".into()),
                "{path}"
            );
        }
        assert_eq!(
            call("/a b#frag").proxy_uri(),
            Ok("/api/v1/namespaces/demo/pods/relay-0:8080/proxy/a%20b".into())
        );
        assert_eq!(call("reload").proxy_uri(), Err(HookUrlError::InvalidPath("reload".into())));
        let call = HookCall { pod: "web-0/../x".into(), ..call("/r") };
        assert_eq!(call.proxy_uri(), Err(HookUrlError::InvalidName("web-0/../x".into())));
    }

    #[test]
    fn call_debug_hides_the_token() {
        let call = call("/reload-config");
        let debug = format!("{call:?} {call:#?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }
}
