//! The caches' own types for the children the operator keeps one or more of per service —
//! pods, ConfigMaps, Services, ControllerRevisions — so that 10,000 services fit in a small
//! heap. Each is decoded straight from the API server's JSON (serde skips every other field
//! without allocating: `managedFields`, a pod's spec, a revision's content) into what
//! reconciles read, nothing else: the metadata without `managedFields`, labels or
//! annotations; the few labels and annotations a reconcile reads, as a short list (a
//! `BTreeMap` takes a 544-byte node for its first entry); and a small body instead of the
//! k8s-openapi struct (`Pod` is 2,248 bytes before any field is set, one `Container` 2,144).
//! `ResourceExt::labels()` and `annotations()` are empty on them: read [`Cached::label`] and
//! [`Cached::annotation`].
//!
//! - A pod keeps its first container's name and readiness probe (the failure diagnosis and
//!   the one-off health fetch read them; no spec without a probe), its phase, IP, whether it
//!   is Ready or Unschedulable, and its containers' names, readiness, states, last exit codes,
//!   restart counts and image IDs.
//! - A ConfigMap keeps its `config-hash` key and when the operator last applied it; a canary's
//!   last good copy keeps all its data, which a revert reads back.
//! - A Service keeps its metadata only. A ControllerRevision keeps its number; its content is
//!   read from the API server while a rollback pins it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Deref;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerState, Pod, Probe, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::canary::LAST_GOOD_SUFFIX;
use super::reload::plan::{ANNOTATION_CONFIG_NUDGE, ANNOTATION_RELOAD_RESULT};
use super::writes::ANNOTATION_DESIRED_HASH;
use crate::history::{ANNOTATION_REVISION_GENERATION, LABEL_REVISION_HASH};
use crate::render::{
    ANNOTATION_CONFIG_HASH, CONFIG_HASH_KEY, LABEL_POD_TEMPLATE_HASH, LABEL_SERVICE, MANAGER,
};

/// What a cache keeps of one kind's objects besides their metadata.
pub trait Body: Clone + Debug + Send + Sync + 'static {
    /// The API kind.
    type Object: Resource<DynamicType = (), Scope = NamespaceResourceScope>;
    /// The object as decoded: only the fields reconciles read (serde skips the others without
    /// allocating, `managedFields` and a pod's spec included).
    type Wire: DeserializeOwned;
    /// The labels reconciles read.
    const LABELS: &'static [&'static str];
    /// The annotations reconciles read.
    const ANNOTATIONS: &'static [&'static str];
    /// Split a decoded object into its metadata and the kept body.
    fn keep(wire: Self::Wire) -> (WireMeta, Self);
}

/// The metadata fields the caches keep, as decoded; of `managedFields` only each entry's
/// manager and time (a ConfigMap's last apply by the operator).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    owner_references: Option<Vec<OwnerReference>>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    managed_fields: Vec<ManagerTime>,
}

/// One `managedFields` entry's manager and time.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ManagerTime {
    manager: Option<String>,
    time: Option<Time>,
}

impl WireMeta {
    /// When `manager` last wrote the object.
    fn written_by(&self, manager: &str) -> Option<Time> {
        let entries = self.managed_fields.iter().filter(|e| e.manager.as_deref() == Some(manager));
        entries.filter_map(|e| e.time.clone()).max_by_key(|time| time.0)
    }

    fn is_named(&self, suffix: &str) -> bool {
        self.name.as_deref().is_some_and(|n| n.ends_with(suffix))
    }
}

/// A cached object: metadata without labels, annotations and `managedFields`, the labels and
/// annotations [`Body::LABELS`] and [`Body::ANNOTATIONS`] name, and the body.
#[derive(Clone, Debug)]
pub struct Cached<B> {
    /// Name, namespace, UID, owners, timestamps.
    pub metadata: ObjectMeta,
    labels: Marks,
    annotations: Marks,
    body: B,
}

/// Kept labels or annotations.
#[derive(Clone, Debug, Default)]
struct Marks(Box<[(&'static str, Box<str>)]>);

impl Marks {
    fn keep(map: Option<BTreeMap<String, String>>, keys: &'static [&'static str]) -> Self {
        let mut map = map.unwrap_or_default();
        Self(keys.iter().filter_map(|&key| Some((key, map.remove(key)?.into_boxed_str()))).collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| &**v)
    }

    fn set(&mut self, key: &'static str, value: &str) {
        let mut marks: Vec<_> = std::mem::take(&mut self.0).into_vec();
        marks.retain(|(k, _)| *k != key);
        marks.push((key, value.into()));
        self.0 = marks.into_boxed_slice();
    }
}

impl<B: Body> Cached<B> {
    /// The kept label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }

    /// The kept annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key)
    }

    /// Set an annotation on this copy (a write the cache has not seen yet).
    pub fn set_annotation(&mut self, key: &'static str, value: &str) {
        self.annotations.set(key, value);
    }
}

impl<'de, B: Body> Deserialize<'de> for Cached<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (meta, body) = B::keep(B::Wire::deserialize(deserializer)?);
        let metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            generation: meta.generation,
            creation_timestamp: meta.creation_timestamp,
            deletion_timestamp: meta.deletion_timestamp,
            owner_references: meta.owner_references,
            ..ObjectMeta::default()
        };
        let labels = Marks::keep(meta.labels, B::LABELS);
        let annotations = Marks::keep(meta.annotations, B::ANNOTATIONS);
        Ok(Self { metadata, labels, annotations, body })
    }
}

impl<B> Deref for Cached<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.body
    }
}

impl<B: Body> Resource for Cached<B> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        B::Object::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        B::Object::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        B::Object::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        B::Object::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A cached pod.
pub type CachedPod = Cached<PodBody>;
/// A cached ConfigMap.
pub type CachedConfigMap = Cached<ConfigMapBody>;
/// A cached Service.
pub type CachedService = Cached<ServiceBody>;
/// A cached ControllerRevision.
pub type CachedRevision = Cached<RevisionBody>;

/// What the cache keeps of a pod's spec and status.
#[derive(Clone, Debug, Default)]
pub struct PodBody {
    /// The first container's name and readiness probe; `None` without a probe.
    pub spec: Option<PodProbe>,
    /// The status fields reconciles read.
    pub status: Option<PodState>,
}

/// A pod's first container and its readiness probe.
#[derive(Clone, Debug)]
pub struct PodProbe {
    /// Container name.
    pub container: String,
    /// Its readiness probe.
    pub readiness_probe: Probe,
}

/// What the cache keeps of a pod's status.
#[derive(Clone, Debug, Default)]
pub struct PodState {
    /// `phase`.
    pub phase: Option<String>,
    /// `podIP`.
    pub pod_ip: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// The message of a `PodScheduled=False` condition for reason `Unschedulable` (empty
    /// when it has none); `None` without such a condition.
    pub unschedulable: Option<String>,
    /// The init containers' states.
    pub init_container_statuses: Vec<ContainerFacts>,
    /// The containers' states.
    pub container_statuses: Vec<ContainerFacts>,
}

/// What the cache keeps of one container's status.
#[derive(Clone, Debug, Default)]
pub struct ContainerFacts {
    /// Container name.
    pub name: String,
    /// Passes its readiness check.
    pub ready: bool,
    /// What it is doing now.
    pub state: ContainerNow,
    /// The exit code of its previous instance, when that one terminated.
    pub last_exit_code: Option<i32>,
    /// Restarts so far.
    pub restart_count: i32,
    /// The image digest it runs.
    pub image_id: String,
}

/// A container's current state (`state` of its status), as far as reconciles read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ContainerNow {
    /// Waiting to run, and why.
    Waiting {
        /// Machine-readable reason (`CrashLoopBackOff`, `ImagePullBackOff`, ...).
        reason: Option<String>,
        /// Human-readable message.
        message: Option<String>,
    },
    /// Exited.
    Terminated {
        /// Its exit code.
        exit_code: i32,
        /// Machine-readable reason.
        reason: Option<String>,
        /// Human-readable message.
        message: Option<String>,
    },
    /// Running, since when the kubelet says.
    Running {
        /// When it started.
        since: Option<Timestamp>,
    },
    /// No state reported.
    #[default]
    Unknown,
}

impl From<Option<ContainerState>> for ContainerNow {
    fn from(state: Option<ContainerState>) -> Self {
        let Some(state) = state else { return Self::Unknown };
        if let Some(waiting) = state.waiting {
            Self::Waiting { reason: waiting.reason, message: waiting.message }
        } else if let Some(t) = state.terminated {
            Self::Terminated { exit_code: t.exit_code, reason: t.reason, message: t.message }
        } else if let Some(running) = state.running {
            Self::Running { since: running.started_at.map(|t| t.0) }
        } else {
            Self::Unknown
        }
    }
}

impl Body for PodBody {
    type Object = Pod;
    type Wire = PodWire;
    const LABELS: &'static [&'static str] = &[LABEL_SERVICE, LABEL_POD_TEMPLATE_HASH];
    const ANNOTATIONS: &'static [&'static str] =
        &[ANNOTATION_CONFIG_HASH, ANNOTATION_CONFIG_NUDGE, ANNOTATION_RELOAD_RESULT];

    fn keep(pod: PodWire) -> (WireMeta, Self) {
        let spec = pod.spec.and_then(|spec| {
            let first = spec.containers.into_iter().next()?;
            Some(PodProbe { container: first.name, readiness_probe: first.readiness_probe? })
        });
        let status = pod.status.map(|status| PodState {
            phase: status.phase,
            pod_ip: status.pod_ip,
            ready: status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
            unschedulable: status
                .conditions
                .into_iter()
                .find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
                .map(|c| c.message.unwrap_or_default()),
            init_container_statuses: status
                .init_container_statuses
                .into_iter()
                .map(ContainerFacts::from)
                .collect(),
            container_statuses: status.container_statuses.into_iter().map(ContainerFacts::from).collect(),
        });
        (pod.metadata, Self { spec, status })
    }
}

/// A pod as decoded.
#[derive(Debug, Deserialize)]
pub struct PodWire {
    #[serde(default)]
    metadata: WireMeta,
    spec: Option<PodSpecWire>,
    status: Option<PodStatusWire>,
}

#[derive(Debug, Deserialize)]
struct PodSpecWire {
    #[serde(default)]
    containers: Vec<ContainerWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerWire {
    #[serde(default)]
    name: String,
    readiness_probe: Option<Probe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodStatusWire {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    conditions: Vec<PodConditionWire>,
    init_container_statuses: Vec<ContainerStatusWire>,
    container_statuses: Vec<ContainerStatusWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodConditionWire {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    reason: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ContainerStatusWire {
    name: String,
    ready: bool,
    restart_count: i32,
    #[serde(rename = "imageID")]
    image_id: String,
    state: Option<ContainerState>,
    last_state: Option<ContainerState>,
}

impl From<ContainerStatusWire> for ContainerFacts {
    fn from(c: ContainerStatusWire) -> Self {
        Self {
            name: c.name,
            ready: c.ready,
            state: c.state.into(),
            last_exit_code: c.last_state.and_then(|s| s.terminated).map(|t| t.exit_code),
            restart_count: c.restart_count,
            image_id: c.image_id,
        }
    }
}

/// What the cache keeps of a ConfigMap.
#[derive(Clone, Debug, Default)]
pub struct ConfigMapBody {
    /// Its `config-hash` key.
    pub config_hash: Option<String>,
    /// When the operator last applied it.
    pub applied_at: Option<Time>,
    /// All of its data, kept for a canary's last good copy only.
    pub last_good: Option<BTreeMap<String, String>>,
}

impl Body for ConfigMapBody {
    type Object = ConfigMap;
    type Wire = ConfigMapWire;
    const LABELS: &'static [&'static str] = &[];
    const ANNOTATIONS: &'static [&'static str] = &[ANNOTATION_DESIRED_HASH];

    fn keep(config_map: ConfigMapWire) -> (WireMeta, Self) {
        let ConfigMapWire { metadata, mut data } = config_map;
        let applied_at = metadata.written_by(MANAGER);
        let config_hash = data.remove(CONFIG_HASH_KEY);
        let last_good = metadata.is_named(LAST_GOOD_SUFFIX).then(|| {
            data.extend(config_hash.clone().map(|hash| (CONFIG_HASH_KEY.to_owned(), hash)));
            data
        });
        (metadata, Self { config_hash, applied_at, last_good })
    }
}

/// A ConfigMap as decoded.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigMapWire {
    metadata: WireMeta,
    data: BTreeMap<String, String>,
}

/// What the cache keeps of a Service: nothing but its metadata.
#[derive(Clone, Debug, Default)]
pub struct ServiceBody;

impl Body for ServiceBody {
    type Object = Service;
    type Wire = MetadataWire;
    const LABELS: &'static [&'static str] = &[];
    const ANNOTATIONS: &'static [&'static str] = &[ANNOTATION_DESIRED_HASH];

    fn keep(service: MetadataWire) -> (WireMeta, Self) {
        (service.metadata, Self)
    }
}

/// An object of which only the metadata is decoded.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MetadataWire {
    metadata: WireMeta,
}

/// What the cache keeps of a ControllerRevision: its number.
#[derive(Clone, Debug, Default)]
pub struct RevisionBody {
    /// `revision`.
    pub revision: i64,
}

impl Body for RevisionBody {
    type Object = ControllerRevision;
    type Wire = RevisionWire;
    const LABELS: &'static [&'static str] = &[LABEL_SERVICE, LABEL_REVISION_HASH];
    const ANNOTATIONS: &'static [&'static str] = &[ANNOTATION_REVISION_GENERATION];

    fn keep(revision: RevisionWire) -> (WireMeta, Self) {
        (revision.metadata, Self { revision: revision.revision })
    }
}

/// A ControllerRevision as decoded: without its content.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevisionWire {
    metadata: WireMeta,
    revision: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pods::health_url;
    use serde_json::json;

    fn pod(probe: Option<serde_json::Value>) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "demo",
                "labels": {"relayops.io/service": "web", "relayops.io/pod-template-hash": "t1",
                    "app.kubernetes.io/name": "web"},
                "annotations": {"relayops.io/config-hash": "h1", "team": "payments"},
                "managedFields": [{"manager": MANAGER, "operation": "Apply"}]},
            "spec": {
                "containers": [{"name": "app", "image": "x:1",
                    "env": [{"name": "A", "value": "b"}],
                    "readinessProbe": probe},
                    {"name": "sidecar", "image": "y:1"}],
                "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
            },
            "status": {
                "podIP": "10.0.0.7", "phase": "Running", "hostIP": "10.1.0.1", "qosClass": "BestEffort",
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no node",
                     "lastTransitionTime": "2026-11-28T10:00:00Z"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [{"name": "app", "image": "x:1", "imageID": "x@sha256:1",
                    "containerID": "c://1", "ready": true, "started": true, "restartCount": 2,
                    "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 3}}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_cached_pod_keeps_what_diagnosis_health_fetches_and_reloads_read() {
        let pod = pod(Some(json!({"httpGet": {"path": "/health", "port": 8080}})));
        assert_eq!(pod.spec.as_ref().unwrap().container, "app", "the first container");
        assert_eq!(health_url(&pod).unwrap().as_str(), "http://10.0.0.7:8080/health");
        assert_eq!((pod.label(LABEL_SERVICE), pod.label(LABEL_POD_TEMPLATE_HASH)), (Some("web"), Some("t1")));
        assert_eq!(pod.label("app.kubernetes.io/name"), None, "labels no reconcile reads are dropped");
        assert_eq!((pod.annotation(ANNOTATION_CONFIG_HASH), pod.annotation("team")), (Some("h1"), None));
        assert!(pod.metadata.managed_fields.is_none() && pod.metadata.labels.is_none());
        assert_eq!(
            (pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref()),
            (Some("web-0"), Some("demo"))
        );

        let status = pod.status.as_ref().unwrap();
        assert_eq!((status.phase.as_deref(), status.pod_ip.as_deref()), (Some("Running"), Some("10.0.0.7")));
        assert!(status.ready);
        assert_eq!(status.unschedulable.as_deref(), Some("no node"));
        let container = &status.container_statuses[0];
        assert_eq!((container.name.as_str(), container.restart_count, container.ready), ("app", 2, true));
        assert_eq!(container.image_id, "x@sha256:1");
        let since = "2026-11-28T10:00:00Z".parse().ok();
        assert_eq!(container.state, ContainerNow::Running { since });
        assert_eq!(container.last_exit_code, Some(3));
    }

    #[test]
    fn a_pod_without_a_readiness_probe_keeps_no_spec_and_a_local_write_shows_on_its_copy() {
        let mut pod = pod(None);
        assert!(pod.spec.is_none() && health_url(&pod).is_none());
        pod.set_annotation(ANNOTATION_CONFIG_HASH, "h2");
        pod.set_annotation(ANNOTATION_RELOAD_RESULT, "ok");
        assert_eq!(
            (pod.annotation(ANNOTATION_CONFIG_HASH), pod.annotation(ANNOTATION_RELOAD_RESULT)),
            (Some("h2"), Some("ok"))
        );
    }

    #[test]
    fn a_config_map_keeps_its_hash_and_the_operators_last_apply_a_last_good_copy_its_data() {
        let config_map = |name: &str| -> CachedConfigMap {
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {"relayops.io/desired-hash": "d"},
                    "labels": {"relayops.io/service": "web"},
                    "managedFields": [
                        {"manager": MANAGER, "operation": "Apply", "time": "2026-11-28T10:00:00Z"},
                        {"manager": MANAGER, "operation": "Apply", "time": "2026-11-28T10:05:00Z"},
                        {"manager": "kubectl", "operation": "Update", "time": "2026-11-28T11:00:00Z"},
                    ]},
                "data": {"config-hash": "abc", "config.env": "A=b\n"},
            }))
            .unwrap()
        };
        let live = config_map("web-config");
        assert_eq!((live.config_hash.as_deref(), live.last_good.as_ref()), (Some("abc"), None));
        assert_eq!(live.applied_at.as_ref().unwrap().0.to_string(), "2026-11-28T10:05:00Z");
        assert_eq!(live.annotation(ANNOTATION_DESIRED_HASH), Some("d"));
        assert!(live.metadata.managed_fields.is_none() && live.metadata.annotations.is_none());

        let copy = config_map(&format!("web-config{LAST_GOOD_SUFFIX}"));
        assert_eq!(
            copy.last_good.as_ref().unwrap().keys().collect::<Vec<_>>(),
            ["config-hash", "config.env"]
        );
    }

    #[test]
    fn services_keep_metadata_and_owners_revisions_their_number() {
        let service: CachedService = serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": {"relayops.io/desired-hash": "d"},
                "ownerReferences": [{"apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
                    "name": "web", "uid": "u1"}]},
            "spec": {"ports": [{"port": 8080}], "clusterIP": "10.96.0.7"},
        }))
        .unwrap();
        assert_eq!(service.metadata.owner_references.as_ref().unwrap()[0].uid, "u1");
        assert_eq!(service.annotation(ANNOTATION_DESIRED_HASH), Some("d"));

        let revision: CachedRevision = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "labels": {"relayops.io/revision-hash": "abc", "relayops.io/service": "web"},
                "annotations": {"relayops.io/generation": "4"}},
            "revision": 3,
            "data": {"image": "x:1", "config": {"data": {"A": "b"}}},
        }))
        .unwrap();
        assert_eq!((revision.revision, revision.label(LABEL_REVISION_HASH)), (3, Some("abc")));
        assert_eq!(revision.annotation(ANNOTATION_REVISION_GENERATION), Some("4"));
        assert_eq!(
            <CachedRevision as Resource>::url_path(&(), Some("demo")),
            "/apis/apps/v1/namespaces/demo/controllerrevisions"
        );
    }
}
