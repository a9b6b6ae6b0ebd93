//! Revision history and rollback on the real API server: configuration A → B, then the real
//! `relay-operator rollback` binary brings A back through the reload hook with no pod
//! replaced; the annotation `relayops.io/rollback-to` (the GitOps path) does the same; the
//! user's next change ends the rollback. The revisions are owned ControllerRevisions,
//! listed in status and in `kubectl get`.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::cluster::{ControlPlane, Scenario, eventually, kubectl};
use super::{all_run, desired_hash, get_service, patch_config, pod_uids, standin_service, wait_converged};

/// `(revision, outcome)` of each kept revision, in order of application, and the current one.
async fn revisions(client: &Client, ns: &str) -> (Vec<(i64, String)>, Option<i64>) {
    let status = get_service(client, ns, "web").await.and_then(|s| s.status).unwrap_or_default();
    let kept = status.revisions.iter().map(|r| (r.revision, format!("{:?}", r.outcome))).collect();
    (kept, status.current_revision)
}

fn expected(kept: &[(i64, &str)], current: i64) -> (Vec<(i64, String)>, Option<i64>) {
    (kept.iter().map(|(n, o)| (*n, o.to_string())).collect(), Some(current))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_a_config_through_the_hook_by_command_and_by_annotation() {
    let s = Scenario::new("e2e-rollback").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    s.apply(&standin_service("web", 2, json!({"GREETING": "a"})).to_string());
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let (hash_a, pods) = (desired_hash(client, ns, "web").await, pod_uids(client, ns, "web").await);
    patch_config(client, ns, "web", json!({"GREETING": "b"})).await;
    eventually("both processes run GREETING=b", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "b")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let hash_b = desired_hash(client, ns, "web").await;
    assert_eq!(revisions(client, ns).await, expected(&[(1, "Applied"), (2, "Current")], 2));

    // The CLI, as a user runs it with their kubeconfig: back to the previous revision.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .args(["rollback", "web", "-n", ns, "--timeout", "90s"])
        .env("KUBECONFIG", &ControlPlane::get().kubeconfig)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rollback failed: {stdout}{stderr}");
    assert!(stdout.contains("rolled back to revision 1"), "{stdout}");
    eventually("both processes run GREETING=a again", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "a")
    })
    .await;
    eprintln!(
        "e2e: rollback command to every pod running revision 1: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    assert_eq!(desired_hash(client, ns, "web").await, hash_a);
    assert_eq!(pod_uids(client, ns, "web").await, pods, "no pod replaced by the rollback");
    // A call answered "stale" (the kubelet had not refreshed the file yet) is retried: the
    // reload protocol's usual way, counted here too.
    let calls = s.kubelet.calls_for(&hash_a);
    eprintln!("e2e: hook calls per pod for the rollback: {calls:?}");
    assert!(calls.len() == 2 && calls.values().all(|c| *c >= 1), "A came back through the hook: {calls:?}");
    assert_eq!(revisions(client, ns).await, expected(&[(2, "RolledBack"), (1, "Current")], 1));
    let service = get_service(client, ns, "web").await.unwrap();
    assert_eq!(service.spec.config.as_ref().unwrap().data["GREETING"], "b", "the spec stays the user's");

    // The revisions are ControllerRevisions owned by the service, and `kubectl get` shows the current one.
    let stored: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let stored = stored.list(&ListParams::default().labels("relayops.io/service=web")).await.unwrap();
    let mut numbers: Vec<i64> = stored.items.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
    let uid = service.uid().unwrap();
    assert!(
        stored
            .items
            .iter()
            .all(|r| r.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true)))
    );
    let table =
        kubectl(&ControlPlane::get().kubeconfig, &["get", "rsvc", "web", "-n", ns], None).success().stdout;
    let (header, row) = table.split_once('\n').unwrap();
    let column = header.split_whitespace().position(|h| h == "REVISION").expect("a REVISION column");
    assert_eq!(row.split_whitespace().nth(column), Some("1"), "{table}");

    // The annotation, as a GitOps repository sets it: to revision 2 by number.
    let annotate = ["annotate", "rsvc", "web", "-n", ns, "--overwrite", "relayops.io/rollback-to=2"];
    kubectl(&ControlPlane::get().kubeconfig, &annotate, None).success();
    eventually("both processes run GREETING=b again", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "b")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    assert_eq!(desired_hash(client, ns, "web").await, hash_b);
    assert_eq!(pod_uids(client, ns, "web").await, pods, "no pod replaced by the annotation");
    assert_eq!(revisions(client, ns).await, expected(&[(1, "RolledBack"), (2, "Current")], 2));

    // Rolled back again to 1, then the user's fix (a new configuration) ends the rollback.
    kubectl(
        &ControlPlane::get().kubeconfig,
        &["annotate", "rsvc", "web", "-n", ns, "--overwrite", "relayops.io/rollback-to=previous"],
        None,
    )
    .success();
    eventually("both processes run GREETING=a", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "a")
    })
    .await;
    patch_config(client, ns, "web", json!({"GREETING": "c"})).await;
    eventually("both processes run GREETING=c", Duration::from_secs(60), || async {
        all_run(&s, "web", 2, "GREETING", "c")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    assert_eq!(
        revisions(client, ns).await,
        expected(&[(2, "RolledBack"), (1, "Applied"), (3, "Current")], 3)
    );
    let rollback =
        get_service(client, ns, "web").await.and_then(|s| s.status).and_then(|s| s.rollback).unwrap();
    assert!(rollback.hash.is_none() && rollback.message.is_some_and(|m| m.contains("ended")));
    assert_eq!(pod_uids(client, ns, "web").await, pods, "no pod replaced at all");
    s.cleanup().await;
}
