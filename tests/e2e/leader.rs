//! Leader election between two replicas of the binary: only the leader reconciles, and on
//! SIGTERM it hands the Lease back so the waiting replica takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use super::cluster::{Operator, Scenario, eventually};

const LEASE: &str = "relay-operator";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity
}

/// `(status, body)` of `GET http://{addr}{path}`; status 0 if nothing answers.
async fn get(operator: &Operator, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{}{path}", operator.ops_addr)).await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Whether the replica has counted any reconciliation (the counters exist at 0 from the start).
async fn reconciled(operator: &Operator) -> bool {
    get(operator, "/metrics")
        .await
        .1
        .lines()
        .any(|l| l.starts_with("relay_operator_reconciliations_total{") && l.rsplit(' ').next() != Some("0"))
}

/// The `relay_operator_service_desired_replicas` line of RelayService `ns/name`, if exposed.
async fn desired_replicas(operator: &Operator, ns: &str, name: &str) -> Option<String> {
    let series = format!("relay_operator_service_desired_replicas{{name=\"{name}\",namespace=\"{ns}\"}} ");
    get(operator, "/metrics").await.1.lines().find(|l| l.starts_with(&series)).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_lease_to_the_waiting_replica() {
    let s = Scenario::new("e2e-leader").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    s.apply(&super::standin_service("web", 1, json!({"GREETING": "a"})).to_string());
    let args = ["--leader-election", "--lease-namespace", ns];
    let start = |name: &str| {
        let log = s.dir.join(format!("{name}.log"));
        Operator::start_with_env(&s.operator_kubeconfig, ns, &log, &args, &[("POD_NAME", name)])
    };
    let mut replicas = vec![
        ("relay-operator-a", start("relay-operator-a")),
        ("relay-operator-b", start("relay-operator-b")),
    ];

    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    eventually("one replica holds the Lease", Duration::from_secs(30), || async {
        holder(&leases).await.is_some()
    })
    .await;
    let first = holder(&leases).await.unwrap();
    let index =
        replicas.iter().position(|(name, _)| *name == first).expect("the holder is one of the replicas");
    let (leader_name, mut leader) = replicas.remove(index);
    let (follower_name, mut follower) = replicas.remove(0);
    super::wait_converged(client, ns, "web", Duration::from_secs(60)).await;

    // The follower serves its endpoint but runs no controller: never ready, nothing reconciled.
    eventually("the follower serves /metrics", Duration::from_secs(10), || async {
        get(&follower, "/metrics").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reconciled(&leader).await, "the leader reconciles");
    assert!(get(&leader, "/metrics").await.1.contains("\nrelay_operator_leader 1"));
    assert!(get(&follower, "/metrics").await.1.contains("\nrelay_operator_leader 0"));
    assert_eq!(get(&follower, "/readyz").await.0, 503, "the follower is not ready");
    assert!(!reconciled(&follower).await, "the follower reconciled");
    // Per-object series come from the leader's caches; the follower has none.
    let line = desired_replicas(&leader, ns, "web").await;
    assert!(line.as_deref().is_some_and(|l| l.ends_with(" 1")), "leader: {line:?}");
    assert_eq!(desired_replicas(&follower, ns, "web").await, None, "the follower exposes per-object series");
    assert_eq!(holder(&leases).await.as_deref(), Some(leader_name));

    // SIGTERM the leader and watch the Lease.
    let sent = Instant::now();
    let terminated = tokio::task::spawn_blocking(move || leader.terminate());
    let mut took = None;
    while sent.elapsed() < Duration::from_secs(20) {
        if holder(&leases).await.as_deref() == Some(follower_name) {
            took = Some(sent.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (exit_took, clean) = terminated.await.unwrap();
    let took = took.unwrap_or_else(|| panic!("{follower_name} did not take the Lease over within 20 s"));
    eprintln!(
        "e2e: leader handover after SIGTERM: {:.2} s (old leader exited in {:.2} s)",
        took.as_secs_f64(),
        exit_took.as_secs_f64()
    );
    assert!(clean, "the old leader exits 0");
    assert!(took < Duration::from_secs(2), "handover took {took:?}");

    // The new leader starts its controllers and reconciles.
    follower.wait_ready().await;
    eventually("the new leader reconciles", Duration::from_secs(30), || reconciled(&follower)).await;
    assert!(get(&follower, "/metrics").await.1.contains("\nrelay_operator_leader 1"));

    // A deleted RelayService's series leave the exposition.
    eventually("the new leader exposes web", Duration::from_secs(30), || async {
        desired_replicas(&follower, ns, "web").await.is_some()
    })
    .await;
    let services: Api<relay_operator::api::RelayService> = Api::namespaced(client.clone(), ns);
    services.delete("web", &Default::default()).await.unwrap();
    eventually("web's series are gone", Duration::from_secs(30), || async {
        !get(&follower, "/metrics").await.1.contains("name=\"web\"")
    })
    .await;

    // The last replica, too, hands the Lease back on its way out.
    let (_, clean) = follower.terminate();
    assert!(clean, "the last replica exits 0");
    assert_eq!(holder(&leases).await, None, "the Lease was released");
    s.cleanup().await;
}

/// A leader SIGTERMed in the middle of a reload (slow hooks, calls in flight): it finishes
/// what it started and hands over; the new leader completes the reload without calling any
/// pod twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_in_the_middle_of_a_reload_calls_no_pod_twice() {
    let s = Scenario::new("e2e-leader-reload").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = super::standin_service("web", 3, json!({"GREETING": "a"}));
    manifest["spec"]["env"] = json!([
        {"name": "STANDIN_ECHO_HASH", "value": "false"},
        {"name": "STANDIN_RELOAD_DELAY_MS", "value": "800"}
    ]);
    manifest["spec"]["reload"]["settleDelay"] = json!("1s");
    // One hook in flight at a time: the reload of 3 pods takes ~2.4 s.
    s.apply(&manifest.to_string());
    let args = ["--leader-election", "--lease-namespace", ns, "--hook-concurrency", "1"];
    let start = |name: &str| {
        let log = s.dir.join(format!("{name}.log"));
        Operator::start_with_env(&s.operator_kubeconfig, ns, &log, &args, &[("POD_NAME", name)])
    };
    let mut replicas = vec![("a", start("a")), ("b", start("b"))];
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    eventually("one replica holds the Lease", Duration::from_secs(30), || async {
        holder(&leases).await.is_some()
    })
    .await;
    super::wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let first = holder(&leases).await.unwrap();
    let index = replicas.iter().position(|(name, _)| *name == first).unwrap();
    let (_, mut leader) = replicas.remove(index);
    let (follower_name, _follower) = replicas.remove(0);
    let uids = super::pod_uids(client, ns, "web").await;

    let api: Api<relay_operator::api::RelayService> = Api::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"config": {"data": {"GREETING": "b"}}}});
    api.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch)).await.unwrap();
    // Wait for the first hook call of the change, then stop the leader.
    eventually("a hook call in flight", Duration::from_secs(20), || async {
        s.kubelet.pods().values().any(|p| p.app.config.get("GREETING").map(String::as_str) == Some("b"))
    })
    .await;
    let sent = Instant::now();
    let terminated = tokio::task::spawn_blocking(move || leader.terminate());
    let mut took = None;
    while sent.elapsed() < Duration::from_secs(30) {
        if holder(&leases).await.as_deref() == Some(follower_name) {
            took = Some(sent.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, clean) = terminated.await.unwrap();
    let took = took.expect("the follower takes the Lease over");
    assert!(clean, "the old leader exits 0");
    eventually("every pod runs b", Duration::from_secs(40), || async {
        super::all_run(&s, "web", 3, "GREETING", "b")
    })
    .await;
    super::wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    let hash = super::desired_hash(client, ns, "web").await;
    let calls = s.kubelet.calls_for(&hash);
    eprintln!(
        "e2e: leader SIGTERMed mid-reload: takeover {:.2} s after the signal, hook calls per pod {calls:?}",
        took.as_secs_f64()
    );
    assert!(calls.len() == 3 && calls.values().all(|c| *c == 1), "{calls:?}");
    assert_eq!(super::pod_uids(client, ns, "web").await, uids, "no pod replaced");
    s.cleanup().await;
}
