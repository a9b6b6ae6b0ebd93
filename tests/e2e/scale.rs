//! The scale harness (issue #12): N RelayServices — one pod, a port and a config each, so a
//! ConfigMap, a Service and a Pod — plus N unrelated Secrets in other namespaces, on the real
//! control plane with the kubelet in light mode. It prints, with an `e2e: scale` prefix:
//! seconds from the operator's start to the first reconcile of all N (every status carries
//! the observedGeneration), seconds to converge (all Ready), the operator's RSS after
//! convergence, its API requests while idle, its writes after a restart, and its RSS while
//! the pods of one more service (RELAY_SCALE_RELOAD_PODS of them) go through a reload.
//!
//! Sizes come from the environment, small by default so the suite runs it as a smoke test
//! that asserts behaviour, never timing: `RELAY_SCALE_N` (30), `RELAY_SCALE_RELOAD_PODS`
//! (20), `RELAY_SCALE_IDLE_SECS` (10). `scripts/scale.sh` runs it at 1,000 and 10,000.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use relay_operator::api::RelayService;
use relay_operator::deps::is_ready;
use serde_json::json;

use super::audit::Mark;
use super::cluster::{ControlPlane, Operator, Scenario, create_namespace};
use super::{STANDIN, condition, desired_hash};

const NAMESPACE: &str = "e2e-scale";
/// The service whose pods answer the reload hook.
const FANOUT: &str = "fanout";
/// Objects created at once by the harness.
const CREATES_IN_FLIGHT: usize = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Service `i` of the N: one pod, a port, a config.
fn plain_service(i: usize) -> RelayService {
    serde_json::from_value(json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
        "metadata": {"name": format!("svc-{i}")},
        "spec": {
            "image": STANDIN,
            "replicas": 1,
            "ports": [{"name": "http", "containerPort": 8080}],
            "config": {"data": {"GREETING": format!("hello {i}"), "MODE": "one"}},
        }
    }))
    .unwrap()
}

/// The reload subject: `pods` pods with an echoing hook on port 8080.
fn fanout_service(pods: usize) -> RelayService {
    serde_json::from_value(json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
        "metadata": {"name": FANOUT},
        "spec": {
            "image": STANDIN,
            "replicas": pods,
            "ports": [{"name": "http", "containerPort": 8080}],
            "config": {"data": {"GREETING": "a"}},
            "reload": {"port": 8080},
        }
    }))
    .unwrap()
}

/// An unrelated Secret, about 1 KiB of data.
fn unrelated_secret(i: usize) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": format!("unrelated-{i}")},
        "stringData": {"token": "x".repeat(1024)},
    }))
    .unwrap()
}

/// Resident set of a process in MiB (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Poll `check` every 250 ms until it holds; the time it took. Panics after `limit`.
async fn timed(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    start.elapsed()
}

/// A value of the operator's `/metrics`, 0 while it does not answer.
async fn metric(operator: &Operator, series: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{}/metrics", operator.ops_addr)).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// RelayServices of the namespace as the harness sees them, through its own watch.
fn observe(s: &Scenario) -> Store<RelayService> {
    let (store, writer) = reflector::store();
    let api: Api<RelayService> = Api::namespaced(s.client.clone(), &s.namespace);
    let watch = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    tokio::spawn(watch.for_each(|_| futures::future::ready(())));
    store
}

/// How many of the N services (not the reload subject) satisfy `predicate`.
fn count(store: &Store<RelayService>, predicate: impl Fn(&RelayService) -> bool) -> usize {
    let plain = |svc: &RelayService| svc.metadata.name.as_deref().is_some_and(|n| n.starts_with("svc-"));
    store.state().iter().filter(|svc| plain(svc) && predicate(svc)).count()
}

/// Create `objects` through `api`, a few at a time.
async fn create_all<K>(api: &Api<K>, objects: impl Iterator<Item = K>)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|object| async move { api.create(&PostParams::default(), &object).await.map(|_| ()) })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .try_collect::<()>()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_services_converge_then_idle_and_restart_without_requests() {
    let n = env_or("RELAY_SCALE_N", 30) as usize;
    let reload_pods = env_or("RELAY_SCALE_RELOAD_PODS", 20) as usize;
    let idle = Duration::from_secs(env_or("RELAY_SCALE_IDLE_SECS", 10));
    // Generous: this is no timing test, and the machine is shared.
    let limit = Duration::from_secs(120 + n as u64 / 4);
    let cp = ControlPlane::get();
    let s = Scenario::light(NAMESPACE, FANOUT).await;
    let (client, ns) = (&s.client, s.namespace.as_str());

    // The world before the operator starts: N unrelated Secrets spread over other
    // namespaces, and the N services.
    let prepared = Instant::now();
    let other_namespaces: Vec<String> =
        (0..n.div_ceil(1000).clamp(2, 10)).map(|i| format!("{NAMESPACE}-other-{i}")).collect();
    for (k, other) in other_namespaces.iter().enumerate() {
        create_namespace(client, other).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), other);
        let mine = (0..n).filter(|i| i % other_namespaces.len() == k);
        create_all(&secrets, mine.map(unrelated_secret)).await;
    }
    let services: Api<RelayService> = Api::namespaced(client.clone(), ns);
    create_all(&services, (0..n).map(plain_service)).await;
    eprintln!(
        "e2e: scale N={n}: {n} services and {n} unrelated Secrets in {} namespaces created in {:.1} s",
        other_namespaces.len(),
        prepared.elapsed().as_secs_f64()
    );
    let store = observe(&s);

    // Start: first reconcile of all, then all Ready.
    let started = Instant::now();
    let mut operator = s.operator("operator.log");
    let pid = operator.pid().unwrap();
    let all_observed = |store: &Store<RelayService>| {
        count(store, |svc| svc.status.as_ref().is_some_and(|st| st.observed_generation.is_some())) == n
    };
    timed("every service reconciled once", limit, || all_observed(&store)).await;
    let first = started.elapsed();
    timed("every service Ready", limit, || count(&store, is_ready) == n).await;
    let converged = started.elapsed();
    // Writes still in flight (status, Events) land; then the operator is at rest.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_converged = rss_mib(pid);
    eprintln!(
        "e2e: scale N={n}: first reconcile of all {:.1} s, all Ready {:.1} s, operator RSS {rss_converged:.1} MiB",
        first.as_secs_f64(),
        converged.as_secs_f64()
    );

    // Idle: no request at all but the watches themselves (a watch the server ends after its
    // timeout is renewed: counted apart).
    let mark = Mark::now(&cp.audit_log());
    tokio::time::sleep(idle).await;
    let requests = mark.requests(&s.operator_user);
    let (watches, others): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.verb == "watch");
    let per_minute = others.len() as f64 * 60.0 / idle.as_secs_f64();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &others {
        *kinds.entry(format!("{} {}/{}", r.verb, r.resource, r.subresource)).or_default() += 1;
    }
    eprintln!(
        "e2e: scale N={n}: idle {} s: {} requests ({per_minute:.0}/min) {kinds:?}, {} watch renewals, RSS {:.1} MiB",
        idle.as_secs(),
        others.len(),
        watches.len(),
        rss_mib(pid)
    );
    // Asserted at the end, so that a large run still measures the restart and the reload.
    let idle_requests: Vec<String> = others.iter().map(|r| format!("{r:?}")).collect();

    // Restart: the new process reconciles every service and writes nothing.
    let (stopped_in, clean) = operator.terminate();
    assert!(clean, "exit 0 on SIGTERM");
    let mark = Mark::now(&cp.audit_log());
    let restarted = Instant::now();
    let operator = s.operator("operator.log");
    let pid = operator.pid().unwrap();
    let series = "relay_operator_reconciliations_total{kind=\"RelayService\"}";
    let deadline = Instant::now() + limit;
    while metric(&operator, series).await < n as f64 {
        assert!(Instant::now() < deadline, "the restarted operator reconciles all {n} services");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resynced = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = mark.writes(&s.operator_user);
    let rss_restarted = rss_mib(pid);
    eprintln!(
        "e2e: scale N={n}: restart (stopped in {:.1} s): all reconciled again in {:.1} s with {} writes, RSS {rss_restarted:.1} MiB",
        stopped_in.as_secs_f64(),
        resynced.as_secs_f64(),
        writes.values().sum::<usize>()
    );
    let restart_writes = writes;

    // Reload: one service of `reload_pods` pods gets a new config while RSS is sampled.
    create_all(&services, std::iter::once(fanout_service(reload_pods))).await;
    let in_sync = |store: &Store<RelayService>| {
        store.get(&reflector::ObjectRef::new(FANOUT).within(ns)).is_some_and(|svc| {
            is_ready(&svc) && condition(&svc, "ConfigInSync").is_some_and(|(status, _)| status == "True")
        })
    };
    let ready_in = timed("the fanout service Ready", limit, || in_sync(&store)).await;
    // The first change waits `settleDelay` (the operator does not know yet that the app
    // echoes the hash); the second is the steady state.
    for (round, greeting) in [("first", "b"), ("second", "c")] {
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let before = rss_mib(pid);
        let old_hash = desired_hash(client, ns, FANOUT).await;
        let changed = Instant::now();
        let data = json!({"spec": {"config": {"data": {"GREETING": greeting}}}});
        services.patch(FANOUT, &PatchParams::default(), &Patch::Merge(data)).await.unwrap();
        let mut hash = old_hash.clone();
        let deadline = Instant::now() + limit;
        while hash == old_hash {
            assert!(Instant::now() < deadline, "the operator writes the new config");
            tokio::time::sleep(Duration::from_millis(100)).await;
            hash = desired_hash(client, ns, FANOUT).await;
        }
        let reached = |hash: &str| s.kubelet.calls_for(hash).values().filter(|c| **c > 0).count();
        timed("every fanout pod called with the new hash", limit, || reached(&hash) == reload_pods).await;
        let acknowledged = changed.elapsed();
        timed("the fanout service in sync again", limit, || in_sync(&store)).await;
        let synced = changed.elapsed();
        sampler.abort();
        let calls = s.kubelet.calls_for(&hash);
        let most = calls.values().max().copied().unwrap_or(0);
        eprintln!(
            "e2e: scale N={n}: {round} reload of {reload_pods} pods (Ready after {:.1} s): all called in {:.2} s, in sync in {:.2} s, at most {most} call(s) per pod, RSS {before:.1} MiB before, peak {:.1} MiB",
            ready_in.as_secs_f64(),
            acknowledged.as_secs_f64(),
            synced.as_secs_f64(),
            peak.load(Ordering::Relaxed) as f64 / 1024.0
        );
        assert_eq!(calls.len(), reload_pods, "every pod's hook was called: {calls:?}");
    }

    assert!(idle_requests.is_empty(), "an idle operator makes no request: {idle_requests:?}");
    assert!(restart_writes.is_empty(), "a restart over a converged world writes nothing: {restart_writes:?}");

    drop(operator);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for other in &other_namespaces {
        let _ = namespaces.delete(other, &DeleteParams::default()).await;
    }
    s.cleanup().await;
}
