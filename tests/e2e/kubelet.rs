//! The missing kubelet: watches the pods of one namespace on the real API server and plays
//! the node for them.
//!
//! Per pod, like a kubelet's pod worker: bind it to the test node, give it a loopback IP,
//! materialise its ConfigMap/Secret volumes as directories swapped atomically through a
//! `..data` symlink (refreshed every `sync_period` and at once when the pod's annotations
//! change), run a [`standin::App`] on its ports, probe its readinessProbe and write pod status
//! (phase, podIP, container state, restart count, Ready). Images named to fail behave as a
//! real node would report them: `…pull-error…` → `ErrImagePull`/`ImagePullBackOff`,
//! `…crash…` → `CrashLoopBackOff` with a growing restart count and a log per instance
//! (served by [`node_logs`] for `kubectl logs [--previous]`). A pod being deleted is
//! stopped and then removed with grace period 0, as the kubelet confirms a deletion.
//!
//! [`Kubelet::start_light`] plays a node for thousands of pods instead (the scale harness):
//! no worker, volume or app per pod — one status write per pod (Running, Ready, a loopback
//! IP) and, for the pods of one chosen service, an in-process hook server on the pod IP that
//! answers 200 echoing the hash it was sent.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Probe, Secret, Volume};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::cluster::ControlPlane;
use super::node_logs;
use super::standin::{App, AppState};

/// The node every pod is bound to.
pub const NODE: &str = "e2e-node";

/// Loopback addresses handed out to pods, unique across the whole test process.
static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// `127.P.x.y`, with `P` from the process id, so two suites running on one machine do not
/// hand out the same addresses.
fn next_ip() -> Ipv4Addr {
    let n = NEXT_IP.fetch_add(1, Ordering::SeqCst);
    let process = 1 + (std::process::id() % 250) as u8;
    Ipv4Addr::new(127, process, ((n / 250) % 250) as u8, (n % 250 + 1) as u8)
}

/// A running pod as the tests see it.
#[derive(Clone, Debug)]
pub struct RunningPod {
    /// What its app runs now.
    pub app: AppState,
}

#[derive(Default)]
struct Registry {
    /// Running apps by pod name.
    apps: HashMap<String, (String, Ipv4Addr, Arc<App>)>,
    /// Every reload call any incarnation of a pod received, kept after the pod is gone.
    history: Vec<(String, String, AppState)>,
}

/// A kubelet for one namespace; dropping it stops every pod it runs.
pub struct Kubelet {
    registry: Arc<Mutex<Registry>>,
    /// Hook calls the light mode's servers received: (pod name, hash sent).
    light_calls: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Start serving the pods of `namespace`; volumes live under `root`.
    pub async fn start(client: Client, namespace: &str, root: PathBuf, sync_period: Duration) -> Self {
        register_node(&client).await;
        let registry = Arc::new(Mutex::new(Registry::default()));
        let config =
            Config { client, namespace: namespace.to_owned(), root, sync_period, registry: registry.clone() };
        let task = tokio::spawn(run(Arc::new(config)));
        Self { registry, light_calls: Arc::default(), task }
    }

    /// Serve the pods of `namespace` in light mode: each pod gets a loopback IP and one status
    /// write (Running and Ready); the pods of `hook_service` (label `relayops.io/service`) also
    /// get a hook server on their first container port.
    pub async fn start_light(client: Client, namespace: &str, hook_service: Option<String>) -> Self {
        register_node(&client).await;
        let light_calls = Arc::new(Mutex::new(Vec::new()));
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let task = tokio::spawn(run_light(pods, hook_service, light_calls.clone()));
        Self { registry: Arc::default(), light_calls, task }
    }

    /// The pods running now, by name.
    pub fn pods(&self) -> BTreeMap<String, RunningPod> {
        let registry = self.registry.lock().unwrap();
        registry
            .apps
            .iter()
            .map(|(name, (_, _, app))| (name.clone(), RunningPod { app: app.state() }))
            .collect()
    }

    /// Reload calls carrying `hash` per pod name, over every incarnation (running or gone).
    pub fn calls_for(&self, hash: &str) -> BTreeMap<String, usize> {
        let registry = self.registry.lock().unwrap();
        let mut calls = BTreeMap::new();
        for (name, _, state) in &registry.history {
            *calls.entry(name.clone()).or_default() += state.calls_for(hash);
        }
        for (name, (_, _, app)) in &registry.apps {
            *calls.entry(name.clone()).or_default() += app.state().calls_for(hash);
        }
        for (name, sent) in self.light_calls.lock().unwrap().iter() {
            *calls.entry(name.clone()).or_default() += usize::from(sent == hash);
        }
        calls
    }

    /// All reload calls received so far, running pods and gone ones together.
    pub fn total_reload_calls(&self) -> usize {
        let registry = self.registry.lock().unwrap();
        registry.history.iter().map(|(_, _, s)| s.reloads.len()).sum::<usize>()
            + registry.apps.values().map(|(_, _, app)| app.state().reloads.len()).sum::<usize>()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        self.registry.lock().unwrap().apps.clear();
    }
}

/// Register the test node (once per control plane) and where its kubelet serves `pods/log`.
async fn register_node(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap();
    // Another test's kubelet may have registered it already.
    let _ = nodes.create(&PostParams::default(), &node).await;
    // Where the API server finds this node's kubelet for `pods/log`.
    let port = node_logs::port(&ControlPlane::get().dir);
    let status = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    nodes
        .patch_status(NODE, &PatchParams::apply("e2e-kubelet").force(), &Patch::Apply(status))
        .await
        .unwrap();
}

struct Config {
    client: Client,
    namespace: String,
    root: PathBuf,
    sync_period: Duration,
    registry: Arc<Mutex<Registry>>,
}

/// The watch loop: one worker per pod UID, fed the newest pod object.
async fn run(config: Arc<Config>) {
    let pods: Api<Pod> = Api::namespaced(config.client.clone(), &config.namespace);
    let mut workers: HashMap<String, watch::Sender<Pod>> = HashMap::new();
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let pods = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => vec![pod],
            Ok(watcher::Event::Delete(pod)) => {
                workers.remove(&pod.uid().unwrap_or_default());
                continue;
            }
            _ => continue,
        };
        for pod in pods {
            let uid = pod.uid().unwrap_or_default();
            workers.retain(|_, w| !w.is_closed());
            match workers.get(&uid) {
                Some(worker) => {
                    let _ = worker.send(pod);
                }
                None => {
                    let (tx, rx) = watch::channel(pod);
                    workers.insert(uid, tx);
                    tokio::spawn(pod_worker(config.clone(), rx));
                }
            }
        }
    }
}

/// How the "image" behaves.
enum Image {
    Runs,
    PullError,
    Crashes,
}

fn image_behaviour(image: &str) -> Image {
    if image.contains("pull-error") {
        Image::PullError
    } else if image.contains("crash") {
        Image::Crashes
    } else {
        Image::Runs
    }
}

/// One pod from binding to deletion.
async fn pod_worker(config: Arc<Config>, mut updates: watch::Receiver<Pod>) {
    let pod = updates.borrow_and_update().clone();
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(config.client.clone(), &config.namespace);
    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "uid": uid}, "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
        let request = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", config.namespace));
        if let Ok(req) = request.create_subresource(
            "binding",
            &name,
            &PostParams::default(),
            serde_json::to_vec(&binding).unwrap(),
        ) {
            let _ = config.client.request::<Value>(req).await;
        }
    }
    let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.first()).cloned() else { return };
    let image = container.image.clone().unwrap_or_default();
    let ip = next_ip();
    let started = Timestamp::now();
    let pod_dir = config.root.join(&uid);
    let mut writer = StatusWriter { api: api.clone(), name: name.clone(), last: Value::Null };
    let log = |line: &str| node_logs::write(&config.namespace, &name, &container.name, line);
    log(&format!("standin: starting {image} on {ip}"));

    let mut app: Option<Arc<App>> = None;
    let mut restarts = 0;
    let mut ready = false;
    let mut failures = 0;
    let mut successes = 0;
    let mut annotations = pod.annotations().clone();
    let probe = container.readiness_probe.clone();
    let first_probe = tokio::time::Instant::now()
        + Duration::from_secs(probe.as_ref().and_then(|p| p.initial_delay_seconds).unwrap_or(0).max(0) as u64);
    let period =
        Duration::from_secs(probe.as_ref().and_then(|p| p.period_seconds).unwrap_or(10).max(1) as u64);
    let mut probe_at = first_probe;
    let mut sync_at = tokio::time::Instant::now() + config.sync_period;

    match image_behaviour(&image) {
        Image::PullError => {
            writer
                .write(waiting(
                    &pod,
                    ip,
                    started,
                    "ErrImagePull",
                    &format!("failed to pull image \"{image}\": not found"),
                    0,
                ))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            writer
                .write(waiting(
                    &pod,
                    ip,
                    started,
                    "ImagePullBackOff",
                    &format!("Back-off pulling image \"{image}\""),
                    0,
                ))
                .await;
        }
        Image::Crashes => {}
        Image::Runs => {
            let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
            materialise(&config, &volumes, &pod_dir).await;
            let config_dir = config_volume(&volumes).map(|v| pod_dir.join("volumes").join(v));
            let ports = listen_ports(&container);
            let echo = env_value(&container, "STANDIN_ECHO_HASH").as_deref() != Some("false");
            let delay =
                env_value(&container, "STANDIN_RELOAD_DELAY_MS").and_then(|v| v.parse().ok()).unwrap_or(0);
            let delay = Duration::from_millis(delay);
            match App::start(IpAddr::V4(ip), &ports, config_dir, echo, delay).await {
                Ok(started_app) => {
                    let started_app = Arc::new(started_app);
                    config
                        .registry
                        .lock()
                        .unwrap()
                        .apps
                        .insert(name.clone(), (uid.clone(), ip, started_app.clone()));
                    app = Some(started_app);
                }
                Err(e) => eprintln!("kubelet: pod {name}: cannot listen on {ip}: {e}"),
            }
            ready = probe.is_none() && app.is_some();
            writer.write(running(&pod, ip, started, ready, 0)).await;
        }
    }

    let mut crash_at = tokio::time::Instant::now();
    loop {
        let next_crash = matches!(image_behaviour(&image), Image::Crashes).then_some(crash_at);
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    break; // the pod is gone from the API server
                }
                let pod = updates.borrow_and_update().clone();
                if pod.metadata.deletion_timestamp.is_some() {
                    break;
                }
                if pod.annotations() != &annotations {
                    annotations = pod.annotations().clone();
                    // A pod update makes the kubelet sync the pod, remounting its volumes.
                    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
                    materialise(&config, &volumes, &pod_dir).await;
                }
            }
            () = tokio::time::sleep_until(sync_at) => {
                sync_at += config.sync_period;
                let pod = updates.borrow().clone();
                let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
                materialise(&config, &volumes, &pod_dir).await;
            }
            () = tokio::time::sleep_until(probe_at), if app.is_some() && probe.is_some() => {
                probe_at += period;
                let ok = run_probe(probe.as_ref().unwrap(), &container, ip).await;
                let probe = probe.as_ref().unwrap();
                if ok { successes += 1; failures = 0 } else { failures += 1; successes = 0 }
                let now_ready = if ok {
                    successes >= probe.success_threshold.unwrap_or(1)
                } else {
                    ready && failures < probe.failure_threshold.unwrap_or(3)
                };
                if now_ready != ready {
                    ready = now_ready;
                    let pod = updates.borrow().clone();
                    writer.write(running(&pod, ip, started, ready, 0)).await;
                }
            }
            () = tokio::time::sleep_until(next_crash.unwrap_or_else(tokio::time::Instant::now)), if next_crash.is_some() => {
                restarts += 1;
                log(&format!("panic: {image} exits on purpose (exit code 1, restart {restarts})"));
                node_logs::restart(&config.namespace, &name, &container.name);
                log(&format!("standin: starting {image} on {ip}"));
                let message = "back-off restarting failed container app";
                let pod = updates.borrow().clone();
                writer.write(crash_loop(&pod, ip, started, message, restarts)).await;
                crash_at = tokio::time::Instant::now() + Duration::from_secs(2);
            }
        }
    }

    // Stop the app, keep what it received, confirm the deletion.
    {
        let mut registry = config.registry.lock().unwrap();
        // Only this pod's own entry: the pod that replaces it under the same name may have
        // registered already.
        if registry.apps.get(&name).is_some_and(|(u, _, _)| u == &uid)
            && let Some((_, _, app)) = registry.apps.remove(&name)
        {
            registry.history.push((name.clone(), uid.clone(), app.state()));
        }
    }
    drop(app);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    let _ = api.delete(&name, &params).await;
    let _ = std::fs::remove_dir_all(&pod_dir);
}

/// Writes pod status through the status subresource, only when it changed.
struct StatusWriter {
    api: Api<Pod>,
    name: String,
    last: Value,
}

impl StatusWriter {
    async fn write(&mut self, status: Value) {
        if status == self.last {
            return;
        }
        let patch = json!({"status": status});
        match self.api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => self.last = status,
            Err(e) => eprintln!("kubelet: status of {}: {e}", self.name),
        }
    }
}

fn condition(type_: &str, status: bool) -> Value {
    json!({"type": type_, "status": if status { "True" } else { "False" }, "lastTransitionTime": Timestamp::now().to_string()})
}

fn base_status(pod: &Pod, ip: Ipv4Addr, started: Timestamp, phase: &str, ready: bool) -> Value {
    json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "startTime": started.to_string(),
        "conditions": [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "observedGeneration": pod.metadata.generation,
    })
}

fn container_status(pod: &Pod, ready: bool, restarts: i32, state: Value, last: Value) -> Value {
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    json!([{
        "name": "app",
        "image": image,
        "imageID": if state.get("running").is_some() { format!("e2e.invalid/{image}@sha256:{:064x}", image.len()) } else { String::new() },
        "containerID": format!("e2e://{}", pod.uid().unwrap_or_default()),
        "ready": ready,
        "started": state.get("running").is_some(),
        "restartCount": restarts,
        "state": state,
        "lastState": last,
    }])
}

fn running(pod: &Pod, ip: Ipv4Addr, started: Timestamp, ready: bool, restarts: i32) -> Value {
    let mut status = base_status(pod, ip, started, "Running", ready);
    status["containerStatuses"] = container_status(
        pod,
        ready,
        restarts,
        json!({"running": {"startedAt": started.to_string()}}),
        json!({}),
    );
    status
}

fn waiting(pod: &Pod, ip: Ipv4Addr, started: Timestamp, reason: &str, message: &str, restarts: i32) -> Value {
    let mut status = base_status(pod, ip, started, "Pending", false);
    status["containerStatuses"] = container_status(
        pod,
        false,
        restarts,
        json!({"waiting": {"reason": reason, "message": message}}),
        json!({}),
    );
    status
}

fn crash_loop(pod: &Pod, ip: Ipv4Addr, started: Timestamp, message: &str, restarts: i32) -> Value {
    let mut status = base_status(pod, ip, started, "Running", false);
    let now = Timestamp::now().to_string();
    status["containerStatuses"] = container_status(
        pod,
        false,
        restarts,
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}),
        json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}}),
    );
    status
}

/// Ports the app listens on: the container ports, plus the probe ports.
fn listen_ports(container: &Container) -> Vec<u16> {
    let mut ports: Vec<u16> = container.ports.iter().flatten().map(|p| p.container_port as u16).collect();
    for probe in [&container.readiness_probe, &container.liveness_probe, &container.startup_probe]
        .into_iter()
        .flatten()
    {
        let port = probe.http_get.as_ref().map(|h| &h.port).or(probe.tcp_socket.as_ref().map(|t| &t.port));
        if let Some(port) = port.and_then(|p| resolve_port(p, container)) {
            ports.push(port);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn resolve_port(
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    container: &Container,
) -> Option<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
}

/// One probe: HTTP 200–399, a TCP connect, or (no process to exec in) success.
async fn run_probe(probe: &Probe, container: &Container, ip: Ipv4Addr) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let Some(port) = resolve_port(&http.port, container) else { return false };
        let url = format!("http://{ip}:{port}{}", http.path.as_deref().unwrap_or("/"));
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        return client.get(url).send().await.is_ok_and(|r| r.status().as_u16() < 400);
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, container) else { return false };
        let connect = tokio::net::TcpStream::connect((ip, port));
        return tokio::time::timeout(timeout, connect).await.is_ok_and(|c| c.is_ok());
    }
    true
}

/// The volume that carries a ConfigMap (the operator's config volume), if any.
fn config_volume(volumes: &[Volume]) -> Option<String> {
    volumes
        .iter()
        .find(|v| {
            v.config_map.is_some()
                || v.projected
                    .as_ref()
                    .is_some_and(|p| p.sources.iter().flatten().any(|s| s.config_map.is_some()))
        })
        .map(|v| v.name.clone())
}

/// Write every ConfigMap/Secret volume of the pod the way the kubelet's atomic writer does:
/// a new timestamped directory, then `..data` swapped to it in one rename.
async fn materialise(config: &Config, volumes: &[Volume], pod_dir: &Path) {
    for volume in volumes {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut sources = Vec::new();
        if let Some(cm) = &volume.config_map {
            sources.push((Some((cm.name.clone(), cm.items.clone())), None));
        }
        if let Some(secret) = &volume.secret {
            sources
                .push((None, Some((secret.secret_name.clone().unwrap_or_default(), secret.items.clone()))));
        }
        for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                sources.push((Some((cm.name.clone(), cm.items.clone())), None));
            }
            if let Some(secret) = &source.secret {
                sources.push((None, Some((secret.name.clone(), secret.items.clone()))));
            }
        }
        if sources.is_empty() {
            continue;
        }
        for (cm, secret) in sources {
            let (data, items) = if let Some((name, items)) = cm {
                let api: Api<ConfigMap> = Api::namespaced(config.client.clone(), &config.namespace);
                let Ok(Some(cm)) = api.get_opt(&name).await else { continue };
                let data: BTreeMap<String, Vec<u8>> =
                    cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                (data, items)
            } else if let Some((name, items)) = secret {
                let api: Api<Secret> = Api::namespaced(config.client.clone(), &config.namespace);
                let Ok(Some(secret)) = api.get_opt(&name).await else { continue };
                let data: BTreeMap<String, Vec<u8>> =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                (data, items)
            } else {
                continue;
            };
            match items {
                Some(items) => {
                    for item in items {
                        if let Some(value) = data.get(&item.key) {
                            files.insert(item.path.clone(), value.clone());
                        }
                    }
                }
                None => files.extend(data),
            }
        }
        if let Err(e) = write_atomically(&pod_dir.join("volumes").join(&volume.name), &files) {
            eprintln!("kubelet: volume {}: {e}", volume.name);
        }
    }
}

fn write_atomically(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = format!("..{}", Timestamp::now().as_nanosecond());
    let target = dir.join(&stamp);
    for (path, content) in files {
        let file = target.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, content)?;
    }
    std::fs::create_dir_all(&target)?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp, dir.join("..data"))?;
    for top in files.keys().filter_map(|p| p.split('/').next()).collect::<std::collections::BTreeSet<_>>() {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| o != Path::new(&stamp)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Status writes of the light mode in flight at once.
const LIGHT_WRITES: usize = 32;

/// A pod the light mode serves: its hook server, if it has one.
struct LightPod {
    hook: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for LightPod {
    fn drop(&mut self) {
        if let Some(hook) = &self.hook {
            hook.abort();
        }
    }
}

/// The light mode's watch loop: one status write per new pod, the deletion confirmed at once.
async fn run_light(pods: Api<Pod>, hook_service: Option<String>, calls: Arc<Mutex<Vec<(String, String)>>>) {
    let writes = Arc::new(tokio::sync::Semaphore::new(LIGHT_WRITES));
    let mut served: HashMap<String, LightPod> = HashMap::new();
    let mut events = std::pin::pin!(watcher(pods.clone(), watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                served.remove(&pod.uid().unwrap_or_default());
                continue;
            }
            _ => continue,
        };
        let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            if served.remove(&uid).is_some() {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                    ..Default::default()
                };
                let (pods, writes) = (pods.clone(), writes.clone());
                tokio::spawn(async move {
                    let _permit = writes.acquire().await;
                    let _ = pods.delete(&name, &params).await;
                });
            }
            continue;
        }
        if served.contains_key(&uid) {
            continue;
        }
        let ip = next_ip();
        let hooked =
            hook_service.is_some() && pod.labels().get("relayops.io/service") == hook_service.as_ref();
        let port = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref()?.first())
            .map(|p| p.container_port as u16);
        let hook = match port.filter(|_| hooked) {
            Some(port) => match tokio::net::TcpListener::bind((ip, port)).await {
                Ok(listener) => Some(tokio::spawn(serve_echo_hook(listener, name.clone(), calls.clone()))),
                Err(e) => {
                    eprintln!("kubelet: pod {name}: cannot listen on {ip}:{port}: {e}");
                    None
                }
            },
            None => None,
        };
        served.insert(uid, LightPod { hook });
        let (pods, writes) = (pods.clone(), writes.clone());
        tokio::spawn(async move {
            let _permit = writes.acquire().await;
            let status = json!({"status": running(&pod, ip, Timestamp::now(), true, 0)});
            if let Err(e) = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
                eprintln!("kubelet: status of {name}: {e}");
            }
        });
    }
}

/// A reload hook that answers every request 200 with the hash it was sent
/// (`X-Config-Hash`), recording (pod, hash).
async fn serve_echo_hook(
    listener: tokio::net::TcpListener,
    pod: String,
    calls: Arc<Mutex<Vec<(String, String)>>>,
) {
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let hash = headers.get("x-config-hash").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        calls.lock().unwrap().push((pod.clone(), hash.clone()));
        let body = json!({"status": "success", "configHash": hash}).to_string();
        async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
    });
    let _ = axum::serve(listener, router).await;
}
