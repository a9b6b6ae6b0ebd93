//! Pure, deterministic retry schedule of a reload hook call.
//!
//! No jitter: every pod is its own server, so synchronised retries do not pile up on
//! one endpoint.

use std::time::Duration;

/// How a failing (or stale) hook call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any single delay.
    pub max: Duration,
    /// Total time, from the first attempt, after which no new attempt is started
    /// (`retryDeadline` of the reload spec). Retries never sleep past it, and an attempt
    /// started after the first one is cut at it.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 500 ms doubling up to 10 s, for 2 minutes (the `retryDeadline` default).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based): `initial × 2^retry`, capped at `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let uncapped = 2u32
            .checked_pow(retry)
            .and_then(|factor| self.initial.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        uncapped.min(self.max)
    }

    /// The delay before retry number `retry` when `elapsed` has passed since the first
    /// attempt, or `None` when that retry would not start before the deadline.
    pub fn next_delay(&self, retry: u32, elapsed: Duration) -> Option<Duration> {
        let delay = self.delay(retry);
        match elapsed.checked_add(delay) {
            Some(start) if start < self.deadline => Some(delay),
            _ => None,
        }
    }

    /// The infinite sequence of delays: `delay(0)`, `delay(1)`, …
    #[cfg(test)]
    fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (0u32..).map(|retry| self.delay(retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { initial: ms(100), max: ms(1_000), deadline: ms(5_000) }
    }

    #[test]
    fn doubles_and_caps() {
        let delays: Vec<_> = policy().delays().take(7).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000), ms(1_000)]);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        assert_eq!(policy().delay(31), ms(1_000));
        assert_eq!(policy().delay(32), ms(1_000));
        assert_eq!(policy().delay(u32::MAX), ms(1_000));
        let unbounded = RetryPolicy { max: Duration::MAX, ..policy() };
        assert_eq!(unbounded.delay(u32::MAX), Duration::MAX);
        assert_eq!(unbounded.next_delay(u32::MAX, ms(0)), None);
        let zero = RetryPolicy { initial: Duration::ZERO, ..policy() };
        assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn next_delay_never_sleeps_past_the_deadline() {
        let policy = policy();
        assert_eq!(policy.next_delay(0, ms(0)), Some(ms(100)));
        assert_eq!(policy.next_delay(3, ms(4_000)), Some(ms(800)));
        assert_eq!(policy.next_delay(4, ms(3_999)), Some(ms(1_000)));
        assert_eq!(policy.next_delay(4, ms(4_000)), None);
        assert_eq!(policy.next_delay(0, ms(6_000)), None);
        assert_eq!(policy.next_delay(0, Duration::MAX), None);
    }

    #[test]
    fn zero_deadline_means_no_retry() {
        let policy = RetryPolicy { deadline: Duration::ZERO, ..policy() };
        assert_eq!(policy.next_delay(0, Duration::ZERO), None);
    }

    #[test]
    fn simulated_schedule_fits_the_deadline() {
        // Attempts that fail instantly: the retries start at 0.1, 0.3, 0.7, 1.5, 2.5, 3.5, 4.5 s.
        let policy = policy();
        let mut elapsed = Duration::ZERO;
        let mut starts = Vec::new();
        let mut retry = 0;
        while let Some(delay) = policy.next_delay(retry, elapsed) {
            elapsed += delay;
            starts.push(elapsed.as_millis());
            retry += 1;
        }
        assert_eq!(starts, [100, 300, 700, 1_500, 2_500, 3_500, 4_500]);
    }
}
