//! The fake API server of the reconciler tests and the benchmark: a stateful in-process
//! stand-in for the Kubernetes API behind a real `kube::Client` (and, through
//! [`super::process`], behind a socket for the operator binary).
//!
//! It stores what the operator writes — server-side apply (create, or update where fields
//! the apply does not send survive: status, annotations set by a merge patch), JSON merge
//! patches, status writes, creates (Events), deletes — and bumps an object's
//! `resourceVersion` only when a write changes it. It answers GETs of objects and lists,
//! the `pods/log` subresource ([`LOG`]) and the pod proxy (the app answers with the hash of
//! its mounted file, [`FakeApi::mounted`]). It records every request ([`Call`]: method,
//! path with query, JSON body) for exact-request assertions, can refuse every write after
//! the next N ([`FakeApi::fail_after`]: the operator crashes there; a refused write is not
//! recorded) and can hang pod metadata patches ([`FakeApi::stall_pod_patches`]).
//!
//! The objects under test (RelayService, HealthPolicy, TestDeployment) are usually handed
//! to `reconcile` directly rather than put into the fake: a status write, metadata patch or
//! delete of one it does not hold is answered as if it existed, and nothing is stored.
//! Anything else missing is 404, as on a real server.
//!
//! The reflector caches of the [`Context`]s it makes are fed from its store as the watches
//! would: at once ([`FakeApi::new`]; new pods come up Running and Ready at [`pod_ip`], where
//! the hook servers listen), or only when the test says so ([`FakeApi::with_manual_sync`]
//! and [`FakeApi::sync`], which gives new pods the status the test names).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, PodCondition, PodStatus, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use relay_operator::api::{HealthPolicy, RelayService, TestDeployment};
use relay_operator::controller::cached::{CachedConfigMap, CachedPod, CachedRevision, CachedService};
use relay_operator::controller::context::{Caches, Context, SecretCaches};
use relay_operator::controller::events::EventPublisher;
use relay_operator::hook::{
    DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_PER_SERVICE, PodIpOptions, ReloadOptions, Transport,
};
use relay_operator::ops::metrics::Metrics;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// What the fake answers for every pods/log request.
pub const LOG: &str = "starting\npanic: cannot connect to wss://stream.example.invalid/ws\n";

/// A recorded API request.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
}

/// The answer to one request.
pub enum Reply {
    /// Status code and JSON body.
    Json(u16, Value),
    /// A log.
    Text(String),
    /// A watch: it stays open and no event ever comes.
    Watch,
}

/// The IP of pod ordinal `i`: 127.0.0.2, 127.0.0.3, … (wrapping into 127.0.x.y).
pub fn pod_ip(ordinal: usize) -> Ipv4Addr {
    let n = ordinal + 2;
    Ipv4Addr::new(127, (n / 250) as u8, 0, (n % 250 + 1) as u8)
}

/// Phase Running and the Ready condition.
pub fn running(ready: bool) -> PodStatus {
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

/// The fake API server: its client, the caches it feeds and its state.
#[derive(Clone)]
pub struct FakeApi {
    pub client: Client,
    pub caches: Caches,
    /// The `config-hash` of the ConfigMap as last written: what a pod's mounted file says
    /// (an instant kubelet).
    pub mounted: Arc<Mutex<String>>,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// Writes reach the caches at once; new pods come up Running and Ready at [`pod_ip`].
    pub fn new() -> Self {
        Self::with(true)
    }

    /// Writes reach the caches only on [`FakeApi::sync`].
    pub fn with_manual_sync() -> Self {
        Self::with(false)
    }

    fn with(instant: bool) -> Self {
        let (caches, writers) = caches();
        let mounted = Arc::new(Mutex::new(String::new()));
        let state = Arc::new(Mutex::new(State {
            objects: BTreeMap::new(),
            version: 0,
            unsynced: BTreeMap::new(),
            instant,
            calls: Vec::new(),
            writes_left: None,
            stall_pod_patches: false,
            writers,
            mounted: mounted.clone(),
            serving: std::time::Duration::ZERO,
        }));
        let client = client(state.clone());
        Self { client, caches, mounted, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// A fresh Context on these caches (= a restarted operator), with default reload options.
    pub fn context(&self) -> Context {
        self.context_with(ReloadOptions::new(
            DEFAULT_CONCURRENCY,
            DEFAULT_CONCURRENCY_PER_SERVICE,
            Transport::pod_ip(PodIpOptions::default()).unwrap(),
        ))
    }

    /// A fresh Context on these caches with these reload options.
    pub fn context_with(&self, reload: ReloadOptions) -> Context {
        let events = EventPublisher::new(
            self.client.clone(),
            Reporter { controller: "relay-operator".into(), instance: None },
        );
        let metrics = Arc::new(Metrics::new().unwrap());
        Context::new(self.client.clone(), self.caches.clone(), events, false, reload, metrics)
    }

    /// Time spent answering requests (and feeding the caches) since the last call: the part
    /// of a reconcile's time that a real API server, not the operator, would spend.
    pub fn take_serving_time(&self) -> std::time::Duration {
        std::mem::take(&mut self.state().serving)
    }

    /// The requests received since the last call.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    /// The requests received and not taken yet.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Accept `writes` more writes (PATCH and DELETE outside Events), then answer every
    /// write with 500, as if the operator crashed there; `usize::MAX` = never.
    pub fn fail_after(&mut self, writes: usize) {
        self.state().writes_left = Some(writes);
    }

    /// While set, pod merge patches are recorded and then hang forever.
    pub fn stall_pod_patches(&mut self, stall: bool) {
        self.state().stall_pod_patches = stall;
    }

    /// Put `object` into the cluster as it is (a user's apply, a kubelet, a garbage
    /// collector), and into its cache at once.
    pub fn put<K: Resource<DynamicType = ()> + Serialize>(&mut self, object: &K) {
        let key = key_of(object);
        let mut state = self.state();
        let mut value = serde_json::to_value(object).unwrap();
        if value["metadata"]["resourceVersion"].is_null() {
            state.version += 1;
            value["metadata"]["resourceVersion"] = json!(state.version.to_string());
        }
        state.objects.insert(key.clone(), value);
        state.deliver(&key);
    }

    /// Remove `object` from the cluster and from its cache at once.
    pub fn remove<K: Resource<DynamicType = ()> + Serialize>(&mut self, object: &K) {
        let key = key_of(object);
        let mut state = self.state();
        state.objects.remove(&key);
        state.unsynced.remove(&key);
        state.emit(&key, serde_json::to_value(object).unwrap(), true);
    }

    /// Feed everything written since the last sync into the caches, as the watches would;
    /// new pods come up with phase Running and Ready `ready`.
    pub fn sync(&mut self, ready: bool) {
        self.sync_with(&running(ready));
    }

    /// Like [`FakeApi::sync`]; new pods get `status`.
    pub fn sync_with(&mut self, status: &PodStatus) {
        let mut state = self.state();
        let keys: Vec<String> = state.unsynced.keys().cloned().collect();
        for key in keys {
            if let Some(pod) = state.objects.get_mut(&key).filter(|_| key.contains("/pods/"))
                && pod["status"].is_null()
            {
                pod["status"] = serde_json::to_value(status).unwrap();
            }
            state.deliver(&key);
        }
    }

    /// Give every pod `status` (a kubelet), in the cluster and in the cache.
    pub fn set_pod_status(&mut self, status: &PodStatus) {
        let mut state = self.state();
        let pods: Vec<String> = state.objects.keys().filter(|k| k.contains("/pods/")).cloned().collect();
        for key in pods {
            state.set_status(&key, status);
        }
    }

    /// Set the Ready condition of one pod (and its IP), in the cluster and in the cache.
    pub fn set_pod(&mut self, name: &str, ready: bool, pod_ip: Option<&str>) {
        let status = PodStatus { pod_ip: pod_ip.map(String::from), ..running(ready) };
        let key = format!("/api/v1/namespaces/demo/pods/{name}");
        let mut state = self.state();
        assert!(state.objects.contains_key(&key), "no pod {name}");
        state.set_status(&key, &status);
    }

    /// Make one pod's container run since `started` (RFC 3339) at `pod_ip`, Ready or not.
    pub fn set_pod_running(&mut self, name: &str, ready: bool, pod_ip: &str, started: &str) {
        let container: ContainerStatus = serde_json::from_value(json!({
            "name": "app", "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"running": {"startedAt": started}},
        }))
        .unwrap();
        let status = PodStatus {
            pod_ip: Some(pod_ip.into()),
            container_statuses: Some(vec![container]),
            ..running(ready)
        };
        let key = format!("/api/v1/namespaces/demo/pods/{name}");
        let mut state = self.state();
        assert!(state.objects.contains_key(&key), "no pod {name}");
        state.set_status(&key, &status);
    }

    /// A pod as cached.
    pub fn pod(&self, name: &str) -> Option<Arc<CachedPod>> {
        self.caches.pods.get(&ObjectRef::new(name).within("demo"))
    }

    /// An object as the server stores it, by path (`/api/v1/namespaces/demo/configmaps/web`).
    pub fn stored<K: DeserializeOwned>(&self, path: &str) -> Option<K> {
        let object = self.state().objects.get(path).cloned()?;
        Some(serde_json::from_value(object).unwrap())
    }

    /// An annotation of a pod as cached.
    pub fn annotation(&self, pod: &str, key: &str) -> Option<String> {
        self.pod(pod)?.annotation(key).map(str::to_owned)
    }

    /// Answer one request as the API server would, and record it.
    pub async fn answer(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        answer(&self.state, method, path, content_type, body).await
    }
}

/// Writers of every cache a [`Context`] reads.
struct Writers {
    pods: Writer<CachedPod>,
    config_maps: Writer<CachedConfigMap>,
    services: Writer<CachedService>,
    claims: Writer<PersistentVolumeClaim>,
    ingresses: Writer<Ingress>,
    relay_services: Writer<RelayService>,
    policies: Writer<HealthPolicy>,
    /// One per namespace of [`SECRET_NAMESPACES`]; Secrets elsewhere reach no cache.
    secrets: BTreeMap<String, Writer<Secret>>,
    test_deployments: Writer<TestDeployment>,
    revisions: Writer<CachedRevision>,
}

/// The namespaces whose Secrets the operator may read (`--secret-namespace`).
pub const SECRET_NAMESPACES: [&str; 1] = ["demo"];

/// Empty caches and their writers.
fn caches() -> (Caches, Writers) {
    let (pods_r, pods) = reflector::store();
    let (cm_r, config_maps) = reflector::store();
    let (svc_r, services) = reflector::store();
    let (pvc_r, claims) = reflector::store();
    let (ing_r, ingresses) = reflector::store();
    let (rs_r, relay_services) = reflector::store();
    let (hp_r, policies) = reflector::store();
    let (secret_stores, secrets): (Vec<_>, BTreeMap<_, _>) = SECRET_NAMESPACES
        .iter()
        .map(|ns| {
            let (reader, writer) = reflector::store();
            ((ns.to_string(), reader), (ns.to_string(), writer))
        })
        .unzip();
    let (td_r, test_deployments) = reflector::store();
    let (cr_r, revisions) = reflector::store();
    let caches = Caches {
        services: rs_r,
        policies: hp_r,
        pods: pods_r,
        config_maps: cm_r,
        service_objects: svc_r,
        claims: pvc_r,
        ingresses: ing_r,
        secrets: SecretCaches::new(secret_stores),
        test_deployments: td_r,
        revisions: cr_r,
    };
    let writers = Writers {
        pods,
        config_maps,
        services,
        claims,
        ingresses,
        relay_services,
        policies,
        secrets,
        test_deployments,
        revisions,
    };
    (caches, writers)
}

struct State {
    /// Objects by path: `/api/v1/namespaces/demo/pods/web-0`.
    objects: BTreeMap<String, Value>,
    /// The last resourceVersion handed out.
    version: u64,
    /// Paths written since the last sync, with the object as last written (deleted ones too).
    unsynced: BTreeMap<String, Value>,
    /// Writes reach the caches at once.
    instant: bool,
    calls: Vec<Call>,
    /// Writes accepted before every write fails.
    writes_left: Option<usize>,
    stall_pod_patches: bool,
    writers: Writers,
    mounted: Arc<Mutex<String>>,
    /// Time spent answering requests (the API server's share of a reconcile, for benches).
    serving: std::time::Duration,
}

fn client(state: Arc<Mutex<State>>) -> Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let state = state.clone();
        async move {
            let started = std::time::Instant::now();
            let method = request.method().to_string();
            let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = request.into_body().collect().await?.to_bytes();
            let response = match answer(&state, &method, &path, &content_type, &body).await {
                Reply::Json(code, value) => {
                    let mut response = Response::new(Body::from(serde_json::to_vec(&value).unwrap()));
                    *response.status_mut() = StatusCode::from_u16(code).unwrap();
                    response
                }
                Reply::Text(text) => Response::new(Body::from(text.into_bytes())),
                Reply::Watch => futures::future::pending().await,
            };
            state.lock().unwrap().serving += started.elapsed();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
        }
    });
    Client::new(service, "default")
}

async fn answer(state: &Mutex<State>, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let stall = {
        let mut state = state.lock().unwrap();
        let write = matches!(method, "PATCH" | "DELETE" | "POST") && !path.contains("/events");
        if write {
            match &mut state.writes_left {
                Some(0) => return failure(500, "InternalError", "injected failure"),
                Some(left) => *left -= 1,
                None => {}
            }
        }
        state.calls.push(Call { method: method.into(), path: path.into(), body: body.clone() });
        state.stall_pod_patches && content_type.contains("merge-patch") && path.contains("/pods/")
    };
    if stall {
        futures::future::pending::<()>().await;
    }
    state.lock().unwrap().handle(method, path, content_type, body)
}

/// A request's target: `/api/v1/namespaces/demo/pods/web-0/log`.
struct Target {
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    /// Subresource: `status`, `log`, `proxy/…`.
    sub: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (prefix, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
            ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(namespace.to_string()), rest),
            _ => (None, rest),
        };
        let (plural, rest) = rest.split_first()?;
        Some(Self {
            prefix,
            namespace,
            plural: plural.to_string(),
            name: rest.first().map(|n| n.to_string()),
            sub: (rest.len() > 1).then(|| rest[1..].join("/")),
        })
    }

    /// The path of the object (without subresource).
    fn key(&self) -> Option<String> {
        let (namespace, name) = (self.namespace.as_ref()?, self.name.as_ref()?);
        Some(format!("{}/namespaces/{namespace}/{}/{name}", self.prefix, self.plural))
    }

    /// Whether the object at `key` belongs to this collection.
    fn lists(&self, key: &str) -> bool {
        Target::parse(key).is_some_and(|t| {
            t.prefix == self.prefix
                && t.plural == self.plural
                && (self.namespace.is_none() || t.namespace == self.namespace)
        })
    }

    /// An object under test the fake does not hold, as far as the URL tells.
    fn custom_resource(&self) -> Option<Value> {
        let (kind, spec) = match self.plural.as_str() {
            "relayservices" => ("RelayService", json!({"image": "x:1"})),
            "healthpolicies" => ("HealthPolicy", json!({"tcp": {"port": 1}})),
            "testdeployments" => ("TestDeployment", json!({"template": {"image": "x:1"}})),
            _ => return None,
        };
        let api_version = self.prefix.strip_prefix("/apis/").filter(|v| v.starts_with("relayops.io/"))?;
        Some(json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}))
    }
}

fn key_of<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    let name = meta.name.as_deref().expect("a named object");
    format!("{}/{name}", K::url_path(&(), meta.namespace.as_deref()))
}

fn failure(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Json(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}),
    )
}

fn not_found(path: &str) -> Reply {
    failure(404, "NotFound", &format!("{path} not found"))
}

fn success() -> Reply {
    Reply::Json(200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}))
}

/// JSON merge patch (RFC 7386).
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

/// Server-side apply onto `existing`: the applied fields replace the old ones; status,
/// server-set metadata and annotations or labels this apply does not name survive.
fn apply(existing: Option<&Value>, applied: Value) -> Value {
    let Some(old) = existing else { return applied };
    let mut object = applied;
    if object["status"].is_null() && !old["status"].is_null() {
        object["status"] = old["status"].clone();
    }
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        if object["metadata"][field].is_null() && !old["metadata"][field].is_null() {
            object["metadata"][field] = old["metadata"][field].clone();
        }
    }
    for field in ["annotations", "labels"] {
        let mut kept = old["metadata"][field].clone();
        if kept.is_object() {
            merge(&mut kept, &object["metadata"][field]);
            object["metadata"][field] = kept;
        }
    }
    object
}

fn ordinal(key: &str) -> usize {
    key.rsplit('-').next().and_then(|o| o.parse().ok()).unwrap_or(0)
}

impl State {
    fn handle(&mut self, method: &str, path: &str, content_type: &str, body: Value) -> Reply {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let Some(target) = Target::parse(path) else { return not_found(path) };
        if target.sub.as_deref().is_some_and(|s| s.starts_with("proxy")) {
            // The pod proxy: the app echoes what its mounted file says.
            return Reply::Json(200, json!({"configHash": *self.mounted.lock().unwrap()}));
        }
        if method == "GET" && query.contains("watch=true") {
            return Reply::Watch;
        }
        if method == "POST" {
            return self.create(&target, body);
        }
        let Some(key) = target.key() else {
            if method != "GET" {
                return failure(405, "MethodNotAllowed", &format!("{method} {path}"));
            }
            let items: Vec<&Value> =
                self.objects.iter().filter(|(k, _)| target.lists(k)).map(|(_, v)| v).collect();
            return Reply::Json(
                200,
                json!({"kind": "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
            );
        };
        let existing = self.objects.get(&key).cloned();
        let sub = target.sub.as_deref();
        let updated = match (method, sub, existing) {
            ("GET", None, Some(object)) => return Reply::Json(200, object),
            ("GET", Some("log"), Some(_)) => return Reply::Text(LOG.into()),
            ("DELETE", None, Some(_)) => {
                let old = self.objects.remove(&key).unwrap_or_default();
                self.version += 1;
                self.changed(&key, &old);
                return success();
            }
            ("PATCH", None, existing) if content_type.contains("apply-patch") => {
                apply(existing.as_ref(), body)
            }
            ("PATCH", Some("status"), Some(mut object)) if content_type.contains("apply-patch") => {
                object["status"] = body["status"].clone();
                object
            }
            ("PATCH", None, Some(mut object)) if content_type.contains("merge-patch") => {
                merge(&mut object, &body);
                object
            }
            ("PATCH" | "DELETE", None | Some("status"), None) => match target.custom_resource() {
                Some(_) if method == "DELETE" => return success(),
                Some(mut object) => {
                    merge(&mut object, &body);
                    return Reply::Json(200, object);
                }
                None => return not_found(path),
            },
            ("GET", _, _) => return not_found(path),
            _ => return failure(415, "UnsupportedMediaType", &format!("{method} {path} {content_type}")),
        };
        Reply::Json(200, self.write(&key, updated))
    }

    /// POST: create the named object (an Event).
    fn create(&mut self, target: &Target, object: Value) -> Reply {
        let Some(name) = object["metadata"]["name"].as_str() else {
            return failure(422, "Invalid", "metadata.name required");
        };
        let namespace = target.namespace.as_deref().unwrap_or("default");
        let key = format!("{}/namespaces/{namespace}/{}/{name}", target.prefix, target.plural);
        if self.objects.contains_key(&key) {
            return failure(409, "AlreadyExists", &format!("{key} already exists"));
        }
        let mut object = object;
        if object["metadata"]["uid"].is_null() {
            // As the API server: every new object gets a UID (a recreated pod another one).
            object["metadata"]["uid"] = json!(format!("uid-{}", self.version + 1));
        }
        if self.instant && target.plural == "pods" && object["status"].is_null() {
            let ip = pod_ip(ordinal(&key)).to_string();
            object["status"] = serde_json::to_value(PodStatus { pod_ip: Some(ip), ..running(true) }).unwrap();
        }
        Reply::Json(201, self.write(&key, object))
    }

    /// Store `object` at `key`; a new resourceVersion only if it changed.
    fn write(&mut self, key: &str, mut object: Value) -> Value {
        if let Some(old) = self.objects.get(key) {
            object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if *old == object {
                return object;
            }
        }
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        if key.contains("/configmaps/")
            && let Some(hash) = object["data"]["config-hash"].as_str()
        {
            *self.mounted.lock().unwrap() = hash.to_owned();
        }
        self.objects.insert(key.to_owned(), object.clone());
        self.changed(key, &object);
        object
    }

    /// The object at `key` was written or deleted (`object` as it was last).
    fn changed(&mut self, key: &str, object: &Value) {
        if self.instant {
            self.emit(key, object.clone(), !self.objects.contains_key(key));
        } else {
            self.unsynced.insert(key.to_owned(), object.clone());
        }
    }

    /// A kubelet: set the status of the pod at `key`, in the cluster and in the cache.
    fn set_status(&mut self, key: &str, status: &PodStatus) {
        let mut pod = self.objects[key].clone();
        pod["status"] = serde_json::to_value(status).unwrap();
        self.write(key, pod);
        if !self.instant {
            self.deliver(key);
        }
    }

    /// Hand the object at `key` (or its deletion) to its cache now.
    fn deliver(&mut self, key: &str) {
        let last = self.unsynced.remove(key);
        match (self.objects.get(key), last) {
            (Some(object), _) => self.emit(key, object.clone(), false),
            (None, Some(object)) => self.emit(key, object, true),
            (None, None) => {}
        }
    }

    /// A watch event for the cache of the object at `key`.
    fn emit(&mut self, key: &str, object: Value, deleted: bool) {
        let w = &mut self.writers;
        match Target::parse(key).map(|t| t.plural).as_deref() {
            Some("pods") => event(&mut w.pods, object, deleted),
            Some("configmaps") => event(&mut w.config_maps, object, deleted),
            Some("services") => event(&mut w.services, object, deleted),
            Some("persistentvolumeclaims") => event(&mut w.claims, object, deleted),
            Some("ingresses") => event(&mut w.ingresses, object, deleted),
            Some("relayservices") => event(&mut w.relay_services, object, deleted),
            Some("healthpolicies") => event(&mut w.policies, object, deleted),
            Some("secrets") => {
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
                if let Some(writer) = w.secrets.get_mut(namespace) {
                    event(writer, object, deleted);
                }
            }
            Some("testdeployments") => event(&mut w.test_deployments, object, deleted),
            Some("controllerrevisions") => event(&mut w.revisions, object, deleted),
            _ => {}
        }
    }
}

fn event<K>(writer: &mut Writer<K>, object: Value, deleted: bool)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + 'static,
{
    let object: K = serde_json::from_value(object).unwrap();
    let event = if deleted { watcher::Event::Delete(object) } else { watcher::Event::Apply(object) };
    writer.apply_watcher_event(&event);
}
