//! End to end on a real control plane: etcd, kube-apiserver (RBAC, Pod Security admission,
//! CRD validation) and kube-controller-manager (garbage collection, namespaces) built by
//! `scripts/install-tools.sh` and started by `scripts/control-plane.sh`; the release of this
//! crate's binary running as the chart's ServiceAccount; and a test kubelet that runs a
//! stand-in app per pod on a loopback IP.
//!
//! Every scenario has its own namespace (restricted Pod Security), operator and kubelet.
//! Figures are printed with an `e2e:` prefix (run with `--nocapture` to see them).

mod audit;
mod canary;
mod cluster;
mod faults;
mod import;
mod install;
mod kubelet;
mod leader;
mod node_logs;
mod proxy;
mod revisions;
mod rollout_deadline;
mod safe_change;
mod scale;
mod secrets;
mod standin;
mod status_why;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use relay_operator::api::{RelayService, TestDeployment, TestDeploymentPhase};
use relay_operator::deps::is_ready;
use serde_json::{Value, json};

use cluster::{ControlPlane, Operator, Scenario, eventually};

const STANDIN: &str = "e2e.invalid/standin:1.0.0";

/// A RelayService running the stand-in app: port 8080, health every second, the reload hook
/// with the restart key `MODE` (`one` unless `data` says otherwise).
pub(crate) fn standin_service(name: &str, replicas: i32, mut data: Value) -> Value {
    if data.get("MODE").is_none() {
        data["MODE"] = json!("one");
    }
    json!({
        "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
        "metadata": {"name": name},
        "spec": {
            "image": STANDIN,
            "replicas": replicas,
            "ports": [{"name": "http", "containerPort": 8080}],
            "health": {"http": {"path": "/health", "port": 8080}, "interval": "1s", "timeout": "1s", "retries": 2},
            "config": {"data": data},
            "reload": {"port": 8080, "restartKeys": ["MODE"], "settleDelay": "2s", "retryDeadline": "20s"},
        }
    })
}

async fn get_service(client: &Client, ns: &str, name: &str) -> Option<RelayService> {
    Api::<RelayService>::namespaced(client.clone(), ns).get_opt(name).await.ok().flatten()
}

fn condition(service: &RelayService, type_: &str) -> Option<(String, String)> {
    let status = service.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Ready for its generation, and every pod runs the desired configuration.
async fn converged(client: &Client, ns: &str, name: &str) -> bool {
    get_service(client, ns, name).await.is_some_and(|s| {
        is_ready(&s) && condition(&s, "ConfigInSync").is_some_and(|(status, _)| status == "True")
    })
}

pub(crate) async fn wait_converged(client: &Client, ns: &str, name: &str, limit: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if converged(client, ns, name).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = get_service(client, ns, name).await.and_then(|s| s.status);
    panic!("RelayService {ns}/{name} not Ready and ConfigInSync after {limit:?}: {status:#?}");
}

async fn patch_config(client: &Client, ns: &str, name: &str, data: Value) {
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"config": {"data": data}}})))
        .await
        .unwrap();
}

pub(crate) async fn desired_hash(client: &Client, ns: &str, name: &str) -> String {
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Empty until the operator has written the ConfigMap.
    let cm = cm.get_opt(&format!("{name}-config")).await.unwrap();
    cm.and_then(|cm| cm.data).unwrap_or_default().get("config-hash").cloned().unwrap_or_default()
}

/// Pod name → UID for the service's pods, from the API server.
pub(crate) async fn pod_uids(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list =
        pods.list(&ListParams::default().labels(&format!("relayops.io/service={name}"))).await.unwrap();
    list.items.iter().map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect()
}

/// Every running pod of `name` runs `key = value`.
pub(crate) fn all_run(scenario: &Scenario, name: &str, replicas: usize, key: &str, value: &str) -> bool {
    let pods = scenario.kubelet.pods();
    let mine: Vec<_> = pods.iter().filter(|(n, _)| n.starts_with(&format!("{name}-"))).collect();
    mine.len() == replicas
        && mine.iter().all(|(_, p)| p.app.config.get(key).map(String::as_str) == Some(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_become_ready_in_dependency_order() {
    let s = Scenario::new("relay-demo").await;
    let _operator = s.operator("operator.log");
    let started = Instant::now();
    cluster::kubectl(
        &ControlPlane::get().kubeconfig,
        &["apply", "--server-side", "--field-manager=e2e-user", "-f", "deploy/examples/"],
        None,
    )
    .success();

    // Watch as a user would, every 50 ms: when each service turns Ready, when its first pod appears.
    let names = ["postgres", "api", "scheduler", "relay"];
    let mut ready_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut first_pod_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    while ready_at.len() < names.len() && started.elapsed() < Duration::from_secs(180) {
        for name in names {
            if !first_pod_at.contains_key(name) && pods.get_opt(&format!("{name}-0")).await.unwrap().is_some()
            {
                first_pod_at.insert(name, Instant::now());
                // The order itself: once a service's first pod exists, each of its dependencies
                // is Ready (polling alone could see a dependency's Ready after the pod it allowed).
                let service = get_service(&s.client, &s.namespace, name).await.unwrap();
                for dependency in &service.spec.depends_on {
                    let ready =
                        get_service(&s.client, &s.namespace, dependency).await.is_some_and(|d| is_ready(&d));
                    assert!(
                        ready,
                        "{name}'s first pod exists while its dependency {dependency} is not Ready"
                    );
                    if let Some(known) = names.iter().find(|n| *n == dependency) {
                        ready_at.entry(known).or_insert_with(Instant::now);
                    }
                }
            }
            if !ready_at.contains_key(name)
                && get_service(&s.client, &s.namespace, name).await.is_some_and(|svc| is_ready(&svc))
            {
                ready_at.insert(name, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_at.len(), names.len(), "every example RelayService turns Ready: {ready_at:?}");
    let wait = cluster::kubectl(
        &ControlPlane::get().kubeconfig,
        &["wait", "--for=condition=Ready", "relayservice", "--all", "-n", "relay-demo", "--timeout=30s"],
        None,
    );
    assert!(wait.ok, "kubectl wait: {}{}", wait.stdout, wait.stderr);

    // Dependency order: a dependent's pods appear only after its dependencies are Ready,
    // and within seconds of it.
    // The order was asserted while watching; the gaps are as polling saw them.
    let gap = |dependency: &str, dependent: &str| {
        first_pod_at[dependent].saturating_duration_since(ready_at[dependency])
    };
    let api_gap = gap("postgres", "api");
    let last_dependency = if ready_at["api"] > ready_at["postgres"] { "api" } else { "postgres" };
    let scheduler_gap = gap(last_dependency, "scheduler");
    eprintln!(
        "e2e: dependency Ready -> dependent's first pod: postgres->api {:.2} s, {last_dependency}->scheduler {:.2} s; all Ready after {:.1} s",
        api_gap.as_secs_f64(),
        scheduler_gap.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(api_gap < Duration::from_secs(2) && scheduler_gap < Duration::from_secs(2));

    let tds: Api<TestDeployment> = Api::namespaced(s.client.clone(), &s.namespace);
    eventually("TestDeployment relay-pr-42 Running", Duration::from_secs(60), || async {
        tds.get("relay-pr-42")
            .await
            .is_ok_and(|td| td.status.is_some_and(|st| st.phase == TestDeploymentPhase::Running))
    })
    .await;
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_reach_running_processes_without_replacing_pods() {
    let s = Scenario::new("e2e-reload").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    s.apply(&standin_service("web", 2, json!({"GREETING": "a", "MODE": "one"})).to_string());
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let before = pod_uids(client, ns, "web").await;

    // A plain key goes through the hook: same pods, new value in the process.
    patch_config(client, ns, "web", json!({"GREETING": "b"})).await;
    eventually("both processes run GREETING=b", Duration::from_secs(30), || async {
        all_run(&s, "web", 2, "GREETING", "b")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    assert_eq!(pod_uids(client, ns, "web").await, before, "no pod replaced for a reloadable key");
    let hash_b = desired_hash(client, ns, "web").await;
    eprintln!("e2e: hook calls per pod for one change: {:?}", s.kubelet.calls_for(&hash_b));
    // The file had arrived when the hook was called (nudge -> kubelet resync), so each call
    // for B loaded B.
    for pod in s.kubelet.pods().values() {
        assert!(
            pod.app
                .reloads
                .iter()
                .filter(|c| c.sent_hash.as_deref() == Some(hash_b.as_str()))
                .all(|c| c.loaded_hash.as_deref() == Some(hash_b.as_str()))
        );
    }

    // A restart key rolls the pods.
    patch_config(client, ns, "web", json!({"MODE": "two"})).await;
    eventually("both pods replaced and running MODE=two", Duration::from_secs(60), || async {
        let now = pod_uids(client, ns, "web").await;
        all_run(&s, "web", 2, "MODE", "two")
            && now.len() == 2
            && now.values().all(|uid| !before.values().any(|b| b == uid))
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;

    // A -> B -> C within a second ends on C everywhere.
    let rolled = pod_uids(client, ns, "web").await;
    for value in ["A", "B", "C"] {
        patch_config(client, ns, "web", json!({"GREETING": value})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually("both processes run GREETING=C", Duration::from_secs(30), || async {
        all_run(&s, "web", 2, "GREETING", "C")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    let hash_c = desired_hash(client, ns, "web").await;
    let service = get_service(client, ns, "web").await.unwrap();
    assert_eq!(service.status.unwrap().config_hash.as_deref(), Some(hash_c.as_str()));
    assert!(s.kubelet.pods().values().all(|p| p.app.hash.as_deref() == Some(hash_c.as_str())));
    assert_eq!(pod_uids(client, ns, "web").await, rolled, "A->B->C replaced no pod");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_a_converged_operator_write_nothing_and_lose_no_reload() {
    let s = Scenario::new("e2e-restart").await;
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut manifest = standin_service("web", 2, json!({"GREETING": "a", "MODE": "one"}));
    // Like the seed relay: the app does not echo the hash, so the operator waits the settle
    // delay after nudging — a window to kill it in.
    manifest["spec"]["env"] = json!([{"name": "STANDIN_ECHO_HASH", "value": "false"}]);
    manifest["spec"]["reload"]["settleDelay"] = json!("3s");
    // Every kind of child and resource: claims, a HealthPolicy, a TestDeployment.
    manifest["spec"]["storage"] = json!([{"name": "data", "size": "64Mi", "mountPath": "/data"}]);
    let health = manifest["spec"]["health"].take();
    manifest["spec"].as_object_mut().unwrap().remove("health");
    manifest["spec"]["healthPolicyRef"] = json!({"name": "web-health"});
    let mut policy = json!({"apiVersion": "relayops.io/v1alpha1", "kind": "HealthPolicy", "metadata": {"name": "web-health"}});
    policy["spec"] = health;
    s.apply(&policy.to_string());
    s.apply(&manifest.to_string());
    let mut td_template = standin_service("x", 1, json!({"GREETING": "td"}))["spec"].clone();
    td_template["storage"] = json!([{"name": "data", "size": "64Mi", "mountPath": "/data"}]);
    let td = json!({"apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment", "metadata": {"name": "preview"},
        "spec": {"template": td_template, "ttl": "1h"}});
    s.apply(&td.to_string());
    let mut operator = s.operator("operator.log");
    wait_converged(client, ns, "web", Duration::from_secs(60)).await;
    let tds: Api<TestDeployment> = Api::namespaced(client.clone(), ns);
    eventually("TestDeployment preview Running", Duration::from_secs(60), || async {
        tds.get("preview")
            .await
            .is_ok_and(|t| t.status.is_some_and(|st| st.phase == TestDeploymentPhase::Running))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let audit = ControlPlane::get().audit_log();
    for round in 1..=3 {
        let (took, clean) = operator.terminate();
        assert!(clean, "SIGTERM exits 0");
        let mark = audit::Mark::now(&audit);
        let calls_before = s.kubelet.total_reload_calls();
        operator = s.operator("operator.log");
        operator.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let writes = mark.writes(&s.operator_user);
        let events = writes.keys().filter(|k| k.contains(" events ")).count();
        let calls = s.kubelet.total_reload_calls() - calls_before;
        eprintln!(
            "e2e: restart {round}: stopped in {:.2} s; writes {} (events {events}), hook calls {calls}: {writes:?}",
            took.as_secs_f64(),
            writes.values().sum::<usize>()
        );
        assert!(writes.is_empty() && calls == 0, "a converged restart writes nothing and calls no hook");
    }

    // A change made while the operator is down: exactly one reload per pod.
    operator.terminate();
    patch_config(client, ns, "web", json!({"GREETING": "while-down"})).await;
    let uids = pod_uids(client, ns, "web").await;
    operator = s.operator("operator.log");
    eventually("both run the change made while down", Duration::from_secs(40), || async {
        all_run(&s, "web", 2, "GREETING", "while-down")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    let hash = desired_hash(client, ns, "web").await;
    let web_calls = |hash: &str| {
        let mut calls = s.kubelet.calls_for(hash);
        calls.retain(|pod, _| pod.starts_with("web-"));
        calls
    };
    let calls = web_calls(&hash);
    eprintln!("e2e: change while down: hook calls per pod {calls:?}");
    assert!(calls.values().all(|c| *c == 1) && calls.len() == 2, "{calls:?}");
    assert_eq!(pod_uids(client, ns, "web").await, uids);

    // SIGKILL between the ConfigMap write and the hook calls (inside the settle delay).
    let old_hash = hash;
    patch_config(client, ns, "web", json!({"GREETING": "killed"})).await;
    eventually("the ConfigMap carries the new hash", Duration::from_secs(20), || async {
        desired_hash(client, ns, "web").await != old_hash
    })
    .await;
    operator.kill();
    let hash = desired_hash(client, ns, "web").await;
    assert!(web_calls(&hash).values().all(|c| *c == 0), "killed before any hook call");
    let _operator = s.operator("operator.log");
    eventually("both run the change after the kill", Duration::from_secs(40), || async {
        all_run(&s, "web", 2, "GREETING", "killed")
    })
    .await;
    wait_converged(client, ns, "web", Duration::from_secs(30)).await;
    let calls = web_calls(&hash);
    eprintln!("e2e: SIGKILL between ConfigMap write and hooks: hook calls per pod {calls:?}");
    assert!(calls.values().all(|c| *c == 1) && calls.len() == 2, "{calls:?}");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_claims_outlive_scale_down_and_recreation() {
    let s = Scenario::new("e2e-claims").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<RelayService> = Api::namespaced(client.clone(), ns);
    let mut db = standin_service("db", 2, json!({"GREETING": "a"}));
    db["spec"]["storage"] = json!([{"name": "data", "size": "64Mi", "mountPath": "/data"}]);
    s.apply(&db.to_string());
    wait_converged(client, ns, "db", Duration::from_secs(60)).await;
    let uid = |c: PersistentVolumeClaim| c.uid().unwrap();
    let (claim0, claim1) =
        (uid(claims.get("data-db-0").await.unwrap()), uid(claims.get("data-db-1").await.unwrap()));

    services
        .patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await
        .unwrap();
    eventually("db-1 gone", Duration::from_secs(30), || async {
        pods.get_opt("db-1").await.unwrap().is_none()
    })
    .await;
    assert_eq!(uid(claims.get("data-db-1").await.unwrap()), claim1, "scale-down keeps the claim");

    services.delete("db", &DeleteParams::default()).await.unwrap();
    // The garbage collector learns new resources (the CRDs) on its 30 s discovery resync.
    eventually("db-0 garbage-collected", Duration::from_secs(75), || async {
        pods.get_opt("db-0").await.unwrap().is_none()
    })
    .await;
    assert_eq!(uid(claims.get("data-db-0").await.unwrap()), claim0, "deleting the service keeps the claim");
    db["spec"]["replicas"] = json!(1);
    s.apply(&db.to_string());
    wait_converged(client, ns, "db", Duration::from_secs(60)).await;
    assert_eq!(
        uid(claims.get("data-db-0").await.unwrap()),
        claim0,
        "the new incarnation re-adopts the same claim"
    );

    let mut cache = standin_service("cache", 2, json!({"GREETING": "a"}));
    cache["spec"]["storage"] = json!([{"name": "data", "size": "64Mi", "mountPath": "/data", "retention": {"whenScaled": "Delete"}}]);
    s.apply(&cache.to_string());
    wait_converged(client, ns, "cache", Duration::from_secs(60)).await;
    assert!(claims.get_opt("data-cache-1").await.unwrap().is_some());
    // Suspending is not scaling: no pod runs, every claim stays.
    services
        .patch("cache", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}})))
        .await
        .unwrap();
    eventually("cache suspended: no pods", Duration::from_secs(30), || async {
        pod_uids(client, ns, "cache").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for claim in ["data-cache-0", "data-cache-1"] {
        let kept = claims.get_opt(claim).await.unwrap();
        assert!(kept.is_some_and(|c| c.metadata.deletion_timestamp.is_none()), "{claim} survives suspend");
    }
    services
        .patch("cache", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}})))
        .await
        .unwrap();
    wait_converged(client, ns, "cache", Duration::from_secs(60)).await;
    services
        .patch("cache", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await
        .unwrap();
    eventually("whenScaled: Delete removes data-cache-1", Duration::from_secs(30), || async {
        claims.get_opt("data-cache-1").await.unwrap().is_none_or(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(claims.get_opt("data-cache-0").await.unwrap().is_some());
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_deployments_run_fail_with_the_pull_reason_and_expire() {
    let s = Scenario::new("e2e-td").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let tds: Api<TestDeployment> = Api::namespaced(client.clone(), ns);
    let template = |image: &str| {
        let mut t = standin_service("x", 1, json!({"GREETING": "td"}))["spec"].clone();
        t["image"] = json!(image);
        t
    };
    let td = |name: &str, image: &str, ttl: &str| {
        json!({"apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment", "metadata": {"name": name},
               "spec": {"template": template(image), "ttl": ttl}})
        .to_string()
    };
    s.apply(&td("ok", STANDIN, "1h"));
    s.apply(&td("bad", "e2e.invalid/pull-error:1.0.0", "1h"));
    s.apply(&td("brief", STANDIN, "15s"));
    let phase = |name: &'static str| {
        let tds = tds.clone();
        async move { tds.get(name).await.ok().and_then(|t| t.status).map(|st| (st.phase, st)) }
    };
    eventually("ok Running", Duration::from_secs(60), || async {
        phase("ok").await.is_some_and(|(p, _)| p == TestDeploymentPhase::Running)
    })
    .await;
    eventually("bad Failed", Duration::from_secs(60), || async {
        phase("bad").await.is_some_and(|(p, _)| p == TestDeploymentPhase::Failed)
    })
    .await;
    let (_, bad) = phase("bad").await.unwrap();
    let failure = serde_json::to_string(&bad.failure).unwrap();
    eprintln!("e2e: bad image TestDeployment failure: {failure}");
    assert!(failure.contains("ImagePull") || failure.contains("ErrImagePull"), "{failure}");

    eventually("brief Expired", Duration::from_secs(60), || async {
        phase("brief").await.is_some_and(|(p, _)| p == TestDeploymentPhase::Expired)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually("brief's children gone", Duration::from_secs(30), || async {
        pods.get_opt("brief-td-0").await.unwrap().is_none()
            && svcs.get_opt("brief-td").await.unwrap().is_none()
            && cms.get_opt("brief-td-config").await.unwrap().is_none()
    })
    .await;
    assert!(tds.get_opt("brief").await.unwrap().is_some(), "the expired record is kept");
    assert!(pods.get_opt("ok-td-0").await.unwrap().is_some(), "other deployments are untouched");
    s.cleanup().await;
}

/// The README's invalid examples (blocks under "### Rejected by the API server"), each
/// with a `# rejected: <words of the message>` line.
fn readme_invalid_examples() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(cluster::root().join("README.md")).unwrap();
    let section = readme
        .split("### Rejected by the API server")
        .nth(1)
        .expect("README section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .split("```yaml")
        .skip(1)
        .filter_map(|block| {
            let block = block.split("```").next()?;
            let expected =
                block.lines().find_map(|l| l.trim().strip_prefix("# rejected:"))?.trim().to_owned();
            Some((block.to_owned(), expected))
        })
        .collect()
}

/// `service.type: NodePort` and an `ingress` on a real API server, written with the chart's
/// RBAC: the Service gets a node port, the Ingress is owned by the RelayService, and removing
/// `ingress` from the spec deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_service_and_ingress_follow_the_spec() {
    use k8s_openapi::api::networking::v1::Ingress;
    let s = Scenario::new("e2e-expose").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let started = Instant::now();
    let mut web = standin_service("web", 1, json!({}));
    web["spec"]["service"] = json!({"type": "NodePort"});
    web["spec"]["ingress"] =
        json!({"host": "web.example.com", "tlsSecretName": "web-tls", "className": "nginx"});
    s.apply(&web.to_string());
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
    eventually("a NodePort Service and an Ingress", Duration::from_secs(15), || async {
        let node_port = services.get_opt("web").await.unwrap().and_then(|svc| svc.spec).is_some_and(|spec| {
            spec.type_.as_deref() == Some("NodePort")
                && spec.ports.unwrap_or_default().first().and_then(|p| p.node_port).is_some()
        });
        node_port && ingresses.get_opt("web").await.unwrap().is_some()
    })
    .await;
    let uid = get_service(client, ns, "web").await.unwrap().uid().unwrap();
    let ingress = ingresses.get("web").await.unwrap();
    let owner = &ingress.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("RelayService", uid.as_str(), Some(true))
    );
    let spec = ingress.spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let backend = spec.rules.unwrap()[0].http.as_ref().unwrap().paths[0].backend.service.clone().unwrap();
    assert_eq!((backend.name.as_str(), backend.port.unwrap().name.as_deref()), ("web", Some("http")));

    web["spec"].as_object_mut().unwrap().remove("ingress");
    s.apply(&web.to_string());
    eventually("the Ingress deleted", Duration::from_secs(10), || async {
        ingresses.get_opt("web").await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        services.get("web").await.unwrap().spec.unwrap().type_.as_deref(),
        Some("NodePort"),
        "the Service stays"
    );
    println!("e2e: NodePort Service, Ingress created and deleted in {:?}", started.elapsed());

    // Back to the default: a ClusterIP Service, its node port released by the API server.
    web["spec"].as_object_mut().unwrap().remove("service");
    s.apply(&web.to_string());
    eventually("the Service back to ClusterIP", Duration::from_secs(10), || async {
        services.get("web").await.unwrap().spec.is_some_and(|spec| {
            spec.type_.as_deref() == Some("ClusterIP")
                && spec.ports.unwrap_or_default().iter().all(|p| p.node_port.is_none())
        })
    })
    .await;
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_the_readmes_invalid_examples() {
    let s = Scenario::new("e2e-validation").await;
    let examples = readme_invalid_examples();
    assert!(examples.len() >= 4, "the README shows several invalid examples");
    for (yaml, expected) in examples {
        let out = cluster::kubectl(
            &ControlPlane::get().kubeconfig,
            &["apply", "--server-side", "--field-manager=e2e-user", "-n", &s.namespace, "-f", "-"],
            Some(&yaml),
        );
        assert!(!out.ok, "rejected:\n{yaml}");
        assert!(out.stderr.contains(&expected), "message contains {expected:?}: {}", out.stderr);
    }
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_pods_are_admitted_under_restricted_pod_security() {
    let s = Scenario::new("e2e-psa").await;
    let _operator = s.operator("operator.log");
    // The control: this namespace does enforce the restricted standard.
    let privileged = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": STANDIN, "securityContext": {"privileged": true}}]}});
    let out = cluster::kubectl(
        &ControlPlane::get().kubeconfig,
        &["apply", "-n", &s.namespace, "-f", "-"],
        Some(&privileged.to_string()),
    );
    assert!(!out.ok && out.stderr.contains("violates PodSecurity"), "{}", out.stderr);
    // A database-like service that overrides the user (as the stack example does).
    let mut db = standin_service("pg", 1, json!({"GREETING": "a"}));
    db["spec"]["podSecurityContext"] = json!({"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999});
    s.apply(&db.to_string());
    wait_converged(&s.client, &s.namespace, "pg", Duration::from_secs(60)).await;
    assert!(s.kubelet.pods().contains_key("pg-0"));
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_in_time_when_nothing_can_be_watched() {
    let s = Scenario::new("e2e-shutdown").await;
    // The namespace's `default` ServiceAccount has no RBAC: every watch fails, no cache syncs.
    let token = cluster::kubectl(
        &ControlPlane::get().kubeconfig,
        &["create", "token", "default", "-n", &s.namespace],
        None,
    )
    .success()
    .stdout;
    let kubeconfig = s.dir.join("no-rbac.kubeconfig");
    let admin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&ControlPlane::get().kubeconfig).unwrap()).unwrap();
    let mut config = admin.clone();
    config["users"] = json!([{"name": "nobody", "user": {"token": token.trim()}}]);
    config["contexts"][0]["context"]["user"] = json!("nobody");
    std::fs::write(&kubeconfig, config.to_string()).unwrap();
    let mut operator = Operator::start(&kubeconfig, &s.namespace, &s.dir.join("operator.log"), &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (took, clean) = operator.terminate();
    eprintln!("e2e: SIGTERM with no cache synced: exited in {:.2} s", took.as_secs_f64());
    assert!(clean && took < Duration::from_secs(5), "exit 0 well within the grace period, took {took:?}");
    s.cleanup().await;
}
