//! The one retry loop of hook calls, whatever the [`Transport`]: a call retried with
//! backoff up to a deadline ([`Transport::call_with_retry`]), optionally holding a slot of
//! the shared bounds ([`HookSlots`]) while each attempt runs.

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::debug;

use super::backoff::RetryPolicy;
use super::call::{HookCall, HookReport};
use super::outcome::HookOutcome;
use super::transport::Transport;
use crate::ops::metrics::ReloadHookResult;

/// Default bound on hook attempts in flight at once, over all services
/// (`--hook-concurrency`); chosen by measurement, see BENCHMARKS.md.
pub const DEFAULT_CONCURRENCY: usize = 2048;
/// Default bound on one service's hook attempts in flight
/// (`--hook-concurrency-per-service`), so one huge service cannot take every slot.
pub const DEFAULT_CONCURRENCY_PER_SERVICE: usize = 1024;

/// The bounds an attempt holds a slot of while it runs: its service's, then the whole
/// operator's (always in that order, so services never wait on each other in a cycle).
#[derive(Debug)]
pub struct HookSlots<'a> {
    service: Semaphore,
    all: &'a Semaphore,
}

impl<'a> HookSlots<'a> {
    /// `per_service` slots (at least 1) for one service's calls, within the shared `all`.
    pub fn new(per_service: usize, all: &'a Semaphore) -> Self {
        Self { service: Semaphore::new(per_service.max(1)), all }
    }

    async fn acquire(&self) -> Option<(SemaphorePermit<'_>, SemaphorePermit<'a>)> {
        // The semaphores are never closed; if they were, calls would simply run unbounded.
        let service = self.service.acquire().await.ok()?;
        let all = self.all.acquire().await.ok()?;
        Some((service, all))
    }
}

impl Transport {
    /// Call the hook, retrying retryable outcomes with backoff while `policy` allows.
    ///
    /// The deadline runs from the first attempt. Retries never sleep past it, and an
    /// attempt after the first is cut at it, so the whole call lasts at most
    /// `max(call.timeout, policy.deadline)` (plus scheduling slack); a zero deadline makes
    /// one attempt. With `limit`, a slot is held during each attempt but not while
    /// sleeping between attempts (slow or hostile pods never hold up others for longer
    /// than one attempt's timeout), and the deadline starts once the first slot is held.
    pub async fn call_with_retry(
        &self,
        call: &HookCall,
        policy: &RetryPolicy,
        limit: Option<&HookSlots<'_>>,
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

async fn acquire<'s, 'a>(
    limit: Option<&'s HookSlots<'a>>,
) -> Option<(SemaphorePermit<'s>, SemaphorePermit<'a>)> {
    match limit {
        Some(slots) => slots.acquire().await,
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_service_cannot_take_every_slot() {
        let all = Semaphore::new(3);
        let (big, small) = (HookSlots::new(2, &all), HookSlots::new(2, &all));
        let _first = big.acquire().await.unwrap();
        let _second = big.acquire().await.unwrap();
        // The big service is at its own bound; the small one still gets the last slot.
        let blocked = tokio::time::timeout(Duration::from_millis(50), big.acquire()).await;
        assert!(blocked.is_err(), "a third slot for one service");
        let _small = tokio::time::timeout(Duration::from_millis(50), small.acquire()).await.unwrap().unwrap();
        assert_eq!(all.available_permits(), 0, "the shared bound holds over both services");
    }
}
