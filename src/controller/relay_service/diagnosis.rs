//! Why each pod of a RelayService is not Ready, when something is wrong rather than just
//! starting: the kubelet's reason and message (pull errors, crash loops, config errors, no
//! node), the previous instance's log tail of a crash loop, and the health endpoint's
//! answer of a pod whose readiness check fails — from the start or after it was Ready.
//!
//! Pure: [`diagnose`] says what is known and what still has to be read; the reconciler
//! reads it (a log, one health fetch) once per pod and problem, and keeps it in
//! `status.pods[].failure` so later reconciles do not read again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{FailureDetail, PodEntry};
use crate::controller::cached::{CachedPod, ContainerNow};
use crate::controller::pods::{LogRequest, health_url, is_ready, is_terminating, pod_entry, pod_failure};

/// Reason of a pod that runs but fails its readiness check.
pub const HEALTH_CHECK_FAILING: &str = "HealthCheckFailing";

/// What has to be read to complete a diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The container's log, into `logTail`.
    Log(LogRequest),
    /// One GET of the readiness check's URL, into `message`.
    Health(url::Url),
}

/// Why one pod is not Ready.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// What is known so far (kept from the previous status when nothing changed).
    pub failure: FailureDetail,
    /// What the reconciler still has to read to complete it.
    pub lookup: Option<Lookup>,
    /// The problem is new for this pod (not in the previous status): worth a Warning Event.
    pub new: bool,
}

/// Diagnose `pod` given its entry in the previous status; `None` when nothing is wrong
/// (Ready, terminating, or still within its readiness check's first failures).
pub fn diagnose(pod: &CachedPod, previous: Option<&PodEntry>, now: Timestamp) -> Option<Diagnosis> {
    if is_terminating(pod) {
        return None;
    }
    let known = previous.and_then(|p| p.failure.as_ref());
    if let Some((mut failure, request)) = pod_failure(pod) {
        // The log is read once per failure: keep the tail read for the same problem.
        let same = known.filter(|k| k.reason == failure.reason && k.container == failure.container);
        failure.log_tail = same.and_then(|k| k.log_tail.clone());
        let lookup = request.filter(|_| failure.log_tail.is_none()).map(Lookup::Log);
        return Some(Diagnosis { failure, lookup, new: same.is_none() });
    }
    // Not Ready later than its check needs to pass once (this includes a pod that was
    // Ready for long and turned unready: the kubelet has seen `failureThreshold` failures).
    if is_ready(pod) || readiness_deadline(pod).is_none_or(|deadline| now < deadline) {
        return None;
    }
    // Once per pod and change: the same configuration and restart count keep the answer.
    let current = pod_entry(pod);
    let unchanged = previous
        .is_some_and(|p| !p.ready && p.config_hash == current.config_hash && p.restarts == current.restarts);
    if let Some(known) = known.filter(|k| unchanged && k.reason == HEALTH_CHECK_FAILING) {
        return Some(Diagnosis { failure: (**known).clone(), lookup: None, new: false });
    }
    let container = pod.spec.as_ref().map(|s| s.container.clone());
    let failure = FailureDetail {
        reason: HEALTH_CHECK_FAILING.into(),
        message: "the readiness check fails (it is not an HTTP check, so there is no answer to show)".into(),
        pod: Some(current.name.clone()),
        container,
        ..FailureDetail::default()
    };
    let lookup = health_url(pod).map(Lookup::Health);
    let new = known.is_none_or(|k| k.reason != HEALTH_CHECK_FAILING);
    Some(Diagnosis { failure, lookup, new })
}

/// When the first container started running, if it runs.
fn running_since(pod: &CachedPod) -> Option<Timestamp> {
    match pod.status.as_ref()?.container_statuses.first()?.state {
        ContainerNow::Running { since } => since,
        _ => None,
    }
}

/// When a running pod with a readiness check should be Ready at the latest: start, initial
/// delay, then `failureThreshold` periods of `periodSeconds` plus `timeoutSeconds`.
pub fn readiness_deadline(pod: &CachedPod) -> Option<Timestamp> {
    let probe = &pod.spec.as_ref()?.readiness_probe;
    let started = running_since(pod)?;
    started.checked_add(SignedDuration::from_secs(probe_budget_secs(probe))).ok()
}

fn probe_budget_secs(probe: &Probe) -> i64 {
    let value = |v: Option<i32>, default: i32| i64::from(v.unwrap_or(default).max(0));
    let period = value(probe.period_seconds, 10).max(1);
    let timeout = value(probe.timeout_seconds, 1);
    value(probe.initial_delay_seconds, 0) + value(probe.failure_threshold, 3) * (period + timeout)
}

/// How long until the earliest readiness deadline of a running, not-Ready pod that has no
/// diagnosis yet: the reconcile to come back then, since no watch event will announce it.
pub fn next_deadline<'p>(pods: impl IntoIterator<Item = &'p CachedPod>, now: Timestamp) -> Option<Duration> {
    pods.into_iter()
        .filter(|p| !is_ready(p) && !is_terminating(p))
        .filter_map(readiness_deadline)
        .filter(|deadline| *deadline > now)
        .min()
        .and_then(|deadline| Duration::try_from(deadline.duration_since(now)).ok())
        // A second late, so the deadline has surely passed when the reconcile runs.
        .map(|wait| wait + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "annotations": {"relayops.io/config-hash": "h1"}},
            "spec": {"containers": [{
                "name": "app",
                "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 5, "failureThreshold": 3},
            }]},
            "status": status,
        }))
        .unwrap()
    }

    fn running(started: &str, ready: bool, restarts: i32) -> CachedPod {
        pod(json!({
            "podIP": "127.0.0.9",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{
                "name": "app", "ready": ready, "restartCount": restarts, "image": "x", "imageID": "",
                "state": {"running": {"startedAt": started}},
            }],
        }))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_starting_pod_is_not_diagnosed_before_its_check_had_time() {
        // Budget: 3 × (5 s + 1 s) = 18 s after start.
        let pod = running("2026-01-01T00:00:00Z", false, 0);
        assert_eq!(diagnose(&pod, None, at("2026-01-01T00:00:17Z")), None);
        assert_eq!(
            next_deadline(std::slice::from_ref(&pod), at("2026-01-01T00:00:10Z")),
            Some(Duration::from_secs(9))
        );
        let found = diagnose(&pod, None, at("2026-01-01T00:00:18Z")).unwrap();
        assert_eq!(found.failure.reason, HEALTH_CHECK_FAILING);
        assert_eq!(found.lookup, Some(Lookup::Health("http://127.0.0.9:8000/health".parse().unwrap())));
        assert!(found.new);
    }

    #[test]
    fn the_health_answer_is_fetched_once_per_pod_and_change() {
        let pod = running("2026-01-01T00:00:00Z", false, 0);
        let mut entry = pod_entry(&pod);
        entry.failure = Some(Box::new(FailureDetail {
            reason: HEALTH_CHECK_FAILING.into(),
            message: "HTTP 503: down".into(),
            ..FailureDetail::default()
        }));
        let later = at("2026-01-01T00:05:00Z");
        let kept = diagnose(&pod, Some(&entry), later).unwrap();
        assert_eq!((kept.lookup, kept.new, kept.failure.message.as_str()), (None, false, "HTTP 503: down"));

        // A new configuration (or a restart) asks again, without a new Event.
        entry.config_hash = Some("h0".into());
        let again = diagnose(&pod, Some(&entry), later).unwrap();
        assert!(matches!(again.lookup, Some(Lookup::Health(_))) && !again.new);
    }

    #[test]
    fn a_ready_pod_or_a_pod_without_a_readiness_check_is_not_diagnosed() {
        let ready = running("2026-01-01T00:00:00Z", true, 0);
        assert_eq!(diagnose(&ready, None, at("2026-01-01T01:00:00Z")), None);
        let unchecked: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "x",
                    "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]},
        }))
        .unwrap();
        assert_eq!(diagnose(&unchecked, None, at("2026-01-01T01:00:00Z")), None);
    }

    #[test]
    fn kubelet_failures_carry_its_message_and_read_a_crash_log_once() {
        let pulling = pod(json!({"containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x:1\""}},
        }]}));
        let found = diagnose(&pulling, None, at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(found.failure.reason, "ImagePullBackOff");
        assert_eq!(found.failure.message, "Back-off pulling image \"x:1\"");
        assert_eq!((found.lookup, found.new), (None, true));

        let crashing = pod(json!({"containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 2}},
        }]}));
        let found = diagnose(&crashing, None, at("2026-01-01T00:00:00Z")).unwrap();
        let request = LogRequest { pod: "web-0".into(), container: "app".into(), previous: true };
        assert_eq!(found.lookup, Some(Lookup::Log(request)));
        assert_eq!(found.failure.exit_code, Some(2));

        let mut entry = pod_entry(&crashing);
        entry.failure =
            Some(Box::new(FailureDetail { log_tail: Some("panic: boom".into()), ..found.failure }));
        let kept = diagnose(&crashing, Some(&entry), at("2026-01-01T00:01:00Z")).unwrap();
        assert_eq!((kept.lookup, kept.new), (None, false));
        assert_eq!(kept.failure.log_tail.as_deref(), Some("panic: boom"));
    }
}
