//! Stuck rollouts on the real control plane. A bad image with a 5 s `progressDeadline`
//! gives `Progressing=False/ProgressDeadlineExceeded` with the pull error in the message and
//! one Warning Event, only one pod is replaced, and fixing the image recovers with nobody
//! deleting a pod by hand; a crash-looping new pod is stuck with its log tail, and one
//! failing its health check with the health answer. The times are printed.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use relay_operator::api::{ConditionType, RelayService, find_condition};
use serde_json::json;

use crate::cluster::{Scenario, eventually};
use crate::{get_service, pod_uids, standin_service, wait_converged};

/// `Progressing` as (status, reason, message).
async fn progressing(api: &Api<RelayService>, name: &str) -> Option<(String, String, String)> {
    let status = api.get(name).await.ok()?.status?;
    let c = find_condition(&status.conditions, ConditionType::Progressing)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn set_image(api: &Api<RelayService>, name: &str, image: &str) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"image": image}}))).await.unwrap();
}

/// The rollout of the service's current template completed.
async fn rolled_out(api: &Api<RelayService>, name: &str) -> bool {
    api.get(name).await.ok().and_then(|s| s.status).is_some_and(|s| {
        s.pod_template_hash.is_some()
            && s.completed_pod_template_hash == s.pod_template_hash
            && s.updated_replicas == 3
            && s.ready_replicas == 3
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_stops_at_the_deadline_and_a_fixed_image_recovers_without_a_manual_delete() {
    let s = Scenario::new("e2e-deadline").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut service = standin_service("roll", 3, json!({}));
    service["spec"]["updateStrategy"] = json!({"maxUnavailable": 1, "progressDeadline": "5s"});
    s.apply(&service.to_string());
    wait_converged(client, ns, "roll", Duration::from_secs(90)).await;
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    eventually("the first rollout completed", Duration::from_secs(30), || rolled_out(&api, "roll")).await;
    let before = pod_uids(client, ns, "roll").await;

    // A typo in the image: roll-2 is replaced and never pulls.
    set_image(&api, "roll", "e2e.invalid/pull-error:2.0.0").await;
    let changed = Instant::now();
    eventually("Progressing=False/ProgressDeadlineExceeded", Duration::from_secs(60), || async {
        progressing(&api, "roll").await.is_some_and(|(_, reason, _)| reason == "ProgressDeadlineExceeded")
    })
    .await;
    let stuck_after = changed.elapsed();
    let (status, _, message) = progressing(&api, "roll").await.unwrap();
    eprintln!(
        "e2e: image changed → ProgressDeadlineExceeded in {:.1} s (deadline 5 s)",
        stuck_after.as_secs_f64()
    );
    eprintln!("e2e: Progressing message: {message}");
    assert_eq!(status, "False");
    assert!(
        message.starts_with("pod roll-2 was not Ready within progressDeadline 5s of its creation: ")
            && message.contains("pull-error:2.0.0"),
        "the pull error in the message: {message}"
    );

    // Stuck: only roll-2 was replaced, and nothing else moves while it stays stuck.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = pod_uids(client, ns, "roll").await;
    for pod in ["roll-0", "roll-1"] {
        assert_eq!(during.get(pod), before.get(pod), "{pod} was not touched");
    }
    assert_ne!(during.get("roll-2"), before.get("roll-2"), "roll-2 runs the new template");
    let status = get_service(client, ns, "roll").await.unwrap().status.unwrap();
    assert_eq!(status.updated_replicas, 1, "one pod replaced: {status:#?}");
    let failure = status.pods.iter().find(|p| p.name == "roll-2").and_then(|p| p.failure.clone());
    assert!(
        failure.as_ref().is_some_and(|f| ["ErrImagePull", "ImagePullBackOff"].contains(&f.reason.as_str())),
        "{failure:?}"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let stuck_events = || async {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        list.into_iter()
            .filter(|e| e.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .map(|e| {
                let pod = e.related.and_then(|r| r.name).unwrap_or_default();
                (e.type_.unwrap_or_default(), pod, e.series.map_or(1, |s| s.count))
            })
            .collect::<Vec<_>>()
    };
    eventually("one Warning Event", Duration::from_secs(10), || async {
        stuck_events().await == [("Warning".to_owned(), "roll-2".to_owned(), 1)]
    })
    .await;

    // The image is fixed: the stuck pod goes at once, the rollout completes, no manual delete.
    set_image(&api, "roll", "e2e.invalid/standin:1.0.1").await;
    let fixed = Instant::now();
    eventually("the fixed rollout completed", Duration::from_secs(120), || rolled_out(&api, "roll")).await;
    let recovered_after = fixed.elapsed();
    eprintln!(
        "e2e: image fixed → 3/3 pods Ready on the fixed template in {:.1} s",
        recovered_after.as_secs_f64()
    );
    let after = pod_uids(client, ns, "roll").await;
    assert!(before.iter().all(|(pod, uid)| after.get(pod) != Some(uid)), "every pod replaced once");
    let (status, reason, _) = progressing(&api, "roll").await.unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "UpToDate"));
    assert_eq!(stuck_events().await.len(), 1, "no further ProgressDeadlineExceeded Event");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_new_pod_is_stuck_with_its_log_and_is_replaced_when_the_spec_is_fixed() {
    let s = Scenario::new("e2e-deadline-crash").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut service = standin_service("crashy", 2, json!({}));
    service["spec"]["updateStrategy"] = json!({"progressDeadline": "5s"});
    s.apply(&service.to_string());
    wait_converged(client, ns, "crashy", Duration::from_secs(90)).await;
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    let before = pod_uids(client, ns, "crashy").await;

    set_image(&api, "crashy", "e2e.invalid/crash:2.0.0").await;
    let changed = Instant::now();
    eventually("Progressing=False/ProgressDeadlineExceeded", Duration::from_secs(60), || async {
        progressing(&api, "crashy").await.is_some_and(|(_, reason, _)| reason == "ProgressDeadlineExceeded")
    })
    .await;
    eprintln!("e2e: crash loop → ProgressDeadlineExceeded in {:.1} s", changed.elapsed().as_secs_f64());
    let (_, _, message) = progressing(&api, "crashy").await.unwrap();
    eprintln!("e2e: Progressing message: {message}");
    assert!(
        message.starts_with(
            "pod crashy-1 was not Ready within progressDeadline 5s of its creation: CrashLoopBackOff: "
        ) && message.contains("; log: ")
            && message.contains("panic: e2e.invalid/crash:2.0.0 exits on purpose"),
        "the crash and its log in the message: {message}"
    );
    assert_eq!(
        pod_uids(client, ns, "crashy").await.get("crashy-0"),
        before.get("crashy-0"),
        "crashy-0 untouched"
    );

    // Fixed: the crash-looping pod, never Ready, is replaced at once.
    set_image(&api, "crashy", "e2e.invalid/standin:1.0.2").await;
    let fixed = Instant::now();
    eventually("the fixed image on every pod, Ready", Duration::from_secs(120), || async {
        api.get("crashy").await.ok().and_then(|s| s.status).is_some_and(|s| {
            s.completed_pod_template_hash.is_some()
                && s.completed_pod_template_hash == s.pod_template_hash
                && s.updated_replicas == 2
        })
    })
    .await;
    eprintln!("e2e: crash loop fixed → 2/2 Ready in {:.1} s", fixed.elapsed().as_secs_f64());
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_failing_its_health_check_is_stuck_with_the_health_answer() {
    let s = Scenario::new("e2e-deadline-health").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut service = standin_service("sickly", 2, json!({}));
    service["spec"]["updateStrategy"] = json!({"progressDeadline": "8s"});
    s.apply(&service.to_string());
    wait_converged(client, ns, "sickly", Duration::from_secs(90)).await;
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);

    // A restart key changes (a rollout) together with a value that makes the app unhealthy.
    let data = json!({"MODE": "two", "HEALTHY": "false"});
    api.patch("sickly", &PatchParams::default(), &Patch::Merge(json!({"spec": {"config": {"data": data}}})))
        .await
        .unwrap();
    let changed = Instant::now();
    eventually("Progressing=False/ProgressDeadlineExceeded", Duration::from_secs(60), || async {
        progressing(&api, "sickly").await.is_some_and(|(_, reason, _)| reason == "ProgressDeadlineExceeded")
    })
    .await;
    eprintln!(
        "e2e: failing health check → ProgressDeadlineExceeded in {:.1} s",
        changed.elapsed().as_secs_f64()
    );
    let (_, _, message) = progressing(&api, "sickly").await.unwrap();
    eprintln!("e2e: Progressing message: {message}");
    assert!(
        message.starts_with("pod sickly-1 was not Ready within progressDeadline 8s of its creation: HealthCheckFailing: readiness check GET /health answered HTTP 503")
            && message.contains("\"ws_connected\":false"),
        "the health answer in the message: {message}"
    );
    let status = get_service(client, ns, "sickly").await.unwrap().status.unwrap();
    let ready: Vec<(&str, bool)> = status.pods.iter().map(|p| (p.name.as_str(), p.ready)).collect();
    assert_eq!(ready, [("sickly-0", true), ("sickly-1", false)], "the old pod still serves");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_auto_brings_the_previous_image_back_when_a_bad_image_is_stuck() {
    let s = Scenario::new("e2e-deadline-auto").await;
    let _operator = s.operator("operator.log");
    let (client, ns) = (&s.client, s.namespace.as_str());
    let mut service = standin_service("auto", 3, json!({}));
    service["spec"]["updateStrategy"] = json!({"progressDeadline": "5s", "rollback": "auto"});
    s.apply(&service.to_string());
    wait_converged(client, ns, "auto", Duration::from_secs(90)).await;
    let api: Api<RelayService> = Api::namespaced(client.clone(), ns);
    eventually("the first rollout completed", Duration::from_secs(30), || rolled_out(&api, "auto")).await;
    let good = api.get("auto").await.unwrap().status.unwrap().pod_template_hash.unwrap();
    let before = pod_uids(client, ns, "auto").await;

    set_image(&api, "auto", "e2e.invalid/pull-error:2.0.0").await;
    let changed = Instant::now();
    eventually("rolled back to the previous template", Duration::from_secs(90), || async {
        rolled_out(&api, "auto").await
            && api.get("auto").await.ok().and_then(|s| s.status).is_some_and(|s| {
                s.pod_template_hash.as_deref() == Some(good.as_str())
                    && s.rollback
                        .is_some_and(|r| r.request.starts_with("previous@auto-") && r.revision == Some(1))
            })
    })
    .await;
    eprintln!(
        "e2e: bad image → rolled back, 3/3 Ready on the previous template in {:.1} s (deadline 5 s)",
        changed.elapsed().as_secs_f64()
    );
    let service = api.get("auto").await.unwrap();
    assert_eq!(service.spec.image, "e2e.invalid/pull-error:2.0.0", "the spec is left as it is");
    let after = pod_uids(client, ns, "auto").await;
    for pod in ["auto-0", "auto-1"] {
        assert_eq!(after.get(pod), before.get(pod), "{pod} never left the previous template");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .filter(|r| ["ProgressDeadlineExceeded", "RollingBack"].contains(&r.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "one Event each: {reasons:?}");
    s.cleanup().await;
}
