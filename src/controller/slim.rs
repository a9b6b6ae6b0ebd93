//! What the caches keep of each watched object: everything a reconcile reads, nothing else.
//! The field-ownership records (`managedFields`) are most of an object's size; a reconcile
//! only reads when the operator last applied a ConfigMap (its own entry's time), never their
//! field sets, and nothing of them on other kinds. The client-side-apply copy
//! `kubectl.kubernetes.io/last-applied-configuration` duplicates the whole object and is
//! never read. Both are dropped before objects enter the stores. Of a pod's spec a reconcile
//! reads only its first container's readiness probe, and that container's name when it has
//! one (the failure diagnosis and the one-off health fetch): the rest — other containers,
//! images, volumes, env, security contexts, placement, what admission added — is dropped
//! too, and the whole spec of a pod without a readiness probe. Of its status it reads the
//! phase, the IP, the `Ready` and `PodScheduled` conditions and the containers' states,
//! restart counts and image IDs. Of the Services and ConfigMaps it writes the operator reads
//! only the metadata — looked up by name, never by label: the desired-hash annotation that
//! skips an unchanged apply, the owner references that wake the owner — and a ConfigMap's
//! `config-hash` key; their labels are dropped. Of a
//! ControllerRevision it reads the metadata and number; the content (`data`) only while a
//! rollback pins that revision, and then reads it from the API server.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::canary::LAST_GOOD_SUFFIX;
use crate::render::{CONFIG_HASH_KEY, MANAGER};

/// The annotation `kubectl apply` (client side) keeps a copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop from `object` what no reconcile reads (see the module documentation).
pub fn slim<K: Resource>(object: &mut K) {
    slim_metadata(object.meta_mut());
}

/// The pod conditions a reconcile reads.
const POD_CONDITIONS: [&str; 2] = ["Ready", "PodScheduled"];

/// [`slim`], and keep of a pod's spec only its first container's name and readiness probe
/// (no spec when it has none), of its status what the module documentation lists.
pub fn slim_pod(pod: &mut Pod) {
    slim(pod);
    pod.spec = pod.spec.take().and_then(|spec| {
        let first = spec.containers.into_iter().next()?;
        let container = Container {
            name: first.name,
            readiness_probe: Some(first.readiness_probe?),
            ..Container::default()
        };
        Some(PodSpec { containers: vec![container], ..PodSpec::default() })
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| POD_CONDITIONS.contains(&c.type_.as_str()))
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(slim_container_statuses),
        init_container_statuses: status.init_container_statuses.map(slim_container_statuses),
        ..PodStatus::default()
    });
}

/// Of each container's status: its name, readiness, state, last state, restart count and
/// image ID.
fn slim_container_statuses(statuses: Vec<ContainerStatus>) -> Vec<ContainerStatus> {
    statuses
        .into_iter()
        .map(|c| ContainerStatus {
            name: c.name,
            ready: c.ready,
            state: c.state,
            last_state: c.last_state,
            restart_count: c.restart_count,
            image_id: c.image_id,
            ..ContainerStatus::default()
        })
        .collect()
}

/// [`slim`], and keep of a Service its metadata only, without labels.
pub fn slim_service(service: &mut Service) {
    slim(service);
    service.metadata.labels = None;
    service.spec = None;
    service.status = None;
}

/// [`slim`], and drop a ControllerRevision's content (`data`).
pub fn slim_revision(revision: &mut ControllerRevision) {
    slim(revision);
    revision.data = None;
}

/// [`slim`] but for the operator's `managedFields` entries (without their field sets: a
/// reconcile reads when it last applied a ConfigMap), and keep of a ConfigMap's data only
/// the `config-hash` key — all of it for the canary's last good copies, which a revert reads
/// back — and no labels.
pub fn slim_config_map(config_map: &mut ConfigMap) {
    let mut own = config_map.metadata.managed_fields.take().unwrap_or_default();
    own.retain(|entry| entry.manager.as_deref() == Some(MANAGER));
    for entry in &mut own {
        entry.fields_v1 = None;
    }
    slim(config_map);
    config_map.metadata.managed_fields = Some(own).filter(|own| !own.is_empty());
    config_map.metadata.labels = None;
    if config_map.metadata.name.as_deref().is_some_and(|n| n.ends_with(LAST_GOOD_SUFFIX)) {
        return;
    }
    config_map.binary_data = None;
    if let Some(data) = &mut config_map.data {
        data.retain(|key, _| key == CONFIG_HASH_KEY);
    }
}

/// Drop `meta.managedFields` and the last-applied annotation.
pub fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pods::health_url;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn pod(probe: Option<serde_json::Value>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "labels": {"relayops.io/service": "web"},
                "managedFields": [{"manager": MANAGER, "operation": "Apply"}]},
            "spec": {
                "containers": [{"name": "app", "image": "x:1",
                    "env": [{"name": "A", "value": "b"}],
                    "readinessProbe": probe},
                    {"name": "sidecar", "image": "y:1"}],
                "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
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
    fn a_slim_pod_keeps_what_diagnosis_and_health_fetches_read() {
        let mut pod = pod(Some(serde_json::json!({"httpGet": {"path": "/health", "port": 8080}})));
        slim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none() && spec.tolerations.is_none());
        assert_eq!(spec.containers.len(), 1, "only the first container");
        let container = &spec.containers[0];
        assert_eq!((container.name.as_str(), container.image.as_deref()), ("app", None));
        assert!(container.env.is_none());
        assert_eq!(health_url(&pod).unwrap().as_str(), "http://10.0.0.7:8080/health");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["relayops.io/service"], "web");
        assert!(pod.metadata.managed_fields.is_none());

        let status = pod.status.unwrap();
        assert_eq!((status.phase.as_deref(), status.pod_ip.as_deref()), (Some("Running"), Some("10.0.0.7")));
        assert!(status.host_ip.is_none() && status.qos_class.is_none());
        let conditions = status.conditions.unwrap();
        let kept: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(kept, ["PodScheduled", "Ready"]);
        assert_eq!(
            (conditions[0].reason.as_deref(), conditions[0].message.as_deref()),
            (Some("Unschedulable"), Some("no node"))
        );
        let container = &status.container_statuses.unwrap()[0];
        assert_eq!((container.name.as_str(), container.restart_count, container.ready), ("app", 2, true));
        assert_eq!(container.image_id, "x@sha256:1");
        assert!(container.state.as_ref().unwrap().running.is_some());
        assert_eq!(container.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);
        assert!(container.image.is_empty() && container.container_id.is_none());
    }

    #[test]
    fn a_pod_without_a_readiness_probe_keeps_no_spec() {
        let mut pod = pod(None);
        slim_pod(&mut pod);
        assert!(pod.spec.is_none());
        assert!(health_url(&pod).is_none());
    }

    #[test]
    fn only_the_operators_config_map_apply_times_and_real_annotations_stay() {
        let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-config",
                "annotations": {LAST_APPLIED: "{\"big\": \"copy\"}", "team": "payments"},
                "managedFields": [
                    {"manager": MANAGER, "operation": "Apply", "time": "2026-11-28T10:00:00Z",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:config.env": {}}}},
                    {"manager": "kubectl", "operation": "Update", "time": "2026-11-28T11:00:00Z",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}},
                ],
            },
            "data": {"config-hash": "abc"},
        }))
        .unwrap();
        slim_config_map(&mut cm);
        let fields = cm.metadata.managed_fields.as_ref().unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].manager.as_deref(), Some(MANAGER));
        assert!(fields[0].time.is_some() && fields[0].fields_v1.is_none());
        let annotations = cm.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(cm.data.as_ref().unwrap()["config-hash"], "abc", "data is kept");

        let mut other: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {
            "annotations": {LAST_APPLIED: "{}"},
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        }}))
        .unwrap();
        slim_config_map(&mut other);
        assert!(other.metadata.managed_fields.is_none() && other.metadata.annotations.is_none());

        // Other kinds keep no managedFields at all, the operator's neither.
        let mut service: Service = serde_json::from_value(serde_json::json!({"metadata": {
            "managedFields": [{"manager": MANAGER, "operation": "Apply", "time": "2026-11-28T10:00:00Z"}],
        }}))
        .unwrap();
        slim(&mut service);
        assert!(service.metadata.managed_fields.is_none());
    }

    #[test]
    fn services_keep_their_metadata_and_config_maps_their_hash() {
        let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-config", "annotations": {"relayops.io/desired-hash": "d"},
                "labels": {"relayops.io/service": "web"}},
            "data": {"config-hash": "abc", "config.env": "A=b\n"},
            "binaryData": {"blob": "AAAA"},
        }))
        .unwrap();
        slim_config_map(&mut cm);
        assert_eq!(cm.data.as_ref().unwrap().keys().collect::<Vec<_>>(), [CONFIG_HASH_KEY]);
        assert!(cm.binary_data.is_none() && cm.metadata.labels.is_none());
        assert_eq!(cm.metadata.annotations.unwrap()["relayops.io/desired-hash"], "d");
        let mut last_good: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-config{LAST_GOOD_SUFFIX}")},
            "data": {"config-hash": "abc", "config.env": "A=b\\n"},
        }))
        .unwrap();
        slim_config_map(&mut last_good);
        assert_eq!(last_good.data.unwrap().len(), 2, "a canary's last good copy keeps its data");

        let mut service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "annotations": {"relayops.io/desired-hash": "d"},
                "labels": {"relayops.io/service": "web"},
                "ownerReferences": [{"apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
                    "name": "web", "uid": "u1"}]},
            "spec": {"ports": [{"port": 8080}], "clusterIP": "10.96.0.7"},
        }))
        .unwrap();
        slim_service(&mut service);
        assert!(service.spec.is_none() && service.status.is_none() && service.metadata.labels.is_none());
        assert_eq!(service.metadata.owner_references.as_ref().unwrap()[0].uid, "u1");
        assert_eq!(service.metadata.annotations.unwrap()["relayops.io/desired-hash"], "d");

        let mut revision: ControllerRevision = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "labels": {"relayops.io/revision-hash": "abc"}},
            "revision": 3,
            "data": {"image": "x:1", "config": {"data": {"A": "b"}}},
        }))
        .unwrap();
        slim_revision(&mut revision);
        assert!(revision.data.is_none());
        assert_eq!((revision.revision, revision.metadata.labels.unwrap().len()), (3, 1));
    }
}
