//! RBAC coverage: every (API group, resource, verb) the operator uses — the watches of the
//! running binary and the writes of the reconcilers in their tests — is granted by the
//! chart's roles, and the roles grant nothing beyond that (and no `*`). Secrets: no
//! ClusterRole grants anything on them, and the per-namespace Roles grant exactly the
//! namespaces and verbs of the Secret watches the binary makes with the chart's arguments.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use relay_operator::controller::relay_service::reconcile;
use serde_json::{Value, json};
use support::process::{fake_api, start, start_with, wait_for};
use support::*;

type Permission = (String, String, String);

/// (group, resource incl. subresource, verb) of one request `METHOD /api…?query`.
fn permissions(method: &str, target: &str) -> Vec<Permission> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.first() {
        Some(&"api") => (String::new(), &segments[2..]),
        Some(&"apis") => (segments[1].to_string(), &segments[3..]),
        _ => return vec![],
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() > 2 { &rest[2..] } else { rest };
    let resource = match rest {
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        _ => return vec![],
    };
    let named = rest.len() >= 2;
    let verbs: &[&str] = match method {
        "GET" if query.contains("watch=true") => &["watch"],
        "GET" if named => &["get"],
        "GET" => &["list"],
        "POST" => &["create"],
        "DELETE" => &["delete"],
        // Server-side apply (always forced here) may create the object, which needs `create` too.
        "PATCH" if query.contains("force=true") && !resource.ends_with("/status") => &["patch", "create"],
        "PATCH" => &["patch"],
        "PUT" => &["update"],
        _ => &[],
    };
    verbs.iter().map(|v| (group.clone(), resource.clone(), v.to_string())).collect()
}

/// Lease verbs of leader election: kube-lease-manager gets the Lease, creates it when
/// missing and renews it by server-side apply (see `src/ops/leader.rs` and its tests).
fn lease_permissions() -> Vec<Permission> {
    ["get", "create", "patch"]
        .iter()
        .map(|v| ("coordination.k8s.io".into(), "leases".into(), v.to_string()))
        .collect()
}

async fn watches_of_the_binary() -> BTreeSet<Permission> {
    let (address, api) = fake_api().await;
    let (_operator, port) = start(&address);
    let synced = wait_for(port, "/readyz", 200, Duration::from_secs(30)).await;
    assert!(synced, "operator never synced; requests: {:#?}", summary(&api.calls()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.calls().iter().flat_map(|c| permissions(&c.method, &c.path)).collect()
}

async fn writes_of_the_reconcilers() -> BTreeSet<Permission> {
    let mut h = Harness::new();
    let service = RelayServiceFixture::new("web")
        .image("a:1.0.0")
        .port("http", 8080)
        .config([("A", "1")])
        .storage("data", "1Gi", "/data")
        .when_scaled("Delete");
    let mut calls = Vec::new();
    for replicas in [2, 1, 1, 1] {
        reconcile(Arc::new(service.clone().replicas(replicas).build()), h.ctx.clone()).await.unwrap();
        let step = h.take_calls();
        h.sync(true);
        calls.extend(step);
    }
    let policy = HealthPolicyFixture::new("p").tcp(1).build();
    relay_operator::controller::health_policy::reconcile(Arc::new(policy), h.ctx.clone()).await.unwrap();
    calls.extend(h.take_calls());
    calls.extend(ingress_added_then_removed().await);
    calls.extend(revisions_pruned().await);
    calls.extend(revision_read_past_a_stale_status().await);
    calls.extend(test_deployment_lifecycle().await);
    calls.extend(reload_through_the_api_proxy().await);
    calls.extend(a_lasting_problem().await);
    calls.extend(a_canary_started_over_a_live_configuration().await);
    calls.iter().flat_map(|c| permissions(&c.method, &c.path)).collect()
}

/// A service whose HealthPolicy is missing, reconciled twice: the second Warning folds into
/// the first's series (a patch of the Event).
async fn a_lasting_problem() -> Vec<Call> {
    let h = Harness::new();
    let service = RelayServiceFixture::new("web").image("a:1.0.0").health_policy("missing").build();
    let service = Arc::new(service);
    for _ in 0..2 {
        reconcile(service.clone(), h.ctx.clone()).await.unwrap();
    }
    h.take_calls()
}

/// A canary starting over a live configuration: the live ConfigMap, which the cache keeps
/// only the hash of, is read (GET) to keep its last good copy.
async fn a_canary_started_over_a_live_configuration() -> Vec<Call> {
    let mut h = Harness::new();
    let ctx = h.ctx.clone();
    // Nothing listens on port 9 of loopback: the canary's hook fails at once.
    let service = |value| {
        let reload = json!({"port": 9, "settleDelay": "0s", "debounce": "0s", "retryDeadline": "0s",
            "timeout": "100ms", "canary": {"pods": 1}});
        RelayServiceFixture::new("web")
            .image("a:1.0.0")
            .port("http", 9)
            .replicas(2)
            .config([("A", value)])
            .reload(reload)
    };
    let mut svc = Svc::new(service("1"));
    let mut calls = svc.reconcile(&mut h, &ctx).await;
    h.sync(true);
    for pod in ["web-0", "web-1"] {
        h.set_pod(pod, true, Some("127.0.0.1"));
    }
    calls.extend(svc.reconcile(&mut h, &ctx).await);
    svc.change(&mut h, &service("2"));
    // The revert that follows may find the last good copy not cached yet (an error, retried).
    let _ = reconcile(Arc::new(svc.rs.clone()), ctx.clone()).await;
    calls.extend(h.take_calls());
    assert!(
        calls.iter().any(|c| c.method == "GET" && c.path.ends_with("/configmaps/web-config")),
        "the live configuration is read: {:#?}",
        summary(&calls)
    );
    calls
}

/// A service keeping one revision: its second configuration deletes the first revision.
async fn revisions_pruned() -> Vec<Call> {
    let mut h = Harness::new();
    let service = |value| {
        RelayServiceFixture::new("web")
            .image("a:1.0.0")
            .config([("A", value)])
            .spec(json!({"revisionHistoryLimit": 1}))
    };
    let mut calls = Vec::new();
    for rs in [service("1"), service("2")] {
        reconcile(Arc::new(rs.build()), h.ctx.clone()).await.unwrap();
        calls.extend(h.take_calls());
        h.sync(true);
    }
    assert!(
        calls.iter().any(|c| c.method == "DELETE" && c.path.contains("/controllerrevisions/")),
        "the first revision was deleted: {:#?}",
        summary(&calls)
    );
    calls
}

/// A pass that reads an older status than its own last write finds the new revision
/// existing and reads it (the ControllerRevision is not in the cache yet either).
async fn revision_read_past_a_stale_status() -> Vec<Call> {
    let mut h = Harness::new();
    let ctx = h.ctx.clone();
    let mut svc = Svc::new(RelayServiceFixture::new("web").image("a:1.0.0").config([("A", "1")]));
    svc.reconcile(&mut h, &ctx).await;
    h.sync(true);
    svc.change(&mut h, &RelayServiceFixture::new("web").image("a:1.0.0").config([("A", "2")]));
    let older = svc.rs.clone();
    svc.reconcile(&mut h, &ctx).await;
    svc.rs = older;
    let calls = svc.reconcile(&mut h, &ctx).await;
    assert!(
        calls.iter().any(|c| c.method == "GET" && c.path.contains("/controllerrevisions/")),
        "the revision was read: {:#?}",
        summary(&calls)
    );
    calls
}

/// A service given an Ingress, which is deleted when `spec.ingress` is removed again.
async fn ingress_added_then_removed() -> Vec<Call> {
    let mut h = Harness::new();
    let service = RelayServiceFixture::new("web").image("a:1.0.0").port("http", 8080);
    let mut calls = Vec::new();
    for rs in [service.clone().spec(json!({"ingress": {"host": "web.example.com"}})), service] {
        reconcile(Arc::new(rs.build()), h.ctx.clone()).await.unwrap();
        calls.extend(h.take_calls());
        h.sync(true);
    }
    assert!(
        summary(&calls)
            .contains(&"DELETE /apis/networking.k8s.io/v1/namespaces/demo/ingresses/web".to_string()),
        "the Ingress was deleted: {:#?}",
        summary(&calls)
    );
    calls
}

/// A configuration change reloaded through the API server's pod proxy (`--hook-via proxy`).
async fn reload_through_the_api_proxy() -> Vec<Call> {
    use relay_operator::hook::{ReloadOptions, Transport};

    let mut h = Harness::with_reload(|client| ReloadOptions::new(4, 4, Transport::api_proxy(client.clone())));
    let service = RelayServiceFixture::new("web").image("a:1.0.0").port("http", 8000);
    let mut calls = Vec::new();
    // POST, then PUT: the pod proxy maps them to the verbs create and update.
    for (value, method) in [("1", "POST"), ("2", "POST"), ("3", "PUT")] {
        let rs = service
            .clone()
            .config([("A", value)])
            .reload(json!({"port": 8000, "settleDelay": "0s", "debounce": "0s", "method": method}));
        reconcile(Arc::new(rs.build()), h.ctx.clone()).await.unwrap();
        let step = h.take_calls();
        h.sync(true);
        h.set_pod("web-0", true, Some("10.0.0.1"));
        calls.extend(step);
    }
    for method in ["POST", "PUT"] {
        assert!(
            calls
                .iter()
                .any(|c| c.method == method && c.path.contains("/pods/web-0:8000/proxy/reload-config")),
            "no {method} through the proxy: {:#?}",
            summary(&calls)
        );
    }
    calls
}

/// A TestDeployment copied from a RelayService, crash-looping (its log is read), then
/// expiring with `deleteOnExpiry`.
async fn test_deployment_lifecycle() -> Vec<Call> {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
    use relay_operator::controller::test_deployment::reconcile;

    let mut h = Harness::new();
    let created = k8s_openapi::jiff::Timestamp::now();
    h.put(&RelayServiceFixture::new("web").image("a:1.0.0").storage("d", "1Gi", "/d").build());
    let mut td = TestDeploymentFixture::new("pr")
        .created_at(created)
        .source("web")
        .ttl("1h")
        .delete_on_expiry(true)
        .build();
    let mut calls = Vec::new();
    let crashing = k8s_openapi::api::core::v1::PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: relay_operator::render::CONTAINER_NAME.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: None,
                }),
                ..Default::default()
            }),
            restart_count: 2,
            ..Default::default()
        }]),
        ..running(false)
    };
    for later in [0, 60, 7200] {
        h.set_time(k8s_openapi::jiff::Timestamp::from_second(created.as_second() + later).unwrap());
        reconcile(Arc::new(td.clone()), h.ctx.clone()).await.unwrap();
        let step = h.take_calls();
        h.sync_with(&crashing);
        for call in step.iter().filter(|c| c.method == "PATCH" && c.path.contains("/testdeployments/pr?")) {
            for (key, value) in call.body["metadata"]["annotations"].as_object().into_iter().flatten() {
                td.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(key.clone(), value.as_str().unwrap().into());
            }
        }
        calls.extend(step);
    }
    assert!(calls.iter().any(|c| c.path.contains("/log?")), "the crash log was read");
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE"
                && c.path.split('?').next().unwrap().ends_with("/testdeployments/pr")),
        "expired and deleted: {:#?}",
        summary(&calls)
    );
    calls
}

fn helm() -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    if local.exists() {
        return Some(local);
    }
    std::process::Command::new("helm")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "helm".into())
}

/// The documents of `helm template` of the chart with `values` (`--set` arguments).
fn template(helm: &Path, values: &[&str]) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/relay-operator");
    let mut command = std::process::Command::new(helm);
    command.args(["template", "relay-operator", "--namespace", "relay-operator"]).arg(&chart);
    for value in values {
        command.args(["--set", value]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

/// Permissions granted by the chart's roles (default values).
fn granted(helm: &Path) -> BTreeSet<Permission> {
    let documents = template(helm, &[]);
    let mut granted = BTreeSet::new();
    for document in documents.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
        for rule in document["rules"].as_array().unwrap() {
            let list = |key: &str| -> Vec<String> {
                rule[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert!(group != "*" && resource != "*" && verb != "*", "wildcard in {rule}");
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    granted
}

#[tokio::test]
async fn chart_roles_grant_exactly_what_the_operator_uses() {
    let Some(helm) = helm() else {
        assert!(std::env::var("CI").is_err(), "helm missing in CI: scripts/install-tools.sh must run first");
        eprintln!("skipped: helm not found (run scripts/install-tools.sh)");
        return;
    };
    let mut used = watches_of_the_binary().await;
    used.extend(writes_of_the_reconcilers().await);
    used.extend(lease_permissions());
    let granted = granted(&helm);
    let (missing, unused) = compare(&used, &granted);
    assert!(missing.is_empty(), "the chart does not grant: {missing:#?}");
    assert!(unused.is_empty(), "the chart grants more than the operator uses: {unused:#?}");

    // The comparison catches a missing verb and a superfluous one.
    let p = |g: &str, r: &str, v: &str| (g.to_string(), r.to_string(), v.to_string());
    let mut broken = granted.clone();
    assert!(broken.remove(&p("", "pods", "delete")));
    broken.insert(p("", "secrets", "delete"));
    let (missing, unused) = compare(&used, &broken);
    assert_eq!((missing, unused), (vec![p("", "pods", "delete")], vec![p("", "secrets", "delete")]));
}

/// (namespace, verb) of every Secret permission the chart grants with `values`; panics if a
/// ClusterRole grants anything on Secrets or a Secret Role is not bound to the operator.
fn secret_grants(documents: &[Value]) -> BTreeSet<(String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let mut grants = BTreeSet::new();
    for role in documents.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
        let secrets: Vec<&Value> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| strings(&r["resources"]).iter().any(|r| r == "secrets"))
            .collect();
        if secrets.is_empty() {
            continue;
        }
        let name = &role["metadata"]["name"];
        assert_eq!(role["kind"], "Role", "{name} grants Secrets cluster-wide: {secrets:?}");
        let namespace = role["metadata"]["namespace"].as_str().unwrap().to_string();
        let bound = documents.iter().any(|b| {
            b["kind"] == "RoleBinding"
                && b["metadata"]["namespace"] == namespace.as_str()
                && b["roleRef"]["name"] == *name
                && b["subjects"][0]["name"] == "relay-operator"
                && b["subjects"][0]["namespace"] == "relay-operator"
        });
        assert!(bound, "Role {namespace}/{name} is not bound to the operator's ServiceAccount");
        for rule in secrets {
            for verb in strings(&rule["verbs"]) {
                grants.insert((namespace.clone(), verb));
            }
        }
    }
    grants
}

/// The arguments of `run` the chart's Deployment passes, without `--metrics-addr` (the
/// test picks the port).
fn deployment_args(documents: &[Value]) -> Vec<String> {
    let deployment = documents.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut kept = Vec::new();
    let mut rest = args.iter().skip_while(|a| *a == "run");
    while let Some(arg) = rest.next() {
        if arg == "--metrics-addr" {
            rest.next();
        } else {
            kept.push(arg.clone());
        }
    }
    kept
}

/// (namespace, verb) of the Secret requests of the binary started with `args`, once ready.
async fn secret_requests(args: &[String]) -> BTreeSet<(String, String)> {
    let (address, api) = fake_api().await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_operator, port) = start_with(&address, &args, &[]);
    let synced = wait_for(port, "/readyz", 200, Duration::from_secs(30)).await;
    assert!(synced, "operator {args:?} never synced; requests: {:#?}", summary(&api.calls()));
    let mut requests = BTreeSet::new();
    for call in api.calls() {
        for (_, resource, verb) in permissions(&call.method, &call.path) {
            if resource == "secrets" {
                let path = call.path.split('?').next().unwrap();
                let namespace = path.strip_prefix("/api/v1/namespaces/").and_then(|p| p.split('/').next());
                let namespace =
                    namespace.unwrap_or_else(|| panic!("Secrets read cluster-wide: {}", call.path));
                requests.insert((namespace.to_string(), verb));
            }
        }
    }
    requests
}

#[tokio::test]
async fn secrets_are_granted_and_read_per_namespace_never_cluster_wide() {
    let Some(helm) = helm() else {
        assert!(std::env::var("CI").is_err(), "helm missing in CI: scripts/install-tools.sh must run first");
        eprintln!("skipped: helm not found (run scripts/install-tools.sh)");
        return;
    };
    let both = |namespaces: &[&str]| -> BTreeSet<(String, String)> {
        namespaces
            .iter()
            .flat_map(|ns| ["list", "watch"].map(|verb| (ns.to_string(), verb.to_string())))
            .collect()
    };
    for (values, expected) in [
        // The default: cluster scope, no Secret read anywhere.
        (&[][..], both(&[])),
        (&["rbac.secretNamespaces={apps,billing}"][..], both(&["apps", "billing"])),
        (&["rbac.scope=namespaced", "watchNamespaces={apps,web}"][..], both(&["apps", "web"])),
        (&["watchNamespaces={apps,web}"][..], both(&["apps", "web"])),
        (&["watchNamespaces={apps,web}", "rbac.secretNamespaces={web}"][..], both(&["web"])),
        (
            &["rbac.scope=namespaced", "watchNamespaces={apps,web}", "rbac.secretNamespaces={apps}"][..],
            both(&["apps"]),
        ),
    ] {
        let documents = template(&helm, values);
        let granted = secret_grants(&documents);
        assert_eq!(granted, expected, "the chart's Secret grants with {values:?}");
        let args = deployment_args(&documents);
        let used = secret_requests(&args).await;
        assert_eq!(used, granted, "the binary's Secret requests with {args:?} (values {values:?})");
    }
}

/// (used but not granted, granted but not used).
fn compare(
    used: &BTreeSet<Permission>,
    granted: &BTreeSet<Permission>,
) -> (Vec<Permission>, Vec<Permission>) {
    (used.difference(granted).cloned().collect(), granted.difference(used).cloned().collect())
}

#[test]
fn request_mapping() {
    let p = |g: &str, r: &str, v: &str| (g.to_string(), r.to_string(), v.to_string());
    assert_eq!(permissions("GET", "/api/v1/pods?labelSelector=x&watch=true"), [p("", "pods", "watch")]);
    assert_eq!(
        permissions("GET", "/apis/relayops.io/v1alpha1/relayservices?limit=500"),
        [p("relayops.io", "relayservices", "list")]
    );
    assert_eq!(
        permissions("PATCH", "/api/v1/namespaces/demo/pods/web-0?fieldManager=relay-operator&force=true"),
        [p("", "pods", "patch"), p("", "pods", "create")]
    );
    assert_eq!(
        permissions(
            "PATCH",
            "/apis/relayops.io/v1alpha1/namespaces/demo/relayservices/web/status?fieldManager=x"
        ),
        [p("relayops.io", "relayservices/status", "patch")]
    );
    assert_eq!(
        permissions("GET", "/api/v1/namespaces/demo/pods/web-0/log?previous=true"),
        [p("", "pods/log", "get")]
    );
    assert_eq!(permissions("DELETE", "/api/v1/namespaces/demo/pods/web-1"), [p("", "pods", "delete")]);
}
