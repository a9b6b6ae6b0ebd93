//! Writes: server-side apply under one field manager, skipped when the cached object
//! already carries the hash of the desired one; deletes.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Error;
use crate::render::MANAGER;

/// Annotation carrying the hash of the desired object last applied.
pub const ANNOTATION_DESIRED_HASH: &str = "relayops.io/desired-hash";

/// Apply `desired` unless the cached live object already has its hash. Returns whether a
/// request was made.
pub async fn apply_if_changed<K>(client: &Client, cache: &Store<K>, mut desired: K) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let hash = desired_hash(&desired)?;
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let live = cache.get(&ObjectRef::new(&name).within(&namespace));
    if live.as_ref().and_then(|l| l.annotations().get(ANNOTATION_DESIRED_HASH)) == Some(&hash) {
        return Ok(false);
    }
    desired.annotations_mut().insert(ANNOTATION_DESIRED_HASH.into(), hash);
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(Error::Kube)?;
    Ok(true)
}

/// Delete a namespaced object; a missing object is not an error.
pub async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

fn desired_hash<K: Serialize>(desired: &K) -> Result<String, Error> {
    let bytes = serde_json::to_vec(desired).map_err(Error::Serialize)?;
    Ok(Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect())
}
