//! Shared state of the reconcilers: the client, reflector caches, the event recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use super::reload::{ReloadOptions, ReloadState};
use crate::api::{HealthPolicy, RelayService};
use crate::ops::metrics::Metrics;
use crate::reload::HookClientError;

/// Reflector caches every read of a reconcile comes from.
#[derive(Clone)]
pub struct Caches {
    /// RelayServices.
    pub services: Store<RelayService>,
    /// HealthPolicies.
    pub policies: Store<HealthPolicy>,
    /// Managed pods.
    pub pods: Store<Pod>,
    /// Managed ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Managed Services.
    pub service_objects: Store<Service>,
    /// Managed claims.
    pub claims: Store<PersistentVolumeClaim>,
    /// Secrets (referenced ones are read for the config hash).
    pub secrets: Store<Secret>,
}

/// The reconcilers' source of the current time (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything a reconcile needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Caches.
    pub caches: Caches,
    /// Event recorder.
    pub recorder: Recorder,
    /// Refuse to create pods for images with mutable tags.
    pub require_pinned_images: bool,
    /// Client of the one-off health fetches on pods that turned unready.
    pub health_client: reqwest::Client,
    /// Metrics of the reload phase (none in tests that do not look).
    pub metrics: Option<Arc<Metrics>>,
    /// State of the reload phase (when each desired hash was first seen).
    pub reload_state: ReloadState,
    /// Options of the reload phase; built with defaults on first use when not set.
    reload: OnceLock<ReloadOptions>,
    /// Consecutive failures per object, for exponential requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Current time; `Timestamp::now` unless replaced with [`Context::with_clock`].
    clock: Clock,
}

impl Context {
    /// A new context.
    pub fn new(client: Client, caches: Caches, recorder: Recorder, require_pinned_images: bool) -> Self {
        Self {
            client,
            caches,
            recorder,
            require_pinned_images,
            health_client: super::health_detail::client(),
            metrics: None,
            reload_state: ReloadState::default(),
            reload: OnceLock::new(),
            failures: Mutex::default(),
            clock: Arc::new(Timestamp::now),
        }
    }

    /// Replace the clock (tests pass a fixed or steppable time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The current time according to the clock.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Use these reload options (hook client, concurrency, `--hook-via`).
    pub fn with_reload(self, options: ReloadOptions) -> Self {
        let reload = OnceLock::new();
        let _ = reload.set(options);
        Self { reload, ..self }
    }

    /// Record reload metrics here.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics: Some(metrics), ..self }
    }

    /// The reload options: those set with [`Self::with_reload`], or the defaults.
    pub fn reload_options(&self) -> Result<&ReloadOptions, HookClientError> {
        if let Some(options) = self.reload.get() {
            return Ok(options);
        }
        let options = ReloadOptions::try_default()?;
        Ok(self.reload.get_or_init(|| options))
    }

    /// Record a failure of `key` and return how long to wait before retrying: 1 s doubling to 5 min.
    pub fn failure_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        backoff(*count)
    }

    /// Forget the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }
}

/// 1 s, 2 s, 4 s, … capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(9);
    Duration::from_secs(1u64 << exponent).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
