//! The TestDeployment reconciler against an in-process fake API server and an injectable
//! clock: Pending → Deploying → Running, every failure reason (the crash log read through
//! the log subresource), suspend and resume, expiry while the operator was down, TTL
//! extension, deleteOnExpiry, the source snapshot and the requeue at expiry.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use relay_operator::api::{RelayService, TestDeployment};
use relay_operator::controller::test_deployment::{ANNOTATION_SOURCE_SPEC, reconcile};
use relay_operator::render::CONTAINER_NAME;
use serde_json::{Value, json};
use support::*;

fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn after(seconds: i64) -> Timestamp {
    Timestamp::from_second(t0().as_second() + seconds).unwrap()
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A harness whose clock starts one second after the deployments are created.
fn harness() -> Harness {
    let h = Harness::new();
    h.set_time(after(1));
    h
}

/// Reconcile `td`, then apply the status (and annotations) the operator wrote to it, as
/// the API server would; returns the new object, the action and the requests made.
async fn reconcile_td(h: &mut Harness, td: &TestDeployment) -> (TestDeployment, Action, Vec<Call>) {
    let action = reconcile(Arc::new(td.clone()), h.ctx.clone()).await.unwrap();
    let calls = h.take_calls();
    let mut td = td.clone();
    for call in calls.iter().filter(|c| c.method == "PATCH" && c.path.contains("/testdeployments/")) {
        if call.path.contains("/status?") {
            td.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
        } else if let Some(annotations) = call.body["metadata"]["annotations"].as_object() {
            for (key, value) in annotations {
                td.annotations_mut().insert(key.clone(), value.as_str().unwrap().to_string());
            }
        }
    }
    (td, action, calls)
}

fn with_container(state: ContainerState, last_state: Option<ContainerState>) -> PodStatus {
    PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: CONTAINER_NAME.into(),
            state: Some(state),
            last_state,
            restart_count: 3,
            ..Default::default()
        }]),
        ..running(false)
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some(message.into()) }),
        ..Default::default()
    }
}

fn terminated(exit_code: i32) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some("Error".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One replica with a port, configuration and storage.
fn app() -> RelayServiceFixture {
    RelayServiceFixture::new("template")
        .image("ghcr.io/example/web:1.0.0")
        .port("http", 8080)
        .config([("A", "1")])
        .storage("data", "1Gi", "/data")
}

/// `pr`, created at [`t0`], running `app` for an hour.
fn with_template(app: RelayServiceFixture) -> TestDeploymentFixture {
    TestDeploymentFixture::new("pr").created_at(t0()).template(app).ttl("1h").progress_deadline("10m")
}

/// `pr`, created at [`t0`], copied from the RelayService `web`.
fn from_web() -> TestDeploymentFixture {
    TestDeploymentFixture::new("pr").created_at(t0()).source("web")
}

fn writes(calls: &[Call]) -> Vec<String> {
    summary(calls).into_iter().filter(|c| !c.contains("/events")).collect()
}

fn condition<'a>(td: &'a TestDeployment, type_: &str) -> (&'a str, &'a str) {
    let c = td.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

fn phase(td: &TestDeployment) -> &'static str {
    td.status.as_ref().unwrap().phase.as_str()
}

fn requeue(seconds: u64) -> String {
    format!("{:?}", Action::requeue(Duration::from_secs(seconds)))
}

/// Create the children and bring the pod to `status`; returns the object after two reconciles.
async fn deployed(h: &mut Harness, td: TestDeploymentFixture, status: &PodStatus) -> TestDeployment {
    let (td, _, _) = reconcile_td(h, &td.build()).await;
    h.sync_with(status);
    h.set_time(after(30));
    let (td, _, _) = reconcile_td(h, &td).await;
    td
}

#[tokio::test]
async fn pending_deploying_running_with_timestamps_url_events_and_requeue_at_expiry() {
    let mut h = harness();
    let (td, action, calls) = reconcile_td(&mut h, &with_template(app()).build()).await;
    let paths = writes(&calls);
    for expected in [
        "PATCH /api/v1/namespaces/demo/configmaps/pr-td-config",
        "PATCH /api/v1/namespaces/demo/services/pr-td",
        "PATCH /api/v1/namespaces/demo/persistentvolumeclaims/data-pr-td-0",
        "POST /api/v1/namespaces/demo/pods/pr-td-0",
        "PATCH /apis/relayops.io/v1alpha1/namespaces/demo/testdeployments/pr/status",
    ] {
        assert!(paths.contains(&expected.to_string()), "{expected} missing from {paths:#?}");
    }
    let status = td.status.clone().unwrap();
    assert_eq!(phase(&td), "Pending");
    assert_eq!(status.expires_at, Some(time(after(3600))));
    assert_eq!(status.url.as_deref(), Some("http://pr-td.demo.svc:8080"));
    assert!(event_reasons(&calls).contains(&"Pending".to_string()));
    // Not Ready yet: wake at the progress deadline (10m after creation).
    assert_eq!(format!("{action:?}"), requeue(599));

    h.sync_with(&running(false));
    h.set_time(after(20));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(phase(&td), "Deploying");
    assert_eq!(td.status.as_ref().unwrap().started_at, Some(time(after(20))));
    assert_eq!(event_reasons(&calls), ["Deploying"]);

    h.set_pod_status(&running(true));
    h.set_time(after(45));
    let (td, action, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(phase(&td), "Running");
    let status = td.status.clone().unwrap();
    assert_eq!(status.ready_at, Some(time(after(45))));
    assert_eq!(status.started_at, Some(time(after(20))));
    assert_eq!(condition(&td, "Ready"), ("True", "AllPodsReady"));
    assert_eq!(event_reasons(&calls), ["Running"]);
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_time_to_running_seconds_count"), 1.0);
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_time_to_running_seconds_sum"), 45.0);
    // Running: the next wake is exactly expiresAt − now.
    assert_eq!(format!("{action:?}"), requeue(3600 - 45));

    // Converged: nothing written, no second observation.
    h.set_time(after(100));
    let (_, action, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(summary(&calls), Vec::<String>::new());
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_time_to_running_seconds_count"), 1.0);
    assert_eq!(format!("{action:?}"), requeue(3500));
}

#[tokio::test]
async fn image_pull_failure_takes_reason_and_message_from_the_pod() {
    let mut h = harness();
    let message = "Back-off pulling image \"ghcr.io/example/web:1.0.0\"";
    let status = with_container(waiting("ImagePullBackOff", message), None);
    let td = deployed(&mut h, with_template(app()), &status).await;
    assert_eq!(phase(&td), "Failed");
    let failure = td.status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(failure.reason, "ImagePullBackOff");
    assert_eq!(failure.message, message);
    assert_eq!(failure.container.as_deref(), Some(CONTAINER_NAME));
    assert_eq!(failure.pod.as_deref(), Some("pr-td-0"));
    assert_eq!(failure.log_tail, None, "no log for an image that never ran");
    assert_eq!(condition(&td, "Failed"), ("True", "ImagePullBackOff"));
    assert_eq!(condition(&td, "Ready"), ("False", "ImagePullBackOff"));

    let status = with_container(waiting("ErrImagePull", "manifest unknown"), None);
    h.set_pod_status(&status);
    let (td, _, _) = reconcile_td(&mut h, &td).await;
    assert_eq!(td.status.unwrap().failure.unwrap().reason, "ErrImagePull");
}

#[tokio::test]
async fn crash_loop_reads_the_previous_log_once() {
    let mut h = harness();
    let status = with_container(
        waiting("CrashLoopBackOff", "back-off 40s restarting failed container=app"),
        Some(terminated(1)),
    );
    let (td, _, _) = reconcile_td(&mut h, &with_template(app()).build()).await;
    h.sync_with(&status);
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    let logs: Vec<&Call> = calls.iter().filter(|c| c.path.contains("/log")).collect();
    assert_eq!(logs.len(), 1, "{:#?}", summary(&calls));
    let path = &logs[0].path;
    assert_eq!(logs[0].method, "GET");
    assert!(path.starts_with("/api/v1/namespaces/demo/pods/pr-td-0/log?"), "{path}");
    for part in ["previous=true", "container=app", "tailLines=20", "limitBytes=4096"] {
        assert!(path.contains(part), "{part} missing from {path}");
    }
    let failure = td.status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(failure.reason, "CrashLoopBackOff");
    assert_eq!(failure.exit_code, Some(1));
    assert_eq!(failure.log_tail.as_deref(), Some(LOG));
    assert!(event_reasons(&calls).contains(&"Failed".to_string()));

    // Same failure: the log is not read again.
    h.set_time(after(90));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert!(!calls.iter().any(|c| c.path.contains("/log")), "{:#?}", summary(&calls));
    assert_eq!(td.status.unwrap().failure.unwrap().log_tail.as_deref(), Some(LOG));
}

#[tokio::test]
async fn non_zero_exit_reads_the_current_log() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()), &with_container(terminated(137), None)).await;
    let failure = td.status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!((failure.reason.as_str(), failure.exit_code), ("Error", Some(137)));
    assert_eq!(failure.message, "container app exited with code 137");
    assert_eq!(failure.log_tail.as_deref(), Some(LOG));
}

#[tokio::test]
async fn unschedulable_pod_fails() {
    let mut h = harness();
    let status = PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/3 nodes are available: 3 Insufficient memory.".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let td = deployed(&mut h, with_template(app()), &status).await;
    assert_eq!(phase(&td), "Failed");
    let failure = td.status.unwrap().failure.unwrap();
    assert_eq!(failure.reason, "Unschedulable");
    assert_eq!(failure.message, "0/3 nodes are available: 3 Insufficient memory.");
}

#[tokio::test]
async fn progress_deadline_exceeded() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()), &running(false)).await;
    assert_eq!(phase(&td), "Deploying");
    let started = td.status.as_ref().unwrap().started_at.clone();
    assert_eq!(started, Some(time(after(30))));
    h.set_time(after(30 + 599));
    let (td, _, _) = reconcile_td(&mut h, &td).await;
    assert_eq!(phase(&td), "Deploying");
    h.set_time(after(30 + 600));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(phase(&td), "Failed");
    let failure = td.status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(failure.reason, "ProgressDeadlineExceeded");
    assert!(failure.message.contains("0/1 pods ready"), "{}", failure.message);
    assert_eq!(event_reasons(&calls), ["Failed"]);
}

#[tokio::test]
async fn suspend_stops_and_resume_restarts() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()), &running(true)).await;
    assert_eq!(phase(&td), "Running");

    let mut suspended = td.clone();
    suspended.spec.suspend = true;
    suspended.metadata.generation = Some(2);
    let (td, _, calls) = reconcile_td(&mut h, &suspended).await;
    assert!(writes(&calls).contains(&"DELETE /api/v1/namespaces/demo/pods/pr-td-0".to_string()));
    assert!(!writes(&calls).iter().any(|c| c.starts_with("DELETE") && !c.contains("/pods/")));
    assert_eq!(phase(&td), "Stopped");
    assert_eq!(condition(&td, "Ready"), ("False", "Suspended"));
    assert!(event_reasons(&calls).contains(&"Stopped".to_string()));
    h.sync_with(&running(true));
    assert!(h.ctx.caches.pods.state().is_empty());

    let mut resumed = td.clone();
    resumed.spec.suspend = false;
    resumed.metadata.generation = Some(3);
    let (td, _, calls) = reconcile_td(&mut h, &resumed).await;
    assert!(writes(&calls).contains(&"POST /api/v1/namespaces/demo/pods/pr-td-0".to_string()));
    assert_eq!(phase(&td), "Pending");
    h.sync_with(&running(true));
    let (td, _, _) = reconcile_td(&mut h, &td).await;
    assert_eq!(phase(&td), "Running");
}

#[tokio::test]
async fn expiry_while_the_operator_was_down_deletes_children_and_keeps_the_record() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()), &running(true)).await;
    assert_eq!(phase(&td), "Running");
    // The operator was down from here until 2h after creation (ttl 1h).
    h.set_time(after(7200));
    let (td, action, calls) = reconcile_td(&mut h, &td).await;
    let paths = writes(&calls);
    for expected in [
        "DELETE /api/v1/namespaces/demo/pods/pr-td-0",
        "DELETE /api/v1/namespaces/demo/services/pr-td",
        "DELETE /api/v1/namespaces/demo/configmaps/pr-td-config",
        "DELETE /api/v1/namespaces/demo/persistentvolumeclaims/data-pr-td-0",
        "PATCH /apis/relayops.io/v1alpha1/namespaces/demo/testdeployments/pr/status",
    ] {
        assert!(paths.contains(&expected.to_string()), "{expected} missing from {paths:#?}");
    }
    assert!(!paths.iter().any(|p| p.starts_with("PATCH") && !p.contains("/status")), "{paths:#?}");
    let status_at = paths.iter().position(|p| p.contains("/status")).unwrap();
    assert!(paths[..status_at].iter().all(|p| p.starts_with("DELETE")), "children first: {paths:#?}");
    assert_eq!(phase(&td), "Expired");
    let status = td.status.clone().unwrap();
    assert_eq!(status.expired_at, Some(time(after(7200))));
    assert_eq!(status.expires_at, Some(time(after(3600))));
    assert_eq!(status.ready_at, Some(time(after(30))), "the record keeps its history");
    assert_eq!(condition(&td, "Expired"), ("True", "TTLExpired"));
    assert_eq!(condition(&td, "Ready"), ("False", "Expired"));
    assert!(event_reasons(&calls).contains(&"Expired".to_string()));
    assert_eq!(format!("{action:?}"), format!("{:?}", Action::await_change()));
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_expirations_total"), 1.0);

    // Once expired and clean, a reconcile makes no request (and counts nothing again).
    h.sync_with(&running(true));
    h.set_time(after(9000));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(summary(&calls), Vec::<String>::new());
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_expirations_total"), 1.0);
    assert_eq!(phase(&td), "Expired");
}

#[tokio::test]
async fn raising_the_ttl_before_expiry_extends_it() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()), &running(true)).await;
    let mut longer = td.clone();
    longer.spec.ttl = "2h".parse().unwrap();
    longer.metadata.generation = Some(2);
    h.set_time(after(3000));
    let (td, action, _) = reconcile_td(&mut h, &longer).await;
    assert_eq!(td.status.as_ref().unwrap().expires_at, Some(time(after(7200))));
    assert_eq!(format!("{action:?}"), requeue(7200 - 3000));
    // Past the old expiry: still Running, nothing deleted.
    h.set_time(after(3700));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert!(!summary(&calls).iter().any(|c| c.starts_with("DELETE")), "{:#?}", summary(&calls));
    assert_eq!(phase(&td), "Running");
}

#[tokio::test]
async fn delete_on_expiry_deletes_the_test_deployment() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app()).delete_on_expiry(true), &running(true)).await;
    h.set_time(after(3600));
    let (_, action, calls) = reconcile_td(&mut h, &td).await;
    let paths = writes(&calls);
    assert!(paths.contains(&"DELETE /api/v1/namespaces/demo/pods/pr-td-0".to_string()), "{paths:#?}");
    assert_eq!(
        paths.last().map(String::as_str),
        Some("DELETE /apis/relayops.io/v1alpha1/namespaces/demo/testdeployments/pr")
    );
    assert!(!paths.iter().any(|p| p.contains("/status")), "no record is kept: {paths:#?}");
    assert_eq!(format!("{action:?}"), format!("{:?}", Action::await_change()));
    assert_eq!(sample(&h.ctx.metrics, "relay_operator_test_deployment_expirations_total"), 1.0);
}

fn source(image: &str) -> RelayService {
    RelayServiceFixture::new("web")
        .generation(4)
        .resource_version("7")
        .image(image)
        .replicas(3)
        .suspend(true)
        .spec(json!({"ports": [{"name": "http", "containerPort": 8000, "servicePort": 80}]}))
        .config([("LOG_LEVEL", "info")])
        .build()
}

#[tokio::test]
async fn source_spec_is_copied_once_and_later_changes_do_not_apply() {
    let mut h = harness();
    h.put(&source("ghcr.io/example/web:1.0.0"));
    let td = from_web().overrides(json!({"replicas": 1, "config": {"LOG_LEVEL": "debug"}})).build();
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    let snapshot = calls
        .iter()
        .find(|c| {
            c.method == "PATCH"
                && c.path.starts_with("/apis/relayops.io/v1alpha1/namespaces/demo/testdeployments/pr?")
        })
        .expect("the snapshot is written to the TestDeployment");
    assert_eq!(snapshot.body["metadata"]["resourceVersion"], "1", "guarded by the cached resourceVersion");
    let copied: Value = serde_json::from_str(
        snapshot.body["metadata"]["annotations"][ANNOTATION_SOURCE_SPEC].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(copied["image"], "ghcr.io/example/web:1.0.0");
    assert!(event_reasons(&calls).contains(&"CopiedSource".to_string()));
    let created =
        |name: &str| calls.iter().find(|c| c.method == "POST" && c.body["metadata"]["name"] == name);
    let pod = created("pr-td-0").expect("pod created");
    assert_eq!(pod.body["spec"]["containers"][0]["image"], "ghcr.io/example/web:1.0.0");
    assert!(created("pr-td-1").is_none(), "overrides.replicas applies");
    assert_eq!(td.status.as_ref().unwrap().url.as_deref(), Some("http://pr-td.demo.svc:80"));
    let config = calls.iter().find(|c| c.path.contains("/configmaps/pr-td-config")).unwrap();
    assert!(config.body.to_string().contains("debug"), "overrides.config applies");
    h.sync_with(&running(true));

    // The source changes (and disappears from the cache): the deployment keeps its copy.
    h.put(&source("ghcr.io/example/web:2.0.0"));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(
        writes(&calls),
        ["PATCH /apis/relayops.io/v1alpha1/namespaces/demo/testdeployments/pr/status"]
    );
    assert_eq!(phase(&td), "Running");
    h.remove(&source("ghcr.io/example/web:2.0.0"));
    let (_, _, calls) = reconcile_td(&mut h, &td).await;
    assert_eq!(summary(&calls), Vec::<String>::new());
}

#[tokio::test]
async fn missing_source_is_pending_with_a_condition() {
    let mut h = harness();
    let (td, action, calls) = reconcile_td(&mut h, &from_web().build()).await;
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/") || c.contains("configmaps")));
    assert_eq!(phase(&td), "Pending");
    assert_eq!(condition(&td, "Ready"), ("False", "SourceNotFound"));
    assert!(event_reasons(&calls).contains(&"SourceNotFound".to_string()));
    assert_eq!(format!("{action:?}"), requeue(30));

    // It appears later: copied then.
    h.put(&source("ghcr.io/example/web:1.0.0"));
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert!(td.annotations().contains_key(ANNOTATION_SOURCE_SPEC));
    assert!(summary(&calls).contains(&"POST /api/v1/namespaces/demo/pods/pr-td-0".to_string()));
}

#[tokio::test]
async fn status_lists_every_pod() {
    let mut h = harness();
    let td = deployed(&mut h, with_template(app().replicas(2)), &running(true)).await;
    let pods = &td.status.as_ref().unwrap().pods;
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["pr-td-0", "pr-td-1"]);
    assert!(pods.iter().all(|p| p.ready && p.config_hash.is_some()));
}

#[tokio::test]
async fn overrides_are_validated_like_a_relay_service() {
    let mut h = harness();
    h.put(&RelayServiceFixture::new("web").image("web:1.0.0").config([("LEVEL", "info")]).build());
    // With format env every key must be a variable name; the override breaks that.
    let td = from_web().overrides(json!({"config": {"not-a-variable": "x"}})).ttl("1h").build();
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert!(!writes(&calls).iter().any(|c| c.contains("/pods/")), "{:#?}", writes(&calls));
    let ready = td.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
    assert_eq!(ready.reason, "InvalidTemplate");
    assert!(ready.message.contains("valid variable name"), "{}", ready.message);
    assert!(event_reasons(&calls).contains(&"InvalidTemplate".to_string()));
}

#[tokio::test]
async fn a_secret_the_operator_may_not_read_keeps_it_pending_with_its_own_reason() {
    // The fake grants Secrets in `demo` only.
    let mut h = harness();
    let template = app().spec(json!({"config": {"data": {"A": "1"},
        "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}]}}));
    let mut td = with_template(template).build();
    td.metadata.namespace = Some("other".into());
    let (td, _, calls) = reconcile_td(&mut h, &td).await;
    assert!(!summary(&calls).iter().any(|c| c.contains("/pods/") || c.contains("configmaps")));
    assert_eq!(phase(&td), "Pending");
    assert_eq!(condition(&td, "Ready"), ("False", "SecretNotReadable"));
    assert!(event_reasons(&calls).contains(&"SecretNotReadable".to_string()));
}
