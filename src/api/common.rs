//! Types shared by more than one resource: references, name and duration formats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Regular expression every duration field must match: `10s`, `5m`, `1h30m`, `250ms`.
/// The condition types the operator sets in `status.conditions[].type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// RelayService: every desired pod is Ready. TestDeployment: Running.
    Ready,
    /// RelayService: pods are being created, replaced or removed.
    Progressing,
    /// RelayService: every pod runs the desired configuration.
    ConfigInSync,
    /// RelayService: every `dependsOn` service is Ready.
    DependenciesReady,
    /// RelayService: something is wrong (a failing pod, a bad reference).
    Degraded,
    /// RelayService: the image names a fixed version.
    ImagePinned,
    /// TestDeployment: it failed (image pull, crash loop, progress deadline).
    Failed,
    /// TestDeployment: its TTL ran out.
    Expired,
    /// HealthPolicy: the check maps onto container probes.
    Accepted,
}

impl ConditionType {
    /// The `type` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::ConfigInSync => "ConfigInSync",
            Self::DependenciesReady => "DependenciesReady",
            Self::Degraded => "Degraded",
            Self::ImagePinned => "ImagePinned",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
            Self::Accepted => "Accepted",
        }
    }
}

/// The condition of `type_` in `conditions`, if set.
pub fn find_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: ConditionType,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Regular expression of a DNS-1123 label (names of Kubernetes objects we point at).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A reference to another object in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalRef {
    /// Name of the referenced object (same namespace).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Regular expression of a DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Parse a duration in the `DURATION_PATTERN` syntax (`10s`, `1h30m`, `250ms`).
///
/// Returns `None` for anything else, including values that would overflow.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[unit_len..];
        total_ms = total_ms.checked_add(value.checked_mul(unit_ms)?)?;
    }
    Some(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "10", "s", "10x", "1.5s", "-1s", "10 s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
