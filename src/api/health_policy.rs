//! `HealthPolicy`: a health check shared by several services, and the same check inline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Duration;

/// A health check in the vocabulary of Docker's HEALTHCHECK and compose's `healthcheck`.
///
/// Exactly one of `http`, `tcp` or `exec` is set. The operator maps it onto the
/// container's readiness, liveness and startup probes (see the README's mapping table).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "relayops.io",
    version = "v1alpha1",
    kind = "HealthPolicy",
    doc = "A health check shared by RelayServices and TestDeployments in its namespace.",
    namespaced,
    status = "HealthPolicyStatus",
    shortname = "hpol",
    category = "relayops",
    printcolumn(name = "Interval", type_ = "string", json_path = ".spec.interval"),
    printcolumn(name = "Retries", type_ = "integer", json_path = ".spec.retries"),
    printcolumn(name = "Used-By", type_ = "integer", json_path = ".status.usedBy"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.http), has(self.tcp), has(self.exec)].filter(x, x).size() == 1").message("exactly one of http, tcp or exec must be set"))]
pub struct HealthPolicySpec {
    /// Probe an HTTP endpoint: 2xx/3xx is healthy, anything else (e.g. 503) is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Probe a TCP port: an accepted connection is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Run a command in the container: exit code 0 is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    /// Time between two checks (Docker `--interval`).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Time after which a single check counts as failed (Docker `--timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Grace period after start during which failures do not count (Docker `--start-period`).
    #[serde(default = "default_start_period")]
    pub start_period: Duration,
    /// Time between two checks during the start period (Docker `--start-interval`): the
    /// startup probe's period, which exists with `restartUnhealthy` and a `startPeriod`.
    /// Defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    /// Consecutive failures before the container counts as unhealthy (Docker `--retries`).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 1, max = 100))]
    pub retries: i32,
    /// Restart a container that turned unhealthy (adds a liveness and a startup probe).
    /// Off by default: an unhealthy pod is only taken out of its Service.
    #[serde(default)]
    pub restart_unhealthy: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_start_period() -> Duration {
    Duration::from_secs(0)
}
fn default_retries() -> i32 {
    3
}

/// An HTTP health endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Request path, e.g. `/health`.
    #[serde(default = "default_health_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// Container port to probe.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `HTTP` or `HTTPS` (certificates are not verified, as with kubelet probes).
    #[serde(default)]
    pub scheme: HttpScheme,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

fn default_health_path() -> String {
    "/health".into()
}

/// URL scheme of an HTTP check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpScheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTPS without certificate verification.
    Https,
}

/// One HTTP header sent with a health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A TCP health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct TcpCheck {
    /// Container port to connect to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// A command health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ExecCheck {
    /// Command and arguments, run without a shell.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
}

/// Observed state of a HealthPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of RelayServices and TestDeployments referencing this policy.
    #[serde(default)]
    pub used_by: i32,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
