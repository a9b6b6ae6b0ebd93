//! Converge a service's children — one code path for RelayServices and TestDeployments:
//! apply the rendered ConfigMap, Service, Ingress (or delete one no longer wanted) and
//! claims, execute the pod plan ([`super::rollout`]) and claim retention on scale-down, each
//! write through [`super::writes`]. Replacing an outdated pod is a restart: it takes a slot
//! of the [`super::restart_budget`] first, or waits.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::Error;
use super::context::Context;
use super::pods::{is_finished, is_ready, is_terminating, ordinal_of};
use super::restart_budget::PodFacts;
use super::rollout::{DeleteReason, ObservedPod, PlanInput, PodAction, plan};
use super::writes::{apply_if_changed, create, delete, publish, publish_about_pod};
use crate::api::{RelayServiceSpec, Retention, StorageScope};
use crate::controller::cached::CachedPod;
use crate::render::{LABEL_POD_TEMPLATE_HASH, Owner, RenderedService};

/// The service being converged: its owner identity, Event target and spec.
pub struct Target<'a> {
    /// Owner of the children.
    pub owner: &'a Owner,
    /// The custom resource Events are attached to.
    pub reference: ObjectReference,
    /// The (effective) service spec.
    pub spec: &'a RelayServiceSpec,
    /// The spec is a rolled-back revision's, not the resource's: only a new generation
    /// supersedes what it renders.
    pub pinned: bool,
    /// The rollout is stuck past its progress deadline: replace no outdated pod.
    pub hold_outdated: bool,
}

/// Which pod changes this convergence may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Create, roll and configure pods.
    Open,
    /// Dependencies are not Ready: neither create nor roll pods.
    Dependencies,
    /// A new configuration is held (`reload.debounce`): the ConfigMap is not written and no
    /// pod is created or rolled, so none starts with a configuration about to be superseded.
    ConfigHeld,
}

/// Apply the ConfigMap, Service, Ingress and claims, then execute the pod plan and claim
/// retention. Returns how many pod restarts wait for a slot of the restart budget.
pub async fn converge(
    ctx: &Context,
    target: &Target<'_>,
    rendered: &RenderedService,
    pods: &[Arc<CachedPod>],
    gate: Gate,
) -> Result<usize, Error> {
    apply_children(ctx, target.owner, rendered, gate != Gate::ConfigHeld).await?;
    let replicas = if target.spec.suspend { 0 } else { target.spec.replicas };
    let queued = execute_plan(ctx, target, rendered, pods, replicas, gate == Gate::Open).await?;
    // Suspending is not scaling: claims stay for the replicas the spec asks for.
    delete_scaled_claims(ctx, target, pods, target.spec.replicas).await?;
    Ok(queued)
}

async fn apply_children(
    ctx: &Context,
    owner: &Owner,
    rendered: &RenderedService,
    write_config: bool,
) -> Result<(), Error> {
    if let Some(config_map) = rendered.config_map.as_ref().filter(|_| write_config) {
        apply_if_changed(ctx, &ctx.caches.config_maps, config_map.clone()).await?;
    }
    if let Some(service) = &rendered.service {
        apply_if_changed(ctx, &ctx.caches.service_objects, service.clone()).await?;
    }
    match &rendered.ingress {
        Some(ingress) => {
            apply_if_changed(ctx, &ctx.caches.ingresses, ingress.clone()).await?;
        }
        None => delete_stale_ingress(ctx, owner).await?,
    }
    for claim in &rendered.claims {
        // Retained claims keep their data; applying by name re-adopts them.
        apply_if_changed(ctx, &ctx.caches.claims, claim.clone()).await?;
    }
    Ok(())
}

/// `spec.ingress` was removed: delete the Ingress this owner made, if the cache holds one.
async fn delete_stale_ingress(ctx: &Context, owner: &Owner) -> Result<(), Error> {
    let name = owner.base_name();
    let Some(ingress) = ctx.caches.ingresses.get(&ObjectRef::new(&name).within(&owner.namespace)) else {
        return Ok(());
    };
    let ours = ingress
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.kind == owner.kind.as_str() && r.name == owner.name);
    if ours && ingress.metadata.deletion_timestamp.is_none() {
        delete::<Ingress>(ctx, &owner.namespace, &name).await?;
        info!(ingress = %name, "deleted ingress: spec.ingress was removed");
    }
    Ok(())
}

fn observe<'a>(base: &str, pod: &'a CachedPod) -> Option<ObservedPod<'a>> {
    let name = pod.metadata.name.as_deref()?;
    Some(ObservedPod {
        ordinal: ordinal_of(base, name)?,
        template_hash: pod.label(LABEL_POD_TEMPLATE_HASH),
        ready: is_ready(pod),
        finished: is_finished(pod),
        terminating: is_terminating(pod),
        name,
    })
}

/// The restart budget's view of the pods.
pub fn pod_facts(pods: &[Arc<CachedPod>]) -> Vec<PodFacts<'_>> {
    pods.iter()
        .filter_map(|pod| {
            let name = pod.metadata.name.as_deref()?;
            Some(PodFacts {
                uid: pod.metadata.uid.as_deref().unwrap_or(name),
                name,
                ready: is_ready(pod),
                finished: is_finished(pod),
            })
        })
        .collect()
}

/// The key of a service in the restart budget and other per-service memories.
pub fn service_key(owner: &Owner) -> String {
    format!("{}/{}/{}", owner.kind.as_str(), owner.namespace, owner.name)
}

/// Execute the pod plan; returns how many replacements wait for a restart slot.
async fn execute_plan(
    ctx: &Context,
    target: &Target<'_>,
    rendered: &RenderedService,
    pods: &[Arc<CachedPod>],
    replicas: i32,
    may_start: bool,
) -> Result<usize, Error> {
    let owner = target.owner;
    let base = owner.base_name();
    let key = service_key(owner);
    let facts = pod_facts(pods);
    let wanted = |name: &str| ordinal_of(&base, name).is_some_and(|o| o < replicas);
    ctx.restarts.release_done(&key, &facts, wanted, ctx.now());
    let mut queued = 0;
    let observed: Vec<ObservedPod> = pods.iter().filter_map(|p| observe(&base, p)).collect();
    let actions = plan(&PlanInput {
        replicas,
        template_hash: &rendered.pod_template_hash,
        pods: &observed,
        max_unavailable: target.spec.update_strategy.max_unavailable,
        may_start,
        hold_outdated: target.hold_outdated,
    });
    for action in actions {
        match action {
            PodAction::Create(ordinal) => {
                let Some(pod) = rendered.pod(ordinal) else { continue };
                if !create(ctx, &pod).await? {
                    // It exists; the cache has not seen it yet.
                    continue;
                }
                info!(pod = %owner.pod_name(ordinal), "created pod");
                let name = owner.pod_name(ordinal);
                let note = format!("created pod {name}");
                publish_about_pod(
                    ctx,
                    &target.reference,
                    &name,
                    EventType::Normal,
                    "CreatedPod",
                    "Create",
                    note,
                )
                .await;
            }
            PodAction::Delete { name, reason } => {
                let uid = facts.iter().find(|p| p.name == name).map_or(name.as_str(), |p| p.uid);
                if reason == DeleteReason::Outdated && !ctx.restarts.acquire(&key, &name, uid, ctx.now()) {
                    queued += 1;
                    continue;
                }
                if let Err(e) = delete::<Pod>(ctx, &owner.namespace, &name).await {
                    ctx.restarts.release(uid);
                    return Err(e);
                }
                let (event_reason, note) = match reason {
                    DeleteReason::ScaledDown if target.spec.suspend => {
                        ("Suspended", format!("deleted pod {name}: service suspended"))
                    }
                    DeleteReason::ScaledDown => {
                        ("ScaledDown", format!("deleted pod {name}: scaled to {replicas}"))
                    }
                    DeleteReason::Finished => {
                        ("RecreatingPod", format!("deleted finished pod {name}; it is recreated"))
                    }
                    DeleteReason::Outdated => {
                        ("ReplacingPod", format!("replacing pod {name}: its template changed"))
                    }
                };
                info!(pod = %name, reason = event_reason, "deleted pod");
                publish_about_pod(
                    ctx,
                    &target.reference,
                    &name,
                    EventType::Normal,
                    event_reason,
                    "Delete",
                    note,
                )
                .await;
            }
        }
    }
    Ok(queued)
}

/// `whenScaled: Delete`: remove claims of ordinals at or above `replicas` once their pod is gone.
async fn delete_scaled_claims(
    ctx: &Context,
    target: &Target<'_>,
    pods: &[Arc<CachedPod>],
    replicas: i32,
) -> Result<(), Error> {
    let owner = target.owner;
    let base = owner.base_name();
    let running: BTreeSet<i32> = pods.iter().filter_map(|p| ordinal_of(&base, &p.name_any())).collect();
    for volume in target
        .spec
        .storage
        .iter()
        .filter(|v| v.scope == StorageScope::PerReplica && v.retention.when_scaled == Retention::Delete)
    {
        let prefix = format!("{}-{base}", volume.name);
        for claim in ctx.caches.claims.state() {
            let claim_name = claim.name_any();
            let Some(ordinal) = ordinal_of(&prefix, &claim_name) else { continue };
            if claim.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
                && ordinal >= replicas
                && !running.contains(&ordinal)
            {
                delete::<PersistentVolumeClaim>(ctx, &owner.namespace, &claim_name).await?;
                publish(
                    ctx,
                    &target.reference,
                    EventType::Normal,
                    "DeletedClaim",
                    "Delete",
                    format!("deleted claim {claim_name} (whenScaled: Delete)"),
                )
                .await;
            }
        }
    }
    Ok(())
}
