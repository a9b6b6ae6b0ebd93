//! The one retry loop of hook calls, whatever the [`Transport`]: a single call
//! ([`Transport::call_once`]), a call retried with backoff up to a deadline
//! ([`Transport::call_with_retry`]) and many pods at once with a bound ([`reload_all`]).

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::debug;

use super::backoff::RetryPolicy;
use super::call::{HookCall, HookReport};
use super::outcome::HookOutcome;
use super::transport::Transport;
use crate::ops::metrics::ReloadHookResult;

/// Default bound on hook calls in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 32;

impl Transport {
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
                via = ?self.via(),
                attempt = attempts,
                outcome = ReloadHookResult::from(&outcome).as_str(),
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
}

/// Call every pod's hook (each with [`Transport::call_with_retry`]) and return the
/// reports in the order of `calls`.
///
/// At most `concurrency` attempts are in flight at once (0 is treated as 1). A permit is
/// held only during an attempt, not while a pod waits for its next retry, so pods that
/// are slow, hostile or stale never hold up the others for longer than one attempt's
/// timeout. Each pod's deadline starts at its first attempt.
pub async fn reload_all(
    transport: &Transport,
    calls: Vec<HookCall>,
    policy: &RetryPolicy,
    concurrency: usize,
) -> Vec<HookReport> {
    let limit = Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS));
    let limit = &limit;
    join_all(calls.iter().map(|call| transport.call_with_retry_limited(call, policy, Some(limit)))).await
}

fn finish(call: &HookCall, outcome: HookOutcome, attempts: u32, start: Instant) -> HookReport {
    let report = HookReport { pod: call.pod.clone(), outcome, attempts, elapsed: start.elapsed() };
    debug!(
        pod = %report.pod,
        attempts = report.attempts,
        outcome = ReloadHookResult::from(&report.outcome).as_str(),
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
