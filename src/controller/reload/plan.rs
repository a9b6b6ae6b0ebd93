//! Pure decisions of the reload phase: which pods to nudge, which hooks to call now, how
//! long to wait for the settle delay, and how the per-pod annotations are read and written.
//!
//! Everything here is a function of the pods (as the cache shows them), the freshly
//! rendered hashes and the time; [`super`] does the I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{ReloadOutcome, ReloadResult};
use crate::controller::cached::CachedPod;
use crate::controller::pods::{is_ready, is_terminating};
use crate::render::{ANNOTATION_CONFIG_HASH, LABEL_POD_TEMPLATE_HASH};

/// Pod annotation written to make the kubelet resync the pod's volumes now; its value is
/// `<hash> <RFC 3339 time>`: the configuration it was written for and when. The time
/// survives operator restarts, so the settle delay is measured from the real nudge.
pub const ANNOTATION_CONFIG_NUDGE: &str = "relayops.io/config-nudge";

/// Pod annotation written with `relayops.io/config-hash` after a successful hook call:
/// `Applied` (the app echoed the hash) or `AppliedUnverified` (it did not).
pub const ANNOTATION_RELOAD_RESULT: &str = "relayops.io/reload-result";

/// A nudge: the hash it was written for and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nudge {
    /// The desired configuration hash at the time of the nudge.
    pub hash: String,
    /// When the nudge was written.
    pub at: Timestamp,
}

impl Nudge {
    /// The annotation value, `<hash> <time>`.
    pub fn annotation_value(&self) -> String {
        format!("{} {}", self.hash, self.at)
    }

    /// The pod's nudge annotation, parsed.
    pub fn of(pod: &CachedPod) -> Option<Self> {
        pod.annotation(ANNOTATION_CONFIG_NUDGE).and_then(Self::parse)
    }

    /// Parse an annotation value; `None` when it is not `<hash> <time>`.
    pub fn parse(value: &str) -> Option<Self> {
        let (hash, at) = value.split_once(' ')?;
        let at = at.trim().parse::<Timestamp>().ok()?;
        (!hash.is_empty()).then(|| Self { hash: hash.to_owned(), at })
    }
}

/// What the reload phase needs to know about one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// The Ready condition is True.
    pub ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// Label `relayops.io/pod-template-hash`.
    pub template_hash: Option<String>,
    /// Annotation `relayops.io/config-hash`: the configuration the pod has applied.
    pub config_hash: Option<String>,
    /// Annotation `relayops.io/config-nudge`, parsed.
    pub nudge: Option<Nudge>,
    /// Annotation `relayops.io/reload-result`.
    pub reload_result: Option<ReloadOutcome>,
    /// `status.podIP`.
    pub ip: Option<String>,
}

impl PodView {
    /// Read the view from a pod.
    pub fn of(pod: &CachedPod) -> Self {
        let annotation = |key: &str| pod.annotation(key).map(str::to_owned);
        let status = pod.status.as_ref();
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ready: is_ready(pod),
            terminating: is_terminating(pod),
            template_hash: pod.label(LABEL_POD_TEMPLATE_HASH).map(str::to_owned),
            config_hash: annotation(ANNOTATION_CONFIG_HASH),
            nudge: Nudge::of(pod),
            reload_result: annotation(ANNOTATION_RELOAD_RESULT).as_deref().and_then(ReloadOutcome::parse),
            ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
        }
    }
}

/// Input of [`plan`].
#[derive(Clone, Debug)]
pub struct ReloadInput<'a> {
    /// The freshly rendered configuration hash.
    pub desired_hash: &'a str,
    /// The freshly rendered pod-template hash; pods of another template are rolled, not reloaded.
    pub template_hash: &'a str,
    /// The service's pods.
    pub pods: &'a [PodView],
    /// The last reload result per pod (from status), so a pod whose hook failed for the
    /// desired hash with `onFailure: Ignore` is not called again and again.
    pub last_reload: &'a BTreeMap<&'a str, &'a ReloadResult>,
    /// `reload.settleDelay`.
    pub settle_delay: Duration,
    /// Now.
    pub now: Timestamp,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Pods to nudge (annotation `relayops.io/config-nudge` for the desired hash).
    pub nudge: Vec<String>,
    /// Pods whose hook is called now: (name, pod IP).
    pub call: Vec<(String, String)>,
    /// The earliest time a waiting pod's settle delay ends, from now.
    pub wait: Option<Duration>,
    /// Whether the app is known to echo `configHash` (its hook is called right after the nudge).
    pub echoes: bool,
}

/// Whether a pod takes part in the reload: Ready, not terminating, running the current
/// template, with an IP, not yet at the desired hash, and not already failed for it.
pub fn needs_reload(pod: &PodView, input: &ReloadInput<'_>) -> bool {
    pod.ready
        && !pod.terminating
        && pod.ip.is_some()
        && pod.template_hash.as_deref() == Some(input.template_hash)
        && pod.config_hash.as_deref() != Some(input.desired_hash)
        && !failed_for_desired(pod, input)
}

/// Whether a pod's hook failed for the desired hash and the pod is still there, not at that
/// hash and not being deleted: under `onFailure: Restart`, a restart still to be made (it
/// waited for a slot of `--max-concurrent-restarts`, or an earlier process stopped first).
pub fn awaits_restart(pod: &PodView, input: &ReloadInput<'_>) -> bool {
    !pod.terminating
        && pod.template_hash.as_deref() == Some(input.template_hash)
        && pod.config_hash.as_deref() != Some(input.desired_hash)
        && failed_for_desired(pod, input)
}

fn failed_for_desired(pod: &PodView, input: &ReloadInput<'_>) -> bool {
    input
        .last_reload
        .get(pod.name.as_str())
        .is_some_and(|r| r.result == ReloadOutcome::Failed && r.config_hash == input.desired_hash)
}

/// Decide the nudges, calls and wait.
///
/// The app is known to echo `configHash` when a pod of the current template last
/// reloaded with result `Applied`; then its hooks are called right after the nudge (a
/// stale answer is retried). Otherwise a hook is called only once `settleDelay` has
/// passed since the pod's nudge, because an answer without a hash cannot tell an old
/// file from a new one.
pub fn plan(input: &ReloadInput<'_>) -> ReloadPlan {
    let echoes = input.pods.iter().any(|p| {
        !p.terminating
            && p.template_hash.as_deref() == Some(input.template_hash)
            && p.reload_result == Some(ReloadOutcome::Applied)
    });
    let mut out = ReloadPlan { echoes, ..ReloadPlan::default() };
    for pod in input.pods.iter().filter(|p| needs_reload(p, input)) {
        let Some(ip) = pod.ip.clone() else { continue };
        let nudged_at = match &pod.nudge {
            Some(nudge) if nudge.hash == input.desired_hash => nudge.at,
            _ => {
                out.nudge.push(pod.name.clone());
                input.now
            }
        };
        let elapsed = input.now.duration_since(nudged_at);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        if echoes || elapsed >= input.settle_delay {
            out.call.push((pod.name.clone(), ip));
        } else {
            let remaining = input.settle_delay.saturating_sub(elapsed);
            out.wait = Some(out.wait.map_or(remaining, |w| w.min(remaining)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn pod(name: &str) -> PodView {
        PodView {
            name: name.into(),
            ready: true,
            terminating: false,
            template_hash: Some("t1".into()),
            config_hash: Some("old".into()),
            nudge: None,
            reload_result: None,
            ip: Some("10.0.0.1".into()),
        }
    }

    fn input<'a>(
        pods: &'a [PodView],
        last: &'a BTreeMap<&'a str, &'a ReloadResult>,
        now: &str,
    ) -> ReloadInput<'a> {
        ReloadInput {
            desired_hash: "new",
            template_hash: "t1",
            pods,
            last_reload: last,
            settle_delay: Duration::from_secs(10),
            now: ts(now),
        }
    }

    #[test]
    fn nudge_round_trips() {
        let nudge = Nudge { hash: "abc".into(), at: ts("2026-01-02T03:04:05.5Z") };
        assert_eq!(Nudge::parse(&nudge.annotation_value()), Some(nudge));
        assert_eq!(Nudge::parse("abc"), None);
        assert_eq!(Nudge::parse(" 2026-01-02T03:04:05Z"), None);
        assert_eq!(Nudge::parse("abc yesterday"), None);
    }

    #[test]
    fn unknown_apps_are_nudged_then_called_after_the_settle_delay() {
        let last = BTreeMap::new();
        let pods = [pod("a")];
        let first = plan(&input(&pods, &last, "2026-01-01T00:00:00Z"));
        assert_eq!(first.nudge, ["a"]);
        assert!(first.call.is_empty());
        assert_eq!(first.wait, Some(Duration::from_secs(10)));

        let nudged =
            PodView { nudge: Some(Nudge { hash: "new".into(), at: ts("2026-01-01T00:00:00Z") }), ..pod("a") };
        let pods = [nudged];
        let early = plan(&input(&pods, &last, "2026-01-01T00:00:04Z"));
        assert!(early.nudge.is_empty() && early.call.is_empty());
        assert_eq!(early.wait, Some(Duration::from_secs(6)));
        let late = plan(&input(&pods, &last, "2026-01-01T00:00:10Z"));
        assert_eq!(late.call, [("a".to_string(), "10.0.0.1".to_string())]);
        assert_eq!(late.wait, None);
    }

    #[test]
    fn a_nudge_for_another_hash_is_renewed() {
        let last = BTreeMap::new();
        let pods = [PodView {
            nudge: Some(Nudge { hash: "older".into(), at: ts("2025-01-01T00:00:00Z") }),
            ..pod("a")
        }];
        let out = plan(&input(&pods, &last, "2026-01-01T00:00:00Z"));
        assert_eq!(out.nudge, ["a"]);
        assert!(out.call.is_empty());
    }

    #[test]
    fn echoing_apps_are_called_right_after_the_nudge() {
        let last = BTreeMap::new();
        let pods = [pod("a"), PodView { reload_result: Some(ReloadOutcome::Applied), ..pod("b") }];
        let out = plan(&input(&pods, &last, "2026-01-01T00:00:00Z"));
        assert!(out.echoes);
        assert_eq!(out.nudge, ["a", "b"]);
        assert_eq!(out.call.len(), 2);
        assert_eq!(out.wait, None);
    }

    #[test]
    fn pods_not_taking_part() {
        let failed = ReloadResult {
            result: ReloadOutcome::Failed,
            config_hash: "new".into(),
            ..ReloadResult::default()
        };
        let failed_before = ReloadResult {
            result: ReloadOutcome::Failed,
            config_hash: "old".into(),
            ..ReloadResult::default()
        };
        let last = BTreeMap::from([("failed", &failed), ("failed-before", &failed_before)]);
        let pods = [
            PodView { ready: false, ..pod("unready") },
            PodView { terminating: true, ..pod("terminating") },
            PodView { template_hash: Some("t0".into()), ..pod("outdated") },
            PodView { config_hash: Some("new".into()), ..pod("synced") },
            PodView { ip: None, ..pod("no-ip") },
            pod("failed"),
            pod("failed-before"),
        ];
        let out = plan(&input(&pods, &last, "2026-01-01T00:00:00Z"));
        assert_eq!(out.nudge, ["failed-before"]);
        let now = input(&pods, &last, "2026-01-01T00:00:00Z");
        let restarts: Vec<&str> =
            pods.iter().filter(|p| awaits_restart(p, &now)).map(|p| p.name.as_str()).collect();
        assert_eq!(restarts, ["failed"], "only the pod that failed for the desired hash");
    }
}
