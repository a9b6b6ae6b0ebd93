//! How the operator calls hooks: which transport reaches a pod (`--hook-via`), how many
//! calls run at once (`--hook-concurrency`, `--hook-concurrency-per-service`) and the retry
//! delays.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{RetryPolicy, Transport};

/// How the operator reaches a pod's hook (`--hook-via`); see [`Transport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookVia {
    /// `http://<podIP>:<port><path>` directly (the operator runs in the cluster network).
    #[default]
    PodIp,
    /// Through the API server's pod proxy (`/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`),
    /// so it works from outside the cluster. The API server consumes `Authorization`, so a
    /// bearer token cannot be passed to the app this way.
    Proxy,
}

/// Options of the reload phase (`--hook-via`, `--hook-concurrency`,
/// `--hook-concurrency-per-service`).
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    /// How pods are reached, with the client that reaches them.
    pub transport: Transport,
    /// Slots for hook attempts in flight at once, shared by every service.
    pub slots: Arc<Semaphore>,
    /// At most this many of one service's hook attempts in flight at once.
    pub per_service: usize,
    /// First retry delay (doubling up to `retry_max`); the deadline is `reload.retryDeadline`.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
}

impl ReloadOptions {
    /// Options with `total` slots for hook attempts (`per_service` of them for one service)
    /// and retry delays of 500 ms doubling to 10 s (0 counts as 1).
    pub fn new(total: usize, per_service: usize, transport: Transport) -> Self {
        let defaults = RetryPolicy::default();
        Self {
            transport,
            slots: Arc::new(Semaphore::new(total.max(1))),
            per_service: per_service.max(1),
            retry_initial: defaults.initial,
            retry_max: defaults.max,
        }
    }
}
