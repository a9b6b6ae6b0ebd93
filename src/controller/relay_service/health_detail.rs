//! One bounded fetch of a pod's health endpoint, so `kubectl describe` shows *why* its
//! readiness check fails (e.g. `ws_connected: false`); [`diagnosis`](super::diagnosis)
//! decides when.

use std::time::Duration;

/// Most bytes of the health answer read from the pod.
pub const MAX_READ_BYTES: usize = 64 * 1024;
/// Most bytes of it kept in status and in the Event (an Event note holds at most 1 KiB).
pub const MAX_SHOWN_BYTES: usize = 1000;
/// Timeout of the single fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Fetch `url` once (no redirects, bounded time and size) and describe the answer, truncated.
pub async fn fetch(client: &reqwest::Client, url: url::Url) -> String {
    check(client, url).await.detail
}

/// One answer of a health endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// The answer described, truncated: `HTTP 503: {…}`, or why there was none.
    pub detail: String,
}

impl Answer {
    /// Healthy as the kubelet judges an HTTP probe: a status from 200 to 399.
    pub fn healthy(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }
}

/// Fetch `url` once (no redirects, bounded time and size): its status and the answer described.
pub async fn check(client: &reqwest::Client, url: url::Url) -> Answer {
    let work = async {
        let mut response =
            client.get(url).send().await.map_err(|e| (None, format!("request failed: {e}")))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_READ_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err((Some(status), format!("HTTP {status}, body unreadable: {e}"))),
            }
        }
        Ok((Some(status), format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())))
    };
    let (status, detail) = match tokio::time::timeout(FETCH_TIMEOUT, work).await {
        Ok(Ok(answer) | Err(answer)) => answer,
        Err(_) => (None, format!("no answer within {}s", FETCH_TIMEOUT.as_secs())),
    };
    Answer { status, detail: truncate(&detail, MAX_SHOWN_BYTES) }
}

/// Cut `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 8), "abcde...");
        let cut = truncate("ääääää", 8);
        assert!(cut.len() <= 8 && cut.ends_with("..."), "{cut}");
    }
}
