//! Pure pod management decisions, StatefulSet-like: given the desired replica count and
//! template hash and the pods that exist, which pods to create and which to delete.
//!
//! Deterministic names make every step idempotent: re-planning after a crash at any point
//! yields the remaining steps, never a duplicate.

use std::collections::HashSet;

/// What the planner needs to know about one existing pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Ordinal from the name (`NAME-3` → 3).
    pub ordinal: i32,
    /// Pod-template hash label.
    pub template_hash: Option<&'a str>,
    /// Ready condition is True.
    pub ready: bool,
    /// Phase is Failed or Succeeded: the pod will never run again.
    pub finished: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
}

/// Inputs of one planning step.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// Pods wanted (0 when suspended).
    pub replicas: i32,
    /// Hash of the current pod template.
    pub template_hash: &'a str,
    /// Pods that exist.
    pub pods: &'a [ObservedPod<'a>],
    /// Most pods that may be unavailable during a rolling replacement (≥ 1).
    pub max_unavailable: i32,
    /// Whether new pods may be created and outdated ones replaced (dependencies Ready;
    /// always for TestDeployments).
    pub may_start: bool,
    /// The rollout to `template_hash` is stuck (a new pod missed its progress deadline):
    /// outdated pods stay, even unready ones, so the stuck template spreads no further.
    pub hold_outdated: bool,
}

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its ordinal is at or above the desired replica count (or the service is suspended).
    ScaledDown,
    /// It failed or completed and is recreated.
    Finished,
    /// Its template is outdated; it is replaced.
    Outdated,
}

/// One step on the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAction {
    /// Create the pod with this ordinal.
    Create(i32),
    /// Delete this pod.
    Delete {
        /// Pod name.
        name: String,
        /// Why.
        reason: DeleteReason,
    },
}

/// Plan the next steps. Deletions of scaled-down pods come highest ordinal first; outdated
/// pods are replaced one budget at a time, highest ordinal first, and a replacement only
/// proceeds once the previous one is Ready again (unavailable pods use up the budget);
/// none is replaced while the rollout is held (stuck past its progress deadline).
pub fn plan(input: &PlanInput<'_>) -> Vec<PodAction> {
    let mut actions = Vec::new();
    let mut pods: Vec<&ObservedPod<'_>> = input.pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.ordinal));

    for pod in pods.iter().filter(|p| p.ordinal >= input.replicas && !p.terminating) {
        actions.push(PodAction::Delete { name: pod.name.to_owned(), reason: DeleteReason::ScaledDown });
    }
    let wanted: Vec<&ObservedPod<'_>> = pods.iter().copied().filter(|p| p.ordinal < input.replicas).collect();
    for pod in wanted.iter().filter(|p| p.finished && !p.terminating) {
        actions.push(PodAction::Delete { name: pod.name.to_owned(), reason: DeleteReason::Finished });
    }
    if !input.may_start {
        return actions;
    }
    let existing: HashSet<i32> = wanted.iter().map(|p| p.ordinal).collect();
    for ordinal in (0..input.replicas).filter(|o| !existing.contains(o)) {
        actions.push(PodAction::Create(ordinal));
    }

    let available = wanted.iter().filter(|p| p.ready && !p.terminating && !p.finished).count() as i32;
    let mut budget = input.max_unavailable.max(1) - (input.replicas - available);
    let outdated =
        |p: &&&ObservedPod<'_>| p.template_hash != Some(input.template_hash) && !p.terminating && !p.finished;
    for pod in wanted.iter().filter(outdated).filter(|_| !input.hold_outdated) {
        if !pod.ready {
            // Already unavailable: replacing it costs no availability.
            actions.push(PodAction::Delete { name: pod.name.to_owned(), reason: DeleteReason::Outdated });
        } else if budget > 0 {
            budget -= 1;
            actions.push(PodAction::Delete { name: pod.name.to_owned(), reason: DeleteReason::Outdated });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["web-0", "web-1", "web-2", "web-3"];

    fn pod(ordinal: i32, hash: &'static str, ready: bool) -> ObservedPod<'static> {
        ObservedPod {
            name: NAMES[ordinal as usize],
            ordinal,
            template_hash: Some(hash),
            ready,
            finished: false,
            terminating: false,
        }
    }

    fn input<'a>(replicas: i32, pods: &'a [ObservedPod<'a>], max_unavailable: i32) -> PlanInput<'a> {
        PlanInput {
            replicas,
            template_hash: "new",
            pods,
            max_unavailable,
            may_start: true,
            hold_outdated: false,
        }
    }

    fn delete(ordinal: i32, reason: DeleteReason) -> PodAction {
        PodAction::Delete { name: format!("web-{ordinal}"), reason }
    }

    #[test]
    fn creates_missing_ordinals() {
        assert_eq!(
            plan(&input(3, &[pod(1, "new", true)], 1)),
            vec![PodAction::Create(0), PodAction::Create(2)]
        );
    }

    #[test]
    fn scales_down_highest_ordinal_first() {
        let pods = [pod(0, "new", true), pod(1, "new", true), pod(2, "new", true), pod(3, "new", true)];
        assert_eq!(
            plan(&input(2, &pods, 1)),
            vec![delete(3, DeleteReason::ScaledDown), delete(2, DeleteReason::ScaledDown)]
        );
    }

    #[test]
    fn suspend_deletes_every_pod_and_creates_none() {
        let pods = [pod(0, "new", true), pod(1, "old", false)];
        let actions = plan(&input(0, &pods, 1));
        assert_eq!(actions, vec![delete(1, DeleteReason::ScaledDown), delete(0, DeleteReason::ScaledDown)]);
    }

    #[test]
    fn finished_pods_are_deleted_then_recreated() {
        let mut failed = pod(0, "new", false);
        failed.finished = true;
        assert_eq!(plan(&input(1, &[failed], 1)), vec![delete(0, DeleteReason::Finished)]);
        // Once it is gone, the next plan creates it again.
        assert_eq!(plan(&input(1, &[], 1)), vec![PodAction::Create(0)]);
    }

    #[test]
    fn rolling_replacement_honours_max_unavailable() {
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "old", true)];
        assert_eq!(plan(&input(3, &pods, 1)), vec![delete(2, DeleteReason::Outdated)]);
        assert_eq!(
            plan(&input(3, &pods, 2)),
            vec![delete(2, DeleteReason::Outdated), delete(1, DeleteReason::Outdated)]
        );
    }

    #[test]
    fn rolling_waits_for_the_replacement_to_be_ready() {
        // web-2 was replaced and is not Ready yet: the budget is used up, nothing else moves.
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", false)];
        assert_eq!(plan(&input(3, &pods, 1)), vec![]);
        // While it is missing (deleted, not recreated yet) it is created, nothing else deleted.
        let pods = [pod(0, "old", true), pod(1, "old", true)];
        assert_eq!(plan(&input(3, &pods, 1)), vec![PodAction::Create(2)]);
        // Ready again: the next one goes.
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", true)];
        assert_eq!(plan(&input(3, &pods, 1)), vec![delete(1, DeleteReason::Outdated)]);
    }

    #[test]
    fn unready_outdated_pods_are_replaced_without_budget() {
        let pods = [pod(0, "old", true), pod(1, "old", false)];
        assert_eq!(plan(&input(2, &pods, 1)), vec![delete(1, DeleteReason::Outdated)]);
    }

    #[test]
    fn a_fixed_spec_replaces_the_stuck_pod_at_once_and_nothing_else() {
        // Template "bad" got stuck on web-2 (never Ready); the spec is fixed to "new".
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "bad", false)];
        assert_eq!(plan(&input(3, &pods, 1)), vec![delete(2, DeleteReason::Outdated)]);
        // While "bad" was current, the stuck pod held the budget: no other pod moved.
        let stuck = PlanInput { template_hash: "bad", ..input(3, &pods, 1) };
        assert_eq!(plan(&stuck), vec![]);
    }

    #[test]
    fn a_stuck_rollout_replaces_no_outdated_pod_not_even_an_unready_one() {
        let pods = [pod(0, "old", false), pod(1, "old", true), pod(2, "new", false)];
        assert_eq!(
            plan(&input(3, &pods, 3)),
            vec![delete(1, DeleteReason::Outdated), delete(0, DeleteReason::Outdated)]
        );
        let held = PlanInput { hold_outdated: true, ..input(3, &pods, 3) };
        assert_eq!(plan(&held), vec![]);
        // Missing ordinals are still created.
        let pods = [pod(0, "old", true)];
        let held = PlanInput { hold_outdated: true, ..input(2, &pods, 1) };
        assert_eq!(plan(&held), vec![PodAction::Create(1)]);
    }

    #[test]
    fn terminating_pods_are_left_alone_and_count_as_unavailable() {
        let mut leaving = pod(1, "old", true);
        leaving.terminating = true;
        let pods = [pod(0, "old", true), leaving];
        assert_eq!(plan(&input(2, &pods, 1)), vec![]);
    }

    #[test]
    fn gated_services_neither_create_nor_roll() {
        let pods = [pod(0, "old", true)];
        let gated = PlanInput { may_start: false, ..input(2, &pods, 1) };
        assert_eq!(plan(&gated), vec![]);
        // Scale-down still proceeds while gated.
        let pods = [pod(0, "old", true), pod(1, "old", true)];
        let gated = PlanInput { may_start: false, ..input(1, &pods, 1) };
        assert_eq!(plan(&gated), vec![delete(1, DeleteReason::ScaledDown)]);
    }

    #[test]
    fn converged_plans_nothing() {
        let pods = [pod(0, "new", true), pod(1, "new", true)];
        assert_eq!(plan(&input(2, &pods, 1)), vec![]);
    }
}
