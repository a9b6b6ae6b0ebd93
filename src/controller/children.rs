//! The children of a service — shared by RelayService and TestDeployment: resolve the
//! health check and Secrets from the caches, render, apply ConfigMap/Service/claims, execute
//! the pod plan, apply claim retention on scale-down, publish Events. One code path for pods.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::Error;
use super::apply::{apply_if_changed, delete};
use super::context::Context;
use super::plan::{DeleteReason, ObservedPod, PlanInput, PodAction, ordinal_of, plan};
use crate::api::{HealthPolicySpec, RelayServiceSpec, Retention, StorageScope};
use crate::render::{
    LABEL_POD_TEMPLATE_HASH, LABEL_SERVICE, MANAGER, Owner, RenderedService, SecretData, ServiceInput,
    image_is_pinned, render_service,
};

/// A reason the children cannot be rendered or started: becomes a condition and an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The service being converged: its owner identity, Event target and spec.
pub struct Target<'a> {
    /// Owner of the children.
    pub owner: &'a Owner,
    /// The custom resource Events are attached to.
    pub reference: ObjectReference,
    /// The (effective) service spec.
    pub spec: &'a RelayServiceSpec,
}

/// Resolve the health check and Secrets from the caches and render; a missing HealthPolicy,
/// an unrenderable spec or (with `--require-pinned-images`) a mutable image is a [`Problem`].
pub fn resolve_and_render(
    ctx: &Context,
    owner: &Owner,
    spec: &RelayServiceSpec,
) -> Result<RenderedService, Problem> {
    let namespace = &owner.namespace;
    let health: Option<HealthPolicySpec> = match &spec.health_policy_ref {
        Some(reference) => {
            let policy = ctx.caches.policies.get(&ObjectRef::new(&reference.name).within(namespace));
            let policy = policy.ok_or_else(|| Problem {
                reason: "HealthPolicyNotFound",
                message: format!(
                    "HealthPolicy {namespace}/{} not found; running pods are left as they are",
                    reference.name
                ),
            })?;
            Some(policy.spec.clone())
        }
        None => spec.health.clone(),
    };
    let secrets = secret_data(ctx, namespace, spec);
    let rendered = render_service(ServiceInput { owner, spec, health: health.as_ref(), secrets: &secrets })
        .map_err(|e| Problem { reason: e.reason(), message: e.to_string() })?;
    if ctx.require_pinned_images && !image_is_pinned(&spec.image) {
        return Err(Problem {
            reason: "ImageNotPinned",
            message: format!("image {:?} has a mutable tag and --require-pinned-images is set", spec.image),
        });
    }
    Ok(rendered)
}

/// The pods of `owner`, from the cache.
pub fn owned_pods(ctx: &Context, owner: &Owner) -> Vec<Pod> {
    let base = owner.base_name();
    ctx.caches
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(owner.namespace.as_str())
                && p.labels().get(LABEL_SERVICE) == Some(&base)
        })
        .map(|p| (**p).clone())
        .collect()
}

/// Apply the ConfigMap, Service and claims, then execute the pod plan and claim retention.
/// `may_start` gates creating and rolling pods (dependencies Ready).
pub async fn converge(
    ctx: &Context,
    target: &Target<'_>,
    rendered: &RenderedService,
    pods: &[Pod],
    may_start: bool,
) -> Result<(), Error> {
    apply_children(ctx, rendered).await?;
    let replicas = if target.spec.suspend { 0 } else { target.spec.replicas };
    execute_plan(ctx, target, rendered, pods, replicas, may_start).await?;
    delete_scaled_claims(ctx, target, pods, replicas).await
}

/// Referenced Secrets' data, for the configuration hash (values never leave memory).
pub fn secret_data(ctx: &Context, namespace: &str, spec: &RelayServiceSpec) -> SecretData {
    let referenced: BTreeSet<&str> =
        spec.config.iter().flat_map(|c| c.secrets.iter().map(|s| s.secret_key_ref.name.as_str())).collect();
    referenced
        .into_iter()
        .filter_map(|name| ctx.caches.secrets.get(&ObjectRef::new(name).within(namespace)))
        .map(|s| {
            let data = s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            (s.name_any(), data)
        })
        .collect()
}

async fn apply_children(ctx: &Context, rendered: &RenderedService) -> Result<(), Error> {
    if let Some(config_map) = &rendered.config_map {
        apply_if_changed::<ConfigMap>(&ctx.client, &ctx.caches.config_maps, config_map.clone()).await?;
    }
    if let Some(service) = &rendered.service {
        apply_if_changed::<Service>(&ctx.client, &ctx.caches.service_objects, service.clone()).await?;
    }
    for claim in &rendered.claims {
        // Retained claims keep their data; applying by name re-adopts them.
        apply_if_changed::<PersistentVolumeClaim>(&ctx.client, &ctx.caches.claims, claim.clone()).await?;
    }
    Ok(())
}

fn observe(base: &str, pod: &Pod) -> Option<ObservedPod> {
    let name = pod.name_any();
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    Some(ObservedPod {
        ordinal: ordinal_of(base, &name)?,
        template_hash: pod.labels().get(LABEL_POD_TEMPLATE_HASH).cloned(),
        ready: pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        finished: phase == "Failed" || phase == "Succeeded",
        terminating: pod.metadata.deletion_timestamp.is_some(),
        name,
    })
}

async fn execute_plan(
    ctx: &Context,
    target: &Target<'_>,
    rendered: &RenderedService,
    pods: &[Pod],
    replicas: i32,
    may_start: bool,
) -> Result<(), Error> {
    let owner = target.owner;
    let base = owner.base_name();
    let observed: Vec<ObservedPod> = pods.iter().filter_map(|p| observe(&base, p)).collect();
    let actions = plan(&PlanInput {
        replicas,
        template_hash: &rendered.pod_template_hash,
        pods: &observed,
        max_unavailable: target.spec.update_strategy.max_unavailable,
        may_start,
    });
    for action in actions {
        match action {
            PodAction::Create(ordinal) => {
                let Some(pod) = rendered
                    .pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(&owner.pod_name(ordinal)))
                else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &owner.namespace);
                api.patch(&owner.pod_name(ordinal), &PatchParams::apply(MANAGER).force(), &Patch::Apply(pod))
                    .await
                    .map_err(Error::Kube)?;
                info!(pod = %owner.pod_name(ordinal), "created pod");
                publish(
                    ctx,
                    &target.reference,
                    EventType::Normal,
                    "CreatedPod",
                    "Create",
                    format!("created pod {}", owner.pod_name(ordinal)),
                )
                .await;
            }
            PodAction::Delete { name, reason } => {
                delete::<Pod>(&ctx.client, &owner.namespace, &name).await?;
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
                publish(ctx, &target.reference, EventType::Normal, event_reason, "Delete", note).await;
            }
        }
    }
    Ok(())
}

/// `whenScaled: Delete`: remove claims of ordinals at or above `replicas` once their pod is gone.
async fn delete_scaled_claims(
    ctx: &Context,
    target: &Target<'_>,
    pods: &[Pod],
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
            if claim.namespace().as_deref() == Some(owner.namespace.as_str())
                && ordinal >= replicas
                && !running.contains(&ordinal)
            {
                delete::<PersistentVolumeClaim>(&ctx.client, &owner.namespace, &claim_name).await?;
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
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, "cannot publish event");
    }
}
