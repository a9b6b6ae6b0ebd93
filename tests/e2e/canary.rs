//! Canary configuration rollouts on the real control plane: a configuration that makes the
//! stand-in app report 503 (`HEALTHY=false`) is reverted after reaching one canary, with no
//! other pod called with it; a good one passes the hold and reaches every pod.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use relay_operator::api::{CanaryPhase, CanaryStatus, RelayService};
use serde_json::json;

use crate::cluster::{Scenario, eventually};
use crate::{all_run, condition, desired_hash, get_service, pod_uids, standin_service, wait_converged};

const HOLD: Duration = Duration::from_secs(5);

async fn canary(client: &Client, ns: &str) -> Option<CanaryStatus> {
    get_service(client, ns, "web").await?.status?.canary.map(|c| *c)
}

/// `relayops.io/config-hash` of each pod of `web`.
async fn recorded(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels("relayops.io/service=web")).await.unwrap();
    list.items
        .iter()
        .map(|p| (p.name_any(), p.annotations().get("relayops.io/config-hash").cloned().unwrap_or_default()))
        .collect()
}

async fn patch(client: &Client, ns: &str, data: serde_json::Value) {
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"config": {"data": data}}})))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_failing_its_canary_is_reverted_and_never_reaches_the_other_pods() {
    let s = Scenario::new("e2e-canary").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = standin_service("web", 3, json!({"GREETING": "a", "HEALTHY": "true"}));
    manifest["spec"]["reload"]["canary"] = json!({"pods": 1, "hold": format!("{}s", HOLD.as_secs())});
    s.apply(&manifest.to_string());
    wait_converged(client, ns, "web", Duration::from_secs(90)).await;
    let good = desired_hash(client, ns, "web").await;
    let uids = pod_uids(client, ns, "web").await;

    // A bad value: the canary (web-2) answers 503 on /health once it loaded it.
    let started = Instant::now();
    patch(client, ns, json!({"HEALTHY": "false"})).await;
    eventually("the canary rolled back", Duration::from_secs(90), || async {
        canary(client, ns).await.is_some_and(|c| c.phase == CanaryPhase::RolledBack)
    })
    .await;
    let decided = started.elapsed();
    let state = canary(client, ns).await.unwrap();
    let bad = state.config_hash.clone();
    eventually("the canary runs the last good configuration again", Duration::from_secs(60), || async {
        let web2 = s.kubelet.pods().get("web-2").map(|p| p.app.hash.clone());
        web2 == Some(Some(good.clone())) && recorded(client, ns).await.values().all(|h| *h == good)
    })
    .await;
    let reverted = started.elapsed();
    eprintln!(
        "e2e: canary: bad config -> rollback decided in {:.2} s, canary reloaded back in {:.2} s ({}: {})",
        decided.as_secs_f64(),
        reverted.as_secs_f64(),
        state.reason.as_deref().unwrap_or_default(),
        state.message.as_deref().unwrap_or_default()
    );
    assert_eq!(state.pods, ["web-2"]);
    assert_eq!(state.previous_config_hash, good);
    assert!(matches!(state.reason.as_deref(), Some("CanaryUnhealthy" | "CanaryNotReady")), "{state:?}");
    assert!(state.message.as_deref().unwrap_or_default().contains("503"), "the health answer: {state:?}");
    let calls = s.kubelet.calls_for(&bad);
    eprintln!("e2e: canary: hook calls with the bad config per pod: {calls:?}");
    // A call answered with the old hash (the file not swapped yet) is repeated: at least one.
    assert!(calls.get("web-2").is_some_and(|n| *n >= 1), "{calls:?}");
    assert!(
        calls.iter().filter(|(pod, _)| *pod != "web-2").all(|(_, n)| *n == 0),
        "non-canary pods were never called with the bad config: {calls:?}"
    );
    assert_eq!(desired_hash(client, ns, "web").await, good, "the ConfigMap holds the last good config");
    assert_eq!(pod_uids(client, ns, "web").await, uids, "no pod replaced");
    let service = get_service(client, ns, "web").await.unwrap();
    let rolled = condition(&service, "ConfigRolledBack").unwrap();
    assert_eq!(rolled.0, "True", "{rolled:?}");
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("a Warning Event ConfigRolledBack", Duration::from_secs(10), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ConfigRolledBack") && e.type_.as_deref() == Some("Warning"))
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;

    // Not retried: a few holds later nobody got another call with the bad config.
    tokio::time::sleep(HOLD * 2).await;
    assert_eq!(s.kubelet.calls_for(&bad), calls);

    // A fixed spec (new generation) tries again, holds, then reaches every pod.
    let fixed_at = Instant::now();
    patch(client, ns, json!({"HEALTHY": "true", "GREETING": "b"})).await;
    eventually("every process runs GREETING=b", Duration::from_secs(90), || async {
        all_run(&s, "web", 3, "GREETING", "b")
    })
    .await;
    let everywhere = fixed_at.elapsed();
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let fixed = desired_hash(client, ns, "web").await;
    let state = canary(client, ns).await.unwrap();
    eprintln!(
        "e2e: canary: good config reached all 3 pods in {:.2} s (hold {} s); hook calls per pod {:?}",
        everywhere.as_secs_f64(),
        HOLD.as_secs(),
        s.kubelet.calls_for(&fixed)
    );
    assert_eq!((state.phase, state.config_hash.as_str()), (CanaryPhase::Passed, fixed.as_str()));
    assert!(everywhere >= HOLD, "the other pods waited for the hold");
    assert!(s.kubelet.calls_for(&fixed).values().all(|n| *n >= 1));
    let service = get_service(client, ns, "web").await.unwrap();
    assert_eq!(condition(&service, "ConfigRolledBack").unwrap().0, "False");
    assert_eq!(pod_uids(client, ns, "web").await, uids, "no pod replaced");
    s.cleanup().await;
}
