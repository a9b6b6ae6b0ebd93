//! The RelayService reconciler: resolve references from the caches, render, apply the
//! children, execute the pod plan, write status and Events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Error;
use super::apply::{apply_if_changed, delete};
use super::context::Context;
use super::plan::{DeleteReason, ObservedPod, PlanInput, PodAction, ordinal_of, plan};
use super::status::{Dependencies, StatusInput, compute};
use crate::api::{RelayService, Retention, StorageScope};
use crate::deps::{DependencyGraph, cycle_through};
use crate::render::{
    LABEL_POD_TEMPLATE_HASH, LABEL_SERVICE, MANAGER, Owner, OwnerKind, RenderedService, SecretData,
    ServiceInput, image_is_pinned, render_service,
};

/// Reconcile one RelayService.
pub async fn reconcile(service: Arc<RelayService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.namespace().ok_or(Error::MissingNamespace)?;
    let name = service.name_any();
    if service.metadata.deletion_timestamp.is_some() {
        // Owned children are garbage-collected; retained claims stay by design.
        return Ok(Action::await_change());
    }
    let spec = &service.spec;
    let owner = Owner {
        kind: OwnerKind::RelayService,
        name: name.clone(),
        namespace: namespace.clone(),
        uid: service.uid(),
    };
    let dependencies = dependencies(&ctx, &service, &namespace);
    let mut problem: Option<(&'static str, String)> = None;

    let health = match &spec.health_policy_ref {
        Some(reference) => {
            let policy = ctx.caches.policies.get(&ObjectRef::new(&reference.name).within(&namespace));
            if policy.is_none() {
                problem = Some((
                    "HealthPolicyNotFound",
                    format!(
                        "HealthPolicy {namespace}/{} not found; running pods are left as they are",
                        reference.name
                    ),
                ));
            }
            policy.map(|p| p.spec.clone())
        }
        None => spec.health.clone(),
    };
    let secrets = secret_data(&ctx, &namespace);
    let rendered = match problem {
        Some(_) => None,
        None => match render_service(ServiceInput {
            owner: &owner,
            spec,
            health: health.as_ref(),
            secrets: &secrets,
        }) {
            Ok(rendered) => Some(rendered),
            Err(e) => {
                problem = Some((e.reason(), e.to_string()));
                None
            }
        },
    };
    let mutable_image = (!image_is_pinned(&spec.image)).then_some(spec.image.as_str());
    if mutable_image.is_some() && ctx.require_pinned_images && problem.is_none() {
        problem = Some((
            "ImageNotPinned",
            format!("image {:?} has a mutable tag and --require-pinned-images is set", spec.image),
        ));
    }

    let base = owner.base_name();
    let pods: Vec<Pod> = ctx
        .caches
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace.as_str())
                && p.labels().get(LABEL_SERVICE) == Some(&base)
        })
        .map(|p| (**p).clone())
        .collect();

    if let (Some(rendered), None) = (&rendered, &problem) {
        apply_children(&ctx, rendered).await?;
        let replicas = if spec.suspend { 0 } else { spec.replicas };
        execute_plan(&ctx, &service, &owner, rendered, &pods, replicas, dependencies.ready()).await?;
        delete_scaled_claims(&ctx, &service, &owner, &pods, replicas).await?;
    }
    if let Some((reason, message)) = &problem {
        publish(&ctx, &service, EventType::Warning, reason, "Reconcile", message.clone()).await;
    }
    if let Some(image) = mutable_image
        && !has_condition_reason(&service, "ImagePinned", "MutableImageTag")
    {
        let note =
            format!("image {image:?} has a mutable tag; pin a version or digest so rollbacks are possible");
        publish(&ctx, &service, EventType::Warning, "MutableImageTag", "Validate", note).await;
    }

    let status = compute(&StatusInput {
        generation: service.metadata.generation,
        desired: if spec.suspend { 0 } else { spec.replicas },
        suspended: spec.suspend,
        pods: &pods,
        hashes: rendered.as_ref().map(|r| (r.pod_template_hash.as_str(), r.config_hash.as_str())),
        selector: crate::render::LABEL_SERVICE.to_string() + "=" + &base,
        dependencies: &dependencies,
        problem: problem.clone(),
        mutable_image,
        previous: service.status.as_ref(),
        now: Timestamp::now(),
    });
    if service.status.as_ref() != Some(&status) {
        let was_ready = is_ready(&service);
        let now_ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        if now_ready && !was_ready {
            wake_dependents(&ctx, &namespace, &name);
        }
        let api: Api<RelayService> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({"apiVersion": "relayops.io/v1alpha1", "kind": "RelayService", "status": status});
        api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::Kube)?;
    }
    Ok(match problem {
        // Invalid input: wait for the next change instead of requeueing hot.
        Some(_) => Action::await_change(),
        None if status.ready_replicas == status.replicas && status.updated_replicas == status.replicas => {
            Action::requeue(Duration::from_secs(300))
        }
        None => Action::requeue(Duration::from_secs(30)),
    })
}

/// Trigger a reconcile of every service in `namespace` that depends on `name`.
fn wake_dependents(ctx: &Context, namespace: &str, name: &str) {
    for dependent in ctx.caches.services.state() {
        if dependent.namespace().as_deref() == Some(namespace)
            && dependent.spec.depends_on.iter().any(|d| d == name)
        {
            // A closed channel only means the controller is shutting down.
            let _ = ctx.wake.unbounded_send(ObjectRef::from_obj(&*dependent));
        }
    }
}

fn has_condition_reason(service: &RelayService, type_: &str, reason: &str) -> bool {
    service
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.reason == reason))
}

/// Dependency state from the RelayService cache.
fn dependencies(ctx: &Context, service: &RelayService, namespace: &str) -> Dependencies {
    let all = ctx.caches.services.state();
    let in_namespace: Vec<&Arc<RelayService>> =
        all.iter().filter(|s| s.namespace().as_deref() == Some(namespace)).collect();
    let graph: DependencyGraph =
        in_namespace.iter().map(|s| (s.name_any(), s.spec.depends_on.clone())).collect();
    let mut graph = graph;
    graph.insert(service.name_any(), service.spec.depends_on.clone());
    if let Some(cycle) = cycle_through(&graph, &service.name_any()) {
        return Dependencies::Cycle(cycle);
    }
    let mut missing = Vec::new();
    let mut waiting = Vec::new();
    for dependency in &service.spec.depends_on {
        match in_namespace.iter().find(|s| &s.name_any() == dependency) {
            None => missing.push(dependency.clone()),
            Some(found) if !is_ready(found) => waiting.push(dependency.clone()),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        Dependencies::Missing(missing)
    } else if !waiting.is_empty() {
        Dependencies::Waiting(waiting)
    } else {
        Dependencies::Ready
    }
}

/// Whether a RelayService's Ready condition is True for its current generation.
pub fn is_ready(service: &RelayService) -> bool {
    service.status.as_ref().is_some_and(|s| {
        s.observed_generation == service.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Secret data in the namespace, for the configuration hash (values never leave memory).
fn secret_data(ctx: &Context, namespace: &str) -> SecretData {
    ctx.caches
        .secrets
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace))
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
    service: &RelayService,
    owner: &Owner,
    rendered: &RenderedService,
    pods: &[Pod],
    replicas: i32,
    may_start: bool,
) -> Result<(), Error> {
    let base = owner.base_name();
    let observed: Vec<ObservedPod> = pods.iter().filter_map(|p| observe(&base, p)).collect();
    let actions = plan(&PlanInput {
        replicas,
        template_hash: &rendered.pod_template_hash,
        pods: &observed,
        max_unavailable: service.spec.update_strategy.max_unavailable,
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
                    service,
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
                    DeleteReason::ScaledDown if service.spec.suspend => {
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
                publish(ctx, service, EventType::Normal, event_reason, "Delete", note).await;
            }
        }
    }
    Ok(())
}

/// `whenScaled: Delete`: remove claims of ordinals at or above `replicas` once their pod is gone.
async fn delete_scaled_claims(
    ctx: &Context,
    service: &RelayService,
    owner: &Owner,
    pods: &[Pod],
    replicas: i32,
) -> Result<(), Error> {
    let base = owner.base_name();
    let running: BTreeSet<i32> = pods.iter().filter_map(|p| ordinal_of(&base, &p.name_any())).collect();
    for volume in service
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
                    service,
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

/// Publish an Event; failures to publish are logged, never fatal.
async fn publish(
    ctx: &Context,
    service: &RelayService,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &service.object_ref(&())).await {
        warn!(error = %e, "cannot publish event");
    }
}
