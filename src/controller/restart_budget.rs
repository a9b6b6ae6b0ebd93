//! `--max-concurrent-restarts`: a cap on pod restarts in flight across every service the
//! process manages (template rollouts, `onFailure: Restart`, rollbacks).
//!
//! A restart takes a slot, keyed by the UID of the pod it deletes, before the delete; the
//! slot is held until the replacement (a pod of the same name with another UID) is Ready or
//! has finished, until the pod is no longer wanted (scaled away), or for at most
//! [`SLOT_TIMEOUT`] — a replacement that never becomes Ready does not block the others for
//! ever. A restart that finds no free slot is queued: the service shows it in status and
//! asks again on its next reconcile. Deleting scaled-down or finished pods is not a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Longest a restart holds its slot.
pub const SLOT_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a service whose restarts wait for a slot asks again.
pub const QUEUED_RETRY: Duration = Duration::from_secs(2);

/// How long a service's count of queued restarts stands without being renewed: a service
/// with queued restarts reconciles every few seconds, so an older count belongs to one that
/// was deleted or no longer runs here.
pub const QUEUED_TTL: Duration = Duration::from_secs(60);

fn older_than(since: Timestamp, now: Timestamp, limit: Duration) -> bool {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO) >= limit
}

/// A restart in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The service (`KIND/NAMESPACE/NAME`) the pod belongs to.
    pub service: String,
    /// Name of the deleted pod (its replacement has the same name).
    pub pod: String,
    /// When the slot was taken.
    pub since: Timestamp,
}

/// What the budget needs to know about a pod of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Pod UID (the name when the object has none).
    pub uid: &'a str,
    /// Ready.
    pub ready: bool,
    /// Phase Succeeded or Failed.
    pub finished: bool,
}

/// Whether the restart of the pod `uid` in `slot` is over, given the service's pods now and
/// whether a pod of that name is still wanted.
pub fn slot_done(uid: &str, slot: &Slot, pods: &[PodFacts<'_>], wanted: bool, now: Timestamp) -> bool {
    if older_than(slot.since, now, SLOT_TIMEOUT) {
        return true;
    }
    match pods.iter().find(|p| p.name == slot.pod) {
        Some(pod) => pod.uid != uid && (pod.ready || pod.finished),
        None => !wanted,
    }
}

#[derive(Debug, Default)]
struct State {
    /// Slots in use by the UID of the pod restarted.
    slots: HashMap<String, Slot>,
    /// Restarts waiting for a slot per service, and when the count was set.
    queued: HashMap<String, (usize, Timestamp)>,
}

impl State {
    /// Forget slots held longer than [`SLOT_TIMEOUT`] (whatever their service: a deleted
    /// service never reconciles again) and counts older than [`QUEUED_TTL`].
    fn expire(&mut self, now: Timestamp) {
        self.slots.retain(|_, slot| !older_than(slot.since, now, SLOT_TIMEOUT));
        self.queued.retain(|_, (_, at)| !older_than(*at, now, QUEUED_TTL));
    }
}

/// The restarts in flight and queued, shared by every controller of the process.
#[derive(Debug, Default)]
pub struct RestartBudget {
    /// Most slots at once; `None`: unlimited (restarts are still counted).
    limit: Option<usize>,
    state: Mutex<State>,
}

impl RestartBudget {
    /// A budget of `limit` restarts in flight (`None`: unlimited).
    pub fn new(limit: Option<usize>) -> Self {
        Self { limit, state: Mutex::default() }
    }

    /// The cap, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a slot to restart the pod `uid` (`pod` of `service`); false when none is free.
    /// A pod that already holds a slot keeps it (a repeated delete is the same restart).
    pub fn acquire(&self, service: &str, pod: &str, uid: &str, now: Timestamp) -> bool {
        let mut state = self.state();
        state.expire(now);
        if state.slots.contains_key(uid) {
            return true;
        }
        if self.limit.is_some_and(|limit| state.slots.len() >= limit) {
            return false;
        }
        state
            .slots
            .insert(uid.to_owned(), Slot { service: service.to_owned(), pod: pod.to_owned(), since: now });
        true
    }

    /// Whether the pod `uid` holds a slot: its restart is in flight.
    pub fn holds(&self, uid: &str) -> bool {
        self.state().slots.contains_key(uid)
    }

    /// Give back the slot of the pod `uid` (its delete failed).
    pub fn release(&self, uid: &str) {
        self.state().slots.remove(uid);
    }

    /// Release the slots of `service` whose restart is over (see [`slot_done`]), and every
    /// expired one; `wanted` tells whether a pod name is still among the service's desired
    /// pods.
    pub fn release_done(
        &self,
        service: &str,
        pods: &[PodFacts<'_>],
        wanted: impl Fn(&str) -> bool,
        now: Timestamp,
    ) {
        let mut state = self.state();
        state.expire(now);
        state.slots.retain(|uid, slot| {
            slot.service != service || !slot_done(uid, slot, pods, wanted(&slot.pod), now)
        });
    }

    /// Set how many restarts of `service` wait for a slot, now.
    pub fn set_queued(&self, service: &str, count: usize, now: Timestamp) {
        let mut state = self.state();
        if count == 0 {
            state.queued.remove(service);
        } else {
            state.queued.insert(service.to_owned(), (count, now));
        }
    }

    /// Restarts in flight and restarts waiting for a slot (over all services) at `now`.
    pub fn counts(&self, now: Timestamp) -> (usize, usize) {
        let mut state = self.state();
        state.expire(now);
        (state.slots.len(), state.queued.values().map(|(count, _)| count).sum())
    }

    /// Restarts in flight.
    pub fn in_flight(&self) -> usize {
        self.state().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp")
    }

    fn pod<'a>(name: &'a str, uid: &'a str, ready: bool) -> PodFacts<'a> {
        PodFacts { name, uid, ready, finished: false }
    }

    #[test]
    fn slots_are_capped_and_a_repeated_restart_keeps_its_slot() {
        let budget = RestartBudget::new(Some(2));
        assert!(budget.acquire("a", "a-0", "u1", at(0)));
        assert!(budget.acquire("b", "b-0", "u2", at(0)));
        assert!(!budget.acquire("c", "c-0", "u3", at(0)), "budget used up");
        assert!(budget.acquire("a", "a-0", "u1", at(1)), "the same pod again");
        assert_eq!(budget.in_flight(), 2);
        assert!(budget.holds("u1") && !budget.holds("u3"));
        budget.release("u2");
        assert!(budget.acquire("c", "c-0", "u3", at(2)));
    }

    #[test]
    fn unlimited_counts_but_never_refuses() {
        let budget = RestartBudget::new(None);
        for i in 0..100 {
            assert!(budget.acquire("a", &format!("a-{i}"), &format!("u{i}"), at(0)));
        }
        assert_eq!(budget.in_flight(), 100);
    }

    #[test]
    fn a_slot_is_held_until_the_replacement_is_ready() {
        let budget = RestartBudget::new(Some(1));
        assert!(budget.acquire("a", "a-0", "old", at(0)));
        let wanted = |_: &str| true;
        // The old pod is still terminating; then gone; then replaced but not Ready.
        for pods in [vec![pod("a-0", "old", true)], vec![], vec![pod("a-0", "new", false)]] {
            budget.release_done("a", &pods, wanted, at(10));
            assert_eq!(budget.in_flight(), 1, "{pods:?}");
        }
        // Another service's pods do not release it.
        budget.release_done("b", &[pod("a-0", "new", true)], wanted, at(10));
        assert_eq!(budget.in_flight(), 1);
        budget.release_done("a", &[pod("a-0", "new", true)], wanted, at(10));
        assert_eq!(budget.in_flight(), 0);
    }

    #[test]
    fn a_slot_ends_when_the_pod_is_unwanted_finished_or_held_too_long() {
        let slot = Slot { service: "a".into(), pod: "a-1".into(), since: at(0) };
        assert!(slot_done("old", &slot, &[], false, at(1)), "scaled away");
        assert!(!slot_done("old", &slot, &[], true, at(1)), "being recreated");
        let finished = PodFacts { finished: true, ..pod("a-1", "new", false) };
        assert!(slot_done("old", &slot, &[finished], true, at(1)));
        let stuck = [pod("a-1", "new", false)];
        assert!(!slot_done("old", &slot, &stuck, true, at(299)));
        assert!(slot_done("old", &slot, &stuck, true, at(300)), "bounded by SLOT_TIMEOUT");
    }

    #[test]
    fn queued_restarts_sum_over_services_while_renewed() {
        let budget = RestartBudget::new(Some(1));
        budget.set_queued("a", 2, at(0));
        budget.set_queued("b", 3, at(30));
        assert_eq!(budget.counts(at(30)), (0, 5));
        budget.set_queued("a", 0, at(31));
        assert_eq!(budget.counts(at(31)), (0, 3));
        // "b" was deleted and never said again.
        assert_eq!(budget.counts(at(90)), (0, 0));
    }

    #[test]
    fn a_deleted_services_slots_expire_for_everyone() {
        let budget = RestartBudget::new(Some(1));
        assert!(budget.acquire("gone", "gone-0", "u1", at(0)));
        assert!(!budget.acquire("a", "a-0", "u2", at(299)));
        assert!(budget.acquire("a", "a-0", "u2", at(300)), "the slot of a service that never came back");
        assert_eq!(budget.counts(at(300)), (1, 0));
    }
}
