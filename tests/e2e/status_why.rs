//! Status says why: a pull error, a crash loop and an app whose health check fails from the
//! start each show their reason in `kubectl get rsvc`, the kubelet's message (or the health
//! answer) in `status.pods[].failure`, and one Warning Event naming the pod.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use relay_operator::api::{ConditionType, FailureDetail, RelayService, find_condition};
use serde_json::json;

use crate::cluster::{ControlPlane, Scenario, eventually};
use crate::standin_service;

/// The failure of the service's first pod, once its Ready reason is `reason`.
async fn failure_once(api: &Api<RelayService>, name: &str, reason: &str) -> Option<FailureDetail> {
    let service = api.get(name).await.ok()?;
    let status = service.status?;
    let ready = find_condition(&status.conditions, ConditionType::Ready)?;
    (ready.reason == reason).then(|| status.pods.first()?.failure.as_deref().cloned()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_and_get_say_why_pods_are_not_ready() {
    let s = Scenario::new("e2e-why").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let with_image = |name: &str, image: &str| {
        let mut service = standin_service(name, 1, json!({}));
        service["spec"]["image"] = json!(image);
        service.to_string()
    };
    s.apply(&with_image("badimg", "e2e.invalid/pull-error:1.0.0"));
    s.apply(&with_image("crashy", "e2e.invalid/crash:1.0.0"));
    s.apply(&standin_service("sick", 1, json!({"HEALTHY": "false"})).to_string());
    let started = std::time::Instant::now();

    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    let mut found = Vec::new();
    for (name, reason) in
        [("badimg", "ImagePullBackOff"), ("crashy", "CrashLoopBackOff"), ("sick", "HealthCheckFailing")]
    {
        eventually(&format!("{name} Ready=False/{reason}"), Duration::from_secs(60), || async {
            failure_once(&api, name, reason).await.is_some()
        })
        .await;
        eprintln!("e2e: {name}: {reason} in status after {:.1} s", started.elapsed().as_secs_f64());
        found.push((name, failure_once(&api, name, reason).await.unwrap()));
    }
    let [(_, pull), (_, crash), (_, sick)] = &found[..] else { unreachable!() };
    eprintln!("e2e: crash loop failure: {}", serde_json::to_string(crash).unwrap());
    assert!(pull.message.contains("pull-error"), "the kubelet's message: {pull:?}");
    assert_eq!((crash.exit_code, crash.container.as_deref()), (Some(1), Some("app")), "{crash:?}");
    let tail = crash.log_tail.as_deref().unwrap_or_default();
    assert!(
        tail.starts_with("standin: starting e2e.invalid/crash:1.0.0")
            && tail.contains("panic: e2e.invalid/crash:1.0.0 exits on purpose (exit code 1, restart"),
        "the crashed instance's log, read through the API server: {crash:?}"
    );
    assert!(
        sick.message.starts_with("readiness check GET /health answered HTTP 503")
            && sick.message.contains("\"ws_connected\":false"),
        "the health answer of a never-Ready pod: {sick:?}"
    );

    let get = ControlPlane::get().kubectl(&["get", "rsvc", "-n", ns]).success().stdout;
    eprintln!("e2e: kubectl get rsvc\n{get}");
    for reason in ["ImagePullBackOff", "CrashLoopBackOff", "HealthCheckFailing"] {
        assert!(get.contains(reason), "{reason} in the Status column:\n{get}");
    }
    for name in ["badimg", "crashy", "sick"] {
        let describe = ControlPlane::get().kubectl(&["describe", "rsvc", name, "-n", ns]).success().stdout;
        eprintln!("e2e: kubectl describe rsvc {name} (excerpt)\n{}", excerpt(&describe));
    }

    // One Warning Event per pod and problem, naming the pod; none repeated later.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let warnings = || async {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        let mut seen: Vec<(String, String, i32)> = list
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter(|e| {
                ["ImagePullBackOff", "CrashLoopBackOff", "HealthCheckFailing"]
                    .contains(&e.reason.as_deref().unwrap_or_default())
            })
            .map(|e| {
                let pod = e.related.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
                let count = e.series.as_ref().map_or(1, |s| s.count);
                (e.reason.clone().unwrap_or_default(), pod, count)
            })
            .collect();
        seen.sort();
        seen
    };
    let expected = vec![
        ("CrashLoopBackOff".to_owned(), "crashy-0".to_owned(), 1),
        ("HealthCheckFailing".to_owned(), "sick-0".to_owned(), 1),
        ("ImagePullBackOff".to_owned(), "badimg-0".to_owned(), 1),
    ];
    eventually("one Warning Event per pod and problem", Duration::from_secs(10), || async {
        warnings().await == expected
    })
    .await;
    // The crash loop goes on (restarts every 2 s): no new Event, no second log read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(warnings().await, expected);
    s.cleanup().await;
}

/// The Status and the failing pod's lines of `kubectl describe`.
fn excerpt(describe: &str) -> String {
    describe
        .lines()
        .filter(|l| {
            ["Reason:", "Message:", "Failure", "Pods:", "Name:", "Warning"].iter().any(|k| l.contains(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
