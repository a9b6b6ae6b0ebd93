//! What the caches keep of each watched object: everything a reconcile reads, nothing else.
//! The field-ownership records (`managedFields`) are most of an object's size; a reconcile
//! only reads when the operator last applied a ConfigMap (its own entry's time), never their
//! field sets. The client-side-apply copy `kubectl.kubernetes.io/last-applied-configuration`
//! duplicates the whole object and is never read. Both are dropped before objects enter the
//! stores. Of a pod's spec a reconcile reads only its first container's name and readiness
//! probe (the failure diagnosis and the one-off health fetch): the rest — volumes, env,
//! security contexts, placement, what admission added — is dropped too. Of the Services
//! and ConfigMaps it writes the operator reads only the metadata (the desired-hash annotation
//! that skips an unchanged apply) and a ConfigMap's `config-hash` key. Of a
//! ControllerRevision it reads the metadata and number; the content (`data`) only while a
//! rollback pins that revision, and then reads it from the API server.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Service};
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

/// [`slim`], and keep of the pod's spec only its containers' names, images and readiness
/// probes.
pub fn slim_pod(pod: &mut Pod) {
    slim(pod);
    if let Some(spec) = pod.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                image: c.image,
                readiness_probe: c.readiness_probe,
                ..Container::default()
            })
            .collect();
        pod.spec = Some(PodSpec { containers, ..PodSpec::default() });
    }
}

/// [`slim`], and keep of a Service its metadata only.
pub fn slim_service(service: &mut Service) {
    slim(service);
    service.spec = None;
    service.status = None;
}

/// [`slim`], and drop a ControllerRevision's content (`data`).
pub fn slim_revision(revision: &mut ControllerRevision) {
    slim(revision);
    revision.data = None;
}

/// [`slim`], and keep of a ConfigMap's data only the `config-hash` key — all of it for the
/// canary's last good copies, which a revert reads back.
pub fn slim_config_map(config_map: &mut ConfigMap) {
    slim(config_map);
    if config_map.metadata.name.as_deref().is_some_and(|n| n.ends_with(LAST_GOOD_SUFFIX)) {
        return;
    }
    config_map.binary_data = None;
    if let Some(data) = &mut config_map.data {
        data.retain(|key, _| key == CONFIG_HASH_KEY);
    }
}

/// Keep of `meta.managedFields` only the operator's entries, without their field sets, and
/// drop the last-applied annotation.
pub fn slim_metadata(meta: &mut ObjectMeta) {
    if let Some(fields) = &mut meta.managed_fields {
        fields.retain(|entry| entry.manager.as_deref() == Some(MANAGER));
        for entry in fields.iter_mut() {
            entry.fields_v1 = None;
        }
        if fields.is_empty() {
            meta.managed_fields = None;
        }
    }
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

    #[test]
    fn a_slim_pod_keeps_what_diagnosis_and_health_fetches_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "labels": {"relayops.io/service": "web"}},
            "spec": {
                "containers": [{"name": "app", "image": "x:1",
                    "env": [{"name": "A", "value": "b"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}}}],
                "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
            },
            "status": {"podIP": "10.0.0.7", "phase": "Running"},
        }))
        .unwrap();
        slim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none() && spec.tolerations.is_none());
        let container = &spec.containers[0];
        assert_eq!((container.name.as_str(), container.image.as_deref()), ("app", Some("x:1")));
        assert!(container.env.is_none());
        assert_eq!(health_url(&pod).unwrap().as_str(), "http://10.0.0.7:8080/health");
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"), "status is kept");
        assert_eq!(pod.metadata.labels.unwrap()["relayops.io/service"], "web");
    }

    #[test]
    fn only_the_operators_apply_times_and_real_annotations_stay() {
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
        slim(&mut cm);
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
        slim(&mut other);
        assert!(other.metadata.managed_fields.is_none() && other.metadata.annotations.is_none());
    }

    #[test]
    fn services_keep_their_metadata_and_config_maps_their_hash() {
        let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-config", "annotations": {"relayops.io/desired-hash": "d"}},
            "data": {"config-hash": "abc", "config.env": "A=b\n"},
            "binaryData": {"blob": "AAAA"},
        }))
        .unwrap();
        slim_config_map(&mut cm);
        assert_eq!(cm.data.as_ref().unwrap().keys().collect::<Vec<_>>(), [CONFIG_HASH_KEY]);
        assert!(cm.binary_data.is_none());
        assert_eq!(cm.metadata.annotations.unwrap()["relayops.io/desired-hash"], "d");
        let mut last_good: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-config{LAST_GOOD_SUFFIX}")},
            "data": {"config-hash": "abc", "config.env": "A=b\\n"},
        }))
        .unwrap();
        slim_config_map(&mut last_good);
        assert_eq!(last_good.data.unwrap().len(), 2, "a canary's last good copy keeps its data");

        let mut service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "annotations": {"relayops.io/desired-hash": "d"}},
            "spec": {"ports": [{"port": 8080}], "clusterIP": "10.96.0.7"},
        }))
        .unwrap();
        slim_service(&mut service);
        assert!(service.spec.is_none() && service.status.is_none());
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
