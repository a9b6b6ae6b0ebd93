//! Shared state of the reconcilers: the client, reflector caches, the event recorder.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};

use super::cached::{CachedConfigMap, CachedPod, CachedRevision, CachedService};
use super::debounce::Debounce;
use super::events::EventPublisher;
use super::own_writes::OwnWrites;
use super::restart_budget::RestartBudget;
use crate::api::{CanaryStatus, HealthPolicy, RelayService, ReloadResult, TestDeployment};
use crate::history::Snapshot;
use crate::hook::ReloadOptions;
use crate::ops::metrics::Metrics;
use crate::render::ANNOTATION_CONFIG_HASH;

/// Reflector caches every read of a reconcile comes from.
#[derive(Clone)]
pub struct Caches {
    /// RelayServices.
    pub services: Store<RelayService>,
    /// HealthPolicies.
    pub policies: Store<HealthPolicy>,
    /// Managed pods.
    pub pods: Store<CachedPod>,
    /// Managed ConfigMaps.
    pub config_maps: Store<CachedConfigMap>,
    /// Managed Services.
    pub service_objects: Store<CachedService>,
    /// Managed claims.
    pub claims: Store<PersistentVolumeClaim>,
    /// Managed Ingresses.
    pub ingresses: Store<Ingress>,
    /// Secrets of the namespaces the operator may read (referenced ones are read for the
    /// config hash and the reload hook's token).
    pub secrets: SecretCaches,
    /// TestDeployments.
    pub test_deployments: Store<TestDeployment>,
    /// The kept revisions of RelayServices.
    pub revisions: Store<CachedRevision>,
}

/// The Secret caches: one per namespace whose Secrets the operator may read (the watched
/// namespace, or those listed with `--secret-namespace`). The operator never lists Secrets
/// cluster-wide.
#[derive(Clone, Default)]
pub struct SecretCaches(BTreeMap<String, Store<Secret>>);

impl SecretCaches {
    /// Caches of these namespaces.
    pub fn new(stores: impl IntoIterator<Item = (String, Store<Secret>)>) -> Self {
        Self(stores.into_iter().collect())
    }

    /// Whether the operator may read Secrets in `namespace`.
    pub fn readable(&self, namespace: &str) -> bool {
        self.0.contains_key(namespace)
    }

    /// The Secret `namespace/name`, when its namespace is readable and it exists.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.0.get(namespace)?.get(&ObjectRef::new(name).within(namespace))
    }
}

/// In-memory state of the reload phase: when each service's desired hash was first seen
/// (right after its ConfigMap write), for the propagation-latency histogram.
#[derive(Debug, Default)]
pub struct ReloadState {
    written: Mutex<HashMap<String, (String, Timestamp)>>,
    /// Hashes this process recorded on pods whose record the cache does not show yet, by pod
    /// UID (the ReplicaSet controller's "expectations"): a reconcile that runs before its own
    /// write comes back through the watch must not call the hook again.
    recorded: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Pods this process nudged, as `uid/hash`: a nudge it did not make was made by an
    /// earlier operator process, which may have called the hook before it stopped.
    nudged: Mutex<std::collections::HashSet<String>>,
    /// The last reload result per pod UID, as this process produced it.
    results: Mutex<HashMap<String, ReloadResult>>,
}

/// How long an unobserved record is remembered (a watch that lags longer has failed).
const RECORD_EXPECTATION_TTL: Duration = Duration::from_secs(600);

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

    /// Remember that this process nudged the pod `uid` for `hash`.
    pub fn note_nudge(&self, uid: &str, hash: &str) {
        let mut nudged = self.nudged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bound, not a cache policy: forgetting costs at most one health check per pod.
        if nudged.len() >= 100_000 {
            nudged.clear();
        }
        nudged.insert(format!("{uid}/{hash}"));
    }

    /// Whether this process nudged the pod `uid` for `hash`.
    pub fn nudged_here(&self, uid: &str, hash: &str) -> bool {
        self.nudged.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&format!("{uid}/{hash}"))
    }

    /// Remember the last reload result of the pod `uid`.
    pub fn remember_result(&self, uid: &str, result: &ReloadResult) {
        let mut results = self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bound, not a cache policy: forgetting falls back to the status as read.
        if results.len() >= 100_000 {
            results.clear();
        }
        results.insert(uid.to_owned(), result.clone());
    }

    /// The last results this process produced for `pods`, by pod name.
    pub fn remembered_results<'p>(
        &self,
        pods: impl IntoIterator<Item = &'p CachedPod>,
    ) -> BTreeMap<String, ReloadResult> {
        let results = self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.into_iter()
            .filter_map(|p| {
                Some((p.metadata.name.clone()?, results.get(p.metadata.uid.as_deref()?)?.clone()))
            })
            .collect()
    }

    /// Remember that `hash` was just recorded on the pod `uid`.
    pub fn expect_recorded(&self, uid: &str, hash: &str) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        recorded.insert(uid.to_owned(), (hash.to_owned(), std::time::Instant::now()));
    }

    /// The records of `pods` (name → hash) this process made but the cache does not show yet.
    /// Records the cache shows, and old ones, are forgotten.
    pub fn unobserved_records<'p>(
        &self,
        pods: impl IntoIterator<Item = &'p CachedPod>,
    ) -> BTreeMap<String, String> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        recorded.retain(|_, (_, at)| at.elapsed() < RECORD_EXPECTATION_TTL);
        let mut unobserved = BTreeMap::new();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.as_deref() else { continue };
            let Some((hash, _)) = recorded.get(uid) else { continue };
            let cached = pod.annotation(ANNOTATION_CONFIG_HASH);
            if cached == Some(hash) {
                recorded.remove(uid);
            } else {
                unobserved.insert(pod.metadata.name.clone().unwrap_or_default(), hash.clone());
            }
        }
        unobserved
    }
}

/// The pod problems each service has announced with a Warning Event (pod UID → reason).
///
/// Status remembers them too, but a reconcile can start before the previous one's status
/// write has reached the cache; this memory keeps that reconcile from announcing again.
#[derive(Debug, Default)]
pub struct AnnouncedProblems(Mutex<HashMap<String, BTreeMap<String, String>>>);

impl AnnouncedProblems {
    /// Replace what `service` has announced with its pods' problems now (pod UID → reason)
    /// and return the UIDs whose problem was not announced before.
    pub fn record(&self, service: &str, problems: BTreeMap<String, String>) -> BTreeSet<String> {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = all.remove(service).unwrap_or_default();
        let fresh = problems
            .iter()
            .filter(|(uid, reason)| before.get(*uid) != Some(*reason))
            .map(|(uid, _)| uid.clone())
            .collect();
        if !problems.is_empty() {
            all.insert(service.to_owned(), problems);
        }
        fresh
    }
}

/// The highest revision number this process gave each service (`namespace/name`): a
/// reconcile that runs before the cache shows a revision just created must not give its
/// number again.
#[derive(Debug, Default)]
pub struct RevisionNumbers(Mutex<HashMap<String, i64>>);

impl RevisionNumbers {
    /// The number of a new revision of `service`: at least `floor` (one above every number
    /// known from the cache and status), above every number given before.
    pub fn next(&self, service: &str, floor: i64) -> i64 {
        let mut given = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let last = given.entry(service.to_owned()).or_insert(0);
        *last = (*last + 1).max(floor);
        *last
    }
}

/// The contents of the ControllerRevisions a rollback pins, by revision UID. The caches keep
/// revisions without their `data` ([`super::cached::RevisionBody`]); a pinned revision's is
/// read once and kept here, since a revision's content never changes.
#[derive(Debug, Default)]
pub struct RevisionContents(Mutex<HashMap<String, Snapshot>>);

impl RevisionContents {
    /// The content of the revision `uid`, if read before.
    pub fn get(&self, uid: &str) -> Option<Snapshot> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(uid).cloned()
    }

    /// Keep the content of the revision `uid`.
    pub fn insert(&self, uid: &str, content: Snapshot) {
        let mut contents = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bound, not a cache policy: forgetting costs one read per pinned service.
        if contents.len() >= 10_000 {
            contents.clear();
        }
        contents.insert(uid.to_owned(), content);
    }
}

/// The canary state (`status.canary`) each service's last reconcile in this process
/// decided, by service UID: a reconcile that starts before that status write reached the
/// cache reads it here, so a canary is never forgotten or started twice.
#[derive(Debug, Default)]
pub struct CanaryMemory(Mutex<HashMap<String, Option<CanaryStatus>>>);

impl CanaryMemory {
    /// What this process last decided for `service`, if anything.
    pub fn get(&self, service: &str) -> Option<Option<CanaryStatus>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(service).cloned()
    }

    /// Remember the state decided for `service`.
    pub fn set(&self, service: &str, state: Option<CanaryStatus>) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(service.to_owned(), state);
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
    /// Where Events go.
    pub events: EventPublisher,
    /// Refuse to create pods for images with mutable tags.
    pub require_pinned_images: bool,
    /// Client of the one-off health fetches on pods that fail their readiness check.
    pub health_client: reqwest::Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Options of the reload phase (`--hook-via` transport, concurrency, retry delays).
    pub reload: ReloadOptions,
    /// State of the reload phase (when each desired hash was first seen).
    pub reload_state: ReloadState,
    /// Pod problems already announced with a Warning Event.
    pub announced: AnnouncedProblems,
    /// Revision numbers given by this process.
    pub revision_numbers: RevisionNumbers,
    /// Canary states decided by this process.
    pub canaries: CanaryMemory,
    /// Contents of pinned revisions read by this process.
    pub revision_contents: RevisionContents,
    /// When each service's pending configuration was first desired (`reload.debounce`).
    pub debounce: Debounce,
    /// Pod restarts in flight and queued (`--max-concurrent-restarts`), shared by every
    /// controller of the process.
    pub restarts: Arc<RestartBudget>,
    /// The version of each reconciled object's own last status write, until the cache has it.
    pub own_writes: OwnWrites,
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
        events: EventPublisher,
        require_pinned_images: bool,
        reload: ReloadOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            caches,
            events,
            require_pinned_images,
            health_client: health_client(),
            metrics,
            reload,
            reload_state: ReloadState::default(),
            announced: AnnouncedProblems::default(),
            revision_numbers: RevisionNumbers::default(),
            canaries: CanaryMemory::default(),
            revision_contents: RevisionContents::default(),
            debounce: Debounce::default(),
            restarts: Arc::new(RestartBudget::default()),
            own_writes: OwnWrites::default(),
            failures: Mutex::default(),
            clock: Arc::new(Timestamp::now),
        }
    }

    /// Replace the clock (tests pass a fixed or steppable time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Share `budget` (`--max-concurrent-restarts`) instead of an unlimited one of its own.
    pub fn with_restart_budget(mut self, budget: Arc<RestartBudget>) -> Self {
        self.restarts = budget;
        self
    }

    /// Record that `count` restarts of `service` wait for a slot, and show the budget in
    /// the metrics.
    pub fn restarts_queued(&self, service: &str, count: usize) {
        let now = self.now();
        self.restarts.set_queued(service, count, now);
        let (in_flight, queued) = self.restarts.counts(now);
        self.metrics.set_restarts(in_flight, queued);
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
    #[test]
    fn problems_are_announced_once_per_pod_and_reason() {
        let announced = super::AnnouncedProblems::default();
        let now =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(u, r)| (u.to_string(), r.to_string())).collect();
        let fresh = announced.record("ns/web", now(&[("u0", "ErrImagePull"), ("u1", "CrashLoopBackOff")]));
        assert_eq!(fresh.len(), 2);
        assert!(
            announced.record("ns/web", now(&[("u0", "ErrImagePull"), ("u1", "CrashLoopBackOff")])).is_empty()
        );
        // A new reason, a recovered pod that fails again, another service: announced.
        let fresh = announced.record("ns/web", now(&[("u0", "ImagePullBackOff")]));
        assert_eq!(fresh.into_iter().collect::<Vec<_>>(), ["u0"]);
        assert_eq!(
            announced.record("ns/web", now(&[("u0", "ImagePullBackOff"), ("u1", "CrashLoopBackOff")])).len(),
            1
        );
        assert_eq!(announced.record("ns/api", now(&[("u0", "ImagePullBackOff")])).len(), 1);
    }

    use super::{ReloadState, backoff};
    use crate::controller::cached::CachedPod;
    use std::time::Duration;

    fn pod(name: &str, uid: &str, recorded: Option<&str>) -> CachedPod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "uid": uid,
            "annotations": recorded.map(|h| serde_json::json!({"relayops.io/config-hash": h}))}}))
        .unwrap()
    }

    #[test]
    fn remembered_results_follow_the_pod_uid() {
        let state = ReloadState::default();
        let result = crate::api::ReloadResult { config_hash: "b".into(), ..Default::default() };
        state.remember_result("uid-0", &result);
        let found = state.remembered_results(&[pod("web-0", "uid-0", None), pod("web-1", "uid-1", None)]);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [("web-0".to_string(), result)]);
        assert!(
            state.remembered_results(&[pod("web-0", "uid-new", None)]).is_empty(),
            "a new pod starts fresh"
        );
    }

    #[test]
    fn a_record_counts_until_the_cache_shows_it_then_is_forgotten() {
        let state = ReloadState::default();
        state.expect_recorded("uid-0", "b");
        // The cache still shows the old record: the new one counts.
        let lagging = [pod("web-0", "uid-0", Some("a")), pod("web-1", "uid-1", Some("a"))];
        assert_eq!(
            state.unobserved_records(&lagging).into_iter().collect::<Vec<_>>(),
            [("web-0".into(), "b".into())]
        );
        // A new pod with the same name is another pod.
        assert!(state.unobserved_records(&[pod("web-0", "uid-9", None)]).is_empty());
        // The watch delivered it: nothing left to remember.
        assert!(state.unobserved_records(&[pod("web-0", "uid-0", Some("b"))]).is_empty());
        assert!(state.unobserved_records(&lagging).is_empty(), "forgotten once observed");
    }

    #[test]
    fn revision_numbers_are_never_given_twice() {
        let numbers = super::RevisionNumbers::default();
        assert_eq!(numbers.next("ns/web", 3), 3);
        // The cache has not caught up: the floor is still 3.
        assert_eq!(numbers.next("ns/web", 3), 4);
        assert_eq!(numbers.next("ns/web", 7), 7);
        assert_eq!(numbers.next("ns/api", 1), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
