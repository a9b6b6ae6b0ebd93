//! Test support: an in-process fake API server (records requests, echoes writes, can fail
//! after N writes to simulate a crash) and reflector caches fed by hand.

#![allow(dead_code)]

pub mod fake_api;
pub mod process;

pub use fake_api::Call;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, PodStatus, Service};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};
use relay_operator::api::RelayService;
use relay_operator::controller::context::{Caches, Context};
use relay_operator::hook::{ReloadOptions, Transport};
use relay_operator::ops::metrics::Metrics;
use serde_json::{Value, json};

/// What the fake answers for every pods/log request.
pub const LOG: &str = "starting\npanic: cannot connect to wss://stream.example.invalid/ws\n";

/// The server answers a patch with the whole object; a status or metadata patch of a
/// custom resource carries only part of it, so fill in the rest.
fn whole_object(path: &str, mut object: Value) -> Value {
    let (kind, spec) = if path.contains("/testdeployments/") {
        ("TestDeployment", json!({"template": {"image": "x:1"}}))
    } else if path.contains("/relayservices/") {
        ("RelayService", json!({"image": "x:1"}))
    } else if path.contains("/healthpolicies/") {
        ("HealthPolicy", json!({"tcp": {"port": 1}}))
    } else {
        return object;
    };
    let name = path.split("/status").next().unwrap_or_default().split('?').next().unwrap_or_default();
    let name = name.rsplit('/').next().unwrap_or_default();
    object["apiVersion"] = json!("relayops.io/v1alpha1");
    object["kind"] = json!(kind);
    if object.get("metadata").is_none_or(|m| m.get("name").is_none()) {
        object["metadata"] = json!({"name": name, "namespace": "demo"});
    }
    if object.get("spec").is_none() {
        object["spec"] = spec;
    }
    object
}

/// Writes (PATCH/DELETE outside Events) the fake accepts before it answers 500, as if the
/// operator crashed there; `usize::MAX` = never.
pub type FailAfter = Arc<AtomicUsize>;

/// A fake API server that answers every write by echoing the object, and records requests.
pub fn fake_client(fail_after: FailAfter) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let writes = Arc::new(AtomicUsize::new(0));
    let service = tower::service_fn(move |request: Request<Body>| {
        let recorded = recorded.clone();
        let fail_after = fail_after.clone();
        let writes = writes.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let bytes = request.into_body().collect().await?.to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let is_write = (method == "PATCH" || method == "DELETE") && !path.contains("/events");
            if is_write && writes.fetch_add(1, Ordering::SeqCst) >= fail_after.load(Ordering::SeqCst) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "injected failure", "reason": "InternalError", "code": 500, "metadata": {}});
                let mut response = Response::new(Body::from(serde_json::to_vec(&status).unwrap()));
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response);
            }
            recorded.lock().unwrap().push(Call {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            if path.contains("/log?") {
                return Ok(Response::new(Body::from(LOG.as_bytes().to_vec())));
            }
            let reply = if method == "DELETE" {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            } else {
                whole_object(&path, body)
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::new(Body::from(
                serde_json::to_vec(&reply).unwrap(),
            )))
        }
    });
    (Client::new(service, "default"), calls)
}

/// Reflector caches fed by hand, a Context on the fake client, and the recorded requests.
pub struct Harness {
    pub ctx: Arc<Context>,
    /// The time `ctx.now()` reports; see [`Harness::set_time`].
    pub clock: Arc<Mutex<Timestamp>>,
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub fail_after: FailAfter,
    /// Feed the caches by hand, as the watches would.
    pub w: fake_api::Writers,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_policy(false)
    }

    /// A harness whose operator runs with `--require-pinned-images` when `require_pinned`.
    pub fn with_policy(require_pinned: bool) -> Self {
        Self::with_options(require_pinned, |_| None)
    }

    /// A harness whose operator uses the reload options `reload` builds on the fake
    /// client (e.g. `--hook-via proxy`: `Transport::api_proxy(client.clone())`).
    pub fn with_reload(reload: impl FnOnce(&Client) -> ReloadOptions) -> Self {
        Self::with_options(false, |client| Some(reload(client)))
    }

    fn with_options(require_pinned: bool, reload: impl FnOnce(&Client) -> Option<ReloadOptions>) -> Self {
        let fail_after: FailAfter = Arc::new(AtomicUsize::new(usize::MAX));
        let (client, calls) = fake_client(fail_after.clone());
        let (caches, writers) = fake_api::caches();
        let clock = Arc::new(Mutex::new(Timestamp::now()));
        let reload = reload(&client);
        let ctx = context(client, caches, require_pinned, clock.clone(), reload);
        Self { ctx, clock, calls, fail_after, w: writers }
    }

    /// A restarted operator: a fresh Context (and client) over the same cluster state.
    pub fn restart(&mut self) {
        self.fail_after = Arc::new(AtomicUsize::new(usize::MAX));
        let (client, calls) = fake_client(self.fail_after.clone());
        self.calls = calls;
        let mut reload = self.ctx.reload.clone();
        // Calls through the API proxy go to the restarted operator's client.
        if let Transport::ApiProxy { client: proxy } = &mut reload.transport {
            *proxy = client.clone();
        }
        let reload = Some(reload);
        self.ctx = context(
            client,
            self.ctx.caches.clone(),
            self.ctx.require_pinned_images,
            self.clock.clone(),
            reload,
        );
    }

    /// Set the time the operator sees.
    pub fn set_time(&self, t: Timestamp) {
        *self.clock.lock().unwrap() = t;
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// Feed every object the operator wrote back into the caches, as the watches would.
    pub fn sync(&mut self, calls: &[Call], ready: bool) {
        self.sync_with(calls, &running(ready));
    }

    /// Like [`Harness::sync`]; new pods get `status`.
    pub fn sync_with(&mut self, calls: &[Call], status: &PodStatus) {
        for call in calls.iter().filter(|c| c.method == "PATCH") {
            let kind = call.body["kind"].as_str().unwrap_or_default();
            let value = call.body.clone();
            match kind {
                "Pod" => {
                    let mut pod: Pod = serde_json::from_value(value).unwrap();
                    pod.status = Some(status.clone());
                    self.w.pods.apply_watcher_event(&watcher::Event::Apply(pod));
                }
                "ConfigMap" => self
                    .w
                    .config_maps
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                "Service" => self
                    .w
                    .services
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                "PersistentVolumeClaim" => self
                    .w
                    .claims
                    .apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(value).unwrap())),
                _ => {}
            }
        }
        for call in calls.iter().filter(|c| c.method == "DELETE") {
            let path = call.path.split('?').next().unwrap_or_default();
            let mut segments = path.rsplit('/');
            let name = segments.next().unwrap_or_default().to_string();
            let plural = segments.next().unwrap_or_default();
            let meta = kube::api::ObjectMeta {
                name: Some(name),
                namespace: Some("demo".into()),
                ..Default::default()
            };
            match plural {
                "pods" => self.w.pods.apply_watcher_event(&watcher::Event::Delete(Pod {
                    metadata: meta,
                    ..Default::default()
                })),
                "persistentvolumeclaims" => {
                    self.w.claims.apply_watcher_event(&watcher::Event::Delete(PersistentVolumeClaim {
                        metadata: meta,
                        ..Default::default()
                    }))
                }
                "services" => self.w.services.apply_watcher_event(&watcher::Event::Delete(Service {
                    metadata: meta,
                    ..Default::default()
                })),
                "configmaps" => self.w.config_maps.apply_watcher_event(&watcher::Event::Delete(ConfigMap {
                    metadata: meta,
                    ..Default::default()
                })),
                _ => {}
            }
        }
    }

    /// Give every cached pod `status`.
    pub fn set_pod_status(&mut self, status: &PodStatus) {
        for pod in self.ctx.caches.pods.state() {
            let mut pod = (*pod).clone();
            pod.status = Some(status.clone());
            self.w.pods.apply_watcher_event(&watcher::Event::Apply(pod));
        }
    }

    /// Set the Ready condition of one cached pod (and its IP).
    pub fn set_pod(&mut self, name: &str, ready: bool, pod_ip: Option<&str>) {
        let pod = self.ctx.caches.pods.state().into_iter().find(|p| p.metadata.name.as_deref() == Some(name));
        let mut pod = (*pod.expect("pod in cache")).clone();
        let mut status = running(ready);
        status.pod_ip = pod_ip.map(String::from);
        pod.status = Some(status);
        self.w.pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }

    pub fn set_ready(&mut self, ready: bool) {
        for pod in self.ctx.caches.pods.state() {
            let mut pod = (*pod).clone();
            pod.status = Some(running(ready));
            self.w.pods.apply_watcher_event(&watcher::Event::Apply(pod));
        }
    }
}

pub fn running(ready: bool) -> PodStatus {
    fake_api::running(ready, None)
}

fn context(
    client: Client,
    caches: Caches,
    require_pinned: bool,
    clock: Arc<Mutex<Timestamp>>,
    reload: Option<ReloadOptions>,
) -> Arc<Context> {
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "relay-operator".into(), instance: None });
    let reload = reload.unwrap_or_else(|| ReloadOptions::try_default().unwrap());
    let ctx =
        Context::new(client, caches, recorder, require_pinned, reload, Arc::new(Metrics::new().unwrap()))
            .with_clock(Arc::new(move || *clock.lock().unwrap()));
    Arc::new(ctx)
}

pub fn relay_service(spec: Value) -> RelayService {
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
pub fn with_patched_status(mut rs: RelayService, calls: &[Call]) -> RelayService {
    if let Some(call) =
        calls.iter().rev().find(|c| c.path.ends_with("/status") || c.path.contains("/status?"))
    {
        rs.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
    }
    rs
}

pub fn summary(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| format!("{} {}", c.method, c.path.split('?').next().unwrap())).collect()
}
