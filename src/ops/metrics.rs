//! Prometheus metrics of the operator process.
//!
//! One [`Metrics`] value owns a private [`prometheus::Registry`] (never the global default
//! registry), so tests can create as many independent instances as they like. Share it as
//! `Arc<Metrics>` between the controllers, the leader elector and the HTTP server.
//!
//! Label values are kept low-cardinality on purpose: `kind` is a CRD kind, `error` is an
//! error *class* (`conflict`, `api`, `serialize`, `missing_namespace`), never a message.
//!
//! Label values that are known in advance (`kind`, `error`, `state`, `result`, `phase`) are
//! pre-initialised to zero so every family is present in the exposition from the first scrape
//! and `rate()` sees the first increase. Only the per-object families of [`super::objects`]
//! appear with their first object. The registry also carries the standard process metrics of
//! `ops::process`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::objects::{ObjectCollector, ObjectSource};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// `Content-Type` of the text exposition format produced by [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Buckets for reconcile durations: 1 ms … 10 s.
pub const RECONCILE_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for config-reload propagation: 50 ms … 300 s.
pub const PROPAGATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0];

/// Buckets for the time a TestDeployment needs to reach `Running`: 1 s … 30 min.
pub const TIME_TO_RUNNING_BUCKETS: &[f64] =
    &[1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

/// The kinds the operator reconciles: the `kind` label of the per-controller series.
pub const KINDS: [&str; 3] = ["RelayService", "HealthPolicy", "TestDeployment"];

/// Error classes of a failed reconciliation, the `error` label of
/// `relay_operator_reconcile_errors_total`: every value of
/// [`crate::controller::Error::metric_label`].
pub const RECONCILE_ERRORS: [&str; 4] = ["conflict", "api", "serialize", "missing_namespace"];

/// Values of the `state` label of `relay_operator_managed_pods`.
pub const POD_STATES: &[&str] = &["ready", "unready", "pending", "failed", "terminating"];

/// Values of the `phase` label of `relay_operator_test_deployments`
/// (the serialized names of [`crate::api::TestDeploymentPhase`]).
pub const TEST_DEPLOYMENT_PHASES: &[&str] =
    &["Pending", "Deploying", "Running", "Failed", "Stopped", "Expired"];

/// Values of the `reason` label of `relay_operator_config_rollbacks_total` (the reasons of
/// the `ConfigRolledBack` condition).
pub const ROLLBACK_REASONS: &[&str] = &["CanaryHookFailed", "CanaryNotReady", "CanaryUnhealthy"];

/// Outcome of one call of a service's config-reload hook; the `result` label of
/// `relay_operator_reload_hook_calls_total` (a fixed set, listed in the README). Built from
/// a hook outcome with `From<&HookOutcome>` (in [`crate::hook`]), the only mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadHookResult {
    /// The hook accepted the config and reported the expected config hash.
    Applied,
    /// The hook accepted the config but did not report which config it now runs.
    AppliedUnverified,
    /// The hook reported an older config hash than the one just written.
    Stale,
    /// The hook (or, through the pod proxy, the API server) answered with a non-success
    /// HTTP status; redirects are not followed.
    HttpError,
    /// The hook did not answer in time.
    Timeout,
    /// The hook's endpoint could not be connected to.
    ConnectError,
    /// Any other failure, including a request that could not be built (e.g. a bearer
    /// token that is not a valid header value).
    Error,
}

impl ReloadHookResult {
    /// Every variant, in declaration order.
    pub const ALL: [ReloadHookResult; 7] = [
        Self::Applied,
        Self::AppliedUnverified,
        Self::Stale,
        Self::HttpError,
        Self::Timeout,
        Self::ConnectError,
        Self::Error,
    ];

    /// The label value, e.g. `applied_unverified`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::AppliedUnverified => "applied_unverified",
            Self::Stale => "stale",
            Self::HttpError => "http_error",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::Error => "error",
        }
    }
}

/// All metrics of the operator, registered in one private registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    reconcile_retries: IntCounterVec,
    queue_depth: IntGaugeVec,
    /// Objects waiting for a reconcile, per kind: the source of `queue_depth`.
    waiting: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    managed_pods: IntGaugeVec,
    reload_hook_calls: IntCounterVec,
    reload_propagation: Histogram,
    reload_restarts: IntCounter,
    config_rollbacks: IntCounterVec,
    restarts: IntGaugeVec,
    test_deployments: IntGaugeVec,
    test_deployment_expirations: IntCounter,
    test_deployment_time_to_running: Histogram,
    leader: IntGauge,
    unreadable_objects: IntCounterVec,
    /// Sources of the per-object series, read at scrape time.
    objects: ObjectCollector,
    /// The gauges recomputed from a cache, per cache scope (one per watched namespace):
    /// each gauge shows the sum over the scopes.
    scoped: Arc<Mutex<ScopedCounts>>,
}

/// `(gauge name, scope) → label value → count`.
type ScopedCounts = BTreeMap<(&'static str, String), BTreeMap<String, i64>>;

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl Metrics {
    /// Creates all metrics in a fresh registry. `relay_operator_build_info{version}` is set to 1
    /// with this crate's version, `relay_operator_leader` starts at 0; the per-kind series of
    /// every kind in [`KINDS`] (and error class in [`RECONCILE_ERRORS`]) start at zero.
    ///
    /// # Errors
    /// Only if a metric definition is invalid (a bug), as [`prometheus::Error`].
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let reconciliations = register(
            &r,
            IntCounterVec::new(
                Opts::new("relay_operator_reconciliations_total", "Reconciliations run, by resource kind."),
                &["kind"],
            )?,
        )?;
        let reconcile_errors = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "relay_operator_reconcile_errors_total",
                    "Failed reconciliations, by resource kind and error class.",
                ),
                &["kind", "error"],
            )?,
        )?;
        let reconcile_duration = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "relay_operator_reconcile_duration_seconds",
                    "Wall-clock duration of one reconciliation, by resource kind.",
                )
                .buckets(RECONCILE_BUCKETS.to_vec()),
                &["kind"],
            )?,
        )?;
        let reconcile_retries = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "relay_operator_reconcile_retries_total",
                    "Reconciliations scheduled again after a failure (with per-object exponential backoff), by resource kind.",
                ),
                &["kind"],
            )?,
        )?;
        let queue_depth = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "relay_operator_reconcile_queue_depth",
                    "Objects waiting for a reconciliation the operator has scheduled but not started: retries after a failure, and reconciliations held until the caches have synced; by resource kind.",
                ),
                &["kind"],
            )?,
        )?;
        let managed_pods = register(
            &r,
            IntGaugeVec::new(
                Opts::new("relay_operator_managed_pods", "Pods managed by the operator, by state."),
                &["state"],
            )?,
        )?;
        let reload_hook_calls = register(
            &r,
            IntCounterVec::new(
                Opts::new("relay_operator_reload_hook_calls_total", "Config-reload hook calls, by result."),
                &["result"],
            )?,
        )?;
        let reload_propagation = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "relay_operator_reload_propagation_seconds",
                    "Time from a config change (ConfigMap write) until a pod acknowledged it through its reload hook; one observation per pod.",
                )
                .buckets(PROPAGATION_BUCKETS.to_vec()),
            )?,
        )?;
        let reload_restarts = register(
            &r,
            IntCounter::new(
                "relay_operator_reload_restarts_total",
                "Pods deleted by onFailure: Restart after their reload hook kept failing.",
            )?,
        )?;
        let config_rollbacks = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "relay_operator_config_rollbacks_total",
                    "Configurations reverted to the last good one because a canary failed, by reason.",
                ),
                &["reason"],
            )?,
        )?;
        let restarts = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "relay_operator_pod_restarts",
                    "Pod restarts (rollouts, onFailure: Restart, rollbacks) under --max-concurrent-restarts, by state: in_flight (deleted, replacement not Ready yet) or queued (waiting for a slot).",
                ),
                &["state"],
            )?,
        )?;
        let test_deployments = register(
            &r,
            IntGaugeVec::new(
                Opts::new("relay_operator_test_deployments", "TestDeployments, by phase."),
                &["phase"],
            )?,
        )?;
        let test_deployment_expirations = register(
            &r,
            IntCounter::new(
                "relay_operator_test_deployment_expirations_total",
                "TestDeployments whose TTL passed and whose objects were deleted.",
            )?,
        )?;
        let test_deployment_time_to_running = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "relay_operator_test_deployment_time_to_running_seconds",
                    "Time from creation of a TestDeployment until all its pods are Ready.",
                )
                .buckets(TIME_TO_RUNNING_BUCKETS.to_vec()),
            )?,
        )?;
        let leader = register(
            &r,
            IntGauge::new(
                "relay_operator_leader",
                "1 while this replica leads: it holds the leader-election lease, or runs without leader election (acting alone).",
            )?,
        )?;
        let build_info = register(
            &r,
            IntGaugeVec::new(
                Opts::new("relay_operator_build_info", "Build information; the value is always 1."),
                &["version"],
            )?,
        )?;

        let unreadable_objects = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "relay_operator_unreadable_objects_total",
                    "Watch events carrying an object of the operator's kinds that the operator cannot read (skipped), by kind.",
                ),
                &["kind"],
            )?,
        )?;
        r.register(Box::new(super::process::ProcessCollector::new()?))?;
        let objects = ObjectCollector::new()?;
        r.register(Box::new(objects.clone()))?;

        for kind in KINDS {
            unreadable_objects.with_label_values(&[kind]).reset();
            reconciliations.with_label_values(&[kind]).reset();
            // Touching the child is enough to create it; it starts empty.
            let _ = reconcile_duration.with_label_values(&[kind]);
            for error in RECONCILE_ERRORS {
                reconcile_errors.with_label_values(&[kind, error]).reset();
            }
            reconcile_retries.with_label_values(&[kind]).reset();
            queue_depth.with_label_values(&[kind]).set(0);
        }

        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for state in POD_STATES {
            managed_pods.with_label_values(&[*state]).set(0);
        }
        for result in ReloadHookResult::ALL {
            reload_hook_calls.with_label_values(&[result.as_str()]).reset();
        }
        for reason in ROLLBACK_REASONS {
            config_rollbacks.with_label_values(&[*reason]).reset();
        }
        for phase in TEST_DEPLOYMENT_PHASES {
            test_deployments.with_label_values(&[*phase]).set(0);
        }
        for state in ["in_flight", "queued"] {
            restarts.with_label_values(&[state]).set(0);
        }

        Ok(Self {
            registry: r,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            reconcile_retries,
            queue_depth,
            waiting: Arc::default(),
            managed_pods,
            reload_hook_calls,
            reload_propagation,
            reload_restarts,
            config_rollbacks,
            restarts,
            test_deployments,
            test_deployment_expirations,
            test_deployment_time_to_running,
            leader,
            unreadable_objects,
            objects,
            scoped: Arc::default(),
        })
    }

    /// Starts timing one reconciliation of `kind`. When the returned guard is dropped, the
    /// elapsed time is observed in `relay_operator_reconcile_duration_seconds` and
    /// `relay_operator_reconciliations_total` is incremented (so the counter always equals the
    /// histogram's `_count`).
    pub fn reconcile_timer(&self, kind: &str) -> ReconcileTimer {
        ReconcileTimer {
            counter: self.reconciliations.with_label_values(&[kind]),
            histogram: self.reconcile_duration.with_label_values(&[kind]),
            start: Instant::now(),
        }
    }

    /// Counts one failed reconciliation of `kind`. `error` must be a low-cardinality error
    /// class ([`crate::controller::Error::metric_label`]), never an error message.
    pub fn reconcile_failure(&self, kind: &str, error: &str) {
        self.reconcile_errors.with_label_values(&[kind, error]).inc();
    }

    /// Records that `object` (a unique key such as `Kind/namespace/name`) of `kind` waits for
    /// a reconciliation; counted once however often it is recorded.
    pub fn reconcile_waiting(&self, kind: &str, object: &str) {
        self.update_waiting(kind, |set| set.insert(object.to_owned()));
    }

    /// Records that `object` of `kind` no longer waits: its reconciliation started, or the
    /// object is gone.
    pub fn reconcile_not_waiting(&self, kind: &str, object: &str) {
        self.update_waiting(kind, |set| set.remove(object));
    }

    /// Counts one retry of `object` of `kind` scheduled after a failure; it waits until the
    /// retry starts ([`Self::reconcile_not_waiting`]).
    pub fn reconcile_retry(&self, kind: &str, object: &str) {
        self.reconcile_retries.with_label_values(&[kind]).inc();
        self.reconcile_waiting(kind, object);
    }

    fn update_waiting(&self, kind: &str, change: impl FnOnce(&mut BTreeSet<String>) -> bool) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let set = waiting.entry(kind.to_owned()).or_default();
        if change(set) {
            self.queue_depth.with_label_values(&[kind]).set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
    }

    /// Adds a source of per-object series (RelayServices, TestDeployments), read at every
    /// scrape; one per watched scope.
    pub fn add_object_source(&self, source: ObjectSource) {
        self.objects.add(source);
    }

    /// Counts one watch event whose `kind` object could not be read.
    pub fn unreadable_object(&self, kind: &str) {
        self.unreadable_objects.with_label_values(&[kind]).inc();
    }

    /// Sets the number of managed pods in `state` (one of [`POD_STATES`]) seen in `scope`
    /// (the watched namespace, empty for all); the gauge is the sum over scopes.
    pub fn set_managed_pods(&self, scope: &str, state: &str, count: i64) {
        self.set_scoped(&self.managed_pods, "managed_pods", scope, state, count);
    }

    /// Record `count` for `label` in `scope` and set the gauge to the sum over all scopes.
    fn set_scoped(&self, gauge: &IntGaugeVec, name: &'static str, scope: &str, label: &str, count: i64) {
        let mut scoped = self.scoped.lock().unwrap_or_else(|p| p.into_inner());
        scoped.entry((name, scope.to_owned())).or_default().insert(label.to_owned(), count);
        let total =
            scoped.iter().filter(|((n, _), _)| *n == name).filter_map(|(_, counts)| counts.get(label)).sum();
        gauge.with_label_values(&[label]).set(total);
    }

    /// Counts one reload-hook call with the given outcome.
    pub fn reload_hook_call(&self, result: ReloadHookResult) {
        self.reload_hook_calls.with_label_values(&[result.as_str()]).inc();
    }

    /// Observes how long a config change took to reach one pod.
    pub fn observe_reload_propagation(&self, seconds: f64) {
        self.reload_propagation.observe(seconds);
    }

    /// Counts one pod deleted by `onFailure: Restart` after its hook kept failing.
    pub fn reload_restart(&self) {
        self.reload_restarts.inc();
    }

    /// Counts one configuration reverted after a canary failed (`reason`: one of
    /// [`ROLLBACK_REASONS`]).
    pub fn config_rollback(&self, reason: &str) {
        self.config_rollbacks.with_label_values(&[reason]).inc();
    }

    /// Sets the pod restarts in flight and queued (`--max-concurrent-restarts`).
    pub fn set_restarts(&self, in_flight: usize, queued: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.restarts.with_label_values(&["in_flight"]).set(gauge(in_flight));
        self.restarts.with_label_values(&["queued"]).set(gauge(queued));
    }

    /// Sets the number of TestDeployments in `phase` (one of [`TEST_DEPLOYMENT_PHASES`]) seen
    /// in `scope`; the gauge is the sum over scopes.
    pub fn set_test_deployments(&self, scope: &str, phase: &str, count: i64) {
        self.set_scoped(&self.test_deployments, "test_deployments", scope, phase, count);
    }

    /// Counts one TestDeployment whose TTL expired.
    pub fn test_deployment_expired(&self) {
        self.test_deployment_expirations.inc();
    }

    /// Observes the time a TestDeployment needed from creation to `Running`.
    pub fn observe_time_to_running(&self, seconds: f64) {
        self.test_deployment_time_to_running.observe(seconds);
    }

    /// Sets `relay_operator_leader` to 1 (`true`: this replica leads) or 0.
    pub fn set_leader(&self, is_leader: bool) {
        self.leader.set(i64::from(is_leader));
    }

    /// Encodes every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    ///
    /// Encoding into a `String` cannot fail for well-formed metrics; should it fail anyway, the
    /// error is logged and whatever was encoded so far is returned.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %err, "failed to encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The value of one series (`name` or `name{labels}` exactly as exposed), for tests.
    #[cfg(test)]
    pub(crate) fn sample(&self, series: &str) -> Option<f64> {
        self.encode().lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// Guard returned by [`Metrics::reconcile_timer`]; records the reconciliation when dropped.
#[derive(Debug)]
#[must_use = "the reconciliation is recorded when the timer is dropped; bind it to a variable"]
pub struct ReconcileTimer {
    counter: IntCounter,
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
        self.counter.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_metrics_expose_every_family_with_help_and_type() {
        let m = Metrics::new().unwrap();
        let text = m.encode();
        let families = [
            ("relay_operator_reconciliations_total", "counter"),
            ("relay_operator_reconcile_errors_total", "counter"),
            ("relay_operator_reconcile_duration_seconds", "histogram"),
            ("relay_operator_reconcile_retries_total", "counter"),
            ("relay_operator_reconcile_queue_depth", "gauge"),
            ("relay_operator_managed_pods", "gauge"),
            ("relay_operator_reload_hook_calls_total", "counter"),
            ("relay_operator_reload_propagation_seconds", "histogram"),
            ("relay_operator_reload_restarts_total", "counter"),
            ("relay_operator_config_rollbacks_total", "counter"),
            ("relay_operator_pod_restarts", "gauge"),
            ("relay_operator_test_deployments", "gauge"),
            ("relay_operator_test_deployment_expirations_total", "counter"),
            ("relay_operator_test_deployment_time_to_running_seconds", "histogram"),
            ("relay_operator_leader", "gauge"),
            ("relay_operator_build_info", "gauge"),
            ("relay_operator_unreadable_objects_total", "counter"),
        ];
        for (name, kind) in families {
            assert!(text.contains(&format!("# HELP {name} ")), "missing HELP for {name}:\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "missing TYPE {kind} for {name}:\n{text}"
            );
        }
        // Nothing else of the operator's own is exposed (the per-object families appear with
        // their first object).
        let exposed = text.lines().filter_map(|l| l.strip_prefix("# TYPE relay_operator_")).count();
        assert_eq!(exposed, families.len(), "{text}");

        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("relay_operator_build_info{{version=\"{version}\"}} 1")), "{text}");
        assert!(text.contains("relay_operator_leader 0"), "{text}");
        for r in ReloadHookResult::ALL {
            assert!(
                text.contains(&format!(
                    "relay_operator_reload_hook_calls_total{{result=\"{}\"}} 0",
                    r.as_str()
                )),
                "{text}"
            );
        }
        for kind in KINDS {
            for error in RECONCILE_ERRORS {
                let series =
                    format!("relay_operator_reconcile_errors_total{{error=\"{error}\",kind=\"{kind}\"}}");
                assert_eq!(m.sample(&series), Some(0.0), "{series}");
            }
            for family in [
                "relay_operator_reconciliations_total",
                "relay_operator_reconcile_retries_total",
                "relay_operator_reconcile_queue_depth",
                "relay_operator_reconcile_duration_seconds_count",
                "relay_operator_unreadable_objects_total",
            ] {
                assert_eq!(m.sample(&format!("{family}{{kind=\"{kind}\"}}")), Some(0.0), "{family} {kind}");
            }
        }
        assert!(text.contains("relay_operator_managed_pods{state=\"terminating\"} 0"), "{text}");
        assert!(text.contains("relay_operator_test_deployments{phase=\"Expired\"} 0"), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed() {
        let m = Metrics::new().unwrap();
        let text = m.encode();
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "missing HELP for {name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "missing TYPE for {name}:\n{text}");
        }
        assert!(m.sample("process_resident_memory_bytes").is_some_and(|rss| rss > 0.0), "{text}");
        assert!(m.sample("process_open_fds").is_some_and(|fds| fds > 0.0), "{text}");
        let started = m.sample("process_start_time_seconds").unwrap_or(0.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(started > now - 86_400.0 && started <= now + 1.0, "start time {started}, now {now}");
    }

    #[test]
    fn every_reconcile_error_class_is_pre_initialised() {
        use crate::controller::Error;
        let status = |code| kube::core::Status { code, ..Default::default() };
        let write = || {
            Box::new(crate::controller::Write {
                verb: "apply",
                kind: "Pod".into(),
                namespace: "n".into(),
                name: "p".into(),
            })
        };
        let errors = [
            Error::Api { write: write(), source: kube::Error::Api(Box::new(status(409))) },
            Error::Api { write: write(), source: kube::Error::Api(Box::new(status(500))) },
            Error::Serialize(serde_json::from_str::<i32>("x").unwrap_err()),
            Error::MissingNamespace,
        ];
        let labels: Vec<&str> = errors.iter().map(Error::metric_label).collect();
        assert_eq!(labels, RECONCILE_ERRORS);
    }

    #[test]
    fn queue_depth_counts_each_waiting_object_once() {
        let m = Metrics::new().unwrap();
        let depth = |m: &Metrics| m.sample("relay_operator_reconcile_queue_depth{kind=\"RelayService\"}");
        m.reconcile_retry("RelayService", "RelayService/demo/web");
        m.reconcile_retry("RelayService", "RelayService/demo/web");
        m.reconcile_waiting("RelayService", "RelayService/demo/db");
        assert_eq!(depth(&m), Some(2.0));
        assert_eq!(m.sample("relay_operator_reconcile_retries_total{kind=\"RelayService\"}"), Some(2.0));
        m.reconcile_not_waiting("RelayService", "RelayService/demo/web");
        m.reconcile_not_waiting("RelayService", "RelayService/demo/gone");
        assert_eq!(depth(&m), Some(1.0));
        assert_eq!(m.sample("relay_operator_reconcile_queue_depth{kind=\"TestDeployment\"}"), Some(0.0));
    }

    #[test]
    fn readme_lists_every_hook_result() {
        let readme = include_str!("../../README.md");
        for r in ReloadHookResult::ALL {
            assert!(readme.contains(&format!("`{}`", r.as_str())), "README misses result {:?}", r.as_str());
        }
    }

    #[test]
    fn reconcile_timer_counts_and_observes_on_drop() {
        let m = Metrics::new().unwrap();
        {
            let _t = m.reconcile_timer("RelayService");
            assert_eq!(m.sample("relay_operator_reconciliations_total{kind=\"RelayService\"}"), Some(0.0));
        }
        {
            let _t = m.reconcile_timer("RelayService");
        }
        assert_eq!(m.sample("relay_operator_reconciliations_total{kind=\"RelayService\"}"), Some(2.0));
        assert_eq!(
            m.sample("relay_operator_reconcile_duration_seconds_count{kind=\"RelayService\"}"),
            Some(2.0)
        );
        let text = m.encode();
        assert!(text.contains("# TYPE relay_operator_reconciliations_total counter"), "{text}");
        assert!(text.contains("relay_operator_reconciliations_total{kind=\"RelayService\"} 2"), "{text}");
        assert!(text.contains("# TYPE relay_operator_reconcile_duration_seconds histogram"), "{text}");
        assert!(
            text.contains(
                "relay_operator_reconcile_duration_seconds_bucket{kind=\"RelayService\",le=\"0.001\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "relay_operator_reconcile_duration_seconds_bucket{kind=\"RelayService\",le=\"10\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("relay_operator_reconcile_duration_seconds_count{kind=\"RelayService\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn failures_and_accessors_are_encoded() {
        let m = Metrics::new().unwrap();
        m.reconcile_failure("TestDeployment", "api");
        m.reconcile_failure("TestDeployment", "api");
        m.set_managed_pods("", "ready", 3);
        m.reload_hook_call(ReloadHookResult::AppliedUnverified);
        m.observe_reload_propagation(0.2);
        m.reload_restart();
        m.set_test_deployments("", "Running", 4);
        m.test_deployment_expired();
        m.observe_time_to_running(12.0);
        m.set_leader(true);
        let text = m.encode();
        for needle in [
            "relay_operator_reconcile_errors_total{error=\"api\",kind=\"TestDeployment\"} 2",
            "relay_operator_managed_pods{state=\"ready\"} 3",
            "relay_operator_reload_hook_calls_total{result=\"applied_unverified\"} 1",
            "relay_operator_reload_propagation_seconds_bucket{le=\"0.25\"} 1",
            "relay_operator_reload_propagation_seconds_bucket{le=\"300\"} 1",
            "relay_operator_reload_restarts_total 1",
            "relay_operator_test_deployments{phase=\"Running\"} 4",
            "relay_operator_test_deployment_expirations_total 1",
            "relay_operator_test_deployment_time_to_running_seconds_count 1",
            "relay_operator_leader 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        m.set_leader(false);
        assert_eq!(m.sample("relay_operator_leader"), Some(0.0));
    }

    #[test]
    fn instances_are_independent() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.reload_restart();
        assert_eq!(a.sample("relay_operator_reload_restarts_total"), Some(1.0));
        assert_eq!(b.sample("relay_operator_reload_restarts_total"), Some(0.0));
    }

    #[test]
    fn phases_match_api_enum() {
        use crate::api::TestDeploymentPhase as P;
        let names: Vec<String> = [P::Pending, P::Deploying, P::Running, P::Failed, P::Stopped, P::Expired]
            .iter()
            .map(|p| serde_json::to_value(p).unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, TEST_DEPLOYMENT_PHASES);
    }
}
