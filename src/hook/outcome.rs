//! Pure interpretation of a reload hook's answer.

use std::fmt;

use crate::api::ReloadOutcome;
use crate::ops::metrics::ReloadHookResult;

/// Longest `configHash` a pod may report that we keep (and log); longer values are truncated.
pub const MAX_REPORTED_HASH_LEN: usize = 128;

/// The outcome of one reload hook call (or the final outcome of a retried one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// 2xx and the pod echoed the hash we sent: the new configuration is live (verified).
    Applied,
    /// 2xx without a `configHash` string in the answer (legacy relay, non-JSON body):
    /// counted as applied, but not verified.
    AppliedUnverified,
    /// 2xx but the pod reports another hash: the kubelet has not refreshed the mounted
    /// file yet. Retried.
    Stale {
        /// The hash the pod reported (truncated to [`MAX_REPORTED_HASH_LEN`] characters).
        reported: String,
    },
    /// A non-2xx status (including 3xx: redirects are never followed). Retried.
    HttpStatus(u16),
    /// The call (connect, headers and body) did not finish within its timeout. Retried.
    Timeout,
    /// The connection could not be established (refused, unreachable, …). Retried.
    Connect(String),
    /// Any other transport error (reset connection, malformed response, …). Retried.
    Other(String),
    /// The request could not be built (e.g. the hash or token is not a valid header
    /// value). Retrying cannot help, so it is not retried.
    InvalidRequest(String),
}

impl HookOutcome {
    /// Whether the pod took the new configuration (verified or not).
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Applied | Self::AppliedUnverified)
    }

    /// Whether calling again may give another outcome.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Applied | Self::AppliedUnverified | Self::InvalidRequest(_) => false,
            Self::Stale { .. } | Self::HttpStatus(_) | Self::Timeout | Self::Connect(_) | Self::Other(_) => {
                true
            }
        }
    }

    /// The pod's reload outcome when this is the final outcome.
    pub fn status_result(&self) -> ReloadOutcome {
        match self {
            Self::Applied => ReloadOutcome::Applied,
            Self::AppliedUnverified => ReloadOutcome::AppliedUnverified,
            _ => ReloadOutcome::Failed,
        }
    }
}

/// The one mapping of outcomes to the `result` label of
/// `relay_operator_reload_hook_calls_total` (and of the hook's debug logs). The label set
/// is fixed ([`ReloadHookResult::ALL`]): a request that could not be built counts as
/// `error`, like any other failure that is neither a status, a timeout nor a refused
/// connection.
impl From<&HookOutcome> for ReloadHookResult {
    fn from(outcome: &HookOutcome) -> Self {
        match outcome {
            HookOutcome::Applied => Self::Applied,
            HookOutcome::AppliedUnverified => Self::AppliedUnverified,
            HookOutcome::Stale { .. } => Self::Stale,
            HookOutcome::HttpStatus(_) => Self::HttpError,
            HookOutcome::Timeout => Self::Timeout,
            HookOutcome::Connect(_) => Self::ConnectError,
            HookOutcome::Other(_) | HookOutcome::InvalidRequest(_) => Self::Error,
        }
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Applied => f.write_str("applied (configHash verified)"),
            Self::AppliedUnverified => f.write_str("applied (hook did not echo configHash)"),
            Self::Stale { reported } => write!(f, "stale: pod reports configHash {reported}"),
            Self::HttpStatus(status) => write!(f, "HTTP status {status}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Connect(message) => write!(f, "connection failed: {message}"),
            Self::Other(message) => write!(f, "request failed: {message}"),
            Self::InvalidRequest(message) => write!(f, "invalid request: {message}"),
        }
    }
}

/// Interpret a hook's answer: its status code and (the first bytes of) its body.
///
/// - non-2xx → [`HookOutcome::HttpStatus`];
/// - 2xx with a JSON object whose `configHash` is a string equal to `sent_hash` →
///   [`HookOutcome::Applied`], a different string → [`HookOutcome::Stale`];
/// - any other 2xx (no `configHash`, not a string, not JSON, truncated JSON) →
///   [`HookOutcome::AppliedUnverified`].
pub fn classify(status: u16, body: &[u8], sent_hash: &str) -> HookOutcome {
    if !(200..300).contains(&status) {
        return HookOutcome::HttpStatus(status);
    }
    let reported = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("configHash").and_then(|hash| hash.as_str().map(str::to_owned)));
    match reported {
        Some(hash) if hash == sent_hash => HookOutcome::Applied,
        Some(hash) => HookOutcome::Stale { reported: truncate_chars(hash, MAX_REPORTED_HASH_LEN) },
        None => HookOutcome::AppliedUnverified,
    }
}

fn truncate_chars(mut text: String, max_chars: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(max_chars) {
        text.truncate(index);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:abc";

    #[test]
    fn echoed_hash_is_applied() {
        assert_eq!(classify(200, br#"{"configHash":"sha256:abc"}"#, HASH), HookOutcome::Applied);
        assert_eq!(classify(204, br#"{"configHash":"sha256:abc","x":1}"#, HASH), HookOutcome::Applied);
    }

    #[test]
    fn other_hash_is_stale() {
        assert_eq!(
            classify(200, br#"{"configHash":"sha256:old"}"#, HASH),
            HookOutcome::Stale { reported: "sha256:old".into() }
        );
    }

    #[test]
    fn legacy_relay_answer_is_unverified() {
        let body = br#"{"status":"success","message":"Config reloaded"}"#;
        assert_eq!(classify(200, body, HASH), HookOutcome::AppliedUnverified);
    }

    #[test]
    fn non_json_empty_or_odd_bodies_are_unverified() {
        for body in [
            &b""[..],
            b"OK",
            b"[1,2]",
            br#"{"configHash":42}"#,
            br#"{"configHash":null}"#,
            b"{\"configHash\":\"sha",
        ] {
            assert_eq!(classify(200, body, HASH), HookOutcome::AppliedUnverified, "{body:?}");
        }
    }

    #[test]
    fn non_2xx_is_http_status_whatever_the_body() {
        assert_eq!(classify(500, br#"{"configHash":"sha256:abc"}"#, HASH), HookOutcome::HttpStatus(500));
        assert_eq!(classify(302, b"", HASH), HookOutcome::HttpStatus(302));
        assert_eq!(classify(404, b"", HASH), HookOutcome::HttpStatus(404));
        assert_eq!(classify(199, b"", HASH), HookOutcome::HttpStatus(199));
        assert_eq!(classify(300, b"", HASH), HookOutcome::HttpStatus(300));
    }

    #[test]
    fn reported_hash_is_truncated() {
        let long = "é".repeat(1000);
        let body = serde_json::json!({ "configHash": long }).to_string();
        match classify(200, body.as_bytes(), HASH) {
            HookOutcome::Stale { reported } => assert_eq!(reported.chars().count(), MAX_REPORTED_HASH_LEN),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn success_and_retry_flags() {
        let all = [
            HookOutcome::Applied,
            HookOutcome::AppliedUnverified,
            HookOutcome::Stale { reported: "x".into() },
            HookOutcome::HttpStatus(500),
            HookOutcome::Timeout,
            HookOutcome::Connect("refused".into()),
            HookOutcome::Other("reset".into()),
            HookOutcome::InvalidRequest("bad header".into()),
        ];
        let flags: Vec<_> = all.iter().map(|o| (o.is_success(), o.is_retryable())).collect();
        assert_eq!(
            flags,
            [
                (true, false),
                (true, false),
                (false, true),
                (false, true),
                (false, true),
                (false, true),
                (false, true),
                (false, false)
            ]
        );
        let labels: Vec<_> = all.iter().map(|o| ReloadHookResult::from(o).as_str()).collect();
        assert_eq!(
            labels,
            [
                "applied",
                "applied_unverified",
                "stale",
                "http_error",
                "timeout",
                "connect_error",
                "error",
                "error"
            ]
        );
        // Every label of the fixed set is reachable.
        for result in ReloadHookResult::ALL {
            assert!(labels.contains(&result.as_str()), "{result:?}");
        }
        let results: Vec<_> = all.iter().map(|o| o.status_result().as_str()).collect();
        assert_eq!(results[..3], ["Applied", "AppliedUnverified", "Failed"]);
        assert!(results[3..].iter().all(|r| *r == "Failed"));
    }
}
