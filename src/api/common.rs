//! Types shared by more than one resource: references, name and duration formats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// RelayService: the desired configuration failed on its canaries and was reverted.
    ConfigRolledBack,
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
            Self::ConfigRolledBack => "ConfigRolledBack",
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

/// Syntax of a [`Duration`]: one to four parts of at most six digits and a unit (`ms`, `s`,
/// `m`, `h`). The bound keeps every value the API server accepts far from overflowing, so
/// what the server stores always deserializes.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}(ms|s|m|h)){1,4}$";

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

/// A duration as people write it in Docker and compose files (`10s`, `1h30m`, `250ms`),
/// parsed once when the resource is read. Serialized in canonical form (`90s` → `1m30s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// Whole seconds.
    pub const fn from_secs(seconds: u64) -> Self {
        Self(std::time::Duration::from_secs(seconds))
    }

    /// The standard library value.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(duration: Duration) -> Self {
        duration.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text)
            .map(Self)
            .ok_or_else(|| format!("invalid duration {text:?}: write it like 10s, 1h30m or 250ms"))
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": DURATION_PATTERN})
    }
}

/// Parse the [`DURATION_PATTERN`] syntax; `None` for anything else, including overflow.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
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
    fn durations_print_canonically_and_round_trip() {
        for (text, canonical) in
            [("90s", "1m30s"), ("1h30m", "1h30m"), ("250ms", "250ms"), ("0s", "0s"), ("24h", "24h")]
        {
            let duration: super::Duration = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(duration.to_string(), canonical);
            let again: super::Duration =
                serde_json::from_value(serde_json::to_value(duration).unwrap()).unwrap();
            assert_eq!(again, duration);
        }
        let bad = serde_json::from_value::<super::Duration>(serde_json::json!("soon")).unwrap_err();
        assert!(bad.to_string().contains("invalid duration \"soon\""), "{bad}");
    }

    #[test]
    fn the_largest_value_the_schema_allows_deserializes() {
        let pattern = regex_lite_match(DURATION_PATTERN, "999999h999999m999999s999999ms");
        assert!(pattern);
        assert!(parse_duration("999999h999999m999999s999999ms").is_some());
    }

    /// The schema's pattern, checked with the same engine the API server's subset needs.
    fn regex_lite_match(pattern: &str, text: &str) -> bool {
        jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": pattern}))
            .unwrap()
            .is_valid(&serde_json::json!(text))
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "10", "s", "10x", "1.5s", "-1s", "10 s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}

/// Why a pod fails or a TestDeployment failed: the kubelet's reason and message, the log
/// tail of a crash, or the answer of a failing health check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDetail {
    /// Machine-readable reason, e.g. `ImagePullBackOff`, `CrashLoopBackOff`, `HealthCheckFailing`,
    /// `ProgressDeadlineExceeded`.
    pub reason: String,
    /// Human-readable message, e.g. the kubelet's back-off message or the health endpoint's
    /// answer.
    #[serde(default)]
    pub message: String,
    /// Pod the failure comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Container the failure comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Exit code of the failed container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Last lines of the failed container's log — the previous instance's for a crash loop
    /// (at most 20 lines / 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}
