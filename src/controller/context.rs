//! Shared state of the reconcilers: the client, reflector caches, the event recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::api::{HealthPolicy, RelayService};
use crate::hook::ReloadOptions;
use crate::ops::metrics::Metrics;

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

/// In-memory state of the reload phase: when each service's desired hash was first seen
/// (right after its ConfigMap write), for the propagation-latency histogram.
#[derive(Debug, Default)]
pub struct ReloadState {
    written: Mutex<HashMap<String, (String, Timestamp)>>,
}

impl ReloadState {
    /// When `hash` became the desired hash of `key`: the first time this process saw it,
    /// or `fallback` (e.g. the ConfigMap's last apply time) when that is earlier.
    pub fn written_at(
        &self,
        key: &str,
        hash: &str,
        fallback: Option<Timestamp>,
        now: Timestamp,
    ) -> Timestamp {
        let mut written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = written.entry(key.to_owned()).or_insert_with(|| (hash.to_owned(), now));
        if entry.0 != hash {
            *entry = (hash.to_owned(), now);
        }
        match fallback {
            Some(earlier) if earlier < entry.1 => earlier,
            _ => entry.1,
        }
    }
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
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Options of the reload phase (`--hook-via` transport, concurrency, retry delays).
    pub reload: ReloadOptions,
    /// State of the reload phase (when each desired hash was first seen).
    pub reload_state: ReloadState,
    /// Consecutive failures per object, for exponential requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Current time; `Timestamp::now` unless replaced with [`Context::with_clock`].
    clock: Clock,
}

impl Context {
    /// A new context.
    pub fn new(
        client: Client,
        caches: Caches,
        recorder: Recorder,
        require_pinned_images: bool,
        reload: ReloadOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            caches,
            recorder,
            require_pinned_images,
            health_client: health_client(),
            metrics,
            reload,
            reload_state: ReloadState::default(),
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

/// The client of the one-off health fetches: no redirects, no proxy, a short connect timeout.
fn health_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
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
