//! Every object write the controllers make — the only module that changes objects through the
//! API: server-side apply of children (skipped when the cached object already carries the
//! hash of the desired one), pod creation, deletes, metadata patches, status, Events — and the
//! one read past the cache that a write needs (an object a create found existing).
//! Each failure names the write that failed.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::context::Context;
use super::{Error, Write};
use crate::render::MANAGER;

/// Annotation carrying the hash of the desired object last applied.
pub const ANNOTATION_DESIRED_HASH: &str = "relayops.io/desired-hash";

/// A namespaced kind the controllers write.
pub trait Namespaced:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
{
}

fn write<K: Resource<DynamicType = ()>>(verb: &'static str, namespace: &str, name: &str) -> Write {
    Write { verb, kind: K::kind(&()).into_owned(), namespace: namespace.to_owned(), name: name.to_owned() }
}

/// Apply `desired` unless the cached live object already has its hash. Returns whether a
/// request was made.
pub async fn apply_if_changed<K: Namespaced>(
    ctx: &Context,
    cache: &Store<K>,
    mut desired: K,
) -> Result<bool, Error> {
    let hash = desired_hash(&desired)?;
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let live = cache.get(&ObjectRef::new(&name).within(&namespace));
    if live.as_ref().and_then(|l| l.annotations().get(ANNOTATION_DESIRED_HASH)) == Some(&hash) {
        return Ok(false);
    }
    desired.annotations_mut().insert(ANNOTATION_DESIRED_HASH.into(), hash);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(|e| write::<K>("apply", &namespace, &name).failed(e))?;
    Ok(true)
}

/// Create a pod as rendered. A create, never an apply: a pod that already exists (the
/// cache has not seen it yet) is left exactly as it is — its reload record included — and
/// `false` is returned.
pub async fn create_pod(ctx: &Context, pod: &Pod) -> Result<bool, Error> {
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    match api.create(&params, pod).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(write::<Pod>("create", &namespace, &name).failed(e)),
    }
}

/// Create a namespaced object; `false` when one of that name already exists (left as it is).
pub async fn create<K: Namespaced>(ctx: &Context, object: &K) -> Result<bool, Error> {
    let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    match api.create(&params, object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(write::<K>("create", &namespace, &name).failed(e)),
    }
}

/// Read an object straight from the API: one that a create found existing before the cache
/// has seen it. `None` when it is gone.
pub async fn read_uncached<K: Namespaced>(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name).await.map_err(|e| write::<K>("read", namespace, name).failed(e))
}

/// Delete a namespaced object; a missing object is not an error.
pub async fn delete<K: Namespaced>(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(write::<K>("delete", namespace, name).failed(e)),
    }
}

/// Merge `metadata` (annotations, optionally a `resourceVersion` precondition) into an
/// object. Returns false when the object is gone.
pub async fn patch_metadata<K: Namespaced>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    metadata: serde_json::Value,
) -> Result<bool, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
    match api.patch(name, &params, &Patch::Merge(serde_json::json!({"metadata": metadata}))).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(write::<K>("annotate", namespace, name).failed(e)),
    }
}

/// Write `status` onto `object` (server-side apply of the status subresource) unless it
/// already has exactly that status.
pub async fn apply_status<K, S>(
    ctx: &Context,
    object: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Namespaced,
    S: Serialize + PartialEq + std::fmt::Debug,
{
    if current == Some(status) {
        return Ok(false);
    }
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let name = object.name_any();
    // Serialized straight from the status: a JSON value tree of a 1,000-pod status first
    // would cost more than the rest of the reconcile. The answer (the whole object) is not
    // parsed: its watch event brings it into the cache.
    let patch = StatusPatch { api_version: &K::api_version(&()), kind: &K::kind(&()), status };
    let failed = |e| write::<K>("write status of", &namespace, &name).failed(e);
    let request = kube::core::Request::new(K::url_path(&(), Some(&namespace)))
        .patch_subresource("status", &name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .map_err(|e| failed(kube::Error::BuildRequest(e)))?;
    ctx.client.request_text(request).await.map_err(failed)?;
    Ok(true)
}

/// The body of a status apply.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a, S> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a S,
}

/// Publish an Event about `reference`; failures to publish are logged, never fatal.
pub async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    send(ctx, reference, event).await;
}

/// Publish an Event about `reference` that concerns one of its pods: the pod is the Event's
/// related object, so Events about different pods are never folded into one.
pub async fn publish_about_pod(
    ctx: &Context,
    reference: &ObjectReference,
    pod: &str,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let pod = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.to_owned()),
        namespace: reference.namespace.clone(),
        ..ObjectReference::default()
    };
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: Some(pod) };
    send(ctx, reference, event).await;
}

async fn send(ctx: &Context, reference: &ObjectReference, event: Event) {
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, "cannot publish event");
    }
}

fn desired_hash<K: Serialize>(desired: &K) -> Result<String, Error> {
    let bytes = serde_json::to_vec(desired).map_err(Error::Serialize)?;
    Ok(Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect())
}
