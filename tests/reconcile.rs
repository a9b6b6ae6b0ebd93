//! The RelayService reconciler against an in-process fake API server: the requests it
//! makes on a first reconcile, zero requests once converged, scale-down, suspend,
//! dependency gating and a missing HealthPolicy.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, PodCondition, PodStatus, Secret, Service,
};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use relay_operator::api::{HealthPolicy, RelayService};
use relay_operator::controller::context::{Caches, Context};
use relay_operator::controller::relay_service::reconcile;
use serde_json::{Value, json};

/// A recorded request: method, path (with query), JSON body.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    body: Value,
}

/// A fake API server that answers every write by echoing the object, and records requests.
fn fake_client() -> (Client, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let service = tower::service_fn(move |request: Request<Body>| {
        let recorded = recorded.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let bytes = request.into_body().collect().await?.to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.lock().unwrap().push(Call { method: method.clone(), path, body: body.clone() });
            let reply = if method == "DELETE" {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            } else {
                // The server answers with the whole object; a status patch carries no metadata.
                let mut object = body;
                if object.get("metadata").is_none() {
                    object["metadata"] = json!({"name": "web", "namespace": "demo"});
                    object["spec"] = json!({"image": "x:1"});
                }
                object
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::new(Body::from(
                serde_json::to_vec(&reply).unwrap(),
            )))
        }
    });
    (Client::new(service, "default"), calls)
}

struct Harness {
    ctx: Arc<Context>,
    calls: Arc<Mutex<Vec<Call>>>,
    pods: Writer<Pod>,
    config_maps: Writer<ConfigMap>,
    services: Writer<Service>,
    claims: Writer<PersistentVolumeClaim>,
    relay_services: Writer<RelayService>,
    policies: Writer<HealthPolicy>,
    _secrets: Writer<Secret>,
}

impl Harness {
    fn new() -> Self {
        let (client, calls) = fake_client();
        let (pods_r, pods) = reflector::store();
        let (cm_r, config_maps) = reflector::store();
        let (svc_r, services) = reflector::store();
        let (pvc_r, claims) = reflector::store();
        let (rs_r, relay_services) = reflector::store();
        let (hp_r, policies) = reflector::store();
        let (sec_r, secrets) = reflector::store();
        let caches = Caches {
            services: rs_r,
            policies: hp_r,
            pods: pods_r,
            config_maps: cm_r,
            service_objects: svc_r,
            claims: pvc_r,
            secrets: sec_r,
        };
        let recorder =
            Recorder::new(client.clone(), Reporter { controller: "relay-operator".into(), instance: None });
        let (wake, _) = futures::channel::mpsc::unbounded();
        let ctx = Arc::new(Context::new(client, caches, recorder, false, wake));
        Self { ctx, calls, pods, config_maps, services, claims, relay_services, policies, _secrets: secrets }
    }

    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// Feed every object the operator wrote back into the caches, as the watches would.
    fn sync(&mut self, calls: &[Call], ready: bool) {
        for call in calls.iter().filter(|c| c.method == "PATCH") {
            let kind = call.body["kind"].as_str().unwrap_or_default();
            let value = call.body.clone();
            match kind {
                "Pod" => {
                    let mut pod: Pod = serde_json::from_value(value).unwrap();
                    pod.status = Some(running(ready));
                    self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
                }
                "ConfigMap" => self
                    .config_maps
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                "Service" => self
                    .services
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                "PersistentVolumeClaim" => self
                    .claims
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                _ => {}
            }
        }
        for call in calls.iter().filter(|c| c.method == "DELETE" && c.path.contains("/pods/")) {
            let name = call.path.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
            let pod = Pod {
                metadata: kube::api::ObjectMeta {
                    name: Some(name),
                    namespace: Some("demo".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            self.pods.apply_watcher_event(&watcher::Event::Delete(pod));
        }
    }

    fn set_ready(&mut self, ready: bool) {
        for pod in self.ctx.caches.pods.state() {
            let mut pod = (*pod).clone();
            pod.status = Some(running(ready));
            self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
        }
    }
}

fn running(ready: bool) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn relay_service(spec: Value) -> RelayService {
    let mut rs: RelayService = serde_json::from_value(json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
        "metadata": {"name": "web", "namespace": "demo", "uid": "uid-web", "generation": 1},
        "spec": spec,
    }))
    .unwrap();
    rs.meta_mut().resource_version = Some("1".into());
    rs
}

/// Apply the status the operator patched onto our copy, as the API server would.
fn with_patched_status(mut rs: RelayService, calls: &[Call]) -> RelayService {
    if let Some(call) =
        calls.iter().rev().find(|c| c.path.ends_with("/status") || c.path.contains("/status?"))
    {
        rs.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
    }
    rs
}

fn summary(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| format!("{} {}", c.method, c.path.split('?').next().unwrap())).collect()
}

const SPEC: &str = r#"{"image": "ghcr.io/example/web:1.0.0", "replicas": 2, "ports": [{"name": "http", "containerPort": 8080}],
  "config": {"data": {"A": "1"}}, "storage": [{"name": "data", "size": "1Gi", "mountPath": "/data"}]}"#;

#[tokio::test]
async fn first_reconcile_creates_everything_then_converges_to_zero_requests() {
    let mut h = Harness::new();
    let rs = relay_service(serde_json::from_str(SPEC).unwrap());
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let paths = summary(&calls);
    for expected in [
        "PATCH /api/v1/namespaces/demo/configmaps/web-config",
        "PATCH /api/v1/namespaces/demo/services/web",
        "PATCH /api/v1/namespaces/demo/persistentvolumeclaims/data-web-0",
        "PATCH /api/v1/namespaces/demo/persistentvolumeclaims/data-web-1",
        "PATCH /api/v1/namespaces/demo/pods/web-0",
        "PATCH /api/v1/namespaces/demo/pods/web-1",
        "PATCH /apis/relayops.io/v1alpha1/namespaces/demo/relayservices/web/status",
    ] {
        assert!(paths.contains(&expected.to_string()), "{expected} missing from {paths:#?}");
    }
    for call in calls.iter().filter(|c| c.method == "PATCH" && !c.path.contains("/events/")) {
        assert!(call.path.contains("fieldManager=relay-operator"), "{}", call.path);
        assert!(call.path.contains("force=true"), "{}", call.path);
    }
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    assert_eq!(status["ready"], "0/2");
    assert_eq!(status["observedGeneration"], 1);

    // Pods turn Ready: one status update, no other writes.
    let rs = with_patched_status(rs, &calls);
    h.sync(&calls, true);
    h.relay_services.apply_watcher_event(&watcher::Event::Apply(rs.clone()));
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert_eq!(
        summary(&calls),
        ["PATCH /apis/relayops.io/v1alpha1/namespaces/demo/relayservices/web/status"]
    );
    let status = &calls[0].body["status"];
    assert_eq!(status["ready"], "2/2");
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");

    // Converged: a reconcile with nothing to change makes zero requests.
    let rs = with_patched_status(rs, &calls);
    reconcile(Arc::new(rs), h.ctx.clone()).await.unwrap();
    assert_eq!(summary(&h.take_calls()), Vec::<String>::new());
}

#[tokio::test]
async fn scale_down_deletes_highest_ordinal_and_suspend_deletes_all() {
    let mut h = Harness::new();
    let mut spec: Value = serde_json::from_str(SPEC).unwrap();
    spec["replicas"] = json!(3);
    let rs = relay_service(spec.clone());
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    h.sync(&calls, true);

    spec["replicas"] = json!(1);
    reconcile(Arc::new(relay_service(spec.clone())), h.ctx.clone()).await.unwrap();
    let deletes: Vec<String> =
        summary(&h.take_calls()).into_iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        ["DELETE /api/v1/namespaces/demo/pods/web-2", "DELETE /api/v1/namespaces/demo/pods/web-1"]
    );

    spec["replicas"] = json!(3);
    spec["suspend"] = json!(true);
    reconcile(Arc::new(relay_service(spec)), h.ctx.clone()).await.unwrap();
    let calls = summary(&h.take_calls());
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(deletes.len(), 3, "suspend deletes every pod: {calls:#?}");
    assert!(!calls.iter().any(|c| c.contains("configmaps") && c.starts_with("DELETE")), "config is kept");
    assert!(
        !calls.iter().any(|c| c.contains("persistentvolumeclaims") && c.starts_with("DELETE")),
        "claims are kept"
    );
}

#[tokio::test]
async fn dependencies_gate_pod_creation() {
    let mut h = Harness::new();
    let postgres = relay_service(json!({"image": "postgres:16.4"}));
    let mut postgres = postgres;
    postgres.metadata.name = Some("postgres".into());
    h.relay_services.apply_watcher_event(&watcher::Event::Apply(postgres.clone()));
    let api = relay_service(json!({"image": "api:1.0.0", "dependsOn": ["postgres"]}));
    reconcile(Arc::new(api.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/")), "no pod while postgres is not Ready");
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let deps =
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DependenciesReady").unwrap();
    assert_eq!(
        (deps["status"].as_str(), deps["reason"].as_str()),
        (Some("False"), Some("DependenciesNotReady"))
    );
    assert!(deps["message"].as_str().unwrap().contains("postgres"));

    // postgres turns Ready: api's pods are created.
    postgres.status = Some(serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady", "message": "", "lastTransitionTime": "2026-11-24T00:00:00Z"}], "observedGeneration": 1})).unwrap());
    h.relay_services.apply_watcher_event(&watcher::Event::Apply(postgres));
    reconcile(Arc::new(api), h.ctx.clone()).await.unwrap();
    assert!(summary(&h.take_calls()).contains(&"PATCH /api/v1/namespaces/demo/pods/web-0".to_string()));
    h.set_ready(true);
}

#[tokio::test]
async fn cycle_and_missing_dependency_become_conditions() {
    let h = Harness::new();
    let missing = relay_service(json!({"image": "api:1.0.0", "dependsOn": ["nope"]}));
    reconcile(Arc::new(missing), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/")));
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let deps =
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DependenciesReady").unwrap();
    assert_eq!(deps["reason"], "DependencyNotFound");
}

#[tokio::test]
async fn missing_health_policy_is_a_condition_and_touches_no_pod() {
    let mut h = Harness::new();
    let rs = relay_service(json!({"image": "api:1.0.0", "healthPolicyRef": {"name": "gone"}}));
    let action = reconcile(Arc::new(rs), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let paths = summary(&calls);
    assert!(!paths.iter().any(|c| c.contains("/pods/") || c.contains("configmaps")), "{paths:#?}");
    assert!(paths.iter().any(|c| c.contains("/events")), "a Warning Event explains it: {paths:#?}");
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let degraded = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap();
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("HealthPolicyNotFound"))
    );
    assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::await_change()));
    let _ = &mut h.policies;
}
