//! PersistentVolumeClaims of a service's storage volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::labels::{LABEL_POD_INDEX, LABEL_VOLUME, owned_meta};
use super::{Owner, OwnerKind};
use crate::api::{RelayServiceSpec, Retention, StorageScope, StorageVolume};

/// Pod volume name of a storage volume.
pub fn volume_name(volume: &str) -> String {
    format!("storage-{volume}")
}

/// Claim name: `VOLUME-BASE` (shared) or `VOLUME-BASE-ORDINAL` (per replica), as a StatefulSet names them.
pub fn claim_name(owner: &Owner, volume: &StorageVolume, ordinal: Option<i32>) -> String {
    match ordinal {
        Some(ordinal) => format!("{}-{}-{ordinal}", volume.name, owner.base_name()),
        None => format!("{}-{}", volume.name, owner.base_name()),
    }
}

/// Whether claims of `volume` are deleted with their owner (and so carry an owner reference).
/// TestDeployment storage is always ephemeral.
pub fn deleted_with_owner(owner: &Owner, volume: &StorageVolume) -> bool {
    owner.kind == OwnerKind::TestDeployment || volume.retention.when_deleted == Retention::Delete
}

/// Every claim for `replicas` ordinals: shared claims first, then per-replica ones by ordinal.
pub fn render_claims(owner: &Owner, spec: &RelayServiceSpec, replicas: i32) -> Vec<PersistentVolumeClaim> {
    let shared =
        spec.storage.iter().filter(|v| v.scope == StorageScope::Shared).map(|v| claim(owner, v, None));
    let per_replica = (0..replicas).flat_map(|ordinal| {
        spec.storage
            .iter()
            .filter(|v| v.scope == StorageScope::PerReplica)
            .map(move |v| claim(owner, v, Some(ordinal)))
    });
    shared.chain(per_replica).collect()
}

fn claim(owner: &Owner, volume: &StorageVolume, ordinal: Option<i32>) -> PersistentVolumeClaim {
    let mut metadata = owned_meta(owner, claim_name(owner, volume, ordinal));
    if !deleted_with_owner(owner, volume) {
        // Retained claims outlive their owner and are re-adopted by name.
        metadata.owner_references = None;
    }
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(LABEL_VOLUME.into(), volume.name.clone());
        if let Some(ordinal) = ordinal {
            labels.insert(LABEL_POD_INDEX.into(), ordinal.to_string());
        }
    }
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(volume.access_modes.iter().map(|m| m.as_str().to_string()).collect()),
            storage_class_name: volume.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(volume.size.clone()))])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
