//! Conditions in the Kubernetes API convention, with stable transition times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{ConditionType, find_condition};

/// A condition to set: type, status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    /// Condition type.
    pub type_: ConditionType,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl NewCondition {
    /// Shorthand constructor.
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Merge `updates` into `existing`: `lastTransitionTime` changes only when the status flips.
pub fn merge(
    existing: &[Condition],
    updates: Vec<NewCondition>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> =
        existing.iter().filter(|c| !updates.iter().any(|u| u.type_.as_str() == c.type_)).cloned().collect();
    for update in updates {
        let status = if update.status { "True" } else { "False" };
        let previous = find_condition(existing, update.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        merged.push(Condition {
            type_: update.type_.as_str().into(),
            status: status.into(),
            reason: update.reason,
            message: update.message,
            observed_generation: generation,
            last_transition_time,
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// A reason the children cannot be rendered or started: becomes a condition and an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_stable_unless_status_flips() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = merge(
            &[],
            vec![NewCondition::new(ConditionType::Ready, false, "Creating", "0/2 ready")],
            Some(1),
            t0,
        );
        let same = merge(
            &first,
            vec![NewCondition::new(ConditionType::Ready, false, "Creating", "1/2 ready")],
            Some(2),
            t1,
        );
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].message, "1/2 ready");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            vec![NewCondition::new(ConditionType::Ready, true, "AllReady", "2/2 ready")],
            Some(2),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].status, "True");
    }
}
