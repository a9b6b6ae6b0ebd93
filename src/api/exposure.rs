//! How a RelayService is reached and how its pods are labelled: the Service type, an
//! optional Ingress, and extra pod labels and annotations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Syntax of a label value.
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// Extra metadata of every pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PodTemplate {
    /// Labels and annotations added to every pod.
    #[serde(default)]
    pub metadata: PodMetadata,
}

/// Labels and annotations added to every pod, next to the operator's own.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, kube::KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.labels) || self.labels.all(k, !k.startsWith('relayops.io/') && !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by']))").message("labels app.kubernetes.io/name, app.kubernetes.io/instance, app.kubernetes.io/managed-by and relayops.io/* are set by the operator").field_path(".labels"))]
#[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, !k.startsWith('relayops.io/'))").message("annotations relayops.io/* are set by the operator").field_path(".annotations"))]
#[x_kube(validation = Rule::new("!has(self.labels) || self.labels.all(k, k.matches('^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))").message("label keys are NAME or PREFIX/NAME: NAME at most 63 characters of [-A-Za-z0-9_.], PREFIX a DNS subdomain").field_path(".labels"))]
#[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, k.matches('^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))").message("annotation keys are NAME or PREFIX/NAME: NAME at most 63 characters of [-A-Za-z0-9_.], PREFIX a DNS subdomain").field_path(".annotations"))]
pub struct PodMetadata {
    /// Labels added to every pod (values: at most 63 characters of `[-A-Za-z0-9_.]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadata {
    /// Whether no label or annotation is set.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// How the Service in front of the pods is exposed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, kube::KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, !k.startsWith('relayops.io/'))").message("annotations relayops.io/* are set by the operator").field_path(".annotations"))]
pub struct ServiceExposure {
    /// `ClusterIP` (inside the cluster only), `NodePort` (also on a port of every node) or
    /// `LoadBalancer` (also through the cloud's load balancer).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations of the Service, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

/// Type of the Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster.
    #[default]
    ClusterIP,
    /// Also on a port allocated on every node.
    NodePort,
    /// Also through an external load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// An Ingress routing a host and path to one port of the Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, !k.startsWith('relayops.io/'))").message("annotations relayops.io/* are set by the operator").field_path(".annotations"))]
#[x_kube(validation = Rule::new("!has(self.tlsSecretName) || has(self.host)").message("tlsSecretName needs a host").field_path(".tlsSecretName"))]
pub struct IngressSpec {
    /// Host name the rule matches, e.g. `relay.example.com` or `*.example.com` (all hosts
    /// when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: Option<String>,
    /// Path routed to the service.
    #[serde(default = "default_ingress_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// How `path` matches.
    #[serde(default)]
    pub path_type: PathType,
    /// Name of the port in `ports` traffic goes to (default: the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port: Option<String>,
    /// Secret holding the TLS certificate and key for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = super::common::DNS_SUBDOMAIN_PATTERN))]
    pub tls_secret_name: Option<String>,
    /// IngressClass (the cluster's default class when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub class_name: Option<String>,
    /// Annotations of the Ingress, e.g. for the ingress controller or cert-manager.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

fn default_ingress_path() -> String {
    "/".into()
}

/// How an Ingress path matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PathType {
    /// By path segments: `/api` matches `/api` and `/api/v1`.
    #[default]
    Prefix,
    /// Exactly this path.
    Exact,
    /// As the ingress controller decides.
    ImplementationSpecific,
}

impl PathType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefix => "Prefix",
            Self::Exact => "Exact",
            Self::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}
