//! The tail of a container's log, read once per failure into `failure.logTail`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::context::Context;
use super::pods::LogRequest;

/// At most this much of a crashed container's log is kept in `failure.logTail`.
pub const LOG_TAIL_BYTES: i64 = 4096;
/// At most this many lines of a crashed container's log are kept.
pub const LOG_TAIL_LINES: i64 = 20;

/// Read the tail of a container's log; a failure to read is recorded instead, so the log
/// is requested once per failure, not on every reconcile.
pub async fn read_log(ctx: &Context, namespace: &str, request: &LogRequest) -> String {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = LogParams {
        container: Some(request.container.clone()),
        previous: request.previous,
        tail_lines: Some(LOG_TAIL_LINES),
        limit_bytes: Some(LOG_TAIL_BYTES),
        ..LogParams::default()
    };
    match api.logs(&request.pod, &params).await {
        Ok(mut text) => {
            let mut end = text.len().min(LOG_TAIL_BYTES as usize);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text
        }
        Err(e) => format!("(log of {}/{} unavailable: {e})", request.pod, request.container),
    }
}
