//! The RelayService reconciler against an in-process fake API server: the requests it
//! makes on a first reconcile, zero requests once converged, scaling, suspend, rolling
//! replacement, claim retention and re-adoption, dependency gating, a missing or changed
//! HealthPolicy, health details of unready pods, the Ingress (applied, deleted when removed,
//! left alone when not ours), convergence after a crash at any step, and Secrets: one in a
//! namespace the operator may not read, one rotated in a granted namespace.

mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use relay_operator::api::{ConditionType, RelayService, TestDeployment, find_condition};
use relay_operator::controller::relay_service::{dependents_of, reconcile};
use serde_json::{Value, json};
use support::*;

/// Two replicas with a port and configuration.
fn app(name: &str) -> RelayServiceFixture {
    RelayServiceFixture::new(name)
        .image("ghcr.io/example/web:1.0.0")
        .replicas(2)
        .port("http", 8080)
        .config([("A", "1")])
}

/// `app("web")` with storage.
fn web() -> RelayServiceFixture {
    app("web").storage("data", "1Gi", "/data")
}

#[tokio::test]
async fn events_about_different_pods_are_separate_events_naming_each_pod() {
    let h = Harness::new();
    reconcile(Arc::new(web().build()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let created: Vec<(String, String)> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("/events") && c.body["reason"] == "CreatedPod")
        .map(|c| {
            (
                c.body["related"]["name"].as_str().unwrap_or("").to_owned(),
                c.body["note"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        created,
        [
            ("web-0".to_owned(), "created pod web-0".to_owned()),
            ("web-1".to_owned(), "created pod web-1".to_owned())
        ],
        "one Event per pod, each naming its pod, none folded into another"
    );
}

#[tokio::test]
async fn first_reconcile_creates_everything_then_converges_to_zero_requests() {
    let mut h = Harness::new();
    let rs = web().build();
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let paths = summary(&calls);
    for expected in [
        "PATCH /api/v1/namespaces/demo/configmaps/web-config",
        "PATCH /api/v1/namespaces/demo/services/web",
        "PATCH /api/v1/namespaces/demo/persistentvolumeclaims/data-web-0",
        "PATCH /api/v1/namespaces/demo/persistentvolumeclaims/data-web-1",
        "POST /api/v1/namespaces/demo/pods/web-0",
        "POST /api/v1/namespaces/demo/pods/web-1",
        "PATCH /apis/relayops.io/v1alpha1/namespaces/demo/relayservices/web/status",
    ] {
        assert!(paths.contains(&expected.to_string()), "{expected} missing from {paths:#?}");
    }
    for call in calls.iter().filter(|c| c.method == "PATCH" && !c.path.contains("/events/")) {
        assert!(call.path.contains("fieldManager=relay-operator"), "{}", call.path);
        assert!(call.path.contains("force=true"), "{}", call.path);
    }
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    assert_eq!(status["ready"], "0/2");
    assert_eq!(status["observedGeneration"], 1);

    // Pods turn Ready: one status update, no other writes.
    let rs = with_patched_status(rs, &calls);
    h.sync(true);
    h.put(&rs);
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert_eq!(
        summary(&calls),
        ["PATCH /apis/relayops.io/v1alpha1/namespaces/demo/relayservices/web/status"]
    );
    let status = &calls[0].body["status"];
    assert_eq!(status["ready"], "2/2");
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");

    // Converged: a reconcile with nothing to change makes zero requests.
    let rs = with_patched_status(rs, &calls);
    reconcile(Arc::new(rs), h.ctx.clone()).await.unwrap();
    assert_eq!(summary(&h.take_calls()), Vec::<String>::new());
}

#[tokio::test]
async fn scale_down_deletes_highest_ordinal_and_suspend_deletes_all() {
    let mut h = Harness::new();
    let service = web().replicas(3);
    reconcile(Arc::new(service.build()), h.ctx.clone()).await.unwrap();
    h.take_calls();
    h.sync(true);

    reconcile(Arc::new(service.clone().replicas(1).build()), h.ctx.clone()).await.unwrap();
    let deletes: Vec<String> =
        summary(&h.take_calls()).into_iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        ["DELETE /api/v1/namespaces/demo/pods/web-2", "DELETE /api/v1/namespaces/demo/pods/web-1"]
    );

    reconcile(Arc::new(service.suspend(true).build()), h.ctx.clone()).await.unwrap();
    let calls = summary(&h.take_calls());
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(deletes.len(), 3, "suspend deletes every pod: {calls:#?}");
    assert!(!calls.iter().any(|c| c.contains("configmaps") && c.starts_with("DELETE")), "config is kept");
    assert!(
        !calls.iter().any(|c| c.contains("persistentvolumeclaims") && c.starts_with("DELETE")),
        "claims are kept"
    );
}

#[tokio::test]
async fn dependencies_gate_pod_creation() {
    let mut h = Harness::new();
    let mut postgres = RelayServiceFixture::new("postgres").image("postgres:16.4").build();
    h.put(&postgres);
    let api = RelayServiceFixture::new("web").image("api:1.0.0").depends_on(["postgres"]).build();
    reconcile(Arc::new(api.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/")), "no pod while postgres is not Ready");
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let deps =
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DependenciesReady").unwrap();
    assert_eq!(
        (deps["status"].as_str(), deps["reason"].as_str()),
        (Some("False"), Some("DependenciesNotReady"))
    );
    assert!(deps["message"].as_str().unwrap().contains("postgres"));

    // postgres turns Ready: api's pods are created.
    postgres.status = Some(serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady", "message": "", "lastTransitionTime": "2026-11-24T00:00:00Z"}], "observedGeneration": 1})).unwrap());
    h.put(&postgres);
    reconcile(Arc::new(api), h.ctx.clone()).await.unwrap();
    assert!(summary(&h.take_calls()).contains(&"POST /api/v1/namespaces/demo/pods/web-0".to_string()));
}

#[tokio::test]
async fn a_dependency_turning_ready_wakes_its_dependents() {
    let mut h = Harness::new();
    let postgres = RelayServiceFixture::new("postgres").image("postgres:16.4").build();
    let api = RelayServiceFixture::new("api").image("api:1.0.0").depends_on(["postgres"]).build();
    let other = RelayServiceFixture::new("ui").image("ui:1.0.0").build();
    for service in [&api, &other, &postgres] {
        h.put(service);
    }
    let calls = step(&mut h, &postgres, true).await;
    let postgres = with_patched_status(postgres, &calls);
    assert!(dependents_of(&h.ctx.caches.services, &postgres).is_empty(), "nobody is woken while not Ready");
    // Its pods are Ready now: the next status write says Ready, and that write's watch
    // event wakes the dependent, which then finds postgres Ready in the cache it reads.
    let calls = step(&mut h, &postgres, true).await;
    let postgres = with_patched_status(postgres, &calls);
    h.put(&postgres);
    let woken: Vec<String> =
        dependents_of(&h.ctx.caches.services, &postgres).into_iter().map(|r| r.name).collect();
    assert_eq!(woken, ["api"]);
}

#[tokio::test]
async fn cycle_and_missing_dependency_become_conditions() {
    let h = Harness::new();
    let missing = RelayServiceFixture::new("web").image("api:1.0.0").depends_on(["nope"]).build();
    reconcile(Arc::new(missing), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/")));
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let deps =
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DependenciesReady").unwrap();
    assert_eq!(deps["reason"], "DependencyNotFound");
}

#[tokio::test]
async fn missing_health_policy_is_a_condition_and_touches_no_pod() {
    let h = Harness::new();
    let rs = RelayServiceFixture::new("web").image("api:1.0.0").health_policy("gone").build();
    let action = reconcile(Arc::new(rs), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let paths = summary(&calls);
    assert!(!paths.iter().any(|c| c.contains("/pods/") || c.contains("configmaps")), "{paths:#?}");
    assert!(paths.iter().any(|c| c.contains("/events")), "a Warning Event explains it: {paths:#?}");
    let status = &calls.iter().find(|c| c.path.contains("/status")).unwrap().body["status"];
    let degraded = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap();
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("HealthPolicyNotFound"))
    );
    assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::await_change()));
}

#[tokio::test]
async fn a_lasting_problem_is_one_warning_counting_repeats_and_each_transition_its_own_event() {
    let mut h = Harness::new();
    let broken = Arc::new(RelayServiceFixture::new("web").image("api:1.0.0").health_policy("gone").build());
    let mut warnings = Vec::new();
    for _ in 0..3 {
        reconcile(broken.clone(), h.ctx.clone()).await.unwrap();
        warnings.extend(h.take_calls().into_iter().filter(|c| c.path.contains("/events")));
    }
    let writes: Vec<(&str, Option<i64>)> =
        warnings.iter().map(|c| (c.method.as_str(), c.body["series"]["count"].as_i64())).collect();
    assert_eq!(writes, [("POST", None), ("PATCH", Some(2)), ("PATCH", Some(3))], "one Event, counted");

    let service = web();
    let mut scaled_down = Vec::new();
    for replicas in [2, 1, 2, 1] {
        let calls = step(&mut h, &service.clone().replicas(replicas).build(), true).await;
        scaled_down.extend(
            calls
                .into_iter()
                .filter(|c| c.path.contains("/events") && c.body["reason"] == "ScaledDown")
                .map(|c| (c.method, c.body["series"].is_null())),
        );
    }
    let new_event = ("POST".to_owned(), true);
    assert_eq!(scaled_down, [new_event.clone(), new_event], "each scale-down its own Event");
}

/// Reconcile `rs`, feed the writes back into the caches (pods Ready or not), return the calls.
async fn step(h: &mut Harness, rs: &RelayService, ready: bool) -> Vec<Call> {
    reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    h.sync(ready);
    calls
}

/// Writes to children (revisions aside: tests/revisions.rs).
fn writes(calls: &[Call]) -> Vec<String> {
    summary(calls)
        .into_iter()
        .filter(|c| {
            !c.contains("/events")
                && !c.ends_with("/status")
                && !c.starts_with("GET")
                && !c.contains("/controllerrevisions")
        })
        .collect()
}

#[tokio::test]
async fn rolling_replacement_one_pod_at_a_time_waiting_for_ready() {
    let mut h = Harness::new();
    step(&mut h, &web().replicas(3).build(), true).await;

    let rs = web().replicas(3).image("ghcr.io/example/web:1.0.1").build();
    let calls = step(&mut h, &rs, false).await;
    assert_eq!(
        writes(&calls),
        ["DELETE /api/v1/namespaces/demo/pods/web-2"],
        "highest ordinal first, one at a time"
    );
    // The replacement is created…
    let calls = step(&mut h, &rs, false).await;
    assert_eq!(writes(&calls), ["POST /api/v1/namespaces/demo/pods/web-2"]);
    let created = calls.iter().find(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-2").unwrap();
    assert_eq!(created.body["spec"]["containers"][0]["image"], "ghcr.io/example/web:1.0.1");
    // …and while it is not Ready nothing else moves (maxUnavailable 1).
    assert_eq!(writes(&step(&mut h, &rs, false).await), Vec::<String>::new());
    h.set_pod("web-2", true, None);
    assert_eq!(writes(&step(&mut h, &rs, false).await), ["DELETE /api/v1/namespaces/demo/pods/web-1"]);
}

#[tokio::test]
async fn retained_claims_survive_and_are_readopted_by_a_new_incarnation() {
    let mut h = Harness::new();
    let first = step(&mut h, &web().build(), true).await;
    let claim = first.iter().find(|c| c.path.contains("/persistentvolumeclaims/data-web-0")).unwrap();
    assert!(claim.body["metadata"].get("ownerReferences").is_none(), "Retain claims are not owned");

    // The RelayService is deleted: the garbage collector removes pods, ConfigMap and Service, not the claims.
    for pod in h.ctx.caches.pods.state() {
        let path = format!("/api/v1/namespaces/demo/pods/{}", pod.name_any());
        let stored: Pod = h.stored(&path).unwrap();
        h.remove(&stored);
    }
    // It is created again, with a new UID.
    let again = web().uid("uid-web-2").build();
    let calls = step(&mut h, &again, true).await;
    let written = writes(&calls);
    assert!(
        !written.iter().any(|c| c.contains("persistentvolumeclaims")),
        "claims re-adopted as they are: {written:#?}"
    );
    let pod = calls.iter().find(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-0").unwrap();
    let volumes = pod.body["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == "data-web-0"));
    assert_eq!(pod.body["metadata"]["ownerReferences"][0]["uid"], "uid-web-2");
}

#[tokio::test]
async fn when_scaled_delete_removes_claims_of_removed_ordinals_only() {
    let mut h = Harness::new();
    let service = web().when_scaled("Delete");
    step(&mut h, &service.clone().build(), true).await;
    let rs = service.replicas(1).build();
    let calls = step(&mut h, &rs, true).await;
    assert_eq!(
        writes(&calls),
        ["DELETE /api/v1/namespaces/demo/pods/web-1"],
        "the claim waits for its pod to go"
    );
    let calls = step(&mut h, &rs, true).await;
    assert_eq!(writes(&calls), ["DELETE /api/v1/namespaces/demo/persistentvolumeclaims/data-web-1"]);
    assert_eq!(writes(&step(&mut h, &rs, true).await), Vec::<String>::new());
}

#[tokio::test]
async fn failed_pods_are_recreated() {
    let mut h = Harness::new();
    let rs = web().build();
    step(&mut h, &rs, true).await;
    let mut pod: Pod = h.stored("/api/v1/namespaces/demo/pods/web-1").unwrap();
    pod.status.as_mut().unwrap().phase = Some("Failed".into());
    h.put(&pod);
    assert_eq!(writes(&step(&mut h, &rs, true).await), ["DELETE /api/v1/namespaces/demo/pods/web-1"]);
    assert_eq!(writes(&step(&mut h, &rs, true).await), ["POST /api/v1/namespaces/demo/pods/web-1"]);
}

#[tokio::test]
async fn a_health_policy_change_reaches_every_referencing_service() {
    let mut h = Harness::new();
    let policy = |interval: &str| {
        HealthPolicyFixture::new("shared").http("/health", 8080).interval(interval).timeout("5s").build()
    };
    h.put(&policy("10s"));
    let mut services = Vec::new();
    for name in ["api", "relay", "other"] {
        let mut service = app(name).replicas(1);
        if name != "other" {
            service = service.health_policy("shared");
        }
        let rs = service.build();
        h.put(&rs);
        services.push(rs);
    }
    let users = relay_operator::controller::relay_service::services_using_policy(
        &h.ctx.caches.services,
        &policy("20s"),
    );
    let mut names: Vec<String> = users.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["api", "relay"], "the watch maps a policy change to exactly its users");

    for rs in &services[..2] {
        let calls = step(&mut h, rs, true).await;
        let pod = calls.iter().find(|c| c.method == "POST" && c.path.contains("/pods")).unwrap();
        assert_eq!(pod.body["spec"]["containers"][0]["readinessProbe"]["periodSeconds"], 10);
    }
    h.put(&policy("20s"));
    for rs in &services[..2] {
        let name = rs.metadata.name.clone().unwrap();
        let calls = step(&mut h, rs, true).await;
        assert_eq!(
            writes(&calls),
            [format!("DELETE /api/v1/namespaces/demo/pods/{name}-0")],
            "rolled to the new probes"
        );
        let calls = step(&mut h, rs, true).await;
        let pod = calls.iter().find(|c| c.method == "POST" && c.path.contains("/pods")).unwrap();
        assert_eq!(pod.body["spec"]["containers"][0]["readinessProbe"]["periodSeconds"], 20);
    }
}

#[tokio::test]
async fn a_pod_failing_its_health_check_gets_the_answer_in_status_and_an_event_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let body = r#"{"status": "degraded", "ws_connected": false, "n8n_available": true}"#;
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    let mut h = Harness::new();
    let rs =
        web().spec(json!({"health": {"http": {"path": "/health", "port": port}, "interval": "10s"}})).build();
    let calls = step(&mut h, &rs, true).await;
    let rs = with_patched_status(rs, &calls);
    let calls = step(&mut h, &rs, true).await;
    let rs = with_patched_status(rs, &calls);
    assert_eq!(rs.status.as_ref().unwrap().ready_replicas, 2);

    // Running for an hour, then its check fails.
    h.set_pod_running("web-0", false, "127.0.0.1", "2020-01-01T00:00:00Z");
    let calls = step(&mut h, &rs, true).await;
    let event = calls
        .iter()
        .find(|c| c.path.contains("/events") && c.body["reason"] == "HealthCheckFailing")
        .expect("an Event");
    assert_eq!(event.body["related"]["name"], "web-0", "the Event names the pod");
    assert!(event.body["note"].as_str().unwrap().contains("ws_connected\": false"), "{}", event.body["note"]);
    let rs = with_patched_status(rs, &calls);
    let status = rs.status.as_ref().unwrap();
    let entry = status.pods.iter().find(|p| p.name == "web-0").unwrap().clone();
    assert!(!entry.ready);
    let failure = entry.failure.unwrap();
    assert_eq!(failure.reason, "HealthCheckFailing");
    assert!(
        failure
            .message
            .starts_with("readiness check GET /health answered HTTP 503: {\"status\": \"degraded\""),
        "{}",
        failure.message
    );
    let ready = find_condition(&status.conditions, ConditionType::Ready).unwrap();
    assert_eq!(ready.reason, "HealthCheckFailing", "kubectl get shows why");
    assert!(
        ready.message.contains("web-0: HealthCheckFailing: readiness check GET /health answered HTTP 503")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Fetched once: the next reconcile keeps the answer without asking again.
    let calls = step(&mut h, &rs, true).await;
    assert!(!calls.iter().any(|c| c.body["reason"] == "HealthCheckFailing"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Stop the operator after each possible write of a first reconcile, restart it, and check
/// the cluster ends exactly where an uninterrupted reconcile leaves it: same objects, each
/// written once, no duplicate and no orphan.
#[tokio::test]
async fn converges_after_a_crash_at_any_step() {
    let rs = web().build();
    let mut reference = Harness::new();
    let uninterrupted = step(&mut reference, &rs, false).await;
    let expected: std::collections::BTreeSet<String> = writes(&uninterrupted).into_iter().collect();
    assert!(expected.len() >= 6, "{expected:#?}");

    for crash_after in 0..expected.len() {
        let mut h = Harness::new();
        h.fail_after(crash_after);
        assert!(
            reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.is_err(),
            "crash after {crash_after} writes"
        );
        let before = h.take_calls();
        h.sync(false);
        h.restart();
        let after = step(&mut h, &rs, false).await;
        let mut all = writes(&before);
        all.extend(writes(&after));
        let unique: std::collections::BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(unique, expected, "crash after {crash_after}: different objects");
        assert_eq!(
            all.len(),
            unique.len(),
            "crash after {crash_after}: an object was written twice: {all:#?}"
        );
        assert_eq!(h.ctx.caches.pods.state().len(), 2);
        assert_eq!(
            writes(&step(&mut h, &rs, false).await),
            Vec::<String>::new(),
            "crash after {crash_after}: not converged"
        );
    }
}

#[tokio::test]
async fn health_policy_status_counts_its_users() {
    let mut h = Harness::new();
    for (name, uses) in [("api", true), ("relay", true), ("db", false)] {
        let mut service = RelayServiceFixture::new(name).image("a:1");
        if uses {
            service = service.health_policy("shared");
        }
        h.put(&service.build());
    }
    // A TestDeployment's template, and one whose copied source uses the policy.
    let template = RelayServiceFixture::new("t").image("a:1").health_policy("shared").build().spec;
    let snapshot = serde_json::to_string(&template).unwrap();
    h.put(&json_object::<TestDeployment>(json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment",
        "metadata": {"name": "pr-1", "namespace": "demo"},
        "spec": {"template": template, "ttl": "1h"},
    })));
    h.put(&json_object::<TestDeployment>(json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment",
        "metadata": {"name": "pr-2", "namespace": "demo", "annotations": {"relayops.io/source-spec": snapshot}},
        "spec": {"fromRelayService": "api", "ttl": "1h"},
    })));
    let policy =
        HealthPolicyFixture::new("shared").generation(3).tcp(5432).interval("10s").timeout("5s").build();
    relay_operator::controller::health_policy::reconcile(Arc::new(policy), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert_eq!(
        summary(&calls),
        ["PATCH /apis/relayops.io/v1alpha1/namespaces/demo/healthpolicies/shared/status"]
    );
    let status = &calls[0].body["status"];
    assert_eq!(status["usedBy"], 4, "two RelayServices and two TestDeployments");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["conditions"][0]["type"], "Accepted");
    assert_eq!(status["conditions"][0]["status"], "True");
}

fn condition(calls: &[Call], type_: &str) -> Value {
    let status =
        &calls.iter().rev().find(|c| c.path.contains("/status")).expect("a status write").body["status"];
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).cloned().unwrap()
}

#[tokio::test]
async fn scale_up_and_resume_after_suspend() {
    let mut h = Harness::new();
    let calls = step(&mut h, &web().replicas(1).build(), true).await;
    assert!(writes(&calls).contains(&"POST /api/v1/namespaces/demo/pods/web-0".to_string()));
    let service = web().replicas(3);
    let calls = step(&mut h, &service.build(), true).await;
    let pods: Vec<String> = writes(&calls).into_iter().filter(|c| c.contains("/pods/")).collect();
    assert_eq!(pods, ["POST /api/v1/namespaces/demo/pods/web-1", "POST /api/v1/namespaces/demo/pods/web-2"]);

    let calls = step(&mut h, &service.clone().suspend(true).build(), true).await;
    assert_eq!(writes(&calls).iter().filter(|c| c.starts_with("DELETE")).count(), 3);
    assert_eq!(condition(&calls, "Ready")["reason"], "Suspended");
    assert!(calls.iter().any(|c| c.body["reason"] == "Suspended"), "an Event says so");

    let calls = step(&mut h, &service.suspend(false).build(), true).await;
    let pods: Vec<String> = writes(&calls).into_iter().filter(|c| c.contains("/pods/")).collect();
    assert_eq!(pods.len(), 3, "resume recreates every pod: {pods:#?}");
    assert!(
        !writes(&calls).iter().any(|c| c.contains("persistentvolumeclaims")),
        "the same claims are used again"
    );
}

#[tokio::test]
async fn a_dependency_cycle_is_a_condition_not_a_loop() {
    let mut h = Harness::new();
    let a = RelayServiceFixture::new("a").image("a:1.0.0").depends_on(["b"]).build();
    let b = RelayServiceFixture::new("b").image("b:1.0.0").depends_on(["a"]).build();
    h.put(&a);
    h.put(&b);
    let action = reconcile(Arc::new(a), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert!(!writes(&calls).iter().any(|c| c.contains("/pods/")));
    let deps = condition(&calls, "DependenciesReady");
    assert_eq!((deps["status"].as_str(), deps["reason"].as_str()), (Some("False"), Some("DependencyCycle")));
    assert_eq!(deps["message"], "dependency cycle: a → b → a");
    assert_ne!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::requeue(std::time::Duration::ZERO))
    );
}

#[tokio::test]
async fn mutable_images_warn_and_can_be_refused() {
    let mut h = Harness::new();
    let calls = step(&mut h, &RelayServiceFixture::new("web").image("nginx:latest").build(), true).await;
    assert!(writes(&calls).iter().any(|c| c.contains("/pods/web-0")), "a warning, not a refusal, by default");
    let pinned = condition(&calls, "ImagePinned");
    assert_eq!(
        (pinned["status"].as_str(), pinned["reason"].as_str()),
        (Some("False"), Some("MutableImageTag"))
    );
    assert!(calls.iter().any(|c| c.body["reason"] == "MutableImageTag" && c.body["type"] == "Warning"));

    let mut strict = Harness::with_policy(true);
    let calls = step(&mut strict, &RelayServiceFixture::new("web").image("nginx").build(), true).await;
    assert!(!writes(&calls).iter().any(|c| c.contains("/pods/")), "refused with --require-pinned-images");
    let ready = condition(&calls, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("ImageNotPinned")));
}

/// A kubelet's pod status: the container waits with `reason`/`message` (after a crash
/// with exit code `exit`, if any).
fn waiting_status(reason: &str, message: &str, exit: Option<i32>) -> k8s_openapi::api::core::v1::PodStatus {
    let last = exit.map_or(json!({}), |code| json!({"terminated": {"exitCode": code}}));
    serde_json::from_value(json!({
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": last,
        }],
    }))
    .unwrap()
}

fn failure_events(calls: &[Call], reason: &str) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.path.contains("/events") && c.body["reason"] == reason)
        .map(|c| {
            assert_eq!(c.body["type"], "Warning");
            let pod = c.body["related"]["name"].as_str().unwrap_or_default().to_owned();
            (pod, c.body["note"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_crash_loop_shows_the_reason_and_the_log_tail_read_once_per_pod() {
    let mut h = Harness::new();
    let rs = web().build();
    let calls = step(&mut h, &rs, false).await;
    let rs = with_patched_status(rs, &calls);
    h.set_pod_status(&waiting_status(
        "CrashLoopBackOff",
        "back-off 40s restarting failed container=app",
        Some(2),
    ));

    let calls = step(&mut h, &rs, false).await;
    let logs: Vec<&str> =
        calls.iter().filter(|c| c.path.contains("/log?")).map(|c| c.path.as_str()).collect();
    assert_eq!(logs.len(), 2, "one log read per pod: {logs:#?}");
    assert!(logs.iter().all(|p| p.contains("previous=true") && p.contains("container=app")), "{logs:#?}");
    assert_eq!(
        failure_events(&calls, "CrashLoopBackOff"),
        [
            ("web-0".to_owned(), "pod web-0: back-off 40s restarting failed container=app".to_owned()),
            ("web-1".to_owned(), "pod web-1: back-off 40s restarting failed container=app".to_owned()),
        ],
        "one Warning Event per pod, naming it"
    );
    // A reconcile that still reads the status from before that write (the cache lags)
    // announces nothing again.
    let stale = step(&mut h, &rs, false).await;
    assert!(failure_events(&stale, "CrashLoopBackOff").is_empty(), "announced twice: {:#?}", summary(&stale));
    let rs = with_patched_status(rs, &calls);
    let status = rs.status.as_ref().unwrap();
    let failure = status.pods[0].failure.clone().unwrap();
    assert_eq!((failure.reason.as_str(), failure.exit_code), ("CrashLoopBackOff", Some(2)));
    assert_eq!(failure.log_tail.as_deref(), Some(LOG));
    let ready = find_condition(&status.conditions, ConditionType::Ready).unwrap();
    assert_eq!(ready.reason, "CrashLoopBackOff");
    let degraded = find_condition(&status.conditions, ConditionType::Degraded).unwrap();
    assert_eq!(
        degraded.message,
        "web-0: CrashLoopBackOff: back-off 40s restarting failed container=app; \
         web-1: CrashLoopBackOff: back-off 40s restarting failed container=app"
    );

    // The same failure: nothing read or announced again.
    let calls = step(&mut h, &rs, false).await;
    assert!(
        !calls.iter().any(|c| c.path.contains("/log?") || c.path.contains("/events")),
        "{:#?}",
        summary(&calls)
    );
    let rs = with_patched_status(rs, &calls);
    assert_eq!(rs.status.unwrap().pods[1].failure.clone().unwrap().log_tail.as_deref(), Some(LOG));
}

#[tokio::test]
async fn a_pull_error_shows_the_kubelets_message_in_get_and_describe() {
    let mut h = Harness::new();
    let rs = web().replicas(1).build();
    let calls = step(&mut h, &rs, false).await;
    let rs = with_patched_status(rs, &calls);
    let message = "Back-off pulling image \"ghcr.io/example/web:1.0.0\": not found";
    h.set_pod_status(&waiting_status("ImagePullBackOff", message, None));

    let calls = step(&mut h, &rs, false).await;
    assert!(!calls.iter().any(|c| c.path.contains("/log?")), "no log for a pull error");
    assert_eq!(
        failure_events(&calls, "ImagePullBackOff"),
        [("web-0".to_owned(), format!("pod web-0: {message}"))]
    );
    let rs = with_patched_status(rs, &calls);
    let status = rs.status.as_ref().unwrap();
    let ready = find_condition(&status.conditions, ConditionType::Ready).unwrap();
    assert_eq!(ready.reason, "ImagePullBackOff", "the Status column of kubectl get");
    assert_eq!(ready.message, format!("0/1 pods ready, 1 up to date; web-0: ImagePullBackOff: {message}"));
    assert_eq!(status.pods[0].failure.as_ref().unwrap().message, message);
}

fn json_object<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

/// The Secret `namespace/creds` with `token`.
fn creds(namespace: &str, token: &str) -> k8s_openapi::api::core::v1::Secret {
    serde_json::from_value(json!({"metadata": {"name": "creds", "namespace": namespace},
        "data": {"token": k8s_openapi::ByteString(token.as_bytes().to_vec())}}))
    .unwrap()
}

/// `app(name)` reading `creds/token` as `TOKEN`, in `namespace`.
fn with_secret(name: &str, namespace: &str) -> RelayService {
    let mut rs = app(name)
        .spec(json!({"config": {"data": {"A": "1"},
            "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}]}}))
        .build();
    rs.metadata.namespace = Some(namespace.into());
    rs
}

/// The `config-hash` of the ConfigMap the calls applied.
fn applied_hash(calls: &[Call]) -> Option<String> {
    let cm = calls.iter().find(|c| c.method == "PATCH" && c.path.contains("/configmaps/"))?;
    cm.body["data"]["config-hash"].as_str().map(String::from)
}

#[tokio::test]
async fn a_secret_in_a_namespace_the_operator_may_not_read_is_its_own_condition() {
    // The fake grants Secrets in `demo` only (`--secret-namespace demo`); `other` holds the
    // Secret, but the operator cannot see it.
    let mut h = Harness::new();
    h.put(&creds("other", "t0ken"));
    let bearer = {
        let mut rs = app("hook")
            .reload(json!({"port": 8080, "bearerTokenSecretRef": {"name": "creds", "key": "token"}}))
            .build();
        rs.metadata.namespace = Some("other".into());
        rs
    };
    for (rs, field) in [
        (with_secret("web", "other"), "spec.config.secrets[0].secretKeyRef"),
        (bearer, "spec.reload.bearerTokenSecretRef"),
    ] {
        let action = reconcile(Arc::new(rs), h.ctx.clone()).await.unwrap();
        let calls = h.take_calls();
        let paths = summary(&calls);
        assert!(!paths.iter().any(|c| c.contains("/pods/") || c.contains("configmaps")), "{paths:#?}");
        let ready = condition(&calls, "Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("SecretNotReadable"))
        );
        let message = ready["message"].as_str().unwrap();
        for part in [field, "Secret other/creds", "rbac.secretNamespaces", "--secret-namespace other"] {
            assert!(message.contains(part), "{part:?} missing from {message:?}");
        }
        let event =
            calls.iter().find(|c| c.path.contains("/events") && c.body["reason"] == "SecretNotReadable");
        let event = event.unwrap_or_else(|| panic!("no SecretNotReadable Event: {paths:#?}"));
        assert_eq!(
            (event.body["type"].as_str(), event.body["note"].as_str()),
            (Some("Warning"), Some(message))
        );
        assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::await_change()));
    }

    // A service there that references no Secret runs as usual.
    let mut plain = app("plain").build();
    plain.metadata.namespace = Some("other".into());
    reconcile(Arc::new(plain), h.ctx.clone()).await.unwrap();
    assert!(summary(&h.take_calls()).contains(&"POST /api/v1/namespaces/other/pods/plain-0".to_string()));
}

#[tokio::test]
async fn a_secret_change_in_a_granted_namespace_wakes_and_rehashes_its_services() {
    use relay_operator::controller::relay_service::services_using_secret;

    let mut h = Harness::new();
    h.put(&creds("demo", "one"));
    let web = with_secret("web", "demo");
    h.put(&web);
    h.put(&app("other").build());
    let before = applied_hash(&step(&mut h, &web, true).await).expect("the ConfigMap is applied");

    let rotated = creds("demo", "two");
    h.put(&rotated);
    let woken: Vec<String> =
        services_using_secret(&h.ctx.caches.services, &rotated).into_iter().map(|r| r.name).collect();
    assert_eq!(woken, ["web"], "the Secret's watch event wakes exactly its users");
    let after = applied_hash(&step(&mut h, &web, true).await).expect("the ConfigMap is applied again");
    assert_ne!(before, after, "the new value enters the configuration hash");

    // The same name in a namespace the operator may not read reaches no cache.
    h.put(&creds("other", "three"));
    assert!(h.ctx.caches.secrets.get("other", "creds").is_none());
    assert_eq!(applied_hash(&step(&mut h, &web, true).await), None, "nothing changed for web");
}

#[tokio::test]
async fn ingress_is_applied_then_deleted_when_removed_from_the_spec_and_pods_stay() {
    let mut h = Harness::new();
    let plain = app("web");
    reconcile(Arc::new(plain.clone().build()), h.ctx.clone()).await.unwrap();
    let first = h.take_calls();
    assert!(!summary(&first).iter().any(|c| c.contains("/ingresses/")), "no Ingress without spec.ingress");
    h.sync(true);

    // Adding an Ingress and a NodePort: two applies, no pod replaced.
    let exposed = plain.clone().spec(json!({
        "service": {"type": "NodePort"},
        "ingress": {"host": "web.example.com", "tlsSecretName": "web-tls", "className": "nginx"},
    }));
    reconcile(Arc::new(exposed.clone().build()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    assert_eq!(
        writes(&calls),
        [
            "PATCH /api/v1/namespaces/demo/services/web",
            "PATCH /apis/networking.k8s.io/v1/namespaces/demo/ingresses/web",
        ]
    );
    let service = calls.iter().find(|c| c.path.contains("/services/web")).unwrap();
    assert_eq!(service.body["spec"]["type"], "NodePort");
    let apply = calls.iter().find(|c| c.path.contains("/ingresses/web")).unwrap();
    assert!(apply.path.contains("fieldManager=relay-operator") && apply.path.contains("force=true"));
    let ingress = &apply.body;
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ingress["metadata"]["ownerReferences"][0]["uid"], "uid-web");
    assert_eq!(ingress["metadata"]["labels"]["app.kubernetes.io/managed-by"], "relay-operator");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "web-tls");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "web.example.com");
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"], "http");
    h.sync(true);

    // Converged: nothing to write.
    reconcile(Arc::new(exposed.build()), h.ctx.clone()).await.unwrap();
    assert!(writes(&h.take_calls()).is_empty());

    // Removed from the spec: the Ingress is deleted, once; the pods stay.
    reconcile(Arc::new(plain.clone().spec(json!({"service": {"type": "NodePort"}})).build()), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(writes(&h.take_calls()), ["DELETE /apis/networking.k8s.io/v1/namespaces/demo/ingresses/web"]);
    h.sync(true);
    reconcile(Arc::new(plain.spec(json!({"service": {"type": "NodePort"}})).build()), h.ctx.clone())
        .await
        .unwrap();
    assert!(writes(&h.take_calls()).is_empty());
}

#[tokio::test]
async fn an_ingress_the_service_does_not_own_is_left_alone() {
    use k8s_openapi::api::networking::v1::Ingress;
    let mut h = Harness::new();
    // Same name and the operator's label, but another owner (e.g. a RelayService that was
    // deleted and recreated: the garbage collector removes that one).
    let foreign: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "demo",
            "labels": {"app.kubernetes.io/managed-by": "relay-operator"},
            "ownerReferences": [{"apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment",
                "name": "web", "uid": "uid-other", "controller": true}]},
        "spec": {"defaultBackend": {"service": {"name": "other", "port": {"number": 80}}}},
    }))
    .unwrap();
    h.put(&foreign);
    reconcile(Arc::new(app("web").build()), h.ctx.clone()).await.unwrap();
    assert!(!summary(&h.take_calls()).iter().any(|c| c.contains("/ingresses/")));
}
