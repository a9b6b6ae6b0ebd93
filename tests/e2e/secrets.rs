//! Least privilege for Secrets on the real API server: the chart's cluster-scope RBAC with
//! `rbac.secretNamespaces` lets the operator read Secrets in the granted namespace only.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use super::audit::Mark;
use super::cluster::{ControlPlane, Operator, Scenario, create_namespace, eventually, kubectl};
use super::{desired_hash, get_service, standin_service, wait_converged};

/// `kubectl auth can-i` as the operator's ServiceAccount (a SelfSubjectAccessReview).
fn operator_can(s: &Scenario, args: &[&str]) -> bool {
    let out = kubectl(&s.operator_kubeconfig, &[&["auth", "can-i"][..], args].concat(), None);
    out.stdout.trim() == "yes"
}

/// A Secret `app-creds` with `token`, applied as admin.
fn apply_secret(namespace: &str, token: &str) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "app-creds", "namespace": namespace}, "stringData": {"token": token}});
    let cp = ControlPlane::get();
    kubectl(
        &cp.kubeconfig,
        &["apply", "--server-side", "--field-manager=e2e-user", "-f", "-"],
        Some(&secret.to_string()),
    )
    .success();
}

/// The stand-in service `web` reading `app-creds/token` as `TOKEN`, applied as admin.
fn apply_service(namespace: &str) {
    let mut service = standin_service("web", 1, json!({}));
    service["metadata"]["namespace"] = json!(namespace);
    service["spec"]["config"]["secrets"] =
        json!([{"name": "TOKEN", "secretKeyRef": {"name": "app-creds", "key": "token"}}]);
    let cp = ControlPlane::get();
    kubectl(
        &cp.kubeconfig,
        &["apply", "--server-side", "--field-manager=e2e-user", "-f", "-"],
        Some(&service.to_string()),
    )
    .success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_read_only_in_granted_namespaces() {
    let (granted, other) = ("e2e-secrets", "e2e-secrets-other");
    let cp = ControlPlane::get();
    create_namespace(&cp.client().await, other).await;
    let s = Scenario::cluster_scoped(
        granted,
        &[format!("watchNamespaces={{{granted},{other}}}"), format!("rbac.secretNamespaces={{{granted}}}")],
    )
    .await;

    // The API server's answer for the operator's identity.
    assert!(operator_can(&s, &["list", "secrets", "-n", granted]), "list Secrets in {granted}");
    assert!(operator_can(&s, &["watch", "secrets", "-n", granted]), "watch Secrets in {granted}");
    assert!(!operator_can(&s, &["get", "secrets", "-n", granted]), "get is not needed");
    assert!(!operator_can(&s, &["list", "secrets", "-n", other]), "Secrets of {other}");
    assert!(!operator_can(&s, &["list", "secrets", "--all-namespaces"]), "Secrets cluster-wide");
    assert!(operator_can(&s, &["list", "pods", "-n", other]), "the ClusterRole's other rules apply");

    for namespace in [granted, other] {
        apply_secret(namespace, "one");
        apply_service(namespace);
    }
    let mark = Mark::now(&cp.audit_log());
    let operator = Operator::start(
        &s.operator_kubeconfig,
        &format!("{granted},{other}"),
        &s.dir.join("operator.log"),
        &["--secret-namespace", granted],
    );
    operator.wait_ready().await;

    // Granted: a Secret change reaches the configuration hash through the Secret watch.
    eventually("the first ConfigMap", Duration::from_secs(15), || async {
        !desired_hash(&s.client, granted, "web").await.is_empty()
    })
    .await;
    let before = desired_hash(&s.client, granted, "web").await;
    let changed = Instant::now();
    apply_secret(granted, "two");
    eventually("a new config hash after the Secret changed", Duration::from_secs(10), || async {
        desired_hash(&s.client, granted, "web").await != before
    })
    .await;
    eprintln!("e2e: Secret change → new config hash in {:.2} s", changed.elapsed().as_secs_f64());
    let after = desired_hash(&s.client, granted, "web").await;
    eventually("the pod runs the new configuration", Duration::from_secs(15), || async {
        get_service(&s.client, granted, "web").await.and_then(|svc| svc.status).is_some_and(|status| {
            status.config_hash.as_deref() == Some(after.as_str())
                && !status.pods.is_empty()
                && status.pods.iter().all(|p| p.config_hash.as_deref() == Some(after.as_str()))
        })
    })
    .await;
    wait_converged(&s.client, granted, "web", Duration::from_secs(5)).await;
    eprintln!("e2e: Secret change → pod runs it (ConfigInSync) in {:.2} s", changed.elapsed().as_secs_f64());

    // Not granted: its own reason and a Warning Event, not "not found".
    let ready = || async {
        let service = get_service(&s.client, other, "web").await?;
        service.status?.conditions.into_iter().find(|c| c.type_ == "Ready")
    };
    eventually("Ready=False/SecretNotReadable in the other namespace", Duration::from_secs(10), || async {
        ready().await.is_some_and(|c| c.status == "False" && c.reason == "SecretNotReadable")
    })
    .await;
    let message = ready().await.map(|c| c.message).unwrap_or_default();
    for part in [
        "Secret e2e-secrets-other/app-creds",
        "rbac.secretNamespaces",
        "--secret-namespace e2e-secrets-other",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    let events: Api<Event> = Api::namespaced(s.client.clone(), other);
    eventually("a SecretNotReadable Warning Event", Duration::from_secs(5), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("SecretNotReadable") && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;

    // The server's own record: every Secret request of the operator was in the granted namespace.
    let secret_requests: Vec<String> = mark
        .requests(&s.operator_user)
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| format!("{} {}", r.verb, r.namespace))
        .collect();
    assert!(secret_requests.contains(&format!("list {granted}")), "{secret_requests:?}");
    assert!(secret_requests.iter().all(|r| r.ends_with(&format!(" {granted}"))), "{secret_requests:?}");

    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    let _ = namespaces.delete(other, &DeleteParams::default()).await;
    s.cleanup().await;
}
