//! The kubectl install of the README on the real control plane: `deploy/crds.yaml` and
//! `deploy/operator.yaml` apply; `kubectl delete -f deploy/operator.yaml` removes the operator
//! and leaves the CRDs, the RelayService and its pods; installing again adopts them without
//! replacing a pod. The RelayService is the one the chart's NOTES.txt tells a new user to
//! create, so those commands are tried on a real API server too.
//!
//! Nothing runs the Deployment of `deploy/operator.yaml` (the suite's kubelet serves only a
//! scenario's namespace): the operator binary plays it, started and stopped with it.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use relay_operator::api::RelayService;
use relay_operator::deps::is_ready;
use serde_json::json;

use super::cluster::{ControlPlane, Output, Scenario, eventually, root};
use super::pod_uids;

/// The namespace `deploy/operator.yaml` creates (and `kubectl delete` removes).
const OPERATOR_NAMESPACE: &str = "relay-operator";

/// The RelayService manifest of the chart's NOTES.txt: the heredoc between `<<'EOF'` and `EOF`.
fn notes_example() -> String {
    let helm = root().join(".tools/bin/helm");
    let out = Command::new(&helm)
        .args(["install", "relay-operator", "charts/relay-operator", "--namespace", OPERATOR_NAMESPACE])
        .arg("--dry-run=client")
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{} (run scripts/install-tools.sh): {e}", helm.display()));
    assert!(out.status.success(), "helm install --dry-run: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let notes = &stdout[stdout.find("NOTES:").expect("helm prints the NOTES")..];
    let body = notes.split_once("<<'EOF'\n").expect("NOTES.txt has a heredoc").1;
    let manifest = body.split_once("\nEOF\n").expect("the heredoc ends with EOF").0;
    assert!(manifest.contains("kind: RelayService"), "{manifest}");
    manifest.to_owned()
}

async fn ready_replicas(client: &Client, ns: &str, name: &str, replicas: i32) -> bool {
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some_and(|s| is_ready(&s) && s.status.as_ref().is_some_and(|st| st.ready_replicas == replicas))
}

fn kubectl(args: &[&str]) -> Output {
    ControlPlane::get().kubectl(args)
}

/// `kubectl get` of cluster-scoped `objects` finds none of them.
fn all_gone(objects: &[&str]) -> bool {
    objects.iter().all(|o| {
        let out = kubectl(&["get", o]);
        !out.ok && out.stderr.contains("NotFound")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_keeps_custom_resources_and_their_pods() {
    let s = Scenario::new("e2e-install").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let started = Instant::now();

    // Install as the README says. The suite installed the same CRDs already; a server-side
    // apply of identical content shares the fields and changes nothing.
    kubectl(&["apply", "--server-side", "-f", "deploy/crds.yaml"]).success();
    kubectl(&["apply", "-f", "deploy/operator.yaml"]).success();
    kubectl(&["get", "-n", OPERATOR_NAMESPACE, "deployment/relay-operator", "serviceaccount/relay-operator"])
        .success();
    let mut operator = s.operator("operator.log");
    s.apply(&notes_example());
    eventually("NOTES.txt's RelayService hello Ready with 2 pods", Duration::from_secs(30), || {
        ready_replicas(client, ns, "hello", 2)
    })
    .await;
    let services: Api<RelayService> = Api::namespaced(client.clone(), ns);
    let service_uid = services.get("hello").await.unwrap().uid();
    let pods = pod_uids(client, ns, "hello").await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    let installed = started.elapsed();

    // Uninstall: the file's objects go (kubectl waits until they are gone, the namespace
    // included), and with the Deployment its process.
    let uninstall = Instant::now();
    let out = kubectl(&["delete", "-f", "deploy/operator.yaml"]).success();
    let (_, clean) = operator.terminate();
    assert!(clean, "the operator exits 0 on SIGTERM");
    let uninstall = uninstall.elapsed();
    assert!(out.stdout.contains("deployment.apps \"relay-operator\" deleted"), "{}", out.stdout);
    assert!(
        all_gone(&[
            &format!("namespace/{OPERATOR_NAMESPACE}"),
            "clusterrole/relay-operator",
            "clusterrolebinding/relay-operator",
        ]),
        "deploy/operator.yaml's objects are gone"
    );

    // What stays: the CRDs, the RelayService, its pods (same UIDs, still running), its Service.
    kubectl(&[
        "get",
        "crd",
        "relayservices.relayops.io",
        "healthpolicies.relayops.io",
        "testdeployments.relayops.io",
    ])
    .success();
    assert_eq!(services.get("hello").await.unwrap().uid(), service_uid, "the RelayService stays");
    assert_eq!(pod_uids(client, ns, "hello").await, pods, "its pods stay");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let running = pod_api.list(&ListParams::default().labels("relayops.io/service=hello")).await.unwrap();
    assert!(
        running.items.iter().all(|p| p.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Running")),
        "its pods keep running unmanaged"
    );
    assert!(Api::<Service>::namespaced(client.clone(), ns).get_opt("hello").await.unwrap().is_some());

    // Install again: the operator adopts what it finds. A scale-up proves it manages the
    // service again; the two pods that lived through the uninstall are kept.
    let reinstall = Instant::now();
    kubectl(&["apply", "-f", "deploy/operator.yaml"]).success();
    let _operator = s.operator("operator.log");
    services
        .patch("hello", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    eventually("hello Ready with 3 pods after the reinstall", Duration::from_secs(30), || {
        ready_replicas(client, ns, "hello", 3)
    })
    .await;
    let after = pod_uids(client, ns, "hello").await;
    assert_eq!(after.len(), 3, "{after:?}");
    for (name, uid) in &pods {
        assert_eq!(after.get(name), Some(uid), "{name} kept through uninstall and reinstall");
    }
    eprintln!(
        "e2e: kubectl install + NOTES example Ready in {:.1} s; `kubectl delete -f deploy/operator.yaml` took {:.1} s and kept the RelayService and its 2 pods; reinstall + scale to 3 in {:.1} s",
        installed.as_secs_f64(),
        uninstall.as_secs_f64(),
        reinstall.elapsed().as_secs_f64()
    );
    kubectl(&["delete", "-f", "deploy/operator.yaml", "--wait=false"]).success();
    s.cleanup().await;
}
