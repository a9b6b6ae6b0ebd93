//! Calling the hooks of many pods at once, with a bound on concurrent calls.

use futures::future::join_all;
use tokio::sync::Semaphore;

use super::backoff::RetryPolicy;
use super::client::{HookCall, HookClient, HookReport};

/// Default bound on hook calls in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Call every pod's hook (each with [`HookClient::call_with_retry`]) and return the
/// reports in the order of `calls`.
///
/// At most `concurrency` attempts are in flight at once (0 is treated as 1). A permit is
/// held only during an attempt, not while a pod waits for its next retry, so pods that
/// are slow, hostile or stale never hold up the others for longer than one attempt's
/// timeout. Each pod's deadline starts at its first attempt.
pub async fn reload_all(
    client: &HookClient,
    calls: Vec<HookCall>,
    policy: &RetryPolicy,
    concurrency: usize,
) -> Vec<HookReport> {
    let limit = Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS));
    let limit = &limit;
    join_all(calls.iter().map(|call| client.call_with_retry_limited(call, policy, Some(limit)))).await
}
