//! The reload phase of the RelayService reconciler: the fake API of `support/fake_api.rs`
//! (writes reach the caches at once) plus real hook servers on 127.0.0.x (one per pod);
//! `reload.debounce` and the restart budget (`--max-concurrent-restarts`) at the end.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use relay_operator::controller::context::Context;
use relay_operator::controller::relay_service::reconcile;
use relay_operator::controller::restart_budget::RestartBudget;
use relay_operator::hook::{ReloadOptions, Transport};
use relay_operator::ops::metrics::Metrics;
use serde_json::{Value, json};
use support::hook_servers::{Behavior, HookServers};
use support::{Call, FakeApi, RelayServiceFixture, Svc, sample};

const HASH: &str = "relayops.io/config-hash";
const RESULT: &str = "relayops.io/reload-result";
const NUDGE: &str = "relayops.io/config-nudge";

/// The RelayService `web` with `replicas`, configuration `data` and hooks on `port`.
fn spec(port: u16, replicas: i32, data: Value, reload: Value) -> RelayServiceFixture {
    let mut reload_spec = json!({"port": port, "retryDeadline": "600ms", "settleDelay": "0s", "timeout": "1s", "debounce": "0s"});
    if let (Some(target), Some(extra)) = (reload_spec.as_object_mut(), reload.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    RelayServiceFixture::new("web")
        .image("ghcr.io/example/relay:1.4.2")
        .replicas(replicas)
        .spec(json!({"config": {"data": data}}))
        .reload(reload_spec)
}

impl Svc {
    fn condition(&self, type_: &str) -> (String, String) {
        let status = self.status();
        let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap().clone();
        (c["status"].as_str().unwrap().into(), c["reason"].as_str().unwrap().into())
    }

    fn last_reload(&self, pod: &str) -> Value {
        let status = self.status();
        status["pods"].as_array().unwrap().iter().find(|p| p["name"] == pod).unwrap()["lastReload"].clone()
    }

    fn hash(&self) -> String {
        self.status()["configHash"].as_str().unwrap().to_string()
    }
}

fn ctx(api: &FakeApi) -> Arc<Context> {
    Arc::new(api.context())
}

fn pod_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("web-{i}")).collect()
}

fn deletes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.path.contains("/pods/"))
        .map(|c| c.path.rsplit('/').next().unwrap().split('?').next().unwrap().to_string())
        .collect()
}

fn requeue_within(action: &Action, limit: Duration) -> bool {
    let debug = format!("{action:?}");
    (0..=limit.as_millis() as u64)
        .step_by(1)
        .any(|ms| debug == format!("{:?}", Action::requeue(Duration::from_millis(ms))))
}

#[tokio::test]
async fn seed_relay_contract_is_applied_unverified_after_the_settle_delay() {
    let servers = HookServers::start(2, Duration::ZERO, |_| Behavior::Legacy).await;
    let mut api = FakeApi::new();
    let ctx = ctx(&api);
    let mut svc = Svc::new(spec(servers.port, 2, json!({"A": "1"}), json!({"settleDelay": "400ms"})));
    svc.reconcile(&mut api, &ctx).await;
    let a = svc.hash();
    assert_eq!(api.annotation("web-0", HASH), Some(a.clone()), "new pods carry the hash");
    svc.reconcile(&mut api, &ctx).await;
    assert!(servers.hits().is_empty(), "pods created with the hash need no call");

    svc.change(&mut api, &spec(servers.port, 2, json!({"A": "2"}), json!({"settleDelay": "400ms"})));
    let (action, calls) = svc.reconcile_with_action(&mut api, &ctx).await;
    let b = svc.hash();
    assert_ne!(a, b);
    assert!(calls.iter().any(|c| c.path.contains("/configmaps/web-config")));
    for pod in pod_names(2) {
        assert!(api.annotation(&pod, NUDGE).unwrap().starts_with(&b), "nudged");
        assert_eq!(api.annotation(&pod, HASH), Some(a.clone()));
    }
    assert!(servers.hits().is_empty(), "no call before the settle delay");
    assert!(requeue_within(&action, Duration::from_millis(400)), "{action:?}");
    assert_eq!(svc.condition("ConfigInSync"), ("False".into(), "Propagating".into()));

    // Before the delay: still nothing; after it: one call per pod.
    svc.reconcile(&mut api, &ctx).await;
    assert!(servers.hits().is_empty());
    tokio::time::sleep(Duration::from_millis(450)).await;
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.calls_for(&b), BTreeMap::from([(0, 1), (1, 1)]));
    assert!(servers.hits().iter().all(|h| h.authorization.is_none()), "no token unless configured");
    for pod in pod_names(2) {
        assert_eq!(api.annotation(&pod, HASH), Some(b.clone()));
        assert_eq!(api.annotation(&pod, RESULT).as_deref(), Some("AppliedUnverified"));
        assert_eq!(svc.last_reload(&pod)["result"], "AppliedUnverified");
        assert_eq!(svc.last_reload(&pod)["configHash"], b.as_str());
    }
    assert_eq!(svc.status()["configSyncedReplicas"], 2);
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));

    // Converged: no more calls, no more writes but status.
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.hits().len(), 2);
    assert!(calls.iter().all(|c| !c.path.contains("/pods/")), "{calls:#?}");
}

#[tokio::test]
async fn echoing_app_is_applied_and_later_called_right_after_the_nudge() {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(3, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let ctx = Arc::new(api.context());
    let metrics = ctx.metrics.clone();
    let reload = json!({"settleDelay": "300ms"});
    let mut svc = Svc::new(spec(servers.port, 3, json!({"A": "1"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;

    // First change: the app is not known to echo yet, so the settle delay applies once.
    svc.change(&mut api, &spec(servers.port, 3, json!({"A": "2"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;
    let b = svc.hash();
    tokio::time::sleep(Duration::from_millis(350)).await;
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.calls_for(&b).len(), 3);
    for pod in pod_names(3) {
        assert_eq!(api.annotation(&pod, HASH), Some(b.clone()));
        assert_eq!(api.annotation(&pod, RESULT).as_deref(), Some("Applied"));
        assert_eq!(svc.last_reload(&pod)["result"], "Applied");
    }

    // Next change: called in the same reconcile as the nudge, once per pod.
    svc.change(&mut api, &spec(servers.port, 3, json!({"A": "3"}), reload));
    svc.reconcile(&mut api, &ctx).await;
    let c = svc.hash();
    assert_eq!(servers.calls_for(&c), BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(c.clone())));
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
    assert_eq!(sample(&metrics, "relay_operator_reload_hook_calls_total{result=\"applied\"}"), 6.0);
    assert_eq!(sample(&metrics, "relay_operator_reload_propagation_seconds_count"), 6.0);
}

async fn failing(on_failure: &str) -> (FakeApi, Svc, HookServers, Vec<Call>, Arc<Metrics>, Arc<Context>) {
    let servers =
        HookServers::start(2, Duration::ZERO, |i| if i == 1 { Behavior::Fail } else { Behavior::Legacy })
            .await;
    let mut api = FakeApi::new();
    let ctx = Arc::new(api.context());
    let metrics = ctx.metrics.clone();
    let reload = json!({"onFailure": on_failure});
    let mut svc = Svc::new(spec(servers.port, 2, json!({"A": "1"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;
    svc.change(&mut api, &spec(servers.port, 2, json!({"A": "2"}), reload));
    let started = std::time::Instant::now();
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(started.elapsed() >= Duration::from_millis(500), "retried until the deadline");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the deadline");
    (api, svc, servers, calls, metrics, ctx)
}

#[tokio::test]
async fn failing_hook_with_restart_deletes_only_that_pod() {
    let (mut api, mut svc, servers, calls, metrics, ctx) = failing("Restart").await;
    let b = svc.hash();
    assert_eq!(deletes(&calls), ["web-1"]);
    assert_eq!(sample(&metrics, "relay_operator_reload_restarts_total"), 1.0);
    assert!(servers.calls_for(&b)[&1] > 1, "retried");
    assert_eq!(api.annotation("web-0", HASH), Some(b.clone()));
    assert_eq!(svc.last_reload("web-1")["result"], "Failed");
    assert_eq!(svc.condition("ConfigInSync"), ("False".into(), "HookFailed".into()));
    assert!(calls.iter().any(|c| c.path.contains("/events") && c.body.to_string().contains("ReloadFailed")));

    // The pod comes back with the new configuration and needs no call.
    let hits = servers.hits().len();
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(calls.iter().any(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-1"), "recreated");
    assert_eq!(api.annotation("web-1", HASH), Some(b.clone()));
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.hits().len(), hits);
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
    assert!(svc.last_reload("web-1").is_null(), "a recovered failure is no longer reported");
}

#[tokio::test]
async fn failing_hook_with_ignore_leaves_the_pod_and_reports_it() {
    let (mut api, mut svc, servers, calls, metrics, ctx) = failing("Ignore").await;
    let b = svc.hash();
    assert!(deletes(&calls).is_empty());
    assert_eq!(sample(&metrics, "relay_operator_reload_restarts_total"), 0.0);
    assert_ne!(api.annotation("web-1", HASH), Some(b.clone()));
    let failed = svc.last_reload("web-1");
    assert_eq!(failed["result"], "Failed");
    assert!(failed["message"].as_str().unwrap().contains("503"), "{failed}");
    assert_eq!(svc.condition("ConfigInSync"), ("False".into(), "HookFailed".into()));
    assert_eq!(svc.status()["configSyncedReplicas"], 1);
    // Not called again and again for the same hash.
    let hits = servers.hits().len();
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.hits().len(), hits);
    assert_eq!(svc.last_reload("web-1")["result"], "Failed");
}

/// Reconcile until every pod runs the current template; returns all requests.
async fn roll(api: &mut FakeApi, ctx: &Arc<Context>, svc: &mut Svc) -> Vec<Call> {
    let mut all = Vec::new();
    for _ in 0..20 {
        let calls = svc.reconcile(api, ctx).await;
        all.extend(calls);
        let status = svc.status();
        if status["updatedReplicas"] == status["replicas"]
            && status["replicas"] == 3
            && status["readyReplicas"] == 3
        {
            return all;
        }
    }
    panic!("did not converge");
}

#[tokio::test]
async fn restart_key_changes_roll_pods_and_call_no_hook() {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(3, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let ctx = ctx(&api);
    let reload = json!({"restartKeys": ["PORT"]});
    let mut svc = Svc::new(spec(servers.port, 3, json!({"PORT": "1", "A": "1"}), reload.clone()));
    roll(&mut api, &ctx, &mut svc).await;

    // Restart key only.
    svc.change(&mut api, &spec(servers.port, 3, json!({"PORT": "2", "A": "1"}), reload.clone()));
    let calls = roll(&mut api, &ctx, &mut svc).await;
    let mut deleted = deletes(&calls);
    deleted.sort();
    assert_eq!(deleted, pod_names(3), "each pod replaced once");
    let hash = svc.hash();
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(hash.clone())));

    // Restart key and another key together: one roll, still no hook.
    svc.change(&mut api, &spec(servers.port, 3, json!({"PORT": "3", "A": "2"}), reload));
    let calls = roll(&mut api, &ctx, &mut svc).await;
    let mut deleted = deletes(&calls);
    deleted.sort();
    assert_eq!(deleted, pod_names(3), "each pod replaced once");
    assert!(servers.hits().is_empty(), "{:?}", servers.hits());
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
}

#[tokio::test]
async fn rapid_a_b_c_never_records_b_after_c() {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    // Slow hooks: C is rendered while B's calls are in flight.
    let servers =
        HookServers::start(3, Duration::from_millis(400), move |_| Behavior::Echo(mounted.clone())).await;
    let ctx = ctx(&api);
    let mut svc = Svc::new(spec(servers.port, 3, json!({"A": "a"}), json!({})));
    svc.reconcile(&mut api, &ctx).await;

    svc.change(&mut api, &spec(servers.port, 3, json!({"A": "b"}), json!({})));
    let for_b = svc.rs.clone();
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { reconcile(Arc::new(for_b), ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    svc.change(&mut api, &spec(servers.port, 3, json!({"A": "c"}), json!({})));
    let before_c = api.take_calls();
    let b = before_c
        .iter()
        .find_map(|c| c.body.pointer("/data/config-hash").and_then(Value::as_str))
        .unwrap()
        .to_string();
    task.await.unwrap().unwrap();
    let after_c = api.take_calls();
    assert!(
        !after_c
            .iter()
            .chain(&before_c)
            .any(|c| c.body.pointer("/metadata/annotations/relayops.io~1config-hash") == Some(&json!(b))),
        "no pod recorded at B"
    );

    svc.reconcile(&mut api, &ctx).await;
    let c = svc.hash();
    assert_ne!(b, c);
    for pod in pod_names(3) {
        assert_eq!(api.annotation(&pod, HASH), Some(c.clone()));
    }
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
}

#[tokio::test]
async fn restarted_operator_converges_without_calling_twice() {
    let servers = HookServers::start(3, Duration::ZERO, |_| Behavior::Legacy).await;
    let mut api = FakeApi::new();
    let mut svc = Svc::new(spec(servers.port, 3, json!({"A": "1"}), json!({})));
    let fresh = ctx(&api);
    svc.reconcile(&mut api, &fresh).await;

    // Crash: the ConfigMap is written, the pod patches never return, the process dies.
    svc.change(&mut api, &spec(servers.port, 3, json!({"A": "2"}), json!({})));
    api.stall_pod_patches(true);
    let crashed = {
        let ctx = ctx(&api);
        let rs = svc.rs.clone();
        tokio::spawn(async move { reconcile(Arc::new(rs), ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    crashed.abort();
    let calls = api.take_calls();
    assert!(calls.iter().any(|c| c.path.contains("/configmaps/web-config")), "ConfigMap written");
    assert!(servers.hits().is_empty());
    api.stall_pod_patches(false);

    // A fresh operator on the same caches.
    let fresh = ctx(&api);
    svc.reconcile(&mut api, &fresh).await;
    let b = svc.hash();
    assert_eq!(servers.calls_for(&b), BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(b.clone())));
    // And another one: nothing is repeated.
    let fresh = ctx(&api);
    svc.reconcile(&mut api, &fresh).await;
    assert_eq!(servers.hits().len(), 3);
}

#[tokio::test]
async fn bearer_token_is_sent_when_configured() {
    let servers = HookServers::start(1, Duration::ZERO, |_| Behavior::Legacy).await;
    let mut api = FakeApi::new();
    let mut secret = Secret::default();
    secret.metadata.name = Some("hook-token".into());
    secret.metadata.namespace = Some("demo".into());
    secret.data = Some(BTreeMap::from([("token".to_string(), ByteString(b"s3cr3t\n".to_vec()))]));
    api.put(&secret);
    let ctx = ctx(&api);
    let reload = json!({"bearerTokenSecretRef": {"name": "hook-token", "key": "token"}});
    let mut svc = Svc::new(spec(servers.port, 1, json!({"A": "1"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;
    svc.change(&mut api, &spec(servers.port, 1, json!({"A": "2"}), reload));
    svc.reconcile(&mut api, &ctx).await;
    let hits = servers.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].authorization.as_deref(), Some("Bearer s3cr3t"));
}

#[tokio::test]
async fn hooks_through_the_api_server_proxy() {
    let mut api = FakeApi::new();
    let proxy = Transport::api_proxy(api.client.clone());
    let ctx = Arc::new(api.context_with(ReloadOptions::new(8, 8, proxy)));
    let mut svc = Svc::new(spec(8000, 2, json!({"A": "1"}), json!({})));
    svc.reconcile(&mut api, &ctx).await;
    svc.change(&mut api, &spec(8000, 2, json!({"A": "2"}), json!({})));
    let calls = svc.reconcile(&mut api, &ctx).await;
    let b = svc.hash();
    let mut proxied: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("/proxy"))
        .map(|c| c.path.split('?').next().unwrap())
        .collect();
    proxied.sort();
    assert_eq!(
        proxied,
        [
            "/api/v1/namespaces/demo/pods/web-0:8000/proxy/reload-config",
            "/api/v1/namespaces/demo/pods/web-1:8000/proxy/reload-config"
        ]
    );
    for pod in pod_names(2) {
        assert_eq!(api.annotation(&pod, HASH), Some(b.clone()));
        assert_eq!(svc.last_reload(&pod)["result"], "Applied");
    }
}

/// A context whose clock reads `clock` (the debounce window is measured on it).
fn clocked(api: &FakeApi, clock: &Arc<std::sync::Mutex<Timestamp>>) -> Arc<Context> {
    let clock = clock.clone();
    Arc::new(api.context().with_clock(Arc::new(move || *clock.lock().unwrap())))
}

#[tokio::test]
async fn a_burst_inside_the_debounce_window_reaches_each_pod_once_as_its_last_config() {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(3, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let t0 = Timestamp::now();
    let clock = Arc::new(std::sync::Mutex::new(t0));
    let ctx = clocked(&api, &clock);
    let at = |ms: i64| t0 + SignedDuration::from_millis(ms);
    let reload = json!({"debounce": "2s"});
    let config = |value: &str| spec(servers.port, 3, json!({"A": value}), reload.clone());
    let mut svc = Svc::new(config("a"));
    // A new service's first ConfigMap is not held.
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(calls.iter().any(|c| c.path.contains("/configmaps/web-config")), "first ConfigMap written");
    let a = svc.hash();

    // B, then C one second later: nothing is written, nothing is called.
    svc.change(&mut api, &config("b"));
    let (action, calls) = svc.reconcile_with_action(&mut api, &ctx).await;
    let b = svc.hash();
    assert!(!calls.iter().any(|c| c.path.contains("/configmaps/")), "B held: {calls:#?}");
    assert!(!calls.iter().any(|c| c.path.contains("/pods/")), "no pod touched: {calls:#?}");
    assert!(requeue_within(&action, Duration::from_secs(2)), "{action:?}");
    assert_eq!(svc.condition("ConfigInSync"), ("False".into(), "Debouncing".into()));
    *clock.lock().unwrap() = at(1000);
    svc.change(&mut api, &config("c"));
    svc.reconcile(&mut api, &ctx).await;
    let c = svc.hash();
    *clock.lock().unwrap() = at(2500);
    let (action, calls) = svc.reconcile_with_action(&mut api, &ctx).await;
    assert!(!calls.iter().any(|c| c.path.contains("/configmaps/")), "C held until 2 s after it");
    assert!(requeue_within(&action, Duration::from_millis(500)), "the remainder: {action:?}");
    assert!(servers.hits().is_empty());
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(a.clone())));

    // The window of C ends: C is written and reaches each pod once; B never does.
    *clock.lock().unwrap() = at(3000);
    let calls = svc.reconcile(&mut api, &ctx).await;
    let written: Vec<&str> =
        calls.iter().filter_map(|c| c.body.pointer("/data/config-hash").and_then(Value::as_str)).collect();
    assert_eq!(written, [c.as_str()]);
    assert_eq!(servers.calls_for(&c), BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    assert!(servers.calls_for(&b).is_empty(), "B never reached a pod");
    assert_eq!(servers.hits().len(), 3, "one hook call per pod in all");
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(c.clone())));
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(servers.hits().len(), 3);
}

#[tokio::test]
async fn a_restarted_operator_holds_a_pending_config_for_a_whole_window_again() {
    let mut api = FakeApi::new();
    let t0 = Timestamp::now();
    let clock = Arc::new(std::sync::Mutex::new(t0));
    let reload = json!({"debounce": "2s"});
    let mut svc = Svc::new(spec(8000, 1, json!({"A": "a"}), reload.clone()));
    let first = clocked(&api, &clock);
    svc.reconcile(&mut api, &first).await;
    svc.change(&mut api, &spec(8000, 1, json!({"A": "b"}), reload));
    svc.reconcile(&mut api, &first).await;
    // 1.5 s into the window the operator restarts: the window starts again (conservative).
    *clock.lock().unwrap() = t0 + SignedDuration::from_millis(1500);
    let restarted = clocked(&api, &clock);
    let (action, calls) = svc.reconcile_with_action(&mut api, &restarted).await;
    assert!(!calls.iter().any(|c| c.path.contains("/configmaps/")), "held again: {calls:#?}");
    assert!(requeue_within(&action, Duration::from_secs(2)), "{action:?}");
    *clock.lock().unwrap() = t0 + SignedDuration::from_millis(2500);
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert!(!calls.iter().any(|c| c.path.contains("/configmaps/")), "1 s into the new window");
    *clock.lock().unwrap() = t0 + SignedDuration::from_millis(3500);
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert!(calls.iter().any(|c| c.path.contains("/configmaps/web-config")), "written after a whole window");
}

#[tokio::test]
async fn a_held_config_creates_no_pod_that_would_start_with_it() {
    let mut api = FakeApi::new();
    let t0 = Timestamp::now();
    let clock = Arc::new(std::sync::Mutex::new(t0));
    let ctx = clocked(&api, &clock);
    let reload = json!({"debounce": "5s"});
    let mut svc = Svc::new(spec(8000, 1, json!({"A": "a"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;
    // Scale up together with a config change: the new pod would carry the new hash while
    // the ConfigMap still holds the old one, so it waits for the window too.
    svc.change(&mut api, &spec(8000, 2, json!({"A": "b"}), reload.clone()));
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(!calls.iter().any(|c| c.method == "POST" && c.path.contains("/pods")), "{calls:#?}");
    *clock.lock().unwrap() = t0 + SignedDuration::from_secs(5);
    let calls = svc.reconcile(&mut api, &ctx).await;
    let b = svc.hash();
    assert!(calls.iter().any(|c| c.body.pointer("/data/config-hash") == Some(&json!(b))));
    assert!(calls.iter().any(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-1"));
    assert_eq!(api.annotation("web-1", HASH), Some(b));
}

/// Pods deleted and not yet recreated after each request, over a sequence of requests.
fn restarts_in_flight(calls: &[Call]) -> Vec<usize> {
    let mut away = std::collections::BTreeSet::new();
    calls
        .iter()
        .map(|c| {
            if c.method == "DELETE" && c.path.contains("/pods/") {
                away.insert(c.path.rsplit('/').next().unwrap().split('?').next().unwrap().to_string());
            }
            if c.method == "POST" && c.path.split('?').next().unwrap().ends_with("/pods") {
                away.remove(c.body["metadata"]["name"].as_str().unwrap());
            }
            away.len()
        })
        .collect()
}

#[tokio::test]
async fn the_restart_budget_caps_rollouts_across_services() {
    let mut api = FakeApi::new();
    let budget = Arc::new(RestartBudget::new(Some(2)));
    let ctx = Arc::new(api.context().with_restart_budget(budget.clone()));
    let metrics = ctx.metrics.clone();
    let service = |name: &str, port: &str| {
        RelayServiceFixture::new(name)
            .image("ghcr.io/example/relay:1.4.2")
            .replicas(2)
            .spec(json!({"config": {"data": {"PORT": port}}}))
            .reload(json!({"port": 8000, "restartKeys": ["PORT"], "debounce": "0s"}))
    };
    let names = ["a", "b", "c", "d", "e"];
    let mut services: Vec<Svc> = names.iter().map(|n| Svc::new(service(n, "1"))).collect();
    for svc in &mut services {
        svc.reconcile(&mut api, &ctx).await;
    }
    // Every service changes a restart key at once.
    for (svc, name) in services.iter_mut().zip(names) {
        svc.change(&mut api, &service(name, "2"));
    }
    let mut all = Vec::new();
    let mut queued_seen = false;
    let mut max_queued_metric = 0.0f64;
    for _ in 0..30 {
        for svc in &mut services {
            let calls = svc.reconcile(&mut api, &ctx).await;
            all.extend(calls);
            assert!(budget.in_flight() <= 2, "budget exceeded: {}", budget.in_flight());
            queued_seen |= svc.condition("Progressing").1 == "RestartQueued";
            max_queued_metric =
                max_queued_metric.max(sample(&metrics, "relay_operator_pod_restarts{state=\"queued\"}"));
        }
        if services.iter().all(|s| s.status()["updatedReplicas"] == 2 && s.status()["readyReplicas"] == 2) {
            break;
        }
    }
    let in_flight = restarts_in_flight(&all);
    assert!(in_flight.iter().all(|n| *n <= 2), "at most 2 pods away at once: {in_flight:?}");
    assert_eq!(in_flight.iter().max(), Some(&2), "the budget is used");
    assert!(queued_seen, "services waiting for a slot say so in status");
    assert!(max_queued_metric >= 1.0, "and in the metric");
    let mut deleted = deletes(&all);
    deleted.sort();
    let mut expected: Vec<String> = names.iter().flat_map(|n| [format!("{n}-0"), format!("{n}-1")]).collect();
    expected.sort();
    assert_eq!(deleted, expected, "every pod replaced once, all finish");
    for svc in &services {
        assert_eq!(svc.status()["updatedReplicas"], 2);
        assert_eq!(svc.condition("Progressing"), ("False".into(), "UpToDate".into()));
    }
    // Scaling down is not a restart: it needs no slot even when none is free.
    for i in 0..2 {
        assert!(budget.acquire("other", &format!("x-{i}"), &format!("ux-{i}"), Timestamp::now()));
    }
    services[0].change(&mut api, &service("a", "2").replicas(1));
    let calls = services[0].reconcile(&mut api, &ctx).await;
    assert_eq!(deletes(&calls), ["a-1"]);
}

/// Two pods, the second one's hook failing with `onFailure: Restart`, and a budget of one slot
/// that another service holds; then a configuration change. Returns that reconcile's outcome.
async fn a_reload_restart_behind_another_service()
-> (HookServers, FakeApi, Arc<RestartBudget>, Arc<Context>, Svc, Action, Vec<Call>) {
    let servers =
        HookServers::start(2, Duration::ZERO, |i| if i == 1 { Behavior::Fail } else { Behavior::Legacy })
            .await;
    let mut api = FakeApi::new();
    let budget = Arc::new(RestartBudget::new(Some(1)));
    let ctx = Arc::new(api.context().with_restart_budget(budget.clone()));
    let reload = json!({"onFailure": "Restart"});
    let mut svc = Svc::new(spec(servers.port, 2, json!({"A": "1"}), reload.clone()));
    svc.reconcile(&mut api, &ctx).await;
    assert!(budget.acquire("other", "x-0", "ux", Timestamp::now()));
    svc.change(&mut api, &spec(servers.port, 2, json!({"A": "2"}), reload));
    let (action, calls) = svc.reconcile_with_action(&mut api, &ctx).await;
    (servers, api, budget, ctx, svc, action, calls)
}

#[tokio::test]
async fn a_failed_reload_restart_waits_for_a_slot() {
    let (servers, mut api, budget, ctx, mut svc, action, calls) =
        a_reload_restart_behind_another_service().await;
    assert!(deletes(&calls).is_empty(), "no slot: web-1 stays");
    assert_eq!(svc.last_reload("web-1")["result"], "Failed");
    assert_eq!(svc.condition("Progressing"), ("True".into(), "RestartQueued".into()));
    assert!(requeue_within(&action, Duration::from_secs(2)), "{action:?}");
    let event =
        calls.iter().find(|c| c.path.contains("/events") && c.body["reason"] == "ReloadFailed").unwrap();
    assert!(event.body["note"].as_str().unwrap().contains("queued"), "{}", event.body);
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(deletes(&calls).is_empty(), "still no slot");
    let hits = servers.hits().len();

    // The slot is free: the queued restart is made, without calling the hook again.
    budget.release("ux");
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(deletes(&calls), ["web-1"]);
    assert_eq!(servers.hits().len(), hits);
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(calls.iter().any(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-1"), "recreated");
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(budget.in_flight(), 0, "the replacement is Ready: slot released");
    assert_eq!(svc.condition("ConfigInSync"), ("True".into(), "InSync".into()));
}

#[tokio::test]
async fn a_queued_reload_restart_survives_an_operator_restart() {
    let (servers, mut api, _budget, _ctx, mut svc, _, calls) =
        a_reload_restart_behind_another_service().await;
    assert!(deletes(&calls).is_empty(), "queued");
    let hits = servers.hits().len();

    // A new process knows the failure only from status; it makes the restart.
    let restarted = Arc::new(api.context());
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert_eq!(deletes(&calls), ["web-1"]);
    assert_eq!(servers.hits().len(), hits, "the failed hook is not called again");
}
