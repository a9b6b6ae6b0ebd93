//! Faults the operator must survive on a real API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::cluster::{ControlPlane, Scenario, eventually, kubectl};
use super::{standin_service, wait_converged};

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
