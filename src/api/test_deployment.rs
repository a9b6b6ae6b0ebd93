//! `TestDeployment`: an ephemeral deployment of a RelayService template with a TTL.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DNS_LABEL_PATTERN, Duration, FailureDetail, LocalRef};
use super::relay_service::{PodEntry, RelayServiceSpec};

/// Desired state of a TestDeployment.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, kube::KubeSchema)]
#[kube(
    group = "relayops.io",
    version = "v1alpha1",
    kind = "TestDeployment",
    doc = "An ephemeral deployment of a RelayService template, deleted after its TTL.",
    namespaced,
    status = "TestDeploymentStatus",
    shortname = "tdep",
    shortname = "testdeploy",
    category = "relayops",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.failure.reason", description = "Why it failed"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    // A string column: kubectl prints a future time in a `date` column as `<invalid>`.
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt", description = "When the deployment expires (UTC)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 49").message("name must be at most 49 characters (pod and claim names are derived from it)"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.template) != has(self.fromRelayService)").message("set exactly one of template or fromRelayService"))]
#[x_kube(validation = Rule::new("!has(self.overrides) || has(self.fromRelayService)").message("overrides apply only with fromRelayService"))]
#[x_kube(validation = Rule::new("!has(self.template) || (!has(self.template.service) && !has(self.template.ingress))").message("a TestDeployment is not exposed: its Service is ClusterIP and it has no Ingress, so template.service and template.ingress are not allowed").field_path(".template"))]
pub struct TestDeploymentSpec {
    /// Inline service template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<RelayServiceSpec>,
    /// Name of a RelayService in this namespace whose spec is copied once, by the first
    /// reconcile that finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_LABEL_PATTERN))]
    pub from_relay_service: Option<String>,
    /// Changes applied to the copied spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TemplateOverrides>,
    /// Lifetime, counted from creation; afterwards everything it created is deleted.
    #[serde(default = "default_ttl")]
    pub ttl: Duration,
    /// Time allowed to become Ready before the deployment is `Failed`.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
    /// Stop the pods, keep everything else; resumable.
    #[serde(default)]
    pub suspend: bool,
    /// Delete this TestDeployment itself on expiry instead of keeping it as a record.
    #[serde(default)]
    pub delete_on_expiry: bool,
    /// HealthPolicy to use (overrides the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_policy_ref: Option<LocalRef>,
}

fn default_ttl() -> Duration {
    Duration::from_secs(86400)
}
fn default_progress_deadline() -> Duration {
    Duration::from_secs(600)
}

/// Changes applied to a copied RelayService spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateOverrides {
    /// Replacement image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Environment variables added or replaced by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Configuration keys added or replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Replacement replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
}

/// Lifecycle phase of a TestDeployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TestDeploymentPhase {
    /// Objects not created yet (or blocked by a problem, see the conditions).
    #[default]
    Pending,
    /// Pods exist, not all Ready.
    Deploying,
    /// All pods Ready.
    Running,
    /// Image pull errors, crash loops or no readiness within `progressDeadline`.
    Failed,
    /// Suspended, or scaled to 0 replicas.
    Stopped,
    /// TTL passed; everything created was deleted.
    Expired,
}

impl TestDeploymentPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [TestDeploymentPhase; 6] =
        [Self::Pending, Self::Deploying, Self::Running, Self::Failed, Self::Stopped, Self::Expired];

    /// The serialized name, e.g. `Running`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Deploying => "Deploying",
            Self::Running => "Running",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
            Self::Expired => "Expired",
        }
    }
}

/// Observed state of a TestDeployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: TestDeploymentPhase,
    /// In-cluster URL, `http://NAME-td.NAMESPACE.svc:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the first pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When all pods first became Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
    /// When the TTL runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDetail>,
    /// One entry per pod: ready, restarts, image digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodEntry>,
    /// Conditions: Ready, Failed, Expired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
