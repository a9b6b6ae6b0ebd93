//! The pod template of a service, its hash, and one pod per ordinal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, SeccompProfile, SecretProjection, SecurityContext, TopologySpreadConstraint,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use sha2::{Digest, Sha256};

use super::config::{RenderedConfig, hex};
use super::labels::{
    ANNOTATION_CONFIG_HASH, LABEL_POD_INDEX, LABEL_POD_TEMPLATE_HASH, common_labels, selector_labels,
};
use super::probes::ProbeSet;
use super::storage::{claim_name, volume_name};
use super::{Owner, RenderError, ServiceInput};
use crate::api::{PodMetadata, StorageScope, StorageVolume};

/// Name of the service container in every managed pod.
pub const CONTAINER_NAME: &str = "app";
/// Name of the projected configuration volume.
const CONFIG_VOLUME: &str = "config";

/// The ordinal-independent pod spec of a service and its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct PodTemplate {
    owner: Owner,
    /// The user's extra labels and annotations.
    metadata: PodMetadata,
    spec: PodSpec,
    per_replica_volumes: Vec<String>,
    hash: String,
    config_hash: String,
}

impl PodTemplate {
    /// Build the template. Its hash covers the pod spec, the extra pod labels and
    /// annotations (when set) and the restart-key digest, and nothing else: a change to any
    /// other configuration key leaves it unchanged.
    pub fn new(
        input: ServiceInput<'_>,
        config: &RenderedConfig,
        probes: Option<&ProbeSet>,
    ) -> Result<Self, RenderError> {
        let spec = pod_spec(input, probes);
        let canonical = serde_json::to_vec(&spec)
            .map_err(|e| RenderError::ConfigFormat { format: "json", message: e.to_string() })?;
        let mut hasher = Sha256::new();
        hasher.update(&canonical);
        hasher.update(config.restart_digest.as_bytes());
        // Pods are never updated in place, so their extra labels and annotations are part
        // of the template; fed only when set, so a spec without them hashes as before.
        let metadata = input.spec.pod_template.as_ref().map(|t| t.metadata.clone()).unwrap_or_default();
        if !metadata.is_empty() {
            let canonical = serde_json::to_vec(&metadata)
                .map_err(|e| RenderError::ConfigFormat { format: "json", message: e.to_string() })?;
            hasher.update(b"pod-metadata");
            hasher.update(&canonical);
        }
        let hash = hex(&hasher.finalize())[..10].to_string();
        let per_replica_volumes = input
            .spec
            .storage
            .iter()
            .filter(|v| v.scope == StorageScope::PerReplica)
            .map(|v| v.name.clone())
            .collect();
        Ok(Self {
            owner: input.owner.clone(),
            metadata,
            spec,
            per_replica_volumes,
            hash,
            config_hash: config.hash.clone(),
        })
    }

    /// The template hash (label `relayops.io/pod-template-hash`).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Annotate new pods with `hash` instead (the last good configuration after a canary
    /// rollback: the ConfigMap they mount holds it).
    pub fn set_config_hash(&mut self, hash: &str) {
        hash.clone_into(&mut self.config_hash);
    }

    /// The pod with the given ordinal.
    pub fn pod(&self, ordinal: i32) -> Pod {
        let name = self.owner.pod_name(ordinal);
        // The operator's labels and annotations win over the user's (the CRD rejects
        // those keys in `podTemplate.metadata` anyway).
        let mut labels = self.metadata.labels.clone();
        labels.extend(common_labels(&self.owner));
        labels.insert(LABEL_POD_INDEX.into(), ordinal.to_string());
        labels.insert(LABEL_POD_TEMPLATE_HASH.into(), self.hash.clone());
        let mut annotations = self.metadata.annotations.clone();
        annotations.insert(ANNOTATION_CONFIG_HASH.into(), self.config_hash.clone());
        let mut spec = self.spec.clone();
        spec.hostname = Some(name.clone());
        for volume in spec.volumes.iter_mut().flatten() {
            let Some(claim) = volume.persistent_volume_claim.as_mut() else { continue };
            if self.per_replica_volumes.iter().any(|v| volume_name(v) == volume.name) {
                claim.claim_name = format!("{}-{ordinal}", claim.claim_name);
            }
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.owner.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![self.owner.owner_reference()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }
}

/// Whether an image reference names a fixed version: a digest, or a tag other than `latest`.
pub fn image_is_pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    // The tag is after the last ':' that follows the last '/' (a registry port is not a tag).
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

fn pod_spec(input: ServiceInput<'_>, probes: Option<&ProbeSet>) -> PodSpec {
    let spec = input.spec;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut env = spec.env.clone();

    if let Some(config) = &spec.config {
        volumes.push(config_volume(input.owner, config));
        mounts.push(VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: config.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        env.extend(config.secrets.iter().map(|s| EnvVar {
            name: s.name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(s.secret_key_ref.clone()),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }));
    }
    for volume in &spec.storage {
        volumes.push(storage_volume(input.owner, volume));
        mounts.push(VolumeMount {
            name: volume_name(&volume.name),
            mount_path: volume.mount_path.clone(),
            read_only: volume.read_only.then_some(true),
            ..VolumeMount::default()
        });
    }

    let ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: p.container_port,
            protocol: Some(p.protocol.as_str().into()),
            ..ContainerPort::default()
        })
        .collect();

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().into()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!env.is_empty()).then_some(env),
        env_from: (!spec.env_from.is_empty()).then(|| spec.env_from.clone()),
        ports: (!ports.is_empty()).then_some(ports),
        resources: spec.resources.clone(),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        readiness_probe: probes.map(|p| p.readiness.clone()),
        liveness_probe: probes.and_then(|p| p.liveness.clone()),
        startup_probe: probes.and_then(|p| p.startup.clone()),
        security_context: Some(container_security(spec.security_context.as_deref())),
        ..Container::default()
    };
    // Every field below is `None` unless set, so a spec without them serializes (and
    // hashes) exactly as before they existed.
    let image_pull_secrets: Vec<LocalObjectReference> =
        spec.image_pull_secrets.iter().map(|s| LocalObjectReference { name: s.name.clone() }).collect();
    let spread: Vec<TopologySpreadConstraint> = spec
        .topology_spread_constraints
        .iter()
        .map(|c| TopologySpreadConstraint {
            label_selector: c.label_selector.clone().or_else(|| {
                Some(LabelSelector {
                    match_labels: Some(selector_labels(input.owner)),
                    match_expressions: None,
                })
            }),
            ..c.clone()
        })
        .collect();
    PodSpec {
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        security_context: Some(pod_security(spec.pod_security_context.as_deref())),
        restart_policy: Some("Always".into()),
        enable_service_links: Some(false),
        image_pull_secrets: (!image_pull_secrets.is_empty()).then_some(image_pull_secrets),
        service_account_name: spec.service_account_name.clone(),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.as_deref().cloned(),
        topology_spread_constraints: (!spread.is_empty()).then_some(spread),
        ..PodSpec::default()
    }
}

/// A projected volume holding the ConfigMap (config file + hash) and the Secret-backed keys
/// under `secrets/KEY`, so the kubelet swaps them together.
fn config_volume(owner: &Owner, config: &crate::api::ConfigSpec) -> Volume {
    let mut by_secret: BTreeMap<&str, Vec<KeyToPath>> = BTreeMap::new();
    for entry in &config.secrets {
        by_secret.entry(entry.secret_key_ref.name.as_str()).or_default().push(KeyToPath {
            key: entry.secret_key_ref.key.clone(),
            path: format!("secrets/{}", entry.name),
            mode: None,
        });
    }
    let mut sources = vec![VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: owner.config_map_name(),
            ..ConfigMapProjection::default()
        }),
        ..VolumeProjection::default()
    }];
    sources.extend(by_secret.into_iter().map(|(name, items)| {
        let optional = config
            .secrets
            .iter()
            .filter(|s| s.secret_key_ref.name == name)
            .all(|s| s.secret_key_ref.optional == Some(true));
        VolumeProjection {
            secret: Some(SecretProjection {
                name: name.into(),
                items: Some(items),
                optional: optional.then_some(true),
            }),
            ..VolumeProjection::default()
        }
    }));
    Volume {
        name: CONFIG_VOLUME.into(),
        projected: Some(ProjectedVolumeSource { sources: Some(sources), default_mode: None }),
        ..Volume::default()
    }
}

fn storage_volume(owner: &Owner, volume: &StorageVolume) -> Volume {
    Volume {
        name: volume_name(&volume.name),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            // Per-replica claims get `-ORDINAL` appended by `PodTemplate::pod`.
            claim_name: claim_name(owner, volume, None),
            read_only: volume.read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

/// Restricted Pod Security Standard defaults; any field the user sets wins.
fn pod_security(user: Option<&PodSecurityContext>) -> PodSecurityContext {
    let user = user.cloned().unwrap_or_default();
    PodSecurityContext {
        run_as_non_root: user.run_as_non_root.or(Some(true)),
        seccomp_profile: user
            .seccomp_profile
            .clone()
            .or_else(|| Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None })),
        ..user
    }
}

/// Restricted container defaults; any field the user sets wins.
fn container_security(user: Option<&SecurityContext>) -> SecurityContext {
    let user = user.cloned().unwrap_or_default();
    SecurityContext {
        allow_privilege_escalation: user.allow_privilege_escalation.or(Some(false)),
        capabilities: user
            .capabilities
            .clone()
            .or_else(|| Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None })),
        ..user
    }
}

#[cfg(test)]
mod tests {
    use super::image_is_pinned;

    #[test]
    fn pinned_images() {
        for pinned in [
            "postgres:16.4",
            "ghcr.io/acme/relay:1.4.2",
            "registry:5000/relay:v1",
            "relay@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(image_is_pinned(pinned), "{pinned}");
        }
        for mutable in
            ["postgres", "postgres:latest", "registry:5000/relay", "ghcr.io/acme/relay:latest", "x:"]
        {
            assert!(!image_is_pinned(mutable), "{mutable}");
        }
    }
}
