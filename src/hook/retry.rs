//! The one retry loop of hook calls, whatever the [`Transport`]: a call retried with
//! backoff up to a deadline ([`Transport::call_with_retry`]), optionally holding a permit
//! of a shared bound while each attempt runs.

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
    /// Call the hook, retrying retryable outcomes with backoff while `policy` allows.
    ///
    /// The deadline runs from the first attempt. Retries never sleep past it, and an
    /// attempt after the first is cut at it, so the whole call lasts at most
    /// `max(call.timeout, policy.deadline)` (plus scheduling slack); a zero deadline makes
    /// one attempt. With `limit`, a permit is held during each attempt but not while
    /// sleeping between attempts (slow or hostile pods never hold up others for longer
    /// than one attempt's timeout), and the deadline starts once the first permit is held.
    pub async fn call_with_retry(
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
