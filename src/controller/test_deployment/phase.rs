//! Pure lifecycle of a TestDeployment: its phase, failure detail, timestamps, URL and
//! conditions, computed from the spec, the creation time, the current time (passed in —
//! the clock is injectable), the owned pods, the rendering problem if any and the
//! previous status.
//!
//! Rules, in order:
//! 1. `Expired` once `now ≥ creationTimestamp + ttl` (sticky: an expired deployment never
//!    comes back, raising `ttl` afterwards changes nothing);
//! 2. `Stopped` when suspended (or scaled to zero replicas);
//! 3. `Running` when every desired pod exists and is Ready;
//! 4. `Failed` when a pod fails (waiting reasons `ErrImagePull`, `ImagePullBackOff`,
//!    `CrashLoopBackOff`, `CreateContainerConfigError`, `InvalidImageName`, a container
//!    terminated with a non-zero exit code, or `PodScheduled=False/Unschedulable`), or when
//!    the deployment was never Ready within `progressDeadline` counted from `startedAt`
//!    (creation when no pod was ever seen) → `ProgressDeadlineExceeded`. A failure stays
//!    until all pods are Ready or the spec changes, so a crash-looping pod between two
//!    restarts does not flap back to `Deploying`;
//! 5. `Deploying` when pods exist, `Pending` otherwise (nothing created yet, or a problem
//!    such as a missing source RelayService, shown in the `Ready` condition).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{
    ConditionType, FailureDetail, RelayServiceSpec, TestDeploymentPhase, TestDeploymentSpec,
    TestDeploymentStatus,
};
use crate::controller::cached::CachedPod;
use crate::controller::conditions::Problem;
use crate::controller::conditions::{NewCondition, merge};
use crate::controller::pods::{LogRequest, is_ready, pod_failure};
use crate::render::Owner;

/// Reason of a failure because the deployment was not Ready within `progressDeadline`.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Everything the phase is computed from.
#[derive(Clone, Debug)]
pub struct PhaseInput<'a> {
    /// The TestDeployment's spec.
    pub spec: &'a TestDeploymentSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Current time.
    pub now: Timestamp,
    /// Desired pods of the effective spec (`None` when there is no effective spec yet).
    pub desired: Option<i32>,
    /// In-cluster URL of the Service (see [`service_url`]).
    pub url: Option<String>,
    /// The owned pods, as cached.
    pub pods: &'a [Arc<CachedPod>],
    /// Why the children cannot be rendered or created, if so.
    pub problem: Option<&'a Problem>,
    /// The status as it is now.
    pub previous: Option<&'a TestDeploymentStatus>,
}

/// The computed status and the log the reconciler should read, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseOutcome {
    /// The new status.
    pub status: TestDeploymentStatus,
    /// Set once per crash failure: the failed container's log is not in the status yet.
    pub log_request: Option<LogRequest>,
}

/// `creationTimestamp + ttl`.
pub fn expires_at(spec: &TestDeploymentSpec, created: Timestamp) -> Timestamp {
    add(created, spec.ttl.get())
}

/// Whether the deployment is expired at `now` (or was already).
pub fn is_expired(
    spec: &TestDeploymentSpec,
    created: Timestamp,
    now: Timestamp,
    previous: Option<&TestDeploymentStatus>,
) -> bool {
    previous.is_some_and(|s| s.phase == TestDeploymentPhase::Expired) || now >= expires_at(spec, created)
}

/// When the progress deadline runs out: `progressDeadline` after `startedAt` (the first pod
/// of the current rollout), or after creation when no pod was seen yet.
pub fn deadline_at(spec: &TestDeploymentSpec, created: Timestamp, started: Option<Timestamp>) -> Timestamp {
    add(started.unwrap_or(created), spec.progress_deadline.get())
}

/// `http://NAME-td.NAMESPACE.svc:PORT` for the first port's service port; `None` without ports.
pub fn service_url(owner: &Owner, spec: &RelayServiceSpec) -> Option<String> {
    let port = spec.ports.first()?;
    let number = port.service_port.unwrap_or(port.container_port);
    Some(format!("http://{}.{}.svc:{number}", owner.base_name(), owner.namespace))
}

/// RFC 3339 in UTC with second precision, as Kubernetes writes times.
pub fn format_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parse a time written by [`format_time`] (or any RFC 3339 time).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

fn add(time: Timestamp, duration: Duration) -> Timestamp {
    time.checked_add(duration).unwrap_or(Timestamp::MAX)
}

/// Compute the status.
pub fn compute(input: &PhaseInput<'_>) -> PhaseOutcome {
    let previous = input.previous;
    let expires_at = expires_at(input.spec, input.created);
    let previous_time =
        |field: fn(&TestDeploymentStatus) -> &Option<String>| previous.and_then(|s| field(s).clone());
    // A new rollout — a resume after `Stopped`, or a changed spec — starts the clock of the
    // progress deadline again, so a fix or a resume is not failed by an old start time.
    let new_rollout = previous.is_some_and(|s| {
        s.phase == TestDeploymentPhase::Stopped || s.observed_generation != input.generation
    });
    let mut status = TestDeploymentStatus {
        observed_generation: input.generation,
        started_at: previous_time(|s| &s.started_at).filter(|_| !new_rollout),
        ready_at: previous_time(|s| &s.ready_at),
        expires_at: Some(format_time(expires_at)),
        ..TestDeploymentStatus::default()
    };
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();

    if is_expired(input.spec, input.created, input.now, previous) {
        status.phase = TestDeploymentPhase::Expired;
        // The record keeps when it expired and what happened before.
        status.expires_at = previous_time(|s| &s.expires_at).or(status.expires_at);
        status.expired_at = previous_time(|s| &s.expired_at).or_else(|| Some(format_time(input.now)));
        status.failure = previous.and_then(|s| s.failure.clone());
        let message = format!("ttl {} ran out; everything it created was deleted", input.spec.ttl);
        status.conditions = merge(
            previous_conditions,
            vec![
                NewCondition::new(ConditionType::Ready, false, "Expired", message.clone()),
                NewCondition::new(ConditionType::Expired, true, "TTLExpired", message),
            ],
            input.generation,
            input.now,
        );
        return PhaseOutcome { status, log_request: None };
    }

    let live: Vec<&CachedPod> =
        input.pods.iter().map(|p| &**p).filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let ready = live.iter().filter(|p| is_ready(p)).count() as i32;
    let existing = live.len() as i32;
    if status.started_at.is_none() && !live.is_empty() {
        status.started_at = Some(format_time(input.now));
    }
    status.url = input.url.clone();
    let desired = input.desired.unwrap_or(0);
    let all_ready = desired > 0 && existing == desired && ready == desired;
    if all_ready && status.ready_at.is_none() {
        status.ready_at = Some(format_time(input.now));
    }

    let mut failing: Vec<&CachedPod> = live.clone();
    failing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let pod_failure = failing.iter().find_map(|p| pod_failure(p));
    let same_generation = previous.is_some_and(|s| s.observed_generation == input.generation);
    let sticky = previous
        .filter(|s| s.phase == TestDeploymentPhase::Failed && same_generation)
        .and_then(|s| s.failure.clone());
    let started = status.started_at.as_deref().and_then(parse_time);
    let deadline = deadline_at(input.spec, input.created, started);
    let never_ready = status.ready_at.is_none();

    let mut log_request = None;
    let ready_message = format!("{ready}/{desired} pods ready");
    let (phase, ready_reason, ready_message) = if input.spec.suspend {
        (TestDeploymentPhase::Stopped, "Suspended".to_string(), "suspended: no pods run".to_string())
    } else if input.desired == Some(0) {
        (TestDeploymentPhase::Stopped, "ScaledToZero".into(), "replicas is 0: no pods run".into())
    } else if all_ready {
        (TestDeploymentPhase::Running, "AllPodsReady".into(), ready_message)
    } else if let Some((mut failure, request)) = pod_failure {
        // The log is read once per failure: keep the tail read for the same crash.
        let known = previous.and_then(|s| s.failure.as_ref()).filter(|f| {
            f.reason == failure.reason && f.pod == failure.pod && f.container == failure.container
        });
        failure.log_tail = known.and_then(|f| f.log_tail.clone());
        if failure.log_tail.is_none() {
            log_request = request;
        }
        let reason = failure.reason.clone();
        let message = failure.message.clone();
        status.failure = Some(failure);
        (TestDeploymentPhase::Failed, reason, message)
    } else if let Some(failure) = sticky {
        let (reason, message) = (failure.reason.clone(), failure.message.clone());
        status.failure = Some(failure);
        (TestDeploymentPhase::Failed, reason, message)
    } else if never_ready && input.now >= deadline {
        let mut message = format!(
            "not Ready within progressDeadline {} ({ready}/{desired} pods ready)",
            input.spec.progress_deadline
        );
        if let Some(problem) = input.problem {
            message = format!("{message}: {}", problem.message);
        }
        status.failure = Some(FailureDetail {
            reason: PROGRESS_DEADLINE_EXCEEDED.into(),
            message: message.clone(),
            ..FailureDetail::default()
        });
        (TestDeploymentPhase::Failed, PROGRESS_DEADLINE_EXCEEDED.into(), message)
    } else if let Some(problem) = input.problem {
        let phase =
            if live.is_empty() { TestDeploymentPhase::Pending } else { TestDeploymentPhase::Deploying };
        (phase, problem.reason.to_string(), problem.message.clone())
    } else if !live.is_empty() {
        (TestDeploymentPhase::Deploying, "PodsNotReady".into(), ready_message)
    } else {
        (TestDeploymentPhase::Pending, "NoPods".into(), "no pods yet".into())
    };
    status.phase = phase;

    let failed = match &status.failure {
        Some(f) => NewCondition::new(ConditionType::Failed, true, f.reason.clone(), f.message.clone()),
        None => NewCondition::new(ConditionType::Failed, false, "NoFailure", "no failure observed"),
    };
    status.conditions = merge(
        previous_conditions,
        vec![
            NewCondition::new(
                ConditionType::Ready,
                phase == TestDeploymentPhase::Running,
                ready_reason,
                ready_message,
            ),
            failed,
            NewCondition::new(
                ConditionType::Expired,
                false,
                "NotExpired",
                format!("expires at {}", format_time(expires_at)),
            ),
        ],
        input.generation,
        input.now,
    );
    PhaseOutcome { status, log_request }
}

/// When the reconciler must look again without any watch event: at expiry, and at the
/// progress deadline while it can still turn the deployment `Failed`.
pub fn next_wake(input: &PhaseInput<'_>, status: &TestDeploymentStatus) -> Option<Timestamp> {
    if status.phase == TestDeploymentPhase::Expired {
        return None;
    }
    let expiry = expires_at(input.spec, input.created);
    let deadline = matches!(status.phase, TestDeploymentPhase::Pending | TestDeploymentPhase::Deploying)
        .then(|| deadline_at(input.spec, input.created, status.started_at.as_deref().and_then(parse_time)))
        .filter(|d| status.ready_at.is_none() && *d > input.now);
    Some(deadline.map_or(expiry, |d| d.min(expiry)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pods::FAILING_WAITING_REASONS;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition,
        PodStatus,
    };
    use kube::api::ObjectMeta;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn spec(extra: serde_json::Value) -> TestDeploymentSpec {
        let mut value =
            serde_json::json!({"template": {"image": "x:1"}, "ttl": "1h", "progressDeadline": "10m"});
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    /// `pod` as the cache keeps it.
    fn cached(pod: Pod) -> CachedPod {
        serde_json::from_value(serde_json::to_value(pod).unwrap()).unwrap()
    }

    fn pod(name: &str, ready: bool, containers: Vec<ContainerStatus>) -> Arc<CachedPod> {
        Arc::new(cached(Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                container_statuses: Some(containers),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }))
    }

    fn waiting(reason: &str, message: &str) -> ContainerStatus {
        ContainerStatus {
            name: "service".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn input<'a>(spec: &'a TestDeploymentSpec, pods: &'a [Arc<CachedPod>], now: Timestamp) -> PhaseInput<'a> {
        PhaseInput {
            spec,
            generation: Some(1),
            created: at(0),
            now,
            desired: Some(1),
            url: Some("http://t-td.ns.svc:80".into()),
            pods,
            problem: None,
            previous: None,
        }
    }

    fn condition<'a>(status: &'a TestDeploymentStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn pending_deploying_running_with_timestamps() {
        let spec = spec(serde_json::json!({}));
        let pending = compute(&input(&spec, &[], at(1))).status;
        assert_eq!(pending.phase, TestDeploymentPhase::Pending);
        assert_eq!(pending.started_at, None);
        assert_eq!(pending.expires_at.as_deref(), Some(format_time(at(3600)).as_str()));
        assert_eq!(condition(&pending, "Ready"), ("False", "NoPods"));

        let pods = [pod("t-td-0", false, vec![])];
        let deploying =
            compute(&PhaseInput { previous: Some(&pending), ..input(&spec, &pods, at(5)) }).status;
        assert_eq!(deploying.phase, TestDeploymentPhase::Deploying);
        assert_eq!(deploying.started_at, Some(format_time(at(5))));
        assert_eq!(deploying.ready_at, None);

        let pods = [pod("t-td-0", true, vec![])];
        let running =
            compute(&PhaseInput { previous: Some(&deploying), ..input(&spec, &pods, at(30)) }).status;
        assert_eq!(running.phase, TestDeploymentPhase::Running);
        assert_eq!(running.started_at, Some(format_time(at(5))));
        assert_eq!(running.ready_at, Some(format_time(at(30))));
        assert_eq!(running.url.as_deref(), Some("http://t-td.ns.svc:80"));
        assert_eq!(condition(&running, "Ready"), ("True", "AllPodsReady"));
        assert_eq!(condition(&running, "Failed"), ("False", "NoFailure"));
        assert_eq!(condition(&running, "Expired"), ("False", "NotExpired"));

        // readyAt is the first time: it does not move later.
        let again = compute(&PhaseInput { previous: Some(&running), ..input(&spec, &pods, at(60)) }).status;
        assert_eq!(again.ready_at, Some(format_time(at(30))));
    }

    #[test]
    fn waiting_reasons_fail_with_the_kubelet_message() {
        let spec = spec(serde_json::json!({}));
        for reason in FAILING_WAITING_REASONS {
            let pods = [pod("t-td-0", false, vec![waiting(reason, "Back-off pulling image \"x:1\"")])];
            let outcome = compute(&input(&spec, &pods, at(10)));
            let failure = outcome.status.failure.clone().unwrap();
            assert_eq!(outcome.status.phase, TestDeploymentPhase::Failed, "{reason}");
            assert_eq!(failure.reason, *reason);
            assert_eq!(failure.message, "Back-off pulling image \"x:1\"");
            assert_eq!(failure.container.as_deref(), Some("service"));
            assert_eq!(failure.pod.as_deref(), Some("t-td-0"));
            assert_eq!(condition(&outcome.status, "Failed"), ("True", *reason));
            assert_eq!(outcome.log_request.is_some(), *reason == "CrashLoopBackOff");
        }
        // Starting containers are not failures.
        let pods = [pod("t-td-0", false, vec![waiting("ContainerCreating", "")])];
        assert_eq!(compute(&input(&spec, &pods, at(10))).status.phase, TestDeploymentPhase::Deploying);
    }

    #[test]
    fn crash_loop_requests_previous_log_once() {
        let spec = spec(serde_json::json!({}));
        let mut crashed = waiting("CrashLoopBackOff", "back-off 10s restarting failed container");
        crashed.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated { exit_code: 3, ..Default::default() }),
            ..Default::default()
        });
        let pods = [pod("t-td-0", false, vec![crashed])];
        let first = compute(&input(&spec, &pods, at(10)));
        assert_eq!(
            first.log_request,
            Some(LogRequest { pod: "t-td-0".into(), container: "service".into(), previous: true })
        );
        assert_eq!(first.status.failure.as_ref().unwrap().exit_code, Some(3));
        let mut with_log = first.status.clone();
        with_log.failure.as_mut().unwrap().log_tail = Some("panic: boom".into());
        let second = compute(&PhaseInput { previous: Some(&with_log), ..input(&spec, &pods, at(20)) });
        assert_eq!(second.log_request, None);
        assert_eq!(second.status.failure.unwrap().log_tail.as_deref(), Some("panic: boom"));

        // Between two restarts the container runs (not Ready): the failure stays.
        let pods = [pod("t-td-0", false, vec![])];
        let between = compute(&PhaseInput { previous: Some(&with_log), ..input(&spec, &pods, at(30)) });
        assert_eq!(between.status.phase, TestDeploymentPhase::Failed);
        assert_eq!(between.status.failure.unwrap().reason, "CrashLoopBackOff");
        // Ready again: Running.
        let pods = [pod("t-td-0", true, vec![])];
        let recovered = compute(&PhaseInput { previous: Some(&with_log), ..input(&spec, &pods, at(40)) });
        assert_eq!(recovered.status.phase, TestDeploymentPhase::Running);
        assert_eq!(recovered.status.failure, None);
    }

    #[test]
    fn non_zero_exit_and_unschedulable() {
        let spec = spec(serde_json::json!({}));
        let exited = ContainerStatus {
            name: "service".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated { exit_code: 2, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = [pod("t-td-0", false, vec![exited])];
        let outcome = compute(&input(&spec, &pods, at(10)));
        let failure = outcome.status.failure.unwrap();
        assert_eq!((failure.reason.as_str(), failure.exit_code), ("Error", Some(2)));
        assert_eq!(failure.message, "container service exited with code 2");
        assert_eq!(outcome.log_request.map(|r| r.previous), Some(false));

        let unschedulable: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t-td-0"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}]},
        }))
        .unwrap();
        let pods = [Arc::new(unschedulable)];
        let failure = compute(&input(&spec, &pods, at(10))).status.failure.unwrap();
        assert_eq!(failure.reason, "Unschedulable");
        assert_eq!(failure.message, "0/3 nodes are available: 3 Insufficient memory.");
    }

    #[test]
    fn a_resume_or_a_spec_change_restarts_the_progress_deadline() {
        let spec = spec(serde_json::json!({}));
        let pods = [pod("t-td-0", false, vec![])];
        let started = compute(&input(&spec, &pods, at(120))).status;
        // Suspended, then resumed half an hour later: the deadline counts from the resume.
        let stopped = TestDeploymentStatus { phase: TestDeploymentPhase::Stopped, ..started.clone() };
        let resumed =
            compute(&PhaseInput { previous: Some(&stopped), ..input(&spec, &pods, at(1800)) }).status;
        assert_eq!(resumed.phase, TestDeploymentPhase::Deploying);
        assert_eq!(resumed.started_at, Some(format_time(at(1800))));
        // A new generation (e.g. a fixed image) does the same.
        let changed =
            PhaseInput { generation: Some(2), previous: Some(&started), ..input(&spec, &pods, at(1800)) };
        assert_eq!(compute(&changed).status.phase, TestDeploymentPhase::Deploying);
        // Same generation, no resume: the old start counts and the deadline has passed.
        let same = compute(&PhaseInput { previous: Some(&started), ..input(&spec, &pods, at(1800)) }).status;
        assert_eq!(same.phase, TestDeploymentPhase::Failed);
    }

    #[test]
    fn progress_deadline_counts_from_started_at() {
        let spec = spec(serde_json::json!({}));
        let pods = [pod("t-td-0", false, vec![])];
        let started = compute(&input(&spec, &pods, at(120))).status;
        assert_eq!(started.phase, TestDeploymentPhase::Deploying);
        // 10m after creation but only 8m after startedAt: still Deploying.
        let early = compute(&PhaseInput { previous: Some(&started), ..input(&spec, &pods, at(600)) }).status;
        assert_eq!(early.phase, TestDeploymentPhase::Deploying);
        let late = compute(&PhaseInput { previous: Some(&started), ..input(&spec, &pods, at(720)) }).status;
        assert_eq!(late.phase, TestDeploymentPhase::Failed);
        assert_eq!(late.failure.unwrap().reason, PROGRESS_DEADLINE_EXCEEDED);

        // No pods at all (a missing source): counted from creation, with the problem's message.
        let problem = Problem { reason: "SourceNotFound", message: "RelayService ns/web not found".into() };
        let pending =
            compute(&PhaseInput { problem: Some(&problem), desired: None, ..input(&spec, &[], at(60)) });
        assert_eq!(pending.status.phase, TestDeploymentPhase::Pending);
        assert_eq!(condition(&pending.status, "Ready"), ("False", "SourceNotFound"));
        let failed =
            compute(&PhaseInput { problem: Some(&problem), desired: None, ..input(&spec, &[], at(600)) });
        assert_eq!(failed.status.phase, TestDeploymentPhase::Failed);
        assert!(failed.status.failure.unwrap().message.contains("RelayService ns/web not found"));
    }

    #[test]
    fn suspend_stops_and_expiry_wins_and_sticks() {
        let suspended = spec(serde_json::json!({"suspend": true}));
        let pods = [pod("t-td-0", true, vec![])];
        let stopped = compute(&input(&suspended, &pods, at(10))).status;
        assert_eq!(stopped.phase, TestDeploymentPhase::Stopped);
        assert_eq!(condition(&stopped, "Ready"), ("False", "Suspended"));

        let spec = spec(serde_json::json!({}));
        let expired = compute(&input(&spec, &pods, at(3600))).status;
        assert_eq!(expired.phase, TestDeploymentPhase::Expired);
        assert_eq!(expired.expired_at, Some(format_time(at(3600))));
        assert_eq!(expired.url, None);
        assert_eq!(condition(&expired, "Expired"), ("True", "TTLExpired"));
        // Raising the ttl after expiry does not bring it back; expiredAt stays.
        let longer = self::spec(serde_json::json!({"ttl": "48h"}));
        let still = compute(&PhaseInput { previous: Some(&expired), ..input(&longer, &[], at(4000)) }).status;
        assert_eq!(still.phase, TestDeploymentPhase::Expired);
        assert_eq!(still.expired_at, Some(format_time(at(3600))));
    }

    #[test]
    fn ttl_extension_before_expiry_moves_expires_at() {
        let longer = spec(serde_json::json!({"ttl": "2h"}));
        let pods = [pod("t-td-0", true, vec![])];
        let status = compute(&input(&longer, &pods, at(3700))).status;
        assert_eq!(status.phase, TestDeploymentPhase::Running);
        assert_eq!(status.expires_at, Some(format_time(at(7200))));
    }

    #[test]
    fn next_wake_is_the_deadline_then_the_expiry() {
        let spec = spec(serde_json::json!({}));
        let pods = [pod("t-td-0", false, vec![])];
        let i = input(&spec, &pods, at(60));
        let status = compute(&i).status;
        assert_eq!(next_wake(&i, &status), Some(at(660)));
        let ready = [pod("t-td-0", true, vec![])];
        let i = input(&spec, &ready, at(60));
        let status = compute(&i).status;
        assert_eq!(next_wake(&i, &status), Some(at(3600)));
    }

    #[test]
    fn url_uses_first_service_port() {
        let owner = Owner {
            kind: crate::render::OwnerKind::TestDeployment,
            name: "pr".into(),
            namespace: "demo".into(),
            uid: None,
        };
        let spec: RelayServiceSpec = serde_json::from_value(serde_json::json!({"image": "x:1",
            "ports": [{"name": "http", "containerPort": 8000, "servicePort": 80}, {"name": "m", "containerPort": 9000}]}))
        .unwrap();
        assert_eq!(service_url(&owner, &spec).as_deref(), Some("http://pr-td.demo.svc:80"));
        let none: RelayServiceSpec = serde_json::from_value(serde_json::json!({"image": "x:1"})).unwrap();
        assert_eq!(service_url(&owner, &none), None);
    }
}
