//! How the operator calls hooks: which transport reaches a pod (`--hook-via`), how many
//! calls run at once (`--hook-concurrency`) and the retry delays.

use std::time::Duration;

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

/// Options of the reload phase (`--hook-via`, `--hook-concurrency`).
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    /// How pods are reached, with the client that reaches them.
    pub transport: Transport,
    /// At most this many hook calls in flight at once (per service), and as many API writes.
    pub concurrency: usize,
    /// First retry delay (doubling up to `retry_max`); the deadline is `reload.retryDeadline`.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
}

impl ReloadOptions {
    /// Options with retry delays of 500 ms doubling to 10 s (0 concurrency counts as 1).
    pub fn new(concurrency: usize, transport: Transport) -> Self {
        let defaults = RetryPolicy::default();
        Self {
            transport,
            concurrency: concurrency.max(1),
            retry_initial: defaults.initial,
            retry_max: defaults.max,
        }
    }
}
