//! `RelayService`: a long-running network service managed as ordinal pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, PodSecurityContext, ResourceRequirements, SecretKeySelector,
    SecurityContext, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, Duration, FailureDetail, LocalRef};
use super::exposure::{IngressSpec, PodTemplate, ServiceExposure};
use super::health_policy::HealthPolicySpec;

// The large optional parts are boxed: every RelayService is cached, and most leave them unset
// (the spec is ~700 bytes instead of 2,144).
/// Desired state of a RelayService.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, kube::KubeSchema)]
#[kube(
    group = "relayops.io",
    version = "v1alpha1",
    kind = "RelayService",
    doc = "A long-running network service: ordinal pods, a Service, claims and a ConfigMap with hot reload.",
    namespaced,
    status = "RelayServiceStatus",
    shortname = "rsvc",
    shortname = "relaysvc",
    category = "relayops",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready", description = "Ready pods / desired pods"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Config", type_ = "string", json_path = ".status.conditions[?(@.type==\"ConfigInSync\")].reason", description = "Whether every pod runs the desired configuration"),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.currentRevision", description = "The revision the pods run (see status.revisions)"),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 52").message("name must be at most 52 characters (pod and claim names are derived from it)"),
    validation = Rule::new("!self.metadata.name.endsWith('-td')").message("names ending in -td are reserved for the children of TestDeployments"),
    validation = Rule::new("!has(self.spec.dependsOn) || !self.spec.dependsOn.exists(d, d == self.metadata.name)").message("a service cannot depend on itself").field_path(".spec.dependsOn"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.healthPolicyRef) && has(self.health))").message("set either healthPolicyRef or health, not both"))]
#[x_kube(validation = Rule::new("!has(self.ingress) || (has(self.ports) && size(self.ports) > 0)").message("an ingress needs a port: declare one in ports").field_path(".ingress"))]
#[x_kube(validation = Rule::new("!has(self.ingress) || !has(self.ingress.port) || !has(self.ports) || self.ports.exists(p, p.name == self.ingress.port)").message("ingress.port must name one of ports").field_path(".ingress.port"))]
#[x_kube(validation = Rule::new("!has(self.service) || (has(self.ports) && size(self.ports) > 0)").message("service needs a port: without ports there is no Service").field_path(".service"))]
pub struct RelayServiceSpec {
    /// Container image. Pin a tag or digest: `:latest` and untagged images are reported.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy (Kubernetes default applies when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables, as in a Pod's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Sources of environment variables, as in a Pod's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Named ports; each becomes a container port and a port of the Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<ServicePort>,
    /// Compute resources of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Number of pods (`NAME-0` … `NAME-(n-1)`).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Stop all pods; configuration, Service and storage are kept.
    #[serde(default)]
    pub suspend: bool,
    /// Configuration rendered into the owned ConfigMap and mounted as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSpec>,
    /// Reload hook that applies configuration changes without restarting pods.
    /// Without it every configuration change replaces the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Box<ReloadSpec>>,
    /// A HealthPolicy in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_policy_ref: Option<LocalRef>,
    /// Inline health check (instead of `healthPolicyRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Box<HealthPolicySpec>>,
    /// Named volumes backed by PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub storage: Vec<StorageVolume>,
    /// RelayServices in this namespace that must be Ready before pods are created or rolled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 32), inner(length(max = 63), regex(pattern = DNS_LABEL_PATTERN)))]
    pub depends_on: Vec<String>,
    /// How pods are replaced when their template changes.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    /// Pod-level security settings; fields set here override the restricted defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<Box<PodSecurityContext>>,
    /// Container-level security settings; fields set here override the restricted defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Box<SecurityContext>>,
    /// Secrets with registry credentials for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub image_pull_secrets: Vec<LocalRef>,
    /// Service account the pods run as (the namespace's `default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,
    /// Labels and annotations added to every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplate>,
    /// Node labels a node must have to run the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate, as in a Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity, as in a Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Box<Affinity>>,
    /// How pods spread over zones or nodes, as in a Pod; a constraint without
    /// `labelSelector` counts this service's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// How the Service is exposed (default `ClusterIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceExposure>,
    /// An Ingress routing a host and path to a port of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Box<IngressSpec>>,
    /// How many revisions (applied combinations of configuration and pod template) are
    /// kept for rollback, the current one included (default 10). A TestDeployment keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: Option<i32>,
}

fn default_replicas() -> i32 {
    1
}

/// Revisions kept when `revisionHistoryLimit` is unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Image pull policy of the container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when not present on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// A named port of the service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name (IANA service name syntax, at most 15 characters), e.g. `http`.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Port the container listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    /// Port of the Service (defaults to `containerPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub service_port: Option<i32>,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: PortProtocol,
}

/// Transport protocol of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PortProtocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl PortProtocol {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// Configuration rendered into the owned ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.format != 'env' || !has(self.data) || self.data.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("with format env every key must be a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"))]
#[x_kube(validation = Rule::new("!has(self.secrets) || !has(self.data) || !self.secrets.exists(s, s.name in self.data)").message("a key is either in data or in secrets, not both"))]
pub struct ConfigSpec {
    /// File format of the rendered configuration.
    #[serde(default)]
    pub format: ConfigFormat,
    /// Directory the configuration is mounted at.
    #[serde(default = "default_mount_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub mount_path: String,
    /// File name of the rendered configuration (default `config.env`, `config.json` or `config.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub file_name: Option<String>,
    /// Non-sensitive keys and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub data: BTreeMap<String, String>,
    /// Sensitive keys taken from Secrets: injected as environment variables and mounted as
    /// files under `MOUNT_PATH/secrets/KEY`, never copied into the ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(max = 64))]
    pub secrets: Vec<SecretConfigKey>,
}

fn default_mount_path() -> String {
    "/etc/relay".into()
}

/// File format of the rendered configuration.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    /// `KEY=value` lines, like a docker-compose `.env` file.
    #[default]
    Env,
    /// A JSON object of strings.
    Json,
    /// A YAML mapping of strings.
    Yaml,
}

/// A configuration key whose value comes from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretConfigKey {
    /// Key name, used as the environment variable and file name.
    #[schemars(length(max = 253), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// The Secret key holding the value.
    pub secret_key_ref: SecretKeySelector,
}

/// The reload hook (see "The reload protocol" in the README).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadSpec {
    /// Path of the hook.
    #[serde(default = "default_reload_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// Container port of the hook.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// HTTP method.
    #[serde(default)]
    pub method: ReloadMethod,
    /// Timeout of one hook call.
    #[serde(default = "default_reload_timeout")]
    pub timeout: Duration,
    /// Keys that cannot be hot-reloaded: changing one replaces the pods in a rolling way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub restart_keys: Vec<String>,
    /// What to do with a pod whose hook keeps failing.
    #[serde(default)]
    pub on_failure: ReloadFailurePolicy,
    /// How long a failing hook is retried (with backoff) before `onFailure` applies.
    #[serde(default = "default_retry_deadline")]
    pub retry_deadline: Duration,
    /// Delay between nudging a pod and calling a hook that does not echo `configHash`,
    /// so the kubelet has refreshed the mounted file first.
    #[serde(default = "default_settle_delay")]
    pub settle_delay: Duration,
    /// How long a new configuration must stay the desired one before it is written and
    /// reloaded: changes within the window become one reload (`0s` turns it off). No pod is
    /// created or replaced while a change is held.
    #[serde(default = "default_debounce")]
    pub debounce: Duration,
    /// Bearer token sent as `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeySelector>,
    /// Try a new configuration on a few pods first and revert it when they fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
}

/// A canary configuration rollout: the new configuration is reloaded on the canary pods
/// (the highest ordinals) and watched for `hold` before it reaches the others; a failing
/// hook, a canary turning unready or an unhealthy health endpoint reverts it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.pods) || string(self.pods).matches('^([1-9][0-9]{0,5}|([1-9][0-9]?|100)%)$')").message("pods must be a count of at least 1 or a percentage from 1% to 100%, such as 2 or \"25%\"").field_path(".pods"))]
pub struct CanarySpec {
    /// How many pods: a number (`1`) or a percentage of the replicas (`"25%"`, rounded up).
    /// At least one pod.
    #[serde(default)]
    pub pods: CanaryPods,
    /// How long the canaries must stay Ready and healthy after reloading.
    #[serde(default = "default_canary_hold")]
    pub hold: Duration,
}

fn default_canary_hold() -> Duration {
    Duration::from_secs(60)
}

/// A pod count or a percentage of the replicas (`x-kubernetes-int-or-string`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryPods {
    /// That many pods.
    Count(u32),
    /// That percentage of the replicas, rounded up.
    Percent(u32),
}

impl Default for CanaryPods {
    fn default() -> Self {
        Self::Count(1)
    }
}

impl CanaryPods {
    /// The number of canaries among `replicas` pods: at least one, at most all.
    pub fn of(self, replicas: usize) -> usize {
        let wanted = match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => (replicas * p as usize).div_ceil(100),
        };
        wanted.clamp(1, replicas.max(1))
    }
}

impl Serialize for CanaryPods {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_u32(*n),
            Self::Percent(p) => serializer.collect_str(&format_args!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for CanaryPods {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        let invalid = |text: &str| {
            serde::de::Error::custom(format!(
                "invalid canary pods {text:?}: write a count such as 1 or a percentage such as \"25%\""
            ))
        };
        match Raw::deserialize(deserializer)? {
            Raw::Int(0) => Err(invalid("0")),
            Raw::Int(n) => Ok(Self::Count(n)),
            // A quoted count ("2") is a count, as the schema's rule accepts it.
            Raw::Text(text) => match text.strip_suffix('%').map(|p| p.parse::<u32>()) {
                Some(Ok(p)) if (1..=100).contains(&p) => Ok(Self::Percent(p)),
                None if text.parse::<u32>().is_ok_and(|n| n > 0) => {
                    text.parse().map(Self::Count).map_err(|_| invalid(&text))
                }
                _ => Err(invalid(&text)),
            },
        }
    }
}

impl JsonSchema for CanaryPods {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CanaryPods".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"x-kubernetes-int-or-string": true})
    }
}

fn default_reload_path() -> String {
    "/reload-config".into()
}
fn default_reload_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_deadline() -> Duration {
    Duration::from_secs(120)
}
fn default_settle_delay() -> Duration {
    Duration::from_secs(10)
}
fn default_debounce() -> Duration {
    Duration::from_secs(2)
}

/// HTTP method of the reload hook.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReloadMethod {
    /// POST (the default, as in the seeds' relay).
    #[default]
    Post,
    /// PUT.
    Put,
}

/// What happens to a pod whose reload hook keeps failing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReloadFailurePolicy {
    /// Delete the pod; it comes back with the new configuration.
    #[default]
    Restart,
    /// Leave the pod running its old configuration (reported in status).
    Ignore,
}

/// A named persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageVolume {
    /// Volume name (DNS label).
    #[schemars(length(min = 1, max = 40), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Requested size, a Kubernetes quantity such as `1Gi`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Storage class (cluster default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access modes of the claim.
    #[serde(default = "default_access_modes")]
    #[schemars(length(min = 1))]
    pub access_modes: Vec<AccessMode>,
    /// Where the volume is mounted in the container.
    #[schemars(regex(pattern = r"^/"))]
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
    /// One claim per pod (`PerReplica`) or one claim for all pods (`Shared`).
    #[serde(default)]
    pub scope: StorageScope,
    /// What happens to the claims when the service is deleted or scaled down.
    #[serde(default)]
    pub retention: RetentionPolicy,
}

fn default_access_modes() -> Vec<AccessMode> {
    vec![AccessMode::ReadWriteOnce]
}

/// Access mode of a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    /// Mounted read-write by one node.
    ReadWriteOnce,
    /// Mounted read-only by many nodes.
    ReadOnlyMany,
    /// Mounted read-write by many nodes.
    ReadWriteMany,
    /// Mounted read-write by one pod.
    ReadWriteOncePod,
}

impl AccessMode {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadOnlyMany => "ReadOnlyMany",
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}

/// Whether each pod gets its own claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StorageScope {
    /// One claim per ordinal: `VOLUME-NAME-0`, `VOLUME-NAME-1`, …
    #[default]
    PerReplica,
    /// One claim `VOLUME-NAME` mounted by every pod.
    Shared,
}

/// Claim retention, like a StatefulSet's `persistentVolumeClaimRetentionPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// What happens to the claims when the service is deleted.
    #[serde(default)]
    pub when_deleted: Retention,
    /// What happens to the claims of removed ordinals when the service is scaled down.
    #[serde(default)]
    pub when_scaled: Retention,
}

/// Keep or delete a claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Retention {
    /// Keep the claim and its data.
    #[default]
    Retain,
    /// Delete the claim.
    Delete,
}

/// How outdated pods are replaced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// Most pods that may be unavailable during a rolling replacement.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
    /// How long a pod of a new pod template may take to become Ready, from its creation,
    /// before the rollout is reported stuck (`Progressing=False/ProgressDeadlineExceeded`).
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
    /// What happens when a rollout exceeds its progress deadline: `manual` reports it and
    /// waits for a fixed spec; `auto` also asks for the previous pod template back.
    #[serde(default)]
    pub rollback: RollbackPolicy,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
            progress_deadline: default_progress_deadline(),
            rollback: RollbackPolicy::default(),
        }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

fn default_progress_deadline() -> Duration {
    Duration::from_secs(600)
}

/// What happens when a rollout exceeds its progress deadline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollbackPolicy {
    /// Report it (condition and Event) and wait for the spec to be fixed.
    #[default]
    Manual,
    /// Report it and restore the pod template of the last completed rollout.
    Auto,
}

/// Observed state of a RelayService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Desired configuration hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Pods that have applied the desired configuration.
    #[serde(default)]
    pub config_synced_replicas: i32,
    /// Current pod-template hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    /// Pod-template hash of the last rollout that completed (every desired pod ran it and
    /// was Ready). While `podTemplateHash` differs, a rollout is in progress and
    /// `updateStrategy.progressDeadline` applies to its new pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_pod_template_hash: Option<String>,
    /// Image digest the pods run (from `containerStatuses[].imageID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// One entry per pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodEntry>,
    /// The revision the pods run (`kubectl get` column `Revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    /// The kept revisions, oldest application first; the last one is the current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionEntry>,
    /// The last rollback request handled (annotation `relayops.io/rollback-to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Box<RollbackStatus>>,
    /// The last canary configuration rollout (`reload.canary`): under way, passed or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Box<CanaryStatus>>,
    /// Conditions: Ready, Progressing, ConfigInSync, DependenciesReady, Degraded, ImagePinned,
    /// ConfigRolledBack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A canary configuration rollout, durable: a restarted operator resumes it, and a rolled
/// back configuration is not tried again until the spec renders another one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The configuration on trial (or rolled back).
    pub config_hash: String,
    /// The last good configuration, kept in the ConfigMap `NAME-config-last-good`.
    pub previous_config_hash: String,
    /// Where the rollout stands.
    pub phase: CanaryPhase,
    /// The canary pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// When the rollout started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When every canary had applied the configuration: the hold counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_since: Option<String>,
    /// When it passed or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Why it was rolled back: `CanaryHookFailed`, `CanaryNotReady` or `CanaryUnhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What failed, with the health endpoint's answer when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a canary configuration rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CanaryPhase {
    /// The canaries' hooks are being called.
    #[default]
    Reloading,
    /// Every canary applied it; they are watched for `hold`.
    Holding,
    /// The hold passed: the configuration goes to every pod.
    Passed,
    /// A canary failed: the last good configuration was restored.
    RolledBack,
}

impl CanaryPhase {
    /// Still deciding (the other pods wait).
    pub const fn in_progress(self) -> bool {
        matches!(self, Self::Reloading | Self::Holding)
    }
}

/// Observed state of one managed pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodEntry {
    /// Pod name.
    pub name: String,
    /// Whether the pod is Ready.
    #[serde(default)]
    pub ready: bool,
    /// Configuration hash the pod has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Container restarts.
    #[serde(default)]
    pub restarts: i32,
    /// Image digest the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Result of the last reload hook call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<Box<ReloadResult>>,
    /// Why the pod is not Ready, when something is wrong rather than just starting: the
    /// kubelet's reason and message, the log tail of a crash loop, or the health endpoint's
    /// answer when the readiness check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Box<FailureDetail>>,
}

/// How a pod's reload ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReloadOutcome {
    /// The app answered 2xx and echoed the hash it was sent.
    Applied,
    /// The app answered 2xx without echoing a hash (the seed relay's contract).
    AppliedUnverified,
    /// The hook kept failing until `retryDeadline`, or could not be called.
    #[default]
    Failed,
}

impl ReloadOutcome {
    /// The value as written in status and in the `relayops.io/reload-result` annotation.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "Applied",
            Self::AppliedUnverified => "AppliedUnverified",
            Self::Failed => "Failed",
        }
    }

    /// Read an annotation value; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Applied, Self::AppliedUnverified, Self::Failed].into_iter().find(|o| o.as_str() == text)
    }

    /// The pod took the configuration.
    pub const fn succeeded(self) -> bool {
        matches!(self, Self::Applied | Self::AppliedUnverified)
    }
}

/// Outcome of a reload hook call.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadResult {
    /// How the reload ended.
    pub result: ReloadOutcome,
    /// Hash the call was for.
    pub config_hash: String,
    /// When the result was recorded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Detail, e.g. the HTTP status or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One kept revision: an applied combination of configuration and pod template, stored as
/// the ControllerRevision `NAME-HASH`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionEntry {
    /// Revision number (1, 2, …; a number always names the same content).
    pub revision: i64,
    /// Hash of the revision's content (the ControllerRevision is `NAME-HASH`).
    pub hash: String,
    /// The `metadata.generation` whose spec produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When it was last applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// What became of it.
    #[serde(default)]
    pub outcome: RevisionOutcome,
}

/// What became of a revision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RevisionOutcome {
    /// The pods run it now.
    Current,
    /// It was applied, then superseded by a change of the spec.
    #[default]
    Applied,
    /// A rollback replaced it with an earlier revision.
    RolledBack,
}

/// A handled rollback request. While the spec's configuration and pod template stay as they
/// were when it was made (`specHash`), the operator renders from revision `revision` instead
/// of the spec; a change to them ends the rollback.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// The annotation value handled (each distinct value is handled once).
    pub request: String,
    /// The revision rolled back to (absent when the request failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Hash of that revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Revision hash of the spec when the rollback was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// When the request was handled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Why the request failed, or that the rollback ended because the spec changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The value of the annotation `relayops.io/rollback-to` last handled (`request` when
    /// unset). An automatic rollback (`updateStrategy.rollback: auto`) keeps it, so the
    /// annotation still counts as handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_pods_are_a_count_or_a_percentage() {
        let read = |v: serde_json::Value| serde_json::from_value::<CanaryPods>(v);
        assert_eq!(read(serde_json::json!(2)).unwrap(), CanaryPods::Count(2));
        assert_eq!(read(serde_json::json!("2")).unwrap(), CanaryPods::Count(2));
        assert_eq!(read(serde_json::json!("25%")).unwrap(), CanaryPods::Percent(25));
        for bad in
            [serde_json::json!(0), serde_json::json!("0%"), serde_json::json!("101%"), serde_json::json!("a")]
        {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(CanaryPods::Percent(25)).unwrap(), serde_json::json!("25%"));
        assert_eq!(serde_json::to_value(CanaryPods::Count(3)).unwrap(), serde_json::json!(3));
    }
}
