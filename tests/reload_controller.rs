//! The reload phase of the RelayService reconciler: the fake API of `support/fake_api.rs`
//! (writes reach the caches at once) plus real hook servers on 127.0.0.x (one per pod).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use relay_operator::api::RelayService;
use relay_operator::controller::context::Context;
use relay_operator::controller::relay_service::reconcile;
use relay_operator::hook::{ReloadOptions, Transport};
use relay_operator::ops::metrics::Metrics;
use serde_json::{Value, json};
use support::hook_servers::{Behavior, HookServers};
use support::{Call, FakeApi, RelayServiceFixture, sample};

const HASH: &str = "relayops.io/config-hash";
const RESULT: &str = "relayops.io/reload-result";
const NUDGE: &str = "relayops.io/config-nudge";

/// The RelayService `web` with `replicas`, configuration `data` and hooks on `port`.
fn spec(port: u16, replicas: i32, data: Value, reload: Value) -> RelayServiceFixture {
    let mut reload_spec =
        json!({"port": port, "retryDeadline": "600ms", "settleDelay": "0s", "timeout": "1s"});
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

struct Svc {
    rs: RelayService,
}

impl Svc {
    fn new(service: RelayServiceFixture) -> Self {
        Self { rs: service.build() }
    }

    /// A spec change: new generation.
    fn change(&mut self, api: &mut FakeApi, service: RelayServiceFixture) {
        self.rs.spec = service.build().spec;
        self.rs.metadata.generation = self.rs.metadata.generation.map(|g| g + 1);
        api.put(&self.rs);
    }

    /// One reconcile; the patched status is applied to our copy. Returns the action and the requests.
    async fn reconcile(&mut self, api: &mut FakeApi, ctx: &Arc<Context>) -> (Action, Vec<Call>) {
        api.put(&self.rs);
        let action = reconcile(Arc::new(self.rs.clone()), ctx.clone()).await.unwrap();
        let calls = api.take_calls();
        if let Some(call) = calls.iter().rev().find(|c| c.path.contains("/status")) {
            self.rs.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
            api.put(&self.rs);
        }
        (action, calls)
    }

    fn status(&self) -> Value {
        serde_json::to_value(self.rs.status.clone().unwrap_or_default()).unwrap()
    }

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

    svc.change(&mut api, spec(servers.port, 2, json!({"A": "2"}), json!({"settleDelay": "400ms"})));
    let (action, calls) = svc.reconcile(&mut api, &ctx).await;
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
    let (_, calls) = svc.reconcile(&mut api, &ctx).await;
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
    svc.change(&mut api, spec(servers.port, 3, json!({"A": "2"}), reload.clone()));
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
    svc.change(&mut api, spec(servers.port, 3, json!({"A": "3"}), reload));
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
    svc.change(&mut api, spec(servers.port, 2, json!({"A": "2"}), reload));
    let started = std::time::Instant::now();
    let (_, calls) = svc.reconcile(&mut api, &ctx).await;
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
    let (_, calls) = svc.reconcile(&mut api, &ctx).await;
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
        let (_, calls) = svc.reconcile(api, ctx).await;
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
    svc.change(&mut api, spec(servers.port, 3, json!({"PORT": "2", "A": "1"}), reload.clone()));
    let calls = roll(&mut api, &ctx, &mut svc).await;
    let mut deleted = deletes(&calls);
    deleted.sort();
    assert_eq!(deleted, pod_names(3), "each pod replaced once");
    let hash = svc.hash();
    assert!(pod_names(3).iter().all(|p| api.annotation(p, HASH) == Some(hash.clone())));

    // Restart key and another key together: one roll, still no hook.
    svc.change(&mut api, spec(servers.port, 3, json!({"PORT": "3", "A": "2"}), reload));
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

    svc.change(&mut api, spec(servers.port, 3, json!({"A": "b"}), json!({})));
    let for_b = svc.rs.clone();
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { reconcile(Arc::new(for_b), ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    svc.change(&mut api, spec(servers.port, 3, json!({"A": "c"}), json!({})));
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
    svc.change(&mut api, spec(servers.port, 3, json!({"A": "2"}), json!({})));
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
    svc.change(&mut api, spec(servers.port, 1, json!({"A": "2"}), reload));
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
    svc.change(&mut api, spec(8000, 2, json!({"A": "2"}), json!({})));
    let (_, calls) = svc.reconcile(&mut api, &ctx).await;
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
