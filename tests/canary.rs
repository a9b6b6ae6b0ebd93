//! Canary configuration rollouts (`spec.reload.canary`) through the RelayService
//! reconciler: the fake API of `support/fake_api.rs` (writes reach the caches at once, the
//! mounted file follows the ConfigMap) plus real hook servers on 127.0.0.x that also serve
//! the health endpoint the readiness check points at.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use relay_operator::controller::context::Context;
use relay_operator::render::{Owner, OwnerKind, SecretData, render_config};
use serde_json::{Value, json};
use support::hook_servers::{Behavior, HookServers};
use support::{FakeApi, RelayServiceFixture, Svc, event_reasons, sample};

const HASH: &str = "relayops.io/config-hash";

/// The RelayService `web`: 4 replicas, configuration `data`, hooks and the HTTP health
/// check on `port`, a canary of one pod held for 30 s.
fn spec(port: u16, data: Value) -> RelayServiceFixture {
    RelayServiceFixture::new("web")
        .image("ghcr.io/example/relay:1.4.2")
        .replicas(4)
        .spec(json!({
            "config": {"data": data},
            "health": {"http": {"path": "/health", "port": port}, "interval": "1s"},
        }))
        .reload(json!({
            "port": port, "retryDeadline": "600ms", "settleDelay": "0s", "timeout": "1s",
            "canary": {"pods": 1, "hold": "30s"}, "debounce": "0s",
        }))
}

/// The configuration hash `fixture` renders to.
fn hash_of(fixture: &RelayServiceFixture) -> String {
    let service = fixture.build();
    let owner =
        Owner { kind: OwnerKind::RelayService, name: "web".into(), namespace: "demo".into(), uid: None };
    render_config(&owner, &service.spec, &SecretData::new()).unwrap().hash
}

impl Svc {
    fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.status();
        let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap().clone();
        (
            c["status"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap().into(),
            c["message"].as_str().unwrap().into(),
        )
    }
}

/// A context whose clock the test moves.
fn clocked(api: &FakeApi, clock: &Arc<Mutex<Timestamp>>) -> Arc<Context> {
    let clock = clock.clone();
    Arc::new(api.context().with_clock(Arc::new(move || *clock.lock().unwrap())))
}

fn advance(clock: &Arc<Mutex<Timestamp>>, seconds: i64) {
    let mut now = clock.lock().unwrap();
    *now = now.checked_add(SignedDuration::from_secs(seconds)).unwrap();
}

fn config_map(api: &FakeApi, name: &str) -> Option<ConfigMap> {
    api.stored(&format!("/api/v1/namespaces/demo/configmaps/{name}"))
}

/// Calls for `hash` by pod ordinal.
fn calls_for(servers: &HookServers, hash: &str) -> BTreeMap<usize, usize> {
    servers.calls_for(hash)
}

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    clock: Arc<Mutex<Timestamp>>,
    servers: HookServers,
    bad: Arc<Mutex<String>>,
    svc: Svc,
    good: String,
}

/// Four pods running configuration `A=1`, their hooks judging `bad` unhealthy (or failing
/// the hook for it with `hook_fails`).
async fn world(hook_fails: bool) -> World {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    let bad = Arc::new(Mutex::new(String::from("-")));
    let judge_bad = bad.clone();
    let servers = HookServers::start(4, Duration::ZERO, move |_| Behavior::Judge {
        mounted: mounted.clone(),
        bad: judge_bad.clone(),
        hook_fails,
    })
    .await;
    let clock = Arc::new(Mutex::new(Timestamp::now()));
    let ctx = clocked(&api, &clock);
    let fixture = spec(servers.port, json!({"A": "1"}));
    let mut svc = Svc::new(fixture.clone());
    svc.reconcile(&mut api, &ctx).await;
    svc.reconcile(&mut api, &ctx).await;
    let good = hash_of(&fixture);
    assert_eq!(svc.status()["configHash"], good.as_str());
    assert!(servers.hits().is_empty(), "pods created with the configuration need no call");
    World { api, ctx, clock, servers, bad, svc, good }
}

#[tokio::test]
async fn an_unhealthy_canary_reverts_the_configuration_and_the_other_pods_never_see_it() {
    let World { mut api, ctx, clock, servers, bad, mut svc, good } = world(false).await;
    let metrics = ctx.metrics.clone();
    let broken = spec(servers.port, json!({"A": "broken"}));
    let bad_hash = hash_of(&broken);
    *bad.lock().unwrap() = bad_hash.clone();

    // One reconcile: the canary (highest ordinal) reloads, answers 503 on its health
    // endpoint, and the ConfigMap is restored.
    svc.change(&mut api, &broken);
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &bad_hash), BTreeMap::from([(3, 1)]), "only the canary is called");
    let canary = &svc.status()["canary"];
    assert_eq!(canary["phase"], "RolledBack", "{canary}");
    assert_eq!(canary["reason"], "CanaryUnhealthy");
    assert_eq!(canary["pods"], json!(["web-3"]));
    assert_eq!(canary["previousConfigHash"], good.as_str());
    let message = canary["message"].as_str().unwrap();
    assert!(
        message.contains("web-3") && message.contains("HTTP 503") && message.contains("ws_connected"),
        "{message}"
    );
    let (status, reason, said) = svc.condition("ConfigRolledBack");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "CanaryUnhealthy"));
    assert!(said.contains("ws_connected"), "{said}");
    assert_eq!(*api.mounted.lock().unwrap(), good, "the ConfigMap holds the last good configuration again");
    let copy = config_map(&api, "web-config-last-good").expect("last good copy");
    assert_eq!(copy.data.as_ref().unwrap()["config-hash"], good);
    assert!(copy.data.as_ref().unwrap().values().all(|v| !v.contains("broken")));
    let reasons = event_reasons(&calls);
    assert!(
        reasons.contains(&"CanaryStarted".to_string()) && reasons.contains(&"ConfigRolledBack".to_string()),
        "{reasons:?}"
    );
    assert_eq!(sample(&metrics, "relay_operator_config_rollbacks_total{reason=\"CanaryUnhealthy\"}"), 1.0);

    // Next reconcile: the canary is reloaded back; nobody else is called.
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &good), BTreeMap::from([(3, 1)]));
    for pod in ["web-0", "web-1", "web-2", "web-3"] {
        assert_eq!(api.annotation(pod, HASH), Some(good.clone()), "{pod}");
    }
    assert_eq!(svc.status()["configHash"], good.as_str());
    assert_eq!(svc.condition("ConfigInSync").0, "True");

    // The rolled back configuration is not tried again, even by a restarted operator.
    advance(&clock, 120);
    let restarted = clocked(&api, &clock);
    svc.reconcile(&mut api, &restarted).await;
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &bad_hash), BTreeMap::from([(3, 1)]));
    assert_eq!(*api.mounted.lock().unwrap(), good);
    assert_eq!(svc.condition("ConfigRolledBack").0, "True");
    // The rolled back configuration never became the current revision.
    assert_eq!(svc.status()["currentRevision"], 1, "{}", svc.status()["revisions"]);
    let others: usize = servers.hits().iter().filter(|h| h.pod != 3).count();
    assert_eq!(others, 0, "non-canary pods were never called");
}

#[tokio::test]
async fn a_good_configuration_passes_the_hold_then_reaches_every_pod() {
    let World { mut api, ctx, clock, servers, mut svc, .. } = world(false).await;
    let fixed = spec(servers.port, json!({"A": "2"}));
    let next = hash_of(&fixed);
    svc.change(&mut api, &fixed);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &next), BTreeMap::from([(3, 1)]));
    assert_eq!(svc.status()["canary"]["phase"], "Holding");
    assert_eq!(svc.condition("ConfigRolledBack").1, "CanaryInProgress");
    assert_eq!(svc.status()["currentRevision"], 1, "on trial, not applied yet");

    // During the hold (also after an operator restart) nobody else is called.
    advance(&clock, 10);
    svc.reconcile(&mut api, &ctx).await;
    let restarted = clocked(&api, &clock);
    advance(&clock, 10);
    svc.reconcile(&mut api, &restarted).await;
    assert_eq!(calls_for(&servers, &next), BTreeMap::from([(3, 1)]));
    assert_eq!(svc.status()["canary"]["phase"], "Holding");

    // The hold passes: then every pod.
    advance(&clock, 11);
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert_eq!(svc.status()["canary"]["phase"], "Passed");
    assert!(event_reasons(&calls).contains(&"CanaryPassed".to_string()));
    svc.reconcile(&mut api, &restarted).await;
    assert_eq!(calls_for(&servers, &next), BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)]));
    assert_eq!(svc.condition("ConfigInSync").0, "True");
    assert_eq!(svc.condition("ConfigRolledBack").1, "CanaryPassed");
    assert_eq!(svc.status()["currentRevision"], 2);
}

#[tokio::test]
async fn a_failing_canary_hook_reverts_without_restarting_the_pod_and_a_fixed_spec_tries_again() {
    let World { mut api, ctx, clock, servers, bad, mut svc, good } = world(true).await;
    let broken = spec(servers.port, json!({"A": "broken"}));
    let bad_hash = hash_of(&broken);
    *bad.lock().unwrap() = bad_hash.clone();
    svc.change(&mut api, &broken);
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(calls.iter().all(|c| c.method != "DELETE"), "onFailure: Restart does not apply to a canary");
    assert_eq!(svc.status()["canary"]["reason"], "CanaryHookFailed");
    assert!(calls_for(&servers, &bad_hash).keys().all(|pod| *pod == 3));
    assert_eq!(*api.mounted.lock().unwrap(), good);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(api.annotation("web-3", HASH), Some(good.clone()));

    // A new generation with a fixed configuration is tried (on the canary first).
    let fixed = spec(servers.port, json!({"A": "fixed"}));
    let fixed_hash = hash_of(&fixed);
    svc.change(&mut api, &fixed);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &fixed_hash), BTreeMap::from([(3, 1)]));
    assert_eq!(svc.condition("ConfigRolledBack").0, "False");
    advance(&clock, 31);
    svc.reconcile(&mut api, &ctx).await;
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &fixed_hash).len(), 4);
    assert!(servers.hits().iter().filter(|h| h.pod != 3).all(|h| h.hash == fixed_hash));
}

#[tokio::test]
async fn a_canary_turning_unready_during_the_hold_reverts() {
    let World { mut api, ctx, clock, servers, mut svc, good, .. } = world(false).await;
    let next = spec(servers.port, json!({"A": "2"}));
    let next_hash = hash_of(&next);
    svc.change(&mut api, &next);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.status()["canary"]["phase"], "Holding");
    advance(&clock, 5);
    api.set_pod("web-3", false, Some(&support::fake_api::pod_ip(3).to_string()));
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.status()["canary"]["reason"], "CanaryNotReady");
    assert_eq!(*api.mounted.lock().unwrap(), good);
    // Unready as it is, the canary is reloaded back.
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls_for(&servers, &good), BTreeMap::from([(3, 1)]));
    assert_eq!(api.annotation("web-3", HASH), Some(good.clone()));
    assert!(servers.hits().iter().all(|h| h.pod == 3));
    assert_eq!(calls_for(&servers, &next_hash), BTreeMap::from([(3, 1)]));
}

#[tokio::test]
async fn the_last_good_copy_never_holds_a_secret_value() {
    let servers = HookServers::start(2, Duration::ZERO, |_| Behavior::Legacy).await;
    let mut api = FakeApi::new();
    let secret = |value: &str| {
        let mut secret = Secret::default();
        secret.metadata.name = Some("web-secret".into());
        secret.metadata.namespace = Some("demo".into());
        secret.data = Some(BTreeMap::from([("token".to_string(), ByteString(value.as_bytes().to_vec()))]));
        secret
    };
    api.put(&secret("first-s3cret"));
    let clock = Arc::new(Mutex::new(Timestamp::now()));
    let ctx = clocked(&api, &clock);
    let fixture = spec(servers.port, json!({"A": "1"})).replicas(2).spec(json!({"config": {
        "data": {"A": "1"},
        "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "web-secret", "key": "token"}}],
    }}));
    let mut svc = Svc::new(fixture.clone());
    svc.reconcile(&mut api, &ctx).await;
    svc.reconcile(&mut api, &ctx).await;
    let first = svc.status()["configHash"].as_str().unwrap().to_string();

    // A new Secret value is a new configuration: canaried, and the copy of the previous
    // ConfigMap holds the file and its hash only.
    api.put(&secret("second-s3cret"));
    svc.reconcile(&mut api, &ctx).await;
    let canary = &svc.status()["canary"];
    assert_eq!(canary["previousConfigHash"], first.as_str(), "{canary}");
    assert_eq!(canary["pods"], json!(["web-1"]));
    let copy = config_map(&api, "web-config-last-good").expect("last good copy");
    let data = copy.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["config-hash", "config.env"]);
    for config_map in [copy, config_map(&api, "web-config").unwrap()] {
        let text = serde_json::to_string(&config_map).unwrap();
        assert!(!text.contains("s3cret"), "no Secret value in {text}");
    }
}

#[tokio::test]
async fn a_change_during_the_hold_is_tried_on_the_canary_and_reverts_to_the_configuration_before_both() {
    let World { mut api, ctx, servers, bad, mut svc, good, .. } = world(false).await;
    let second = spec(servers.port, json!({"A": "2"}));
    svc.change(&mut api, &second);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.status()["canary"]["phase"], "Holding");

    let broken = spec(servers.port, json!({"A": "broken"}));
    let bad_hash = hash_of(&broken);
    *bad.lock().unwrap() = bad_hash.clone();
    svc.change(&mut api, &broken);
    svc.reconcile(&mut api, &ctx).await;
    let canary = &svc.status()["canary"];
    assert_eq!(
        (canary["phase"].as_str(), canary["configHash"].as_str()),
        (Some("RolledBack"), Some(bad_hash.as_str()))
    );
    assert_eq!(canary["previousConfigHash"], good.as_str(), "the last good one is from before both changes");
    assert_eq!(*api.mounted.lock().unwrap(), good);
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(api.annotation("web-3", HASH), Some(good.clone()));
    assert!(servers.hits().iter().all(|h| h.pod == 3), "only the canary was ever called");
    assert_eq!(calls_for(&servers, &hash_of(&second)), BTreeMap::from([(3, 1)]));
}
