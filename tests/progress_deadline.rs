//! Stuck rollouts against the in-process fake API (the RelayService reconciler with a
//! settable clock): a new pod that is not Ready within `updateStrategy.progressDeadline`
//! gives `Progressing=False/ProgressDeadlineExceeded` with the pod's diagnosis and one
//! Warning Event, the rollout replaces no further pod (not even an old one turning unready),
//! the verdict survives an operator restart, and a fixed spec replaces the stuck pod at
//! once — no manual delete.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use relay_operator::api::{ConditionType, RelayService, find_condition};
use relay_operator::controller::relay_service::reconcile;
use serde_json::json;
use support::*;

const T0: &str = "2026-06-01T00:00:00Z";

fn at(offset_secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap();
    t0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(offset_secs)).unwrap()
}

/// Three replicas of `image`, a 30 s progress deadline.
fn service(image: &str) -> RelayServiceFixture {
    RelayServiceFixture::new("web")
        .image(image)
        .replicas(3)
        .port("http", 8080)
        .config([("A", "1")])
        .spec(json!({"updateStrategy": {"maxUnavailable": 1, "progressDeadline": "30s"}}))
}

/// Reconcile, feed the writes back (new pods Ready or not), carry the written status over.
async fn step(h: &mut Harness, rs: RelayService, ready: bool) -> (RelayService, Vec<Call>, Action) {
    let action = reconcile(Arc::new(rs.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    h.sync(ready);
    (with_patched_status(rs, &calls), calls, action)
}

/// Writes to pods, as `METHOD path`.
fn pod_writes(calls: &[Call]) -> Vec<String> {
    summary(calls).into_iter().filter(|c| c.contains("/pods/") && !c.starts_with("GET")).collect()
}

/// What the API server and the kubelet say about pod `name`: created at `created`, `status`.
fn kubelet(h: &mut Harness, name: &str, created: Timestamp, status: PodStatus) {
    let path = format!("/api/v1/namespaces/demo/pods/{name}");
    let mut pod: Pod = h.stored(&path).unwrap_or_else(|| panic!("no pod {name}"));
    pod.metadata.creation_timestamp = Some(Time(created));
    pod.status = Some(status);
    h.put(&pod);
}

fn waiting(reason: &str, message: &str, exit: Option<i32>) -> PodStatus {
    let last = exit.map_or(json!({}), |code| json!({"terminated": {"exitCode": code}}));
    serde_json::from_value(json!({
        "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": exit.map_or(0, |_| 4), "image": "x", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": last,
        }],
    }))
    .unwrap()
}

fn warnings(calls: &[Call], reason: &str) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.path.contains("/events") && c.body["reason"] == reason && c.body["type"] == "Warning")
        .map(|c| {
            let pod = c.body["related"]["name"].as_str().unwrap_or_default().to_owned();
            (pod, c.body["note"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn progressing(rs: &RelayService) -> (String, String, String) {
    let status = rs.status.as_ref().expect("a status");
    let c = find_condition(&status.conditions, ConditionType::Progressing).expect("Progressing");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A converged service on image `good`, its completed rollout recorded in status.
async fn converged(h: &mut Harness, image: &str) -> RelayService {
    h.set_time(at(0));
    let (rs, _, _) = step(h, service(image).build(), true).await;
    let (rs, _, _) = step(h, rs, true).await;
    let status = rs.status.as_ref().unwrap();
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.completed_pod_template_hash, status.pod_template_hash, "the first rollout completed");
    rs
}

/// Roll `rs` to `image`: web-2 is deleted and recreated, created at `created`.
async fn roll_to(h: &mut Harness, rs: RelayService, image: &str) -> RelayService {
    let mut next = service(image).generation(rs.metadata.generation.unwrap_or(1) + 1).build();
    next.status = rs.status;
    let (rs, calls, _) = step(h, next, false).await;
    assert_eq!(pod_writes(&calls), ["DELETE /api/v1/namespaces/demo/pods/web-2"]);
    let (rs, calls, _) = step(h, rs, false).await;
    assert_eq!(pod_writes(&calls), ["POST /api/v1/namespaces/demo/pods/web-2"]);
    rs
}

#[tokio::test]
async fn a_bad_image_is_reported_at_the_deadline_stops_the_rollout_and_a_fix_replaces_the_stuck_pod() {
    let mut h = Harness::new();
    let rs = converged(&mut h, "ghcr.io/example/web:1.0.0").await;
    let good_hash = rs.status.as_ref().unwrap().pod_template_hash.clone();

    let rs = roll_to(&mut h, rs, "ghcr.io/example/web:9.9.9-typo").await;
    let pull = "Back-off pulling image \"ghcr.io/example/web:9.9.9-typo\": not found";
    kubelet(&mut h, "web-2", at(100), waiting("ImagePullBackOff", pull, None));

    // Within the deadline: still progressing, and the reconcile comes back when it runs out.
    h.set_time(at(120));
    let (rs, calls, action) = step(&mut h, rs, false).await;
    assert_eq!(progressing(&rs).1, "RollingUpdate");
    assert!(warnings(&calls, "ProgressDeadlineExceeded").is_empty());
    assert_eq!(format!("{action:?}"), format!("{:?}", Action::requeue(Duration::from_secs(11))));
    assert!(pod_writes(&calls).is_empty(), "the stuck pod holds the budget");

    // 30 s after its creation: stuck, with the kubelet's reason; one Warning Event naming the pod.
    h.set_time(at(130));
    let before = rs.clone();
    let (rs, calls, _) = step(&mut h, rs, false).await;
    let expected = format!(
        "pod web-2 was not Ready within progressDeadline 30s of its creation: ImagePullBackOff: {pull}"
    );
    assert_eq!(progressing(&rs), ("False".into(), "ProgressDeadlineExceeded".into(), expected.clone()));
    assert_eq!(warnings(&calls, "ProgressDeadlineExceeded"), [("web-2".to_owned(), expected.clone())]);
    assert!(pod_writes(&calls).is_empty(), "no further pod is replaced while stuck: {:#?}", summary(&calls));
    assert_eq!(rs.status.as_ref().unwrap().completed_pod_template_hash, good_hash, "still the last good one");

    // A reconcile reading the status from before that write announces nothing again; nor
    // does a restarted operator (its memory is empty, the status says it).
    let (_, calls, _) = step(&mut h, before, false).await;
    assert!(warnings(&calls, "ProgressDeadlineExceeded").is_empty(), "announced twice");
    h.restart();
    h.set_time(at(600));
    let (rs, calls, _) = step(&mut h, rs, false).await;
    assert_eq!(progressing(&rs).1, "ProgressDeadlineExceeded", "durable across restarts");
    assert!(warnings(&calls, "ProgressDeadlineExceeded").is_empty(), "announced again after a restart");
    assert!(pod_writes(&calls).is_empty());

    // An old pod turning unready meanwhile is not replaced with the stuck template either.
    h.set_pod("web-1", false, None);
    let (rs, calls, _) = step(&mut h, rs, false).await;
    assert!(pod_writes(&calls).is_empty(), "held: {:#?}", summary(&calls));
    h.set_pod("web-1", true, None);

    // The spec is fixed: the stuck pod (never Ready) goes at once, nobody deletes it by hand.
    let mut fixed = service("ghcr.io/example/web:1.0.1").generation(3).build();
    fixed.status = rs.status;
    let (rs, calls, _) = step(&mut h, fixed, false).await;
    assert_eq!(pod_writes(&calls), ["DELETE /api/v1/namespaces/demo/pods/web-2"]);
    assert_eq!(progressing(&rs).1, "RollingUpdate", "a new rollout: no longer stuck");
    let (rs, calls, _) = step(&mut h, rs, true).await;
    assert_eq!(pod_writes(&calls), ["POST /api/v1/namespaces/demo/pods/web-2"]);
    // Then the rollout goes on, one pod at a time, to completion.
    let mut rs = rs;
    for _ in 0..8 {
        (rs, _, _) = step(&mut h, rs, true).await;
    }
    let status = rs.status.as_ref().unwrap();
    assert_eq!((status.ready.as_deref(), status.updated_replicas), (Some("3/3"), 3));
    assert_eq!(status.completed_pod_template_hash, status.pod_template_hash);
    assert_eq!(progressing(&rs).1, "UpToDate");
}

#[tokio::test]
async fn a_crash_loop_at_the_deadline_quotes_the_log_and_a_stuck_crashing_pod_is_replaced_by_a_fix() {
    let mut h = Harness::new();
    let rs = converged(&mut h, "ghcr.io/example/web:1.0.0").await;
    let rs = roll_to(&mut h, rs, "ghcr.io/example/web:1.1.0").await;
    kubelet(
        &mut h,
        "web-2",
        at(100),
        waiting("CrashLoopBackOff", "back-off 40s restarting failed container=app", Some(2)),
    );
    h.set_time(at(131));
    let (rs, calls, _) = step(&mut h, rs, false).await;
    let (status, reason, message) = progressing(&rs);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ProgressDeadlineExceeded"));
    assert!(
        message.ends_with(
            "CrashLoopBackOff: back-off 40s restarting failed container=app; \
             log: starting | panic: cannot connect to wss://stream.example.invalid/ws"
        ),
        "{message}"
    );
    assert_eq!(warnings(&calls, "ProgressDeadlineExceeded").len(), 1);

    // Back to the previous image by hand: the crash-looping pod is replaced right away.
    let mut fixed = service("ghcr.io/example/web:1.0.0").generation(3).build();
    fixed.status = rs.status;
    let (rs, calls, _) = step(&mut h, fixed, true).await;
    assert_eq!(pod_writes(&calls), ["DELETE /api/v1/namespaces/demo/pods/web-2"]);
    assert_eq!(progressing(&rs).0, "True", "the stuck template is no longer the target");
    let (rs, calls, _) = step(&mut h, rs, true).await;
    assert_eq!(pod_writes(&calls), ["POST /api/v1/namespaces/demo/pods/web-2"]);
    let (rs, _, _) = step(&mut h, rs, true).await;
    assert_eq!(progressing(&rs).1, "UpToDate");
}

#[tokio::test]
async fn a_pod_failing_after_a_completed_rollout_is_degraded_not_a_stuck_rollout() {
    let mut h = Harness::new();
    let rs = converged(&mut h, "ghcr.io/example/web:1.0.0").await;
    kubelet(&mut h, "web-1", at(0), waiting("CrashLoopBackOff", "back-off 5m", Some(1)));
    h.set_time(at(3600));
    let (rs, calls, _) = step(&mut h, rs, false).await;
    assert_ne!(progressing(&rs).1, "ProgressDeadlineExceeded");
    assert!(warnings(&calls, "ProgressDeadlineExceeded").is_empty());
    let degraded = find_condition(&rs.status.as_ref().unwrap().conditions, ConditionType::Degraded).unwrap();
    assert_eq!(degraded.reason, "PodsFailing");
}

#[tokio::test]
async fn a_new_service_whose_first_pods_never_turn_ready_is_stuck_too() {
    let mut h = Harness::new();
    h.set_time(at(0));
    let rs = service("ghcr.io/example/web:1.0.0").replicas(1).build();
    let (rs, _, _) = step(&mut h, rs, false).await;
    kubelet(&mut h, "web-0", at(0), waiting("ErrImagePull", "failed to pull image: not found", None));
    h.set_time(at(45));
    let (rs, calls, _) = step(&mut h, rs, false).await;
    assert_eq!(progressing(&rs).1, "ProgressDeadlineExceeded");
    assert_eq!(warnings(&calls, "ProgressDeadlineExceeded").len(), 1);
    assert_eq!(rs.status.as_ref().unwrap().completed_pod_template_hash, None);
}

#[tokio::test]
async fn rollback_auto_restores_the_previous_revision_once_the_rollout_is_stuck() {
    let mut h = Harness::new();
    let rs = converged(&mut h, "ghcr.io/example/web:1.0.0").await;
    let good_hash = rs.status.as_ref().unwrap().pod_template_hash.clone().unwrap();
    let mut next = service("ghcr.io/example/web:2.0.0")
        .spec(json!({"updateStrategy": {"progressDeadline": "30s", "rollback": "auto"}}))
        .generation(2)
        .build();
    next.status = rs.status;
    let (rs, _, _) = step(&mut h, next, false).await;
    let (rs, _, _) = step(&mut h, rs, false).await;
    let bad_hash = rs.status.as_ref().unwrap().pod_template_hash.clone().unwrap();
    kubelet(&mut h, "web-2", at(100), waiting("ErrImagePull", "failed to pull image: not found", None));
    h.set_time(at(200));
    let (rs, calls, _) = step(&mut h, rs, false).await;
    let (_, reason, message) = progressing(&rs);
    assert_eq!(reason, "ProgressDeadlineExceeded");
    assert!(
        message.ends_with(&format!(
            "rollback: auto: rolling back, towards pod template {good_hash} (the last completed rollout)"
        )),
        "{message}"
    );
    assert_eq!(warnings(&calls, "ProgressDeadlineExceeded").len(), 1);

    // The stuck status is read back: the revision before the current one is pinned, once.
    let (rs, calls, _) = step(&mut h, rs, false).await;
    let rollback = rs.status.as_ref().unwrap().rollback.clone().expect("status.rollback");
    assert_eq!((rollback.request, rollback.revision), (format!("previous@auto-{bad_hash}"), Some(1)));
    let rolling = warnings(&calls, "RollingBack");
    assert!(rolling.len() == 1 && rolling[0].1.contains("rolling back to revision 1"), "{rolling:#?}");
    assert!(
        progressing(&rs).2.ends_with("rollback: auto: rolling back to revision 1"),
        "{:?}",
        progressing(&rs)
    );

    // From the next reconcile the pinned revision renders: the stuck pod goes at once and
    // comes back with the previous image; nobody touched the spec.
    let (rs, calls, _) = step(&mut h, rs, true).await;
    assert_eq!(pod_writes(&calls), ["DELETE /api/v1/namespaces/demo/pods/web-2"]);
    let (rs, calls, _) = step(&mut h, rs, true).await;
    let created = calls.iter().find(|c| c.method == "POST" && c.body["metadata"]["name"] == "web-2").unwrap();
    assert_eq!(created.body["spec"]["containers"][0]["image"], "ghcr.io/example/web:1.0.0");
    let (rs, calls, _) = step(&mut h, rs, true).await;
    assert!(warnings(&calls, "RollingBack").is_empty(), "rolled back once");
    let status = rs.status.as_ref().unwrap();
    assert_eq!(rs.spec.image, "ghcr.io/example/web:2.0.0", "the spec is left as it is");
    assert_eq!(
        (status.ready.as_deref(), status.pod_template_hash.as_deref()),
        (Some("3/3"), Some(good_hash.as_str()))
    );
    assert_eq!(progressing(&rs).1, "UpToDate");
}

#[tokio::test]
async fn an_automatic_rollback_does_not_make_an_old_rollback_annotation_count_again() {
    let mut h = Harness::new();
    let rs = converged(&mut h, "ghcr.io/example/web:1.0.0").await;
    let mut next = service("ghcr.io/example/web:2.0.0")
        .spec(json!({"updateStrategy": {"progressDeadline": "30s", "rollback": "auto"}}))
        .generation(2)
        .build();
    // A rollback the user asked for long ago (it found nothing to go back to): handled once.
    next.metadata.annotations =
        Some([("relayops.io/rollback-to".to_owned(), "previous@old".to_owned())].into());
    next.status = rs.status;
    let (rs, _, _) = step(&mut h, next, false).await;
    assert_eq!(
        rs.status.as_ref().unwrap().rollback.as_ref().map(|r| r.request.as_str()),
        Some("previous@old")
    );
    let (rs, _, _) = step(&mut h, rs, false).await;
    kubelet(&mut h, "web-2", at(100), waiting("ErrImagePull", "failed to pull image: not found", None));
    h.set_time(at(200));
    let (rs, _, _) = step(&mut h, rs, false).await;
    let (rs, calls, _) = step(&mut h, rs, false).await;
    assert_eq!(warnings(&calls, "RollingBack").len(), 1);

    // The automatic pin holds: the old annotation is not handled again.
    let (rs, calls, _) = step(&mut h, rs, true).await;
    let rollback_events: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            c.path.contains("/events")
                && ["RollingBack", "RollbackFailed"].contains(&c.body["reason"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(rollback_events.is_empty(), "{rollback_events:#?}");
    assert_eq!(pod_writes(&calls), ["DELETE /api/v1/namespaces/demo/pods/web-2"]);
    let rollback = rs.status.as_ref().unwrap().rollback.clone().unwrap();
    assert!(rollback.request.starts_with("previous@auto-") && rollback.revision == Some(1), "{rollback:?}");
}
