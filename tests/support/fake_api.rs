//! A stateful in-process fake API server, shared by `tests/reload_controller.rs` and
//! `benches/reload_propagation.rs` (with the hook servers of `hook_servers.rs`).
//!
//! The fake API records every request and feeds what the operator writes straight into
//! the reflector stores (as the watches would): server-side applied pods come up Running
//! and Ready with an IP from [`pod_ip`], merge patches change annotations, deletes remove
//! pods.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, PodCondition, PodStatus, Secret, Service,
};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use relay_operator::api::{HealthPolicy, RelayService};
use relay_operator::controller::context::{Caches, Context};
use relay_operator::hook::ReloadOptions;
use relay_operator::ops::metrics::Metrics;
use serde_json::{Value, json};

/// A recorded API request.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// The IP of pod ordinal `i`: 127.0.0.2, 127.0.0.3, … (wrapping into 127.0.x.y).
pub fn pod_ip(ordinal: usize) -> Ipv4Addr {
    let n = ordinal + 2;
    Ipv4Addr::new(127, (n / 250) as u8, 0, (n % 250 + 1) as u8)
}

fn ordinal(name: &str) -> usize {
    name.rsplit('-').next().and_then(|o| o.parse().ok()).unwrap_or(0)
}

pub struct State {
    pub calls: Vec<Call>,
    pods: Writer<Pod>,
    config_maps: Writer<ConfigMap>,
    services: Writer<Service>,
    claims: Writer<PersistentVolumeClaim>,
    /// Pod merge patches hang forever while set (to simulate a crash mid-reconcile).
    pub stall_pod_patches: bool,
    /// Record requests (off in the benchmark's hot loop would save memory; on by default).
    pub record: bool,
}

/// The fake API and the stores it feeds.
pub struct FakeApi {
    pub client: Client,
    pub state: Arc<Mutex<State>>,
    pub caches: Caches,
    pub relay_services: Writer<RelayService>,
    pub secrets: Writer<Secret>,
    /// The `config-hash` of the ConfigMap as last written: what a pod's mounted file says
    /// (an instant kubelet).
    pub mounted: Arc<Mutex<String>>,
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Writers of every cache a [`Context`] reads, fed by hand or by the fake API.
pub struct Writers {
    pub pods: Writer<Pod>,
    pub config_maps: Writer<ConfigMap>,
    pub services: Writer<Service>,
    pub claims: Writer<PersistentVolumeClaim>,
    pub relay_services: Writer<RelayService>,
    pub policies: Writer<HealthPolicy>,
    pub secrets: Writer<Secret>,
}

/// Empty caches and their writers.
pub fn caches() -> (Caches, Writers) {
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
    (caches, Writers { pods, config_maps, services, claims, relay_services, policies, secrets })
}

pub fn running(ready: bool, ip: Option<String>) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        pod_ip: ip,
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

impl FakeApi {
    pub fn new() -> Self {
        let (caches, writers) = caches();
        let Writers { pods, config_maps, services, claims, relay_services, secrets, .. } = writers;
        let state = Arc::new(Mutex::new(State {
            calls: Vec::new(),
            pods,
            config_maps,
            services,
            claims,
            stall_pod_patches: false,
            record: true,
        }));
        let mounted = Arc::new(Mutex::new(String::new()));
        let client = Self::client(state.clone(), caches.pods.clone(), mounted.clone());
        Self { client, state, caches, relay_services, secrets, mounted }
    }

    fn client(state: Arc<Mutex<State>>, pods: Store<Pod>, mounted: Arc<Mutex<String>>) -> Client {
        let service = tower::service_fn(move |request: Request<Body>| {
            let state = state.clone();
            let pods = pods.clone();
            let mounted = mounted.clone();
            async move {
                let method = request.method().to_string();
                let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                let headers = request.headers().clone();
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let content_type = header("content-type").unwrap_or_default();
                let hash_header = header("x-config-hash").unwrap_or_default();
                drop(headers);
                let bytes = request.into_body().collect().await?.to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let bare = path.split('?').next().unwrap_or_default().to_string();
                let stall = {
                    let mut s = state.lock().unwrap();
                    if s.record {
                        s.calls.push(Call { method: method.clone(), path: path.clone(), body: body.clone() });
                    }
                    s.stall_pod_patches && content_type.contains("merge-patch") && bare.contains("/pods/")
                };
                if stall {
                    futures::future::pending::<()>().await;
                }
                let reply =
                    handle(&state, &pods, &mounted, &method, &bare, &content_type, &hash_header, body);
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(reply)
            }
        });
        Client::new(service, "default")
    }

    /// A fresh Context on these caches (= a restarted operator), with default reload options.
    pub fn context(&self) -> Context {
        self.context_with(ReloadOptions::try_default().unwrap())
    }

    /// A fresh Context on these caches with these reload options.
    pub fn context_with(&self, reload: ReloadOptions) -> Context {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter { controller: "relay-operator".into(), instance: None },
        );
        let metrics = Arc::new(Metrics::new().unwrap());
        Context::new(self.client.clone(), self.caches.clone(), recorder, false, reload, metrics)
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Put the RelayService (with `status`) into its cache.
    pub fn set_service(&mut self, rs: &RelayService) {
        self.relay_services.apply_watcher_event(&watcher::Event::Apply(rs.clone()));
    }

    pub fn set_secret(&mut self, secret: Secret) {
        self.secrets.apply_watcher_event(&watcher::Event::Apply(secret));
    }

    pub fn pod(&self, name: &str) -> Option<Arc<Pod>> {
        self.caches.pods.get(&ObjectRef::new(name).within("demo"))
    }

    pub fn annotation(&self, pod: &str, key: &str) -> Option<String> {
        self.pod(pod)?.metadata.annotations.as_ref()?.get(key).cloned()
    }
}

fn json_response(value: &Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(value).unwrap_or_default()))
}

#[allow(clippy::too_many_arguments)]
fn handle(
    state: &Mutex<State>,
    pods: &Store<Pod>,
    mounted: &Mutex<String>,
    method: &str,
    path: &str,
    content_type: &str,
    hash_header: &str,
    body: Value,
) -> Response<Body> {
    if path.contains("/proxy") {
        // The pod proxy: the app echoes what its mounted file says.
        let _ = hash_header;
        return json_response(&json!({"configHash": *mounted.lock().unwrap()}));
    }
    if method == "DELETE" {
        if path.contains("/pods/") {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            if let Some(pod) = pods.get(&ObjectRef::new(&name).within("demo")) {
                state.lock().unwrap().pods.apply_watcher_event(&watcher::Event::Delete((*pod).clone()));
            }
        }
        return json_response(
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        );
    }
    if method != "PATCH" {
        return json_response(&body);
    }
    if path.ends_with("/status") {
        let mut object = body;
        object["metadata"] = json!({"name": "web", "namespace": "demo"});
        object["spec"] = json!({"image": "x:1"});
        return json_response(&object);
    }
    let mut s = state.lock().unwrap();
    if path.contains("/pods/") && content_type.contains("merge-patch") {
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let Some(pod) = pods.get(&ObjectRef::new(&name).within("demo")) else {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found", "metadata": {}});
            let mut response = json_response(&status);
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            return response;
        };
        let mut value = serde_json::to_value(&*pod).unwrap_or_default();
        merge(&mut value, &body);
        if let Ok(pod) = serde_json::from_value::<Pod>(value.clone()) {
            s.pods.apply_watcher_event(&watcher::Event::Apply(pod));
        }
        return json_response(&value);
    }
    match body["kind"].as_str().unwrap_or_default() {
        "Pod" => {
            if let Ok(mut pod) = serde_json::from_value::<Pod>(body.clone()) {
                let name = pod.meta().name.clone().unwrap_or_default();
                pod.status = Some(running(true, Some(pod_ip(ordinal(&name)).to_string())));
                s.pods.apply_watcher_event(&watcher::Event::Apply(pod));
            }
        }
        "ConfigMap" => {
            if let Ok(cm) = serde_json::from_value::<ConfigMap>(body.clone()) {
                if let Some(hash) = cm.data.as_ref().and_then(|d| d.get("config-hash")) {
                    *mounted.lock().unwrap() = hash.clone();
                }
                s.config_maps.apply_watcher_event(&watcher::Event::Apply(cm));
            }
        }
        "Service" => {
            if let Ok(svc) = serde_json::from_value(body.clone()) {
                s.services.apply_watcher_event(&watcher::Event::Apply(svc));
            }
        }
        "PersistentVolumeClaim" => {
            if let Ok(pvc) = serde_json::from_value(body.clone()) {
                s.claims.apply_watcher_event(&watcher::Event::Apply(pvc));
            }
        }
        _ => {}
    }
    json_response(&body)
}
