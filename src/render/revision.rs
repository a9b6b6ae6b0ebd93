//! The ControllerRevision that keeps one revision of a service (see [`crate::history`]).

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use super::Owner;
use super::labels::owned_meta;
use crate::history::{ANNOTATION_REVISION_GENERATION, LABEL_REVISION_HASH, Snapshot, revision_name};

/// The ControllerRevision `NAME-HASH` holding `snapshot` as revision `number`, owned by
/// `owner`; `generation` is the one whose spec produced it.
pub fn render_revision(
    owner: &Owner,
    snapshot: &Snapshot,
    number: i64,
    generation: Option<i64>,
) -> ControllerRevision {
    let hash = snapshot.hash();
    let mut metadata = owned_meta(owner, revision_name(&owner.base_name(), &hash));
    metadata.labels.get_or_insert_default().insert(LABEL_REVISION_HASH.into(), hash);
    if let Some(generation) = generation {
        metadata.annotations =
            Some([(ANNOTATION_REVISION_GENERATION.to_string(), generation.to_string())].into());
    }
    ControllerRevision { metadata, data: Some(RawExtension(snapshot.data())), revision: number }
}
