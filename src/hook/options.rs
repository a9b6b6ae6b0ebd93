//! How the operator calls hooks: which transport reaches a pod (`--hook-via`), how many
//! calls run at once (`--hook-concurrency`) and the retry delays.

use std::time::Duration;

use super::{DEFAULT_CONCURRENCY, HookClient, HookClientError, HookClientOptions, RetryPolicy};

/// How the operator reaches a pod's hook.
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

/// Options of the reload phase (`--hook-concurrency`, `--hook-via`).
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    /// The HTTP client for `pod-ip` calls.
    pub client: HookClient,
    /// At most this many hook calls in flight at once (per service), and as many API writes.
    pub concurrency: usize,
    /// How pods are reached.
    pub via: HookVia,
    /// First retry delay (doubling up to `retry_max`); the deadline is `reload.retryDeadline`.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
}

impl ReloadOptions {
    /// Options with a default hook client and retry delays of 500 ms doubling to 10 s.
    pub fn new(concurrency: usize, via: HookVia) -> Result<Self, HookClientError> {
        let defaults = RetryPolicy::default();
        Ok(Self {
            client: HookClient::new(HookClientOptions::default())?,
            concurrency: concurrency.max(1),
            via,
            retry_initial: defaults.initial,
            retry_max: defaults.max,
        })
    }

    /// `ReloadOptions::new(DEFAULT_CONCURRENCY, HookVia::PodIp)`.
    pub fn try_default() -> Result<Self, HookClientError> {
        Self::new(DEFAULT_CONCURRENCY, HookVia::PodIp)
    }
}
