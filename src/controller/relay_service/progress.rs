//! The progress deadline of a pod-template rollout: is a rollout in progress, and has one of
//! its new pods failed to become Ready within `updateStrategy.progressDeadline`?
//!
//! Pure and durable: a rollout is in progress while the current pod-template hash differs
//! from `status.completedPodTemplateHash` (the last one every desired pod ran Ready), and
//! each new pod's deadline counts from its `creationTimestamp` — nothing is remembered in
//! the process, so a restarted operator reaches the same verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{ConditionType, FailureDetail, RollbackPolicy, RollbackStatus};
use crate::controller::cached::CachedPod;
use crate::controller::conditions::NewCondition;
use crate::controller::pods::{is_ready, is_terminating};
use crate::controller::relay_service::health_detail::truncate;
use crate::render::LABEL_POD_TEMPLATE_HASH;

/// Reason of `Progressing=False` when a new pod was not Ready within the deadline.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Most bytes of the condition message (the whole diagnosis is in `pods[].failure`).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Lines of a crash log tail quoted in the message.
const LOG_LINES: usize = 3;

/// Where a service's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The current pod template has rolled out completely: no deadline applies.
    Complete,
    /// Rolling out; `next_deadline` is when the earliest not-Ready new pod runs out of time.
    InProgress {
        /// Earliest deadline of a new pod that is not Ready yet.
        next_deadline: Option<Timestamp>,
    },
    /// A new pod was not Ready within the deadline.
    Stuck {
        /// The pod (the one whose deadline ran out first).
        pod: String,
        /// Its UID (tells a recreated pod from the one it replaces).
        uid: Option<String>,
    },
}

/// Where the rollout to `template_hash` stands at `now`, given the hash of the last
/// completed rollout and the deadline.
pub fn assess<'p>(
    pods: impl IntoIterator<Item = &'p CachedPod>,
    template_hash: &str,
    completed: Option<&str>,
    deadline: Duration,
    now: Timestamp,
) -> Progress {
    if completed == Some(template_hash) {
        return Progress::Complete;
    }
    let mut waiting: Vec<(Timestamp, &CachedPod)> = pods
        .into_iter()
        .filter(|p| !is_ready(p) && !is_terminating(p))
        .filter(|p| p.label(LABEL_POD_TEMPLATE_HASH) == Some(template_hash))
        .filter_map(|p| {
            let created = p.metadata.creation_timestamp.as_ref()?.0;
            Some((created.checked_add(deadline).unwrap_or(Timestamp::MAX), p))
        })
        .collect();
    waiting.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.metadata.name.cmp(&b.1.metadata.name)));
    match waiting.first() {
        Some((at, pod)) if *at <= now => Progress::Stuck {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
        },
        first => Progress::InProgress { next_deadline: first.map(|(at, _)| *at) },
    }
}

/// How long until the next deadline of an in-progress rollout (a second late, so it has
/// surely passed when the reconcile runs): no watch event announces that a pod did not
/// turn Ready.
pub fn requeue_after(progress: &Progress, now: Timestamp) -> Option<Duration> {
    let Progress::InProgress { next_deadline: Some(at) } = progress else { return None };
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
    Some(wait + Duration::from_secs(1))
}

/// `Progressing=False/ProgressDeadlineExceeded` for a stuck pod, with its diagnosis: the
/// kubelet's reason and message, the last lines of a crash log, the health answer.
pub fn stuck_condition(
    pod: &str,
    deadline: crate::api::Duration,
    failure: Option<&FailureDetail>,
    rollback: Option<&str>,
) -> NewCondition {
    let mut message = format!("pod {pod} was not Ready within progressDeadline {deadline} of its creation");
    match failure {
        Some(failure) => {
            message.push_str(&format!(": {}: {}", failure.reason, failure.message));
            if let Some(tail) = failure.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
                let last = &lines[lines.len().saturating_sub(LOG_LINES)..];
                message.push_str(&format!("; log: {}", last.join(" | ")));
            }
        }
        None => message.push_str(" (the kubelet reports no failure: still starting or not scheduled)"),
    }
    if let Some(rollback) = rollback {
        message.push_str(&format!("; {rollback}"));
    }
    NewCondition::new(
        ConditionType::Progressing,
        false,
        PROGRESS_DEADLINE_EXCEEDED,
        truncate(&message, MAX_MESSAGE_BYTES),
    )
}

/// Token of the rollback requests `rollback: auto` makes (`previous@auto-HASH`, HASH the
/// stuck pod template).
pub const AUTO_ROLLBACK_PREFIX: &str = "auto-";

/// What `rollback: auto` does about a stuck rollout, said in the condition message: the
/// revision it rolls back to once the request is handled (`handled`: the last rollback
/// request), or that it is about to; `None` with `manual`.
pub fn rollback_note(
    policy: RollbackPolicy,
    completed: Option<&str>,
    handled: Option<&RollbackStatus>,
) -> Option<String> {
    if policy == RollbackPolicy::Manual {
        return None;
    }
    let auto = handled.filter(|r| r.request.contains(&format!("@{AUTO_ROLLBACK_PREFIX}")));
    Some(match (auto, completed) {
        (Some(RollbackStatus { revision: Some(n), hash: Some(_), .. }), _) => {
            format!("rollback: auto: rolling back to revision {n}")
        }
        (Some(RollbackStatus { message: Some(why), .. }), _) => format!("rollback: auto failed: {why}"),
        (_, Some(hash)) => {
            format!("rollback: auto: rolling back, towards pod template {hash} (the last completed rollout)")
        }
        (_, None) => {
            "rollback: auto has nothing to go back to: no rollout of this service completed yet".into()
        }
    })
}

/// The stuck pod's failure among this pass's diagnoses, if it has one.
pub fn failure_of<'a>(
    progress: &Progress,
    failures: &'a BTreeMap<String, FailureDetail>,
) -> Option<&'a FailureDetail> {
    match progress {
        Progress::Stuck { pod, .. } => failures.get(pod),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, hash: &str, created: &str, ready: bool) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created,
                "labels": {"relayops.io/pod-template-hash": hash}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const TEN_SECONDS: Duration = Duration::from_secs(10);

    #[test]
    fn a_new_pod_not_ready_within_the_deadline_is_stuck_only_once_the_deadline_passed() {
        let pods = [
            pod("web-0", "old", "2026-01-01T00:00:00Z", true),
            pod("web-1", "new", "2026-01-01T00:01:00Z", false),
        ];
        let progress = assess(&pods, "new", Some("old"), TEN_SECONDS, at("2026-01-01T00:01:09Z"));
        assert_eq!(progress, Progress::InProgress { next_deadline: Some(at("2026-01-01T00:01:10Z")) });
        assert_eq!(requeue_after(&progress, at("2026-01-01T00:01:09Z")), Some(Duration::from_secs(2)));
        let stuck = assess(&pods, "new", Some("old"), TEN_SECONDS, at("2026-01-01T00:01:10Z"));
        assert_eq!(stuck, Progress::Stuck { pod: "web-1".into(), uid: Some("uid-web-1".into()) });
        assert_eq!(requeue_after(&stuck, at("2026-01-01T00:01:10Z")), None);
    }

    #[test]
    fn a_completed_rollout_has_no_deadline_even_when_a_pod_fails_later() {
        // web-0 ran Ready long ago and crashes now: degraded, not a stuck rollout.
        let pods = [pod("web-0", "new", "2026-01-01T00:00:00Z", false)];
        assert_eq!(
            assess(&pods, "new", Some("new"), TEN_SECONDS, at("2026-01-02T00:00:00Z")),
            Progress::Complete
        );
    }

    #[test]
    fn the_first_rollout_of_a_new_service_has_a_deadline_too() {
        let pods = [pod("web-0", "new", "2026-01-01T00:00:00Z", false)];
        let stuck = assess(&pods, "new", None, TEN_SECONDS, at("2026-01-01T00:00:11Z"));
        assert!(matches!(stuck, Progress::Stuck { ref pod, .. } if pod == "web-0"));
    }

    #[test]
    fn ready_outdated_terminating_or_undated_pods_do_not_count() {
        let mut leaving = pod("web-2", "new", "2026-01-01T00:00:00Z", false);
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone();
        let mut undated = pod("web-3", "new", "2026-01-01T00:00:00Z", false);
        undated.metadata.creation_timestamp = None;
        let pods = [
            pod("web-0", "new", "2026-01-01T00:00:00Z", true),
            pod("web-1", "old", "2026-01-01T00:00:00Z", false),
            leaving,
            undated,
        ];
        assert_eq!(
            assess(&pods, "new", Some("old"), TEN_SECONDS, at("2026-01-01T01:00:00Z")),
            Progress::InProgress { next_deadline: None }
        );
    }

    #[test]
    fn each_new_pod_counts_from_its_own_creation() {
        // web-2 became Ready and web-1 replaced it later: progress restarts the clock.
        let pods = [
            pod("web-0", "old", "2026-01-01T00:00:00Z", true),
            pod("web-1", "new", "2026-01-01T00:05:00Z", false),
            pod("web-2", "new", "2026-01-01T00:00:00Z", true),
        ];
        let progress = assess(&pods, "new", Some("old"), TEN_SECONDS, at("2026-01-01T00:05:05Z"));
        assert_eq!(progress, Progress::InProgress { next_deadline: Some(at("2026-01-01T00:05:10Z")) });
    }

    #[test]
    fn the_message_carries_the_diagnosis() {
        let pull = FailureDetail {
            reason: "ImagePullBackOff".into(),
            message: "Back-off pulling image \"x:2\"".into(),
            ..FailureDetail::default()
        };
        let deadline = crate::api::Duration::from_secs(30);
        let condition = stuck_condition("web-1", deadline, Some(&pull), None);
        assert_eq!((condition.status, condition.reason.as_str()), (false, PROGRESS_DEADLINE_EXCEEDED));
        assert_eq!(
            condition.message,
            "pod web-1 was not Ready within progressDeadline 30s of its creation: ImagePullBackOff: Back-off pulling image \"x:2\""
        );
        let crash = FailureDetail {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 40s".into(),
            log_tail: Some(
                "starting\nconnecting\n\nconfig: BATCH_SIZE must be a number\npanic: bad config\n".into(),
            ),
            ..FailureDetail::default()
        };
        let condition = stuck_condition("web-1", deadline, Some(&crash), Some("rolling back"));
        assert!(
            condition.message.ends_with(
                "CrashLoopBackOff: back-off 40s; log: connecting | config: BATCH_SIZE must be a number | panic: bad config; rolling back"
            ),
            "{}",
            condition.message
        );
        let unknown = stuck_condition("web-1", deadline, None, None);
        assert!(unknown.message.contains("reports no failure"), "{}", unknown.message);
    }

    #[test]
    fn auto_rollback_says_where_it_goes() {
        assert_eq!(rollback_note(RollbackPolicy::Manual, Some("a1"), None), None);
        assert_eq!(
            rollback_note(RollbackPolicy::Auto, Some("a1"), None).as_deref(),
            Some("rollback: auto: rolling back, towards pod template a1 (the last completed rollout)")
        );
        let first = rollback_note(RollbackPolicy::Auto, None, None).unwrap_or_default();
        assert!(first.contains("nothing to go back to"), "{first}");
        let pinned = RollbackStatus {
            request: "previous@auto-b2".into(),
            revision: Some(3),
            hash: Some("c3".into()),
            ..RollbackStatus::default()
        };
        assert_eq!(
            rollback_note(RollbackPolicy::Auto, Some("a1"), Some(&pinned)).as_deref(),
            Some("rollback: auto: rolling back to revision 3")
        );
        let failed = RollbackStatus {
            request: "previous@auto-b2".into(),
            message: Some("no revision before revision 1".into()),
            ..RollbackStatus::default()
        };
        assert_eq!(
            rollback_note(RollbackPolicy::Auto, Some("a1"), Some(&failed)).as_deref(),
            Some("rollback: auto failed: no revision before revision 1")
        );
        // A rollback the user asked for is not the automatic one.
        let manual = RollbackStatus { request: "previous".into(), ..pinned };
        let note = rollback_note(RollbackPolicy::Auto, Some("a1"), Some(&manual)).unwrap_or_default();
        assert!(note.contains("towards"), "{note}");
    }
}
