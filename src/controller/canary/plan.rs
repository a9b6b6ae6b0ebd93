//! Pure decisions of a canary configuration rollout: which stage a reconcile is in, which
//! pods are the canaries, whether the hold passed or failed, and the `ConfigRolledBack`
//! condition. [`super`] does the I/O.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::api::{CanaryPhase, CanaryPods, CanaryStatus, ConditionType, find_condition};
use crate::controller::conditions::NewCondition;
use crate::controller::pods::ordinal_of;
use crate::controller::reload::plan::PodView;

/// Reason of a rollback: a canary's reload hook kept failing.
pub const HOOK_FAILED: &str = "CanaryHookFailed";
/// Reason of a rollback: a canary is not Ready (or gone).
pub const NOT_READY: &str = "CanaryNotReady";
/// Reason of a rollback: a canary's health endpoint answered unhealthy.
pub const UNHEALTHY: &str = "CanaryUnhealthy";

/// Where a reconcile stands with the canary, before converging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No canary now: every pod gets the rendered configuration.
    Off,
    /// Start a canary of the rendered configuration; `previous` is the last good hash, and
    /// `copy_live` says the live ConfigMap holds it (copy it before overwriting).
    Start {
        /// The last good configuration hash.
        previous: String,
        /// Copy the live ConfigMap as the last good one first.
        copy_live: bool,
    },
    /// The canary of the rendered configuration is under way.
    Continue,
    /// The rendered configuration was rolled back: the last good one runs instead.
    Reverted,
}

/// Decide the stage from the durable state, the freshly rendered hash and the hash the
/// live ConfigMap holds (`None`: no ConfigMap yet).
pub fn stage(state: Option<&CanaryStatus>, rendered: &str, live: Option<&str>) -> Stage {
    if let Some(state) = state {
        if state.config_hash == rendered {
            match state.phase {
                CanaryPhase::RolledBack => return Stage::Reverted,
                CanaryPhase::Reloading | CanaryPhase::Holding => return Stage::Continue,
                CanaryPhase::Passed => {}
            }
        } else if state.phase.in_progress() || state.phase == CanaryPhase::RolledBack {
            // The spec changed during the canary or after a rollback: the last good
            // configuration is still the one before (the live ConfigMap holds the abandoned
            // trial, or — read just after a revert — the rolled back one).
            let previous = &state.previous_config_hash;
            if previous == rendered {
                return Stage::Off;
            }
            let copy_live = live == Some(previous.as_str());
            return Stage::Start { previous: previous.clone(), copy_live };
        }
    }
    match live {
        Some(live) if live != rendered => Stage::Start { previous: live.to_owned(), copy_live: true },
        _ => Stage::Off,
    }
}

/// The canaries: the Ready pods of the current template, highest ordinals first, as many
/// as `pods` asks of `replicas`. Sorted by name.
pub fn choose(
    views: &[PodView],
    base: &str,
    template_hash: &str,
    pods: CanaryPods,
    replicas: usize,
) -> Vec<String> {
    let mut candidates: Vec<(i32, &str)> = views
        .iter()
        .filter(|p| p.ready && !p.terminating && p.ip.is_some())
        .filter(|p| p.template_hash.as_deref() == Some(template_hash))
        .filter_map(|p| Some((ordinal_of(base, &p.name)?, p.name.as_str())))
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut chosen: Vec<String> =
        candidates.into_iter().take(pods.of(replicas)).map(|(_, name)| name.to_owned()).collect();
    chosen.sort();
    chosen
}

/// A health endpoint's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// 2xx or 3xx, as the kubelet judges an HTTP probe.
    pub healthy: bool,
    /// What it answered, e.g. `readiness check GET /health answered HTTP 503: {…}`.
    pub detail: String,
}

/// What the operator sees of one canary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Pod name.
    pub name: String,
    /// The pod exists and is not being deleted.
    pub present: bool,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Its recorded configuration (`relayops.io/config-hash`) is the one on trial.
    pub applied: bool,
    /// Its hook failed for the configuration on trial: the message.
    pub hook_failure: Option<String>,
    /// Its health endpoint's answer (fetched once the pod applied the configuration).
    pub health: Option<Health>,
}

/// The outcome of looking at the canaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Revert: (reason, message).
    Fail {
        /// One of [`HOOK_FAILED`], [`NOT_READY`], [`UNHEALTHY`].
        reason: &'static str,
        /// Which pod and what it said.
        message: String,
    },
    /// Some canaries have not applied the configuration yet.
    Reloading,
    /// Every canary applied it; the hold runs from `since` for `remaining` more.
    Holding {
        /// Start of the hold.
        since: Timestamp,
        /// Time left.
        remaining: Duration,
    },
    /// The hold passed with every canary Ready and healthy.
    Pass,
}

/// Judge the canaries: any failure reverts; otherwise the hold (counted from `hold_since`,
/// or from now once every canary applied the configuration) passes after `hold`.
pub fn judge(
    canaries: &[Observation],
    hold_since: Option<Timestamp>,
    hold: Duration,
    now: Timestamp,
) -> Verdict {
    for canary in canaries {
        let name = &canary.name;
        if let Some(message) = &canary.hook_failure {
            return Verdict::Fail {
                reason: HOOK_FAILED,
                message: format!("pod {name}: reload hook failed: {message}"),
            };
        }
        if !canary.present {
            return Verdict::Fail { reason: NOT_READY, message: format!("pod {name} is gone") };
        }
        let health = canary.health.as_ref();
        if !canary.ready {
            let said = health.map(|h| format!("; {}", h.detail)).unwrap_or_default();
            return Verdict::Fail { reason: NOT_READY, message: format!("pod {name} turned unready{said}") };
        }
        if let Some(health) = health.filter(|h| !h.healthy) {
            return Verdict::Fail { reason: UNHEALTHY, message: format!("pod {name}: {}", health.detail) };
        }
    }
    if canaries.iter().any(|c| !c.applied) {
        return Verdict::Reloading;
    }
    let since = hold_since.unwrap_or(now);
    let elapsed = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
    if elapsed >= hold { Verdict::Pass } else { Verdict::Holding { since, remaining: hold - elapsed } }
}

/// The `ConfigRolledBack` condition: True while the spec still renders the rolled back
/// configuration; False otherwise once there is anything to say (a canary ran, or the
/// condition was set before).
pub fn rolled_back_condition(
    state: Option<&CanaryStatus>,
    rendered: &str,
    previous: &[Condition],
) -> Option<NewCondition> {
    let new = |status, reason: &str, message: String| {
        Some(NewCondition::new(ConditionType::ConfigRolledBack, status, reason, message))
    };
    match state {
        Some(s) if s.phase == CanaryPhase::RolledBack && s.config_hash == rendered => new(
            true,
            s.reason.as_deref().unwrap_or(NOT_READY),
            format!(
                "configuration {} failed on its canaries and was reverted to {}; it is not tried again until the spec changes: {}",
                short(&s.config_hash),
                short(&s.previous_config_hash),
                s.message.as_deref().unwrap_or_default()
            ),
        ),
        Some(s) if s.phase.in_progress() => new(
            false,
            "CanaryInProgress",
            format!("configuration {} is on trial on {}", short(&s.config_hash), s.pods.join(", ")),
        ),
        Some(s) if s.phase == CanaryPhase::Passed => new(
            false,
            "CanaryPassed",
            format!("configuration {} passed its canary hold", short(&s.config_hash)),
        ),
        _ if find_condition(previous, ConditionType::ConfigRolledBack).is_some() || state.is_some() => {
            new(false, "NotRolledBack", "the desired configuration is not rolled back".into())
        }
        _ => None,
    }
}

/// The first 12 characters of a hash.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn state(hash: &str, phase: CanaryPhase) -> CanaryStatus {
        CanaryStatus {
            config_hash: hash.into(),
            previous_config_hash: "good".into(),
            phase,
            pods: vec!["web-2".into()],
            ..CanaryStatus::default()
        }
    }

    #[test]
    fn stages() {
        // A new configuration over a live one starts a canary from the live one.
        assert_eq!(
            stage(None, "new", Some("good")),
            Stage::Start { previous: "good".into(), copy_live: true }
        );
        // Nothing live yet, or nothing changed: no canary.
        assert_eq!(stage(None, "new", None), Stage::Off);
        assert_eq!(stage(None, "good", Some("good")), Stage::Off);
        // Under way.
        assert_eq!(stage(Some(&state("new", CanaryPhase::Holding)), "new", Some("new")), Stage::Continue);
        assert_eq!(stage(Some(&state("new", CanaryPhase::Reloading)), "new", Some("good")), Stage::Continue);
        // Rolled back: not tried again.
        assert_eq!(stage(Some(&state("bad", CanaryPhase::RolledBack)), "bad", Some("good")), Stage::Reverted);
        // A fixed spec tries again, from the restored configuration — also when the cache
        // still shows the rolled back one.
        assert_eq!(
            stage(Some(&state("bad", CanaryPhase::RolledBack)), "fixed", Some("good")),
            Stage::Start { previous: "good".into(), copy_live: true }
        );
        assert_eq!(
            stage(Some(&state("bad", CanaryPhase::RolledBack)), "fixed", Some("bad")),
            Stage::Start { previous: "good".into(), copy_live: false }
        );
        assert_eq!(stage(Some(&state("bad", CanaryPhase::RolledBack)), "good", Some("good")), Stage::Off);
        // A change during the hold restarts the canary from the same last good configuration.
        assert_eq!(
            stage(Some(&state("new", CanaryPhase::Holding)), "newer", Some("new")),
            Stage::Start { previous: "good".into(), copy_live: false }
        );
        // Back to the last good configuration during the hold: no canary needed.
        assert_eq!(stage(Some(&state("new", CanaryPhase::Holding)), "good", Some("new")), Stage::Off);
        // Passed and live: nothing to do.
        assert_eq!(stage(Some(&state("new", CanaryPhase::Passed)), "new", Some("new")), Stage::Off);
    }

    fn view(name: &str, ready: bool, template: &str) -> PodView {
        PodView {
            name: name.into(),
            ready,
            terminating: false,
            template_hash: Some(template.into()),
            config_hash: Some("good".into()),
            nudge: None,
            reload_result: None,
            ip: Some("10.0.0.1".into()),
        }
    }

    #[test]
    fn canaries_are_the_highest_ready_ordinals_of_the_current_template() {
        let views = [
            view("web-0", true, "t"),
            view("web-1", true, "t"),
            view("web-2", false, "t"),
            view("web-3", true, "t"),
            view("web-10", true, "t"),
            view("web-4", true, "old"),
        ];
        assert_eq!(choose(&views, "web", "t", CanaryPods::Count(1), 6), ["web-10"]);
        assert_eq!(choose(&views, "web", "t", CanaryPods::Count(2), 6), ["web-10", "web-3"]);
        // 25% of 6 is 1.5: two pods.
        assert_eq!(choose(&views, "web", "t", CanaryPods::Percent(25), 6), ["web-10", "web-3"]);
        assert_eq!(
            choose(&views, "web", "t", CanaryPods::Count(9), 6),
            ["web-0", "web-1", "web-10", "web-3"]
        );
        assert!(choose(&views, "web", "other", CanaryPods::Count(1), 6).is_empty());
    }

    #[test]
    fn canary_counts() {
        assert_eq!(CanaryPods::Count(1).of(4), 1);
        assert_eq!(CanaryPods::Count(5).of(4), 4);
        assert_eq!(CanaryPods::Percent(1).of(4), 1);
        assert_eq!(CanaryPods::Percent(50).of(5), 3);
        assert_eq!(CanaryPods::Percent(100).of(3), 3);
        assert_eq!(CanaryPods::Count(1).of(0), 1);
    }

    fn good(name: &str) -> Observation {
        Observation {
            name: name.into(),
            present: true,
            ready: true,
            applied: true,
            hook_failure: None,
            health: Some(Health { healthy: true, detail: "HTTP 200".into() }),
        }
    }

    #[test]
    fn the_hold_passes_only_after_its_time_with_healthy_canaries() {
        let hold = Duration::from_secs(30);
        let start = ts("2026-01-01T00:00:00Z");
        assert_eq!(
            judge(&[good("web-2")], None, hold, start),
            Verdict::Holding { since: start, remaining: hold }
        );
        assert_eq!(
            judge(&[good("web-2")], Some(start), hold, ts("2026-01-01T00:00:20Z")),
            Verdict::Holding { since: start, remaining: Duration::from_secs(10) }
        );
        assert_eq!(judge(&[good("web-2")], Some(start), hold, ts("2026-01-01T00:00:30Z")), Verdict::Pass);
        let waiting = Observation { applied: false, health: None, ..good("web-3") };
        assert_eq!(
            judge(&[good("web-2"), waiting], Some(start), hold, ts("2026-01-01T00:01:00Z")),
            Verdict::Reloading
        );
    }

    #[test]
    fn any_failing_canary_fails_the_hold() {
        let now = ts("2026-01-01T00:00:10Z");
        let hold = Duration::from_secs(30);
        let unhealthy = Observation {
            health: Some(Health {
                healthy: false,
                detail: "readiness check GET /health answered HTTP 503: {\"ws_connected\": false}".into(),
            }),
            ..good("web-3")
        };
        let Verdict::Fail { reason, message } = judge(&[good("web-2"), unhealthy], None, hold, now) else {
            panic!("an unhealthy canary fails");
        };
        assert_eq!(reason, UNHEALTHY);
        assert!(
            message.contains("web-3") && message.contains("HTTP 503") && message.contains("ws_connected"),
            "{message}"
        );

        let unready = Observation { ready: false, health: None, ..good("web-2") };
        assert!(matches!(judge(&[unready], None, hold, now), Verdict::Fail { reason: NOT_READY, .. }));
        let gone = Observation { present: false, ready: false, ..good("web-2") };
        assert!(matches!(judge(&[gone], None, hold, now), Verdict::Fail { reason: NOT_READY, .. }));
        let hook = Observation { hook_failure: Some("HTTP 500".into()), applied: false, ..good("web-2") };
        let Verdict::Fail { reason, message } = judge(&[hook], None, hold, now) else {
            panic!("hook failure fails")
        };
        assert_eq!(reason, HOOK_FAILED);
        assert!(message.contains("HTTP 500"), "{message}");
    }

    #[test]
    fn the_condition_is_true_only_while_the_spec_asks_for_the_rolled_back_configuration() {
        let rolled = CanaryStatus {
            reason: Some(UNHEALTHY.into()),
            message: Some("pod web-2: HTTP 503".into()),
            ..state("bad", CanaryPhase::RolledBack)
        };
        let on = rolled_back_condition(Some(&rolled), "bad", &[]).expect("condition");
        assert!(on.status);
        assert_eq!(on.reason, UNHEALTHY);
        assert!(on.message.contains("HTTP 503"), "{}", on.message);
        let off = rolled_back_condition(Some(&rolled), "fixed", &[]).expect("condition");
        assert!(!off.status);
        assert!(rolled_back_condition(None, "x", &[]).is_none());
        let passed =
            rolled_back_condition(Some(&state("new", CanaryPhase::Passed)), "new", &[]).expect("condition");
        assert_eq!((passed.status, passed.reason.as_str()), (false, "CanaryPassed"));
    }
}
