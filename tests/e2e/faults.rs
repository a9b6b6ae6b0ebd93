//! Faults the operator must survive on a real API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::cluster::{ControlPlane, Operator, Scenario, eventually, kubectl};
use super::{all_run, desired_hash, pod_uids, standin_service, wait_converged};

/// Version skew: a RelayService stored under a looser CRD than the operator's types. The
/// operator skips it with a Warning Event on it and reconciles every other service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_object_is_reported_and_the_rest_keep_working() {
    let s = Scenario::new("e2e-poison").await;
    let cp = ControlPlane::get();
    // A newer CRD (as after an upgrade the operator has not followed) admits a string for
    // `suspend`, which the operator reads as a bool.
    let loosen = json!([{"op": "replace",
        "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/suspend",
        "value": {"x-kubernetes-int-or-string": true}}]);
    kubectl(
        &cp.kubeconfig,
        &["patch", "crd", "relayservices.relayops.io", "--type=json", "-p", &loosen.to_string()],
        None,
    )
    .success();
    let bad = json!({"apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
        "metadata": {"name": "skewed"}, "spec": {"image": "e2e.invalid/standin:1.0.0", "suspend": "later"}});
    let applied = kubectl(&cp.kubeconfig, &["apply", "-n", &s.namespace, "-f", "-"], Some(&bad.to_string()));
    // Back to the operator's own CRD whatever happened (other scenarios share it).
    kubectl(
        &cp.kubeconfig,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e",
            "-f",
            "crds/relayservices.relayops.io.yaml",
        ],
        None,
    )
    .success();
    assert!(applied.ok, "the looser CRD stores the object: {}", applied.stderr);

    s.apply(&standin_service("fine", 1, json!({"GREETING": "a"})).to_string());
    let operator = s.operator("operator.log");
    operator.wait_ready().await;
    wait_converged(&s.client, &s.namespace, "fine", Duration::from_secs(60)).await;

    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.namespace);
    eventually("a Warning Event on the unreadable object", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("UnreadableObject")
                && e.involved_object.name.as_deref() == Some("skewed")
        })
    })
    .await;
    let metrics =
        reqwest::get(format!("http://{}/metrics", operator.ops_addr)).await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("relay_operator_unreadable_objects_total{kind=\"RelayService\"}"));
    eprintln!("e2e: unreadable object: {}", line.unwrap_or("(no metric)"));
    assert!(line.is_some_and(|l| !l.ends_with(" 0")), "counted: {line:?}");
    s.cleanup().await;
}

/// SIGKILL at random points of reloads (before the ConfigMap write, inside the settle delay,
/// between the hook call and its record): after each restart every pod runs the change and
/// was called exactly once for it. The app does not echo the hash in its hook answer but
/// reports it on `/health`, which is how a restarted operator tells a call its predecessor
/// made from one it did not. `RELAY_E2E_KILL_POINTS` sets the count (default 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_of_reloads_calls_each_pod_once_per_change() {
    let points: u64 = std::env::var("RELAY_E2E_KILL_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let s = Scenario::new("e2e-kill").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = standin_service("web", 2, json!({"GREETING": "v0"}));
    // A slow hook (it reloads at once, answers after 600 ms): many kill points fall between
    // a call and its record.
    manifest["spec"]["env"] = json!([
        {"name": "STANDIN_ECHO_HASH", "value": "false"},
        {"name": "STANDIN_RELOAD_DELAY_MS", "value": "600"}
    ]);
    manifest["spec"]["reload"]["settleDelay"] = json!("1s");
    s.apply(&manifest.to_string());
    let mut operator = s.operator("operator.log");
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let uids = pod_uids(client, ns, "web").await;
    // xorshift, seeded from the clock; the seed is printed so a failure can be replayed.
    let mut seed =
        std::env::var("RELAY_E2E_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
    eprintln!("e2e: kill points seed {seed}");
    let mut delays = Vec::new();
    for point in 1..=points {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 2_400);
        delays.push(delay.as_millis());
        let value = format!("v{point}");
        let api: Api<relay_operator::api::RelayService> = Api::namespaced(client.clone(), ns);
        api.patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"config": {"data": {"GREETING": value}}}})),
        )
        .await
        .unwrap();
        tokio::time::sleep(delay).await;
        operator.kill();
        operator = s.operator("operator.log");
        eventually(
            &format!("both run {value} after kill point {point}"),
            Duration::from_secs(40),
            || async { all_run(&s, "web", 2, "GREETING", &value) },
        )
        .await;
        wait_converged(client, ns, "web", Duration::from_secs(30)).await;
        let hash = desired_hash(client, ns, "web").await;
        let mut calls = s.kubelet.calls_for(&hash);
        calls.retain(|pod, _| pod.starts_with("web-"));
        assert!(
            calls.len() == 2 && calls.values().all(|c| *c == 1),
            "kill point {point} after {delay:?}: {calls:?}"
        );
    }
    assert_eq!(pod_uids(client, ns, "web").await, uids, "no pod was replaced");
    eprintln!(
        "e2e: {points} SIGKILL points (delays {} ms .. {} ms after the change): exactly 1 hook call per pod per change, no pod replaced",
        delays.iter().min().unwrap_or(&0),
        delays.iter().max().unwrap_or(&0)
    );
    s.cleanup().await;
}

/// A hook that answers only after its timeout has still reloaded the app: the operator sees
/// failures until `retryDeadline`, finds the app reporting the new hash on its health
/// endpoint, records that, and does not restart the pod (`onFailure: Restart`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_answers_late_does_not_get_its_pod_restarted() {
    let s = Scenario::new("e2e-late").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = standin_service("late", 2, json!({"GREETING": "a"}));
    manifest["spec"]["env"] = json!([{"name": "STANDIN_RELOAD_DELAY_MS", "value": "2500"}]);
    manifest["spec"]["reload"] = json!({"port": 8080, "restartKeys": ["MODE"], "timeout": "1s", "retryDeadline": "2s", "settleDelay": "0s", "onFailure": "Restart"});
    s.apply(&manifest.to_string());
    let _operator = s.operator("operator.log");
    wait_converged(client, ns, "late", Duration::from_secs(60)).await;
    let uids = pod_uids(client, ns, "late").await;
    let api: Api<relay_operator::api::RelayService> = Api::namespaced(client.clone(), ns);
    api.patch(
        "late",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"config": {"data": {"GREETING": "b"}}}})),
    )
    .await
    .unwrap();
    eventually("both run GREETING=b", Duration::from_secs(30), || async {
        all_run(&s, "late", 2, "GREETING", "b")
    })
    .await;
    wait_converged(client, ns, "late", Duration::from_secs(40)).await;
    assert_eq!(pod_uids(client, ns, "late").await, uids, "no pod restarted");
    let messages = || async {
        let status = api.get("late").await.unwrap().status.unwrap_or_default();
        status.pods.iter().filter_map(|p| p.last_reload.as_ref()?.message.clone()).collect::<Vec<String>>()
    };
    eventually("both pods' lastReload in status", Duration::from_secs(10), || async {
        messages().await.len() == 2
    })
    .await;
    let messages = messages().await;
    eprintln!("e2e: late hook answers: {messages:?}");
    assert!(messages.len() == 2 && messages.iter().all(|m| m.contains("health endpoint")), "{messages:?}");
    s.cleanup().await;
}

/// The operator talking to the API server through the fault proxy.
async fn behind_proxy(s: &Scenario) -> (super::proxy::FaultProxy, std::path::PathBuf) {
    let proxy = super::proxy::FaultProxy::start(&ControlPlane::get().kubeconfig).await;
    let kubeconfig = s.dir.join("proxied.kubeconfig");
    proxy.kubeconfig(&s.operator_kubeconfig, &kubeconfig);
    (proxy, kubeconfig)
}

async fn set_greeting(s: &Scenario, name: &str, value: &str) {
    set_greeting_and(s, name, json!({"GREETING": value})).await;
}

/// Bursts of 409, 500 and 429 answers and of writes that hang and time out (504) delay a
/// change but do not break it: it converges, each pod called once per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_bursts_delay_a_change_but_it_converges() {
    let s = Scenario::new("e2e-write-faults").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let (proxy, kubeconfig) = behind_proxy(&s).await;
    s.apply(&standin_service("web", 2, json!({"GREETING": "a"})).to_string());
    let _operator = Operator::start(&kubeconfig, ns, &s.dir.join("operator.log"), &[]);
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let uids = pod_uids(client, ns, "web").await;
    let mut figures = Vec::new();
    for (code, value) in [(409, "b"), (500, "c"), (429, "d"), (504, "e")] {
        if code == 504 {
            // Writes that hang for 3 s each, then time out.
            proxy.time_out_writes(3, Duration::from_secs(3));
        } else {
            proxy.fail_writes(3, code);
        }
        let started = std::time::Instant::now();
        set_greeting(&s, "web", value).await;
        eventually(&format!("both run {value} after {code}s"), Duration::from_secs(60), || async {
            all_run(&s, "web", 2, "GREETING", value)
        })
        .await;
        wait_converged(client, ns, "web", Duration::from_secs(60)).await;
        let hash = desired_hash(client, ns, "web").await;
        let calls = s.kubelet.calls_for(&hash);
        assert!(calls.len() == 2 && calls.values().all(|c| *c == 1), "{code}: {calls:?}");
        figures.push(format!("{code}: converged in {:.1} s", started.elapsed().as_secs_f64()));
    }
    assert!(proxy.refused() >= 12, "the faults were injected: {}", proxy.refused());
    assert_eq!(pod_uids(client, ns, "web").await, uids);
    eprintln!(
        "e2e: bursts of 3 refused writes (504: held 3 s each): {}; 1 hook call per pod per change",
        figures.join(", ")
    );
    s.cleanup().await;
}

/// Deleting a service whose hooks keep failing is never blocked, and other services keep
/// being reconciled meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_service_while_its_hooks_fail_is_never_blocked() {
    let s = Scenario::new("e2e-delete-failing").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut stuck = standin_service("stuck", 2, json!({"GREETING": "a"}));
    stuck["spec"]["reload"] = json!({"port": 8080, "restartKeys": ["MODE"], "retryDeadline": "2m", "settleDelay": "0s", "onFailure": "Ignore"});
    s.apply(&stuck.to_string());
    s.apply(&standin_service("fine", 1, json!({"GREETING": "a"})).to_string());
    let _operator = s.operator("operator.log");
    wait_converged(client, ns, "stuck", Duration::from_secs(60)).await;
    wait_converged(client, ns, "fine", Duration::from_secs(60)).await;
    // From now on every hook of `stuck` answers 500: its reload retries for 2 minutes.
    set_greeting_and(&s, "stuck", json!({"GREETING": "b", "RELOAD_FAIL": "true"})).await;
    eventually("stuck's pods failing their hooks", Duration::from_secs(20), || async {
        s.kubelet
            .pods()
            .iter()
            .any(|(n, p)| n.starts_with("stuck-") && p.app.config.contains_key("RELOAD_FAIL"))
    })
    .await;
    let services: Api<relay_operator::api::RelayService> = Api::namespaced(client.clone(), ns);
    let started = std::time::Instant::now();
    services.delete("stuck", &kube::api::DeleteParams::default()).await.unwrap();
    eventually("stuck is gone", Duration::from_secs(10), || async {
        services.get_opt("stuck").await.unwrap().is_none()
    })
    .await;
    let deleted = started.elapsed();
    set_greeting(&s, "fine", "b").await;
    eventually("fine runs b", Duration::from_secs(15), || async { all_run(&s, "fine", 1, "GREETING", "b") })
        .await;
    let other = started.elapsed();
    eventually("stuck's pods garbage-collected", Duration::from_secs(75), || async {
        pod_uids(client, ns, "stuck").await.is_empty()
    })
    .await;
    eprintln!(
        "e2e: delete while hooks fail: service gone in {:.2} s, another service reloaded {:.2} s after the delete, pods collected after {:.1} s",
        deleted.as_secs_f64(),
        other.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    s.cleanup().await;
}

/// Merge `data` into the service's `config.data`.
async fn set_greeting_and(s: &Scenario, name: &str, data: serde_json::Value) {
    let api: Api<relay_operator::api::RelayService> = Api::namespaced(s.client.clone(), &s.namespace);
    let patch = json!({"spec": {"config": {"data": data}}});
    api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch)).await.unwrap();
}

/// Every watch of the operator ended at once, and each one it opens again ended with
/// `410 Gone` (its cache must relist): a pod deleted and a configuration changed right then
/// are both handled within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_watch_410s_are_reconciled_within_seconds() {
    let s = Scenario::new("e2e-watch-faults").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let (proxy, kubeconfig) = behind_proxy(&s).await;
    s.apply(&standin_service("web", 2, json!({"GREETING": "a"})).to_string());
    let _operator = Operator::start(&kubeconfig, ns, &s.dir.join("operator.log"), &[]);
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let old = pod_uids(client, ns, "web").await["web-1"].clone();

    proxy.cut_watches(8);
    let started = std::time::Instant::now();
    pods.delete("web-1", &kube::api::DeleteParams::default()).await.unwrap();
    set_greeting(&s, "web", "b").await;
    eventually("web-1 recreated", Duration::from_secs(30), || async {
        pod_uids(client, ns, "web").await.get("web-1").is_some_and(|uid| *uid != old)
    })
    .await;
    let recreated = started.elapsed();
    eventually("both run b", Duration::from_secs(30), || async { all_run(&s, "web", 2, "GREETING", "b") })
        .await;
    let reloaded = started.elapsed();
    eprintln!(
        "e2e: every watch ended with 410 Gone: pod recreated in {:.2} s, config applied in {:.2} s",
        recreated.as_secs_f64(),
        reloaded.as_secs_f64()
    );
    assert!(recreated < Duration::from_secs(5), "the pod within 5 s of the 410s: {recreated:?}");
    s.cleanup().await;
}
