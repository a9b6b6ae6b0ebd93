//! Per-object series in the style of kube-state-metrics: one series per RelayService and
//! TestDeployment, read from the controllers' caches at every scrape.
//!
//! Reading at scrape time keeps the series exactly as current as the cache: a deleted object
//! has no series from the next scrape on, with no bookkeeping to forget. Unlike the
//! pre-initialised families of [`super::metrics`], these families appear with their first
//! object.
//!
//! | family | labels | value |
//! |---|---|---|
//! | `relay_operator_service_desired_replicas` | `namespace`, `name` | `spec.replicas`, 0 when suspended |
//! | `relay_operator_service_ready_replicas` | `namespace`, `name` | `status.readyReplicas` |
//! | `relay_operator_service_condition` | `namespace`, `name`, `type`, `status` | 1 for the condition's current status (`True`, `False`, `Unknown`), 0 for the others |
//! | `relay_operator_test_deployment_phase` | `namespace`, `name`, `phase` | 1 for the current phase, 0 for the others |
//! | `relay_operator_test_deployment_expiry_timestamp_seconds` | `namespace`, `name` | `status.expiresAt` as Unix time, while set |

use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use super::metrics::TEST_DEPLOYMENT_PHASES;
use crate::api::{RelayService, TestDeployment};

/// Values of the `status` label of `relay_operator_service_condition`.
pub const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// The observed state of one RelayService.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSample {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Replicas it should run: `spec.replicas`, 0 when suspended.
    pub desired_replicas: i64,
    /// Ready pods according to its status.
    pub ready_replicas: i64,
    /// `(type, status)` of each condition in its status.
    pub conditions: Vec<(String, String)>,
}

impl ServiceSample {
    /// The sample of `service`; `None` without a namespace.
    pub fn of(service: &RelayService) -> Option<Self> {
        let status = service.status.as_ref();
        Some(Self {
            namespace: service.namespace()?,
            name: service.name_any(),
            desired_replicas: if service.spec.suspend { 0 } else { i64::from(service.spec.replicas) },
            ready_replicas: status.map_or(0, |s| i64::from(s.ready_replicas)),
            conditions: status
                .map(|s| s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone())).collect())
                .unwrap_or_default(),
        })
    }
}

/// The observed state of one TestDeployment.
#[derive(Clone, Debug, PartialEq)]
pub struct TestDeploymentSample {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its phase (`Pending` without a status).
    pub phase: &'static str,
    /// When its TTL runs out, as Unix time in seconds.
    pub expires_at: Option<f64>,
}

impl TestDeploymentSample {
    /// The sample of `td`; `None` without a namespace.
    pub fn of(td: &TestDeployment) -> Option<Self> {
        let status = td.status.as_ref();
        let expires_at = status
            .and_then(|s| s.expires_at.as_deref())
            .and_then(|at| at.parse::<Timestamp>().ok())
            .map(|at| at.as_millisecond() as f64 / 1000.0);
        Some(Self {
            namespace: td.namespace()?,
            name: td.name_any(),
            phase: status.map(|s| s.phase).unwrap_or_default().as_str(),
            expires_at,
        })
    }
}

/// Everything one source contributes to a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectSamples {
    /// One entry per RelayService.
    pub services: Vec<ServiceSample>,
    /// One entry per TestDeployment.
    pub test_deployments: Vec<TestDeploymentSample>,
}

impl ObjectSamples {
    /// The samples of every object in the two caches.
    pub fn read(services: &Store<RelayService>, test_deployments: &Store<TestDeployment>) -> Self {
        Self {
            services: services.state().iter().filter_map(|s| ServiceSample::of(s)).collect(),
            test_deployments: test_deployments
                .state()
                .iter()
                .filter_map(|td| TestDeploymentSample::of(td))
                .collect(),
        }
    }
}

/// A source of per-object samples, called at every scrape.
pub type ObjectSource = Box<dyn Fn() -> ObjectSamples + Send + Sync>;

/// The families, created afresh for every scrape so that series of deleted objects vanish.
struct Families {
    desired: IntGaugeVec,
    ready: IntGaugeVec,
    condition: IntGaugeVec,
    phase: IntGaugeVec,
    expiry: GaugeVec,
}

impl Families {
    fn new() -> Result<Self, prometheus::Error> {
        let object = &["namespace", "name"];
        Ok(Self {
            desired: IntGaugeVec::new(
                Opts::new(
                    "relay_operator_service_desired_replicas",
                    "Replicas a RelayService should run (spec.replicas, 0 when suspended).",
                ),
                object,
            )?,
            ready: IntGaugeVec::new(
                Opts::new(
                    "relay_operator_service_ready_replicas",
                    "Ready pods of a RelayService, from its status.",
                ),
                object,
            )?,
            condition: IntGaugeVec::new(
                Opts::new(
                    "relay_operator_service_condition",
                    "Conditions of a RelayService: 1 for the current status of each condition type, 0 for the other statuses.",
                ),
                &["namespace", "name", "type", "status"],
            )?,
            phase: IntGaugeVec::new(
                Opts::new(
                    "relay_operator_test_deployment_phase",
                    "Phase of a TestDeployment: 1 for the current phase, 0 for the others.",
                ),
                &["namespace", "name", "phase"],
            )?,
            expiry: GaugeVec::new(
                Opts::new(
                    "relay_operator_test_deployment_expiry_timestamp_seconds",
                    "When the TTL of a TestDeployment runs out (status.expiresAt), as Unix time.",
                ),
                object,
            )?,
        })
    }

    fn fill(&self, samples: &ObjectSamples) {
        for s in &samples.services {
            let object = [s.namespace.as_str(), s.name.as_str()];
            self.desired.with_label_values(&object).set(s.desired_replicas);
            self.ready.with_label_values(&object).set(s.ready_replicas);
            for (type_, current) in &s.conditions {
                for status in CONDITION_STATUSES {
                    let labels = [object[0], object[1], type_.as_str(), status];
                    self.condition.with_label_values(&labels).set(i64::from(status == current));
                }
            }
        }
        for td in &samples.test_deployments {
            let object = [td.namespace.as_str(), td.name.as_str()];
            for phase in TEST_DEPLOYMENT_PHASES {
                let labels = [object[0], object[1], phase];
                self.phase.with_label_values(&labels).set(i64::from(*phase == td.phase));
            }
            if let Some(at) = td.expires_at {
                self.expiry.with_label_values(&object).set(at);
            }
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        [
            self.desired.collect(),
            self.ready.collect(),
            self.condition.collect(),
            self.phase.collect(),
            self.expiry.collect(),
        ]
        .concat()
    }

    fn descs(&self) -> Vec<Desc> {
        [self.desired.desc(), self.ready.desc(), self.condition.desc(), self.phase.desc(), self.expiry.desc()]
            .concat()
            .into_iter()
            .cloned()
            .collect()
    }
}

/// The collector of the per-object families; clones share their sources.
#[derive(Clone)]
pub(super) struct ObjectCollector {
    sources: Arc<Mutex<Vec<ObjectSource>>>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ObjectCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources = self.sources.lock().map_or(0, |s| s.len());
        f.debug_struct("ObjectCollector").field("sources", &sources).finish_non_exhaustive()
    }
}

impl ObjectCollector {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        Ok(Self { sources: Arc::default(), descs: Families::new()?.descs() })
    }

    pub(super) fn add(&self, source: ObjectSource) {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).push(source);
    }
}

impl Collector for ObjectCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The definitions were accepted by `new`, so this cannot fail.
        let Ok(families) = Families::new() else { return Vec::new() };
        for source in self.sources.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            families.fill(&source());
        }
        families.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Metrics;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn service(
        name: &str,
        replicas: i32,
        suspend: bool,
        ready: i32,
        conditions: &[(&str, &str)],
    ) -> RelayService {
        let conditions: Vec<serde_json::Value> = conditions
            .iter()
            .map(|(t, s)| {
                serde_json::json!({"type": t, "status": s, "reason": "R", "message": "",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"image": "x:1", "replicas": replicas, "suspend": suspend},
            "status": {"readyReplicas": ready, "conditions": conditions},
        }))
        .unwrap()
    }

    fn test_deployment(name: &str, phase: &str, expires_at: Option<&str>) -> TestDeployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"template": {"image": "x:1"}},
            "status": {"phase": phase, "expiresAt": expires_at},
        }))
        .unwrap()
    }

    #[test]
    fn samples_read_spec_and_status() {
        let s = ServiceSample::of(&service("web", 3, false, 2, &[("Ready", "False")])).unwrap();
        assert_eq!((s.desired_replicas, s.ready_replicas), (3, 2));
        assert_eq!(s.conditions, vec![("Ready".to_owned(), "False".to_owned())]);
        assert_eq!(ServiceSample::of(&service("web", 3, true, 0, &[])).unwrap().desired_replicas, 0);

        let td =
            TestDeploymentSample::of(&test_deployment("t", "Running", Some("2026-01-01T00:10:00Z"))).unwrap();
        assert_eq!((td.phase, td.expires_at), ("Running", Some(1_767_226_200.0)));
        let td = TestDeploymentSample::of(&test_deployment("t", "Failed", None)).unwrap();
        assert_eq!((td.phase, td.expires_at), ("Failed", None));
    }

    #[test]
    fn series_follow_the_cache_and_vanish_with_a_deleted_service() {
        let (services, mut writer) = reflector::store::<RelayService>();
        let (tds, mut td_writer) = reflector::store::<TestDeployment>();
        let web = service("web", 2, false, 1, &[("Ready", "False"), ("Degraded", "True")]);
        writer.apply_watcher_event(&Event::Apply(web.clone()));
        writer.apply_watcher_event(&Event::Apply(service("db", 1, false, 1, &[("Ready", "True")])));
        td_writer.apply_watcher_event(&Event::Apply(test_deployment(
            "pr-1",
            "Running",
            Some("2026-01-01T00:10:00Z"),
        )));
        let metrics = Metrics::new().unwrap();
        metrics.add_object_source(Box::new(move || ObjectSamples::read(&services, &tds)));

        let text = metrics.encode();
        for family in [
            "relay_operator_service_desired_replicas",
            "relay_operator_service_ready_replicas",
            "relay_operator_service_condition",
            "relay_operator_test_deployment_phase",
            "relay_operator_test_deployment_expiry_timestamp_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "no HELP for {family}:\n{text}");
            assert!(text.contains(&format!("# TYPE {family} gauge")), "no TYPE for {family}:\n{text}");
        }
        let web_series = |m: &Metrics, series: &str| m.sample(series);
        assert_eq!(
            web_series(&metrics, "relay_operator_service_desired_replicas{name=\"web\",namespace=\"demo\"}"),
            Some(2.0)
        );
        assert_eq!(
            web_series(&metrics, "relay_operator_service_ready_replicas{name=\"web\",namespace=\"demo\"}"),
            Some(1.0)
        );
        let condition = |name: &str, type_: &str, status: &str| {
            metrics.sample(&format!(
                "relay_operator_service_condition{{name=\"{name}\",namespace=\"demo\",status=\"{status}\",type=\"{type_}\"}}"
            ))
        };
        assert_eq!(condition("web", "Ready", "False"), Some(1.0));
        assert_eq!(condition("web", "Ready", "True"), Some(0.0));
        assert_eq!(condition("web", "Ready", "Unknown"), Some(0.0));
        assert_eq!(condition("web", "Degraded", "True"), Some(1.0));
        assert_eq!(condition("db", "Ready", "True"), Some(1.0));
        assert_eq!(
            metrics.sample(
                "relay_operator_test_deployment_phase{name=\"pr-1\",namespace=\"demo\",phase=\"Running\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            metrics.sample(
                "relay_operator_test_deployment_phase{name=\"pr-1\",namespace=\"demo\",phase=\"Failed\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            metrics.sample(
                "relay_operator_test_deployment_expiry_timestamp_seconds{name=\"pr-1\",namespace=\"demo\"}"
            ),
            Some(1_767_226_200.0)
        );

        // The service is deleted: from the next scrape on, none of its series remain.
        writer.apply_watcher_event(&Event::Delete(web));
        let text = metrics.encode();
        assert!(!text.contains("name=\"web\""), "series of the deleted service remain:\n{text}");
        assert!(
            text.contains("relay_operator_service_desired_replicas{name=\"db\",namespace=\"demo\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn without_objects_the_families_are_left_out() {
        let metrics = Metrics::new().unwrap();
        metrics.add_object_source(Box::new(ObjectSamples::default));
        assert!(!metrics.encode().contains("relay_operator_service_"), "{}", metrics.encode());
    }
}
