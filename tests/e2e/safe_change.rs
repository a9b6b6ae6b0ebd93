//! Safe change on the real control plane: `reload.debounce` turns a burst of edits into one
//! reload per pod, and `--max-concurrent-restarts` caps the pods restarting at once while
//! many services roll together.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use relay_operator::api::RelayService;
use serde_json::json;

use super::cluster::{Operator, Scenario, eventually};
use super::{
    all_run, condition, desired_hash, get_service, patch_config, pod_uids, standin_service, wait_converged,
};

/// The ConfigInSync reason of `name` now, if any.
async fn config_reason(client: &Client, ns: &str, name: &str) -> Option<String> {
    get_service(client, ns, name).await.and_then(|s| condition(&s, "ConfigInSync")).map(|(_, reason)| reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_edits_inside_the_debounce_window_is_one_reload_per_pod() {
    let s = Scenario::new("e2e-debounce").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = standin_service("web", 2, json!({"GREETING": "a"}));
    manifest["spec"]["reload"]["debounce"] = json!("2s");
    s.apply(&manifest.to_string());
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let pods = pod_uids(client, ns, "web").await;
    let calls_before = s.kubelet.total_reload_calls();

    // Three edits 300 ms apart: A, B, C.
    let mut debouncing_seen = false;
    for value in ["A", "B", "C"] {
        patch_config(client, ns, "web", json!({"GREETING": value})).await;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            debouncing_seen |= config_reason(client, ns, "web").await.as_deref() == Some("Debouncing");
        }
    }
    let last_edit = Instant::now();
    eventually("both processes run GREETING=C", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "C")
    })
    .await;
    let reached = last_edit.elapsed();
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    let hash_c = desired_hash(client, ns, "web").await;
    let per_pod = s.kubelet.calls_for(&hash_c);
    let calls = s.kubelet.total_reload_calls() - calls_before;
    eprintln!(
        "e2e: debounce 2s, burst A->B->C in 600 ms: C in every process {:.2} s after the last edit; hook calls {calls} ({per_pod:?})",
        reached.as_secs_f64()
    );
    assert!(debouncing_seen, "status said ConfigInSync=False/Debouncing during the burst");
    assert_eq!(per_pod, BTreeMap::from([("web-0".into(), 1), ("web-1".into(), 1)]), "C once per pod");
    assert_eq!(calls, 2, "A and B never reached a pod");
    assert_eq!(pod_uids(client, ns, "web").await, pods, "no pod replaced");
    s.cleanup().await;
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the pod watch saw: the most pods restarting at once, the most running pods that
/// were not Ready at once for another reason (a readiness probe timing out on the loaded
/// machine), and the number of events.
#[derive(Clone, Copy, Debug, Default)]
struct Observed {
    most_restarting: usize,
    most_flapping: usize,
    events: usize,
}

/// The pods of `services` (each `replicas`) as a restart sees them, in one consistent view:
/// `(restarting, flapping)`. A pod is restarting while it is deleted (terminating or gone) or
/// its replacement has not been Ready yet (its UID is not `settled`); a settled pod that is
/// not Ready is flapping, not restarting.
fn restarting(
    pods: &BTreeMap<String, Pod>,
    settled: &BTreeSet<String>,
    services: &[String],
    replicas: usize,
) -> (usize, usize) {
    let mut counts = (0, 0);
    for name in services.iter().flat_map(|name| (0..replicas).map(move |i| format!("{name}-{i}"))) {
        match pods.get(&name) {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                let uid = pod.uid().unwrap_or_default();
                if !settled.contains(&uid) {
                    counts.0 += 1;
                } else if !is_ready(pod) {
                    counts.1 += 1;
                }
            }
            _ => counts.0 += 1,
        }
    }
    counts
}

/// Watch the namespace's pods and record, after every event, how many are restarting: each
/// event moves the view from one resourceVersion to the next, so no moment is missed. The
/// pods present when the watch starts are settled.
async fn watch_restarting(
    client: &Client,
    ns: &str,
    services: Vec<String>,
    replicas: usize,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Observed>>) {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let record = observed.clone();
    let task = tokio::spawn(async move {
        let mut synced = Some(synced_tx);
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut settled: BTreeSet<String> = BTreeSet::new();
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => pods.clear(),
                Ok(watcher::Event::InitApply(pod)) => {
                    settled.insert(pod.uid().unwrap_or_default());
                    pods.insert(pod.name_any(), pod);
                }
                Ok(watcher::Event::Apply(pod)) => {
                    if is_ready(&pod) {
                        settled.insert(pod.uid().unwrap_or_default());
                    }
                    pods.insert(pod.name_any(), pod);
                }
                Ok(watcher::Event::Delete(pod)) => {
                    pods.remove(&pod.name_any());
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                Err(_) => continue,
            }
            if synced.is_none() {
                let (now, flapping) = restarting(&pods, &settled, &services, replicas);
                let mut seen = record.lock().unwrap();
                seen.most_restarting = seen.most_restarting.max(now);
                seen.most_flapping = seen.most_flapping.max(flapping);
                seen.events += 1;
            }
        }
    });
    let _ = synced_rx.await;
    (task, observed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_budget_holds_while_many_services_roll_at_once() {
    const BUDGET: usize = 3;
    let count: usize =
        std::env::var("RELAY_E2E_BUDGET_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let replicas = 2;
    let s = Scenario::new("e2e-budget").await;
    let budget = BUDGET.to_string();
    let operator = Operator::start(
        &s.operator_kubeconfig,
        &s.namespace,
        &s.dir.join("operator.log"),
        &["--max-concurrent-restarts", &budget],
    );
    let (client, ns) = (&s.client, s.namespace.as_str());
    let names: Vec<String> = (0..count).map(|i| format!("svc{i:02}")).collect();
    let items: Vec<_> =
        names.iter().map(|n| standin_service(n, replicas as i32, json!({"GREETING": "a"}))).collect();
    let started = Instant::now();
    s.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
    for name in &names {
        wait_converged(client, ns, name, Duration::from_secs(300)).await;
    }
    eprintln!("e2e: {count} services x {replicas} pods Ready in {:.1} s", started.elapsed().as_secs_f64());
    let before: BTreeSet<String> =
        pod_list(client, ns).await.unwrap_or_default().iter().filter_map(|p| p.uid()).collect();
    assert_eq!(before.len(), count * replicas);

    // Every service changes its restart key at once: every pod must be replaced.
    let (watch, watched) = watch_restarting(client, ns, names.clone(), replicas).await;
    assert_eq!(watched.lock().unwrap().most_restarting, 0, "all pods up before the change");
    let started = Instant::now();
    for name in &names {
        patch_config(client, ns, name, json!({"MODE": "two"})).await;
    }
    let services: Api<RelayService> = Api::namespaced(client.clone(), ns);
    let mut queued_seen = 0;
    let limit = Duration::from_secs(600);
    loop {
        let seen = *watched.lock().unwrap();
        assert!(seen.most_restarting <= BUDGET, "budget {BUDGET} exceeded: {seen:?}");
        assert!(started.elapsed() < limit, "not all replaced after {limit:?}: {seen:?}");
        let list = services.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        queued_seen = queued_seen.max(
            list.iter()
                .filter(|s| super::condition(s, "Progressing").is_some_and(|(_, r)| r == "RestartQueued"))
                .count(),
        );
        let Some(pods) = pod_list(client, ns).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let replaced = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .filter(|p| p.uid().is_some_and(|u| !before.contains(&u)))
            .count();
        if replaced == count * replicas {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled = started.elapsed();
    watch.abort();
    let seen = *watched.lock().unwrap();
    for name in &names {
        wait_converged(client, ns, name, Duration::from_secs(120)).await;
        // The kubelet stops a replaced process shortly after its pod object is gone.
        eventually(&format!("{name}'s processes run MODE=two"), Duration::from_secs(90), || async {
            all_run(&s, name, replicas, "MODE", "two")
        })
        .await;
    }
    // Every slot is given back and nothing waits.
    let url = format!("http://{}/metrics", operator.ops_addr);
    eventually("relay_operator_pod_restarts back to 0", Duration::from_secs(30), || async {
        let text = match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return false,
        };
        ["in_flight", "queued"].iter().all(|state| {
            text.lines().any(|l| l == format!("relay_operator_pod_restarts{{state=\"{state}\"}} 0"))
        })
    })
    .await;
    eprintln!(
        "e2e: budget {BUDGET}: {count} services x {replicas} pods replaced in {:.1} s; most restarting at once {} over {} pod watch events (most Ready pods flapping unready at once: {}); most services queued at once {queued_seen}",
        rolled.as_secs_f64(),
        seen.most_restarting,
        seen.events,
        seen.most_flapping
    );
    assert!(seen.most_restarting <= BUDGET, "budget {BUDGET} exceeded: {seen:?}");
    assert_eq!(seen.most_restarting, BUDGET, "the budget was used");
    assert!(queued_seen > 0, "queued restarts were visible in status");
    s.cleanup().await;
}

/// The namespace's pods in one consistent list; `None` when the API server did not answer
/// (it is busy: the poll is skipped).
async fn pod_list(client: &Client, ns: &str) -> Option<Vec<Pod>> {
    Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await.ok().map(|l| l.items)
}
