//! The TestDeployment reconciler: snapshot the source spec once, render and converge the
//! children through the shared [`converge`](super::converge) code path, compute the phase
//! ([`phase`]), read a crashed container's log once per failure, expire at
//! `creationTimestamp + ttl`, publish Events and metrics.
//!
//! **Source snapshot.** With `fromRelayService`, the source's spec is copied on the first
//! reconcile that finds the source and stored JSON-serialized in the annotation
//! [`ANNOTATION_SOURCE_SPEC`] on the TestDeployment; every later reconcile uses the
//! annotation and never looks at the source again. An annotation rather than status,
//! because status must be reconstructible from the cluster (backup/restore tools and
//! `kubectl get -o yaml | kubectl apply` drop it, and the operator rewrites it on every
//! reconcile), whereas the copy is input that cannot be recomputed once the source
//! changed. The annotation travels with the object, survives `kubectl apply` of the
//! manifest (neither client- nor server-side apply removes keys they did not set) and can be
//! inspected — or deliberately edited — by a user. The write carries the cached
//! `resourceVersion`, so a reconcile working from a stale copy (one that has not seen the
//! annotation yet) gets a conflict and retries instead of copying a newer source.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

pub mod phase;

use super::Error;
use super::conditions::Problem;
use super::container_log::read_log;
use super::context::Context;
use super::converge::{Gate, Target, converge, service_key};
use super::pods::{is_terminating, pod_entry};
use super::resolve::{owned_pods, resolve_and_render};
use super::restart_budget::QUEUED_RETRY;
use super::writes::{apply_status, delete, patch_metadata, publish};
use crate::api::{
    ConditionType, RelayServiceSpec, TestDeployment, TestDeploymentPhase, TestDeploymentStatus,
    find_condition,
};
use crate::manifest::validate_service_spec;
use crate::render::{LABEL_SERVICE, Owner, OwnerKind, effective_spec};
use phase::PhaseInput;

/// Annotation holding the JSON of the `fromRelayService` spec as copied at creation.
pub const ANNOTATION_SOURCE_SPEC: &str = "relayops.io/source-spec";

/// How often a deployment with a problem (missing source, missing HealthPolicy) looks
/// again: the TestDeployment controller does not watch RelayServices or HealthPolicies.
pub const PROBLEM_REQUEUE: Duration = Duration::from_secs(30);

/// Reconcile one TestDeployment.
pub async fn reconcile(td: Arc<TestDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = td.namespace().ok_or(Error::MissingNamespace)?;
    if td.metadata.deletion_timestamp.is_some() {
        // Every child is owned: garbage collection removes them.
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    let created = td.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let owner = Owner {
        kind: OwnerKind::TestDeployment,
        name: td.name_any(),
        namespace: namespace.clone(),
        uid: td.uid(),
    };
    let reference = td.object_ref(&());
    let previous = td.status.as_ref();
    if phase::is_expired(&td.spec, created, now, previous) {
        return expire(&ctx, &td, &owner, &reference, created, now).await;
    }

    let spec = match source_spec(&ctx, &td, &reference).await? {
        Ok(source) => effective_spec(&td.spec, source.as_ref())
            .ok_or_else(|| Problem {
                reason: "NoTemplate",
                message: "set exactly one of template or fromRelayService".into(),
            })
            .and_then(validated),
        Err(problem) => Err(problem),
    };
    let rendered = match &spec {
        Ok(spec) => resolve_and_render(&ctx, &owner, spec),
        Err(problem) => Err(problem.clone()),
    };
    let pods = owned_pods(&ctx, &owner);
    let mut restarts_queued = 0;
    match (&spec, &rendered) {
        (Ok(spec), Ok(rendered)) => {
            // A TestDeployment's deadline fails it instead (see `phase`).
            let target = Target {
                owner: &owner,
                reference: reference.clone(),
                spec,
                pinned: false,
                hold_outdated: false,
            };
            restarts_queued = converge(&ctx, &target, rendered, &pods, Gate::Open).await?;
            ctx.restarts_queued(&service_key(&owner), restarts_queued);
        }
        (_, Err(problem)) if !ready_reason_is(previous, problem.reason) => {
            let note = problem.message.clone();
            publish(&ctx, &reference, EventType::Warning, problem.reason, "Reconcile", note).await;
        }
        _ => {}
    }
    let problem = rendered.as_ref().err();
    let input = PhaseInput {
        spec: &td.spec,
        generation: td.metadata.generation,
        created,
        now,
        desired: spec.as_ref().ok().map(|s| if s.suspend { 0 } else { s.replicas }),
        url: spec.as_ref().ok().and_then(|s| phase::service_url(&owner, s)),
        pods: &pods,
        problem,
        previous,
    };
    let outcome = phase::compute(&input);
    let mut status = outcome.status;
    status.pods = pods.iter().filter(|p| !is_terminating(p)).map(|p| pod_entry(p)).collect();
    status.pods.sort_by(|a, b| a.name.cmp(&b.name));
    if let (Some(request), Some(failure)) = (&outcome.log_request, status.failure.as_mut()) {
        failure.log_tail = Some(read_log(&ctx, &namespace, request).await);
    }
    apply_status(&ctx, &*td, td.status.as_ref(), &status).await?;
    if previous.map(|s| s.phase) != Some(status.phase) {
        announce(&ctx, &reference, &status).await;
    }
    if status.phase == TestDeploymentPhase::Running
        && previous.is_none_or(|s| s.ready_at.is_none())
        && let Some(ready_at) = status.ready_at.as_deref().and_then(phase::parse_time)
    {
        ctx.metrics.observe_time_to_running(ready_at.duration_since(created).as_secs_f64().max(0.0));
    }

    let mut wait = phase::next_wake(&input, &status).map(|at| until(now, at));
    if problem.is_some() {
        wait = Some(wait.map_or(PROBLEM_REQUEUE, |w| w.min(PROBLEM_REQUEUE)));
    }
    if restarts_queued > 0 {
        // A replacement waits for a slot of --max-concurrent-restarts: ask again.
        wait = Some(wait.map_or(QUEUED_RETRY, |w| w.min(QUEUED_RETRY)));
    }
    Ok(wait.map_or_else(Action::await_change, Action::requeue))
}

/// The effective spec, if it passes the RelayService schema: overrides are validated like a
/// RelayService's spec (e.g. a config key that is no variable name with format `env`).
fn validated(spec: RelayServiceSpec) -> Result<RelayServiceSpec, Problem> {
    validate_service_spec(&spec).map(|()| spec).map_err(|violation| Problem {
        reason: "InvalidTemplate",
        message: format!(
            "the template with its overrides is not a valid RelayService spec: {}: {}",
            violation.field, violation.message
        ),
    })
}

/// The time from `now` until `at` (zero when `at` has passed).
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// The spec of `fromRelayService`: from the snapshot annotation, or copied now (and the
/// annotation written). `Ok(None)` for an inline template.
async fn source_spec(
    ctx: &Context,
    td: &TestDeployment,
    reference: &ObjectReference,
) -> Result<Result<Option<RelayServiceSpec>, Problem>, Error> {
    let Some(source) = &td.spec.from_relay_service else { return Ok(Ok(None)) };
    let namespace = td.namespace().ok_or(Error::MissingNamespace)?;
    if let Some(text) = td.annotations().get(ANNOTATION_SOURCE_SPEC) {
        return Ok(serde_json::from_str(text).map(Some).map_err(|e| Problem {
            reason: "InvalidSourceSnapshot",
            message: format!("annotation {ANNOTATION_SOURCE_SPEC} is not a RelayService spec: {e}"),
        }));
    }
    let Some(found) = ctx.caches.services.get(&ObjectRef::new(source).within(&namespace)) else {
        return Ok(Err(Problem {
            reason: "SourceNotFound",
            message: format!(
                "RelayService {namespace}/{source} not found; its spec is copied once it exists"
            ),
        }));
    };
    let text = serde_json::to_string(&found.spec).map_err(Error::Serialize)?;
    let mut metadata = serde_json::json!({"annotations": {ANNOTATION_SOURCE_SPEC: text}});
    if let Some(version) = td.resource_version() {
        metadata["resourceVersion"] = version.into();
    }
    patch_metadata::<TestDeployment>(ctx, &namespace, &td.name_any(), metadata).await?;
    let generation = found.metadata.generation.map_or_else(String::new, |g| format!(" (generation {g})"));
    info!(source = %source, "copied the source spec");
    let note =
        format!("copied the spec of RelayService {source}{generation}; later changes to it are not applied");
    publish(ctx, reference, EventType::Normal, "CopiedSource", "Snapshot", note).await;
    Ok(Ok(Some(found.spec.clone())))
}

/// The HealthPolicy a TestDeployment's pods use: its template's, or the copied source's.
pub fn health_policy_name(td: &TestDeployment) -> Option<String> {
    let copied;
    let spec = match (&td.spec.template, td.annotations().get(ANNOTATION_SOURCE_SPEC)) {
        (Some(template), _) => template,
        (None, Some(text)) => {
            copied = serde_json::from_str::<RelayServiceSpec>(text).ok()?;
            &copied
        }
        (None, None) => return None,
    };
    spec.health_policy_ref.as_ref().map(|r| r.name.clone())
}

fn ready_reason_is(previous: Option<&TestDeploymentStatus>, reason: &str) -> bool {
    previous.is_some_and(|s| {
        find_condition(&s.conditions, ConditionType::Ready).is_some_and(|c| c.reason == reason)
    })
}

/// An Event for a phase change.
async fn announce(ctx: &Context, reference: &ObjectReference, status: &TestDeploymentStatus) {
    let type_ =
        if status.phase == TestDeploymentPhase::Failed { EventType::Warning } else { EventType::Normal };
    let note = match (&status.failure, status.phase) {
        (Some(failure), TestDeploymentPhase::Failed) => format!("{}: {}", failure.reason, failure.message),
        _ => {
            let type_ = if status.phase == TestDeploymentPhase::Expired {
                ConditionType::Expired
            } else {
                ConditionType::Ready
            };
            find_condition(&status.conditions, type_).map(|c| c.message.clone()).unwrap_or_default()
        }
    };
    publish(ctx, reference, type_, status.phase.as_str(), "Phase", note).await;
}

/// The TTL ran out: delete every child (storage included), then keep the record or delete
/// the TestDeployment itself.
async fn expire(
    ctx: &Context,
    td: &TestDeployment,
    owner: &Owner,
    reference: &ObjectReference,
    created: Timestamp,
    now: Timestamp,
) -> Result<Action, Error> {
    let previous = td.status.as_ref();
    let first_time = previous.map(|s| s.phase) != Some(TestDeploymentPhase::Expired);
    let deleted = delete_children(ctx, owner, first_time).await?;
    if deleted > 0 {
        info!(deleted, "deleted the children of an expired test deployment");
    }
    if td.spec.delete_on_expiry {
        let note = format!(
            "ttl {} ran out: deleted its children and the TestDeployment itself (deleteOnExpiry)",
            td.spec.ttl
        );
        publish(ctx, reference, EventType::Normal, "Expired", "Delete", note).await;
        delete::<TestDeployment>(ctx, &owner.namespace, &owner.name).await?;
        if first_time {
            ctx.metrics.test_deployment_expired();
        }
        return Ok(Action::await_change());
    }
    let status = phase::compute(&PhaseInput {
        spec: &td.spec,
        generation: td.metadata.generation,
        created,
        now,
        desired: None,
        url: None,
        pods: &[],
        problem: None,
        previous,
    })
    .status;
    apply_status(ctx, td, td.status.as_ref(), &status).await?;
    if first_time {
        ctx.metrics.test_deployment_expired();
        announce(ctx, reference, &status).await;
    }
    Ok(Action::await_change())
}

/// Delete pods, Service, ConfigMap and claims of `owner`. The Service and ConfigMap are
/// deleted by name when `unconditionally` (the first time), otherwise only when cached.
/// Returns how many deletes were sent.
async fn delete_children(ctx: &Context, owner: &Owner, unconditionally: bool) -> Result<usize, Error> {
    let namespace = owner.namespace.as_str();
    let base = owner.base_name();
    let mut count = 0;
    for pod in owned_pods(ctx, owner).iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        delete::<Pod>(ctx, namespace, &pod.name_any()).await?;
        count += 1;
    }
    let cached_service = ctx.caches.service_objects.get(&ObjectRef::new(&base).within(namespace)).is_some();
    if unconditionally || cached_service {
        delete::<Service>(ctx, namespace, &base).await?;
        count += 1;
    }
    let config_map = owner.config_map_name();
    let cached_config = ctx.caches.config_maps.get(&ObjectRef::new(&config_map).within(namespace)).is_some();
    if unconditionally || cached_config {
        delete::<ConfigMap>(ctx, namespace, &config_map).await?;
        count += 1;
    }
    let claims: Vec<String> = ctx
        .caches
        .claims
        .state()
        .iter()
        .filter(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.labels().get(LABEL_SERVICE) == Some(&base)
                && c.metadata.deletion_timestamp.is_none()
        })
        .map(|c| c.name_any())
        .collect();
    for claim in claims {
        delete::<PersistentVolumeClaim>(ctx, namespace, &claim).await?;
        count += 1;
    }
    Ok(count)
}
