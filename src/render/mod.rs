//! Pure rendering: a service spec (plus its resolved HealthPolicy and Secrets) → the
//! Kubernetes objects the operator owns. No I/O; same input, same output.
//!
//! Used by `relay-operator render` offline and by the controller before it applies.

mod config;
mod ingress;
mod labels;
mod pod;
mod probes;
mod revision;
mod service;
mod storage;
mod template;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::api::{HealthPolicySpec, RelayServiceSpec};

pub use config::{CONFIG_HASH_KEY, RenderedConfig, owned_config_map, render_config};
pub use labels::{
    ANNOTATION_CONFIG_HASH, LABEL_OWNER_KIND, LABEL_POD_INDEX, LABEL_POD_TEMPLATE_HASH, LABEL_SERVICE,
    LABEL_VOLUME, MANAGER, selector_string,
};
pub use pod::{CONTAINER_NAME, PodTemplate, image_is_pinned};
pub use probes::{ProbeSet, probes_for};
pub use revision::render_revision;
pub use template::effective_spec;

/// Which kind of resource owns the rendered objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnerKind {
    /// A RelayService: children named after it.
    RelayService,
    /// A TestDeployment: children named `NAME-td`, storage always deleted with it.
    TestDeployment,
}

impl OwnerKind {
    /// The `kind` of the owner.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RelayService => "RelayService",
            Self::TestDeployment => "TestDeployment",
        }
    }
}

/// Identity of the owning custom resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Kind of the owner.
    pub kind: OwnerKind,
    /// Name of the owner.
    pub name: String,
    /// Namespace of the owner and of every child.
    pub namespace: String,
    /// UID of the owner (absent offline, before the API server assigned one).
    pub uid: Option<String>,
}

/// UID used in owner references when rendering offline, before the API server assigned one.
pub const OFFLINE_UID: &str = "00000000-0000-0000-0000-000000000000";

impl Owner {
    /// Base name of every child: the owner's name, or `NAME-td` for a TestDeployment.
    pub fn base_name(&self) -> String {
        match self.kind {
            OwnerKind::RelayService => self.name.clone(),
            OwnerKind::TestDeployment => format!("{}-td", self.name),
        }
    }

    /// Name of the pod with the given ordinal.
    pub fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.base_name())
    }

    /// Name of the owned ConfigMap.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.base_name())
    }

    /// The controller owner reference put on owned children.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            kind: self.kind.as_str().into(),
            name: self.name.clone(),
            uid: self.uid.clone().unwrap_or_else(|| OFFLINE_UID.into()),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Everything a service's children are rendered from.
#[derive(Clone, Copy, Debug)]
pub struct ServiceInput<'a> {
    /// The owning resource.
    pub owner: &'a Owner,
    /// The service spec (a RelayService's, or a TestDeployment's resolved template).
    pub spec: &'a RelayServiceSpec,
    /// The health check: the referenced HealthPolicy's spec or the inline one.
    pub health: Option<&'a HealthPolicySpec>,
    /// Referenced Secrets' data by Secret name, then key (needed for the config hash).
    pub secrets: &'a SecretData,
}

/// Secret contents by Secret name, then key.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// The desired children of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedService {
    /// The owned ConfigMap (absent when the spec has no `config`).
    pub config_map: Option<ConfigMap>,
    /// The Service (absent when the spec declares no ports).
    pub service: Option<Service>,
    /// The Ingress (absent without `spec.ingress`).
    pub ingress: Option<Ingress>,
    /// Claims: shared ones, then per-replica ones by ordinal.
    pub claims: Vec<PersistentVolumeClaim>,
    /// The pods' template; [`RenderedService::pod`] makes the pod of one ordinal.
    pub template: PodTemplate,
    /// Pods wanted: ordinals `0..replicas` (0 when suspended).
    pub replicas: i32,
    /// sha256 of the canonical configuration (a service without `config` has one too).
    pub config_hash: String,
    /// Short hash of the pod template and of the values of restart keys.
    pub pod_template_hash: String,
    /// Label selector of the pods, `key=value`.
    pub selector: String,
}

/// Why a spec cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// A referenced Secret or Secret key is missing.
    #[error("{field}: Secret {secret:?} has no key {key:?}")]
    MissingSecretKey {
        /// Field path.
        field: String,
        /// Secret name.
        secret: String,
        /// Key in the Secret.
        key: String,
    },
    /// A referenced Secret does not exist.
    #[error("{field}: Secret {secret:?} not found")]
    MissingSecret {
        /// Field path.
        field: String,
        /// Secret name.
        secret: String,
    },
    /// A restart key names no configuration key.
    #[error("{field}: {key:?} is not a key of config.data or config.secrets")]
    UnknownRestartKey {
        /// Field path.
        field: String,
        /// The key.
        key: String,
    },
    /// The configuration cannot be serialized in its format.
    #[error("spec.config: cannot render as {format}: {message}")]
    ConfigFormat {
        /// The format.
        format: &'static str,
        /// Serializer message.
        message: String,
    },
}

impl RenderError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSecretKey { .. } => "SecretKeyNotFound",
            Self::MissingSecret { .. } => "SecretNotFound",
            Self::UnknownRestartKey { .. } => "UnknownRestartKey",
            Self::ConfigFormat { .. } => "InvalidConfig",
        }
    }
}

/// Render every child of one service.
pub fn render_service(input: ServiceInput<'_>) -> Result<RenderedService, RenderError> {
    let config = render_config(input.owner, input.spec, input.secrets)?;
    let probes = input.health.map(probes_for);
    let template = pod::PodTemplate::new(input, &config, probes.as_ref())?;
    let replicas = if input.spec.suspend { 0 } else { input.spec.replicas.max(0) };
    Ok(RenderedService {
        config_map: config.config_map.clone(),
        service: service::render_service_object(input.owner, input.spec),
        ingress: ingress::render_ingress(input.owner, input.spec),
        claims: storage::render_claims(input.owner, input.spec, input.spec.replicas.max(0)),
        config_hash: config.hash.clone(),
        pod_template_hash: template.hash().to_string(),
        selector: labels::selector_string(input.owner),
        template,
        replicas,
    })
}

impl RenderedService {
    /// The pod of `ordinal`, if the service wants it. Pods are made on demand: a
    /// reconcile creates a few, and rendering all of a large service's pods each pass
    /// would cost more than the rest of the reconcile.
    pub fn pod(&self, ordinal: i32) -> Option<Pod> {
        (0..self.replicas).contains(&ordinal).then(|| self.template.pod(ordinal))
    }

    /// Every wanted pod, by ordinal (empty when suspended).
    pub fn pods(&self) -> Vec<Pod> {
        (0..self.replicas).map(|ordinal| self.template.pod(ordinal)).collect()
    }
}
