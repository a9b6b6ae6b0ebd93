//! Every object write the controllers make — the only module that changes objects through the
//! API: server-side apply of children (skipped when the cached object already carries the
//! hash of the desired one), pod creation, deletes, metadata patches, status, Events — and the
//! reads past the cache (an object a create found existing; what the caches leave out, such
//! as a pinned revision's content).
//! Each failure names the write that failed; answers are dropped unparsed (the watches bring
//! the written objects into the caches), except the version a status write answers with
//! ([`super::own_writes`]).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::cached::{Body, Cached};
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

/// A cached object [`apply_if_changed`] compares with: the hash of the desired object the
/// operator last applied to it.
pub trait AppliedHash: Resource<DynamicType = ()> + Clone {
    /// Annotation `relayops.io/desired-hash`.
    fn applied_hash(&self) -> Option<&str>;
}

impl<B: Body> AppliedHash for Cached<B> {
    fn applied_hash(&self) -> Option<&str> {
        self.annotation(ANNOTATION_DESIRED_HASH)
    }
}

impl AppliedHash for PersistentVolumeClaim {
    fn applied_hash(&self) -> Option<&str> {
        self.annotations().get(ANNOTATION_DESIRED_HASH).map(String::as_str)
    }
}

impl AppliedHash for Ingress {
    fn applied_hash(&self) -> Option<&str> {
        self.annotations().get(ANNOTATION_DESIRED_HASH).map(String::as_str)
    }
}

/// Apply `desired` unless the cached live object already has its hash. Returns whether a
/// request was made.
pub async fn apply_if_changed<K: Namespaced, C: AppliedHash>(
    ctx: &Context,
    cache: &Store<C>,
    mut desired: K,
) -> Result<bool, Error> {
    let hash = desired_hash(&desired)?;
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let live = cache.get(&ObjectRef::new(&name).within(&namespace));
    if live.as_ref().and_then(|l| l.applied_hash()) == Some(hash.as_str()) {
        return Ok(false);
    }
    desired.annotations_mut().insert(ANNOTATION_DESIRED_HASH.into(), hash);
    let request =
        at::<K>(&namespace).patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired));
    send(ctx, request).await.map_err(|e| write::<K>("apply", &namespace, &name).failed(e))?;
    Ok(true)
}

/// Create a namespaced object; `false` when one of that name already exists (left as it is).
/// Pods are created, never applied: a pod that exists (the cache has not seen it yet) keeps
/// everything, its reload record included.
pub async fn create<K: Namespaced>(ctx: &Context, object: &K) -> Result<bool, Error> {
    let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
    let params = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    let body = serde_json::to_vec(object).map_err(Error::Serialize)?;
    match send(ctx, at::<K>(&namespace).create(&params, body)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(write::<K>("create", &namespace, &name).failed(e)),
    }
}

/// Read an object straight from the API: one that a create found existing before the cache
/// has seen it, or one whose cached copy lacks what is needed (a revision's content). `None`
/// when it is gone.
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
    match send(ctx, at::<K>(namespace).delete(name, &DeleteParams::background())).await {
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
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
    let patch = Patch::Merge(serde_json::json!({"metadata": metadata}));
    match send(ctx, at::<K>(namespace).patch(name, &params, &patch)).await {
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
    // would cost more than the rest of the reconcile.
    let patch = StatusPatch { api_version: &K::api_version(&()), kind: &K::kind(&()), status };
    let params = PatchParams::apply(MANAGER).force();
    let answer =
        send(ctx, at::<K>(&namespace).patch_subresource("status", &name, &params, &Patch::Apply(&patch)))
            .await
            .map_err(|e| write::<K>("write status of", &namespace, &name).failed(e))?;
    if let Some(uid) = object.meta().uid.as_deref() {
        ctx.own_writes.record(uid, &answer);
    }
    Ok(true)
}

/// Requests on the objects of kind `K` in `namespace`.
fn at<K: Namespaced>(namespace: &str) -> kube::core::Request {
    kube::core::Request::new(K::url_path(&(), Some(namespace)))
}

/// Make a write and return the answer unparsed: the written object comes into the cache
/// through its watch event, and parsing it here (a whole pod, or a status of 1,000 pod
/// entries) would cost more than the rest of a reconcile.
async fn send(
    ctx: &Context,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<String, kube::Error> {
    let request = request.map_err(kube::Error::BuildRequest)?;
    ctx.client.request_text(request).await
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
    send_event(ctx, reference, event).await;
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
    send_event(ctx, reference, event).await;
}

async fn send_event(ctx: &Context, reference: &ObjectReference, event: Event) {
    if let Err(e) = ctx.events.publish(&event, reference).await {
        warn!(error = %e, "cannot publish event");
    }
}

fn desired_hash<K: Serialize>(desired: &K) -> Result<String, Error> {
    let bytes = serde_json::to_vec(desired).map_err(Error::Serialize)?;
    Ok(Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect())
}
