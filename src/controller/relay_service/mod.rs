//! The RelayService reconciler: dependencies, the shared child convergence and status; and
//! the mappings that wake services from other objects' watch events (dependencies turning
//! Ready, policies, Secrets).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

pub mod diagnosis;
pub mod health_detail;
pub mod progress;
pub mod revisions;
pub mod status;

use super::Error;
use super::canary::{self, Concluded, plan::rolled_back_condition};
use super::container_log::read_log;
use super::context::Context;
use super::converge::{Gate, Target, converge, service_key};
use super::reload::{ReloadRound, propagate};
use super::resolve::{dependencies, owned_pods, resolve_and_render};
use super::restart_budget::QUEUED_RETRY;
use super::writes::{apply_status, publish, publish_about_pod};
use crate::api::RollbackPolicy;
use crate::controller::cached::CachedPod;
use crate::history::RollbackTarget;
use diagnosis::{Diagnosis, Lookup, diagnose, next_deadline};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use progress::{
    AUTO_ROLLBACK_PREFIX, PROGRESS_DEADLINE_EXCEEDED, Progress, assess, failure_of, requeue_after,
    rollback_note, stuck_condition,
};
use status::{StatusInput, compute, entries_by_name};

use crate::api::{
    ConditionType, FailureDetail, HealthPolicy, RelayService, RelayServiceSpec, RelayServiceStatus,
    find_condition,
};
use crate::deps::is_ready;
use crate::render::{Owner, OwnerKind, RenderedService, image_is_pinned, selector_string};

/// Reconcile one RelayService.
///
/// No finalizer: every child except retained claims carries a controller owner reference,
/// so the garbage collector removes them with the service, and retained claims must outlive
/// it by design — there is nothing the operator has to do before deletion completes.
pub async fn reconcile(service: Arc<RelayService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.namespace().ok_or(Error::MissingNamespace)?;
    let name = service.name_any();
    if service.metadata.deletion_timestamp.is_some() {
        // Owned children are garbage-collected; retained claims stay by design.
        return Ok(Action::await_change());
    }
    let owner = Owner {
        kind: OwnerKind::RelayService,
        name: name.clone(),
        namespace: namespace.clone(),
        uid: service.uid(),
    };
    let reference = service.object_ref(&());
    // A rollback renders a kept revision instead of the spec (see `revisions`).
    let mut history = revisions::prepare(&ctx, &service, &owner, &reference).await?;
    if service.spec.update_strategy.rollback == RollbackPolicy::Auto {
        roll_back_if_stuck(&ctx, &service, &owner, &reference, &mut history).await;
    }
    let spec = history.spec(&service.spec);
    let mut kept_revisions = None;
    let dependencies = dependencies(&ctx, &service, &namespace);
    let rendered = resolve_and_render(&ctx, &owner, spec);
    let mut pods = owned_pods(&ctx, &owner);
    let strategy = &spec.update_strategy;
    let completed = service.status.as_ref().and_then(|s| s.completed_pod_template_hash.as_deref());
    let progress = rendered.as_ref().ok().map(|r| {
        let pods = pods.iter().map(|p| &**p);
        assess(pods, &r.pod_template_hash, completed, strategy.progress_deadline.get(), ctx.now())
    });
    let mut reloads = ReloadRound::default();
    let mut canary = Concluded::default();
    let mut effective_hash = None;
    let mut config_held = None;
    let mut restarts_queued = 0;
    match &rendered {
        Ok(rendered) => {
            let hold_outdated = matches!(progress, Some(Progress::Stuck { .. }));
            let pinned = history.pinned();
            let target = Target { owner: &owner, reference: reference.clone(), spec, pinned, hold_outdated };
            config_held = debounce_hold(&ctx, &owner, spec, rendered);
            if config_held.is_some() {
                // A held configuration is not applied: no ConfigMap write, no reload, no
                // revision, no canary.
                restarts_queued = converge(&ctx, &target, rendered, &pods, Gate::ConfigHeld).await?;
                effective_hash = Some(rendered.config_hash.clone());
                canary.state = canary::remembered(&ctx, &owner, &service);
            } else {
                let prepared = canary::prepare(&ctx, &target, &service, rendered, &pods).await?;
                let effective = prepared.rendered.as_ref();
                effective_hash = Some(effective.config_hash.clone());
                let gate = if dependencies.ready() { Gate::Open } else { Gate::Dependencies };
                restarts_queued = converge(&ctx, &target, effective, &pods, gate).await?;
                // A configuration on trial or rolled back on its canaries is not (yet) applied.
                if prepared.applies_spec() {
                    kept_revisions = Some(revisions::keep_applied(&ctx, &service, &owner, &history).await?);
                }
                let previous = service.status.as_ref();
                let generation = service.metadata.generation;
                reloads =
                    propagate(&ctx, &target, generation, effective, &pods, previous, &prepared.scope).await?;
                reloads.apply_to(&mut pods);
                // Only a canary reads the previous reload results: no copy of every pod's on the
                // hot path of the services without one.
                let has_canary = spec.reload.as_ref().is_some_and(|r| r.canary.is_some());
                let last_reload = previous
                    .filter(|_| has_canary)
                    .map(|s| {
                        s.pods
                            .iter()
                            .filter_map(|p| Some((p.name.clone(), p.last_reload.as_deref()?.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                canary = canary::conclude(&ctx, &target, prepared, &reloads, &pods, &last_reload).await?;
            }
            restarts_queued += reloads.restarts_queued;
            ctx.restarts_queued(&service_key(&owner), restarts_queued);
        }
        Err(problem) => {
            canary.state = canary::remembered(&ctx, &owner, &service);
            publish(
                &ctx,
                &reference,
                EventType::Warning,
                problem.reason,
                "Reconcile",
                problem.message.clone(),
            )
            .await;
        }
    }
    let mutable_image = (!image_is_pinned(&spec.image)).then_some(spec.image.as_str());
    if let Some(image) = mutable_image
        && !has_condition_reason(&service, ConditionType::ImagePinned, "MutableImageTag")
    {
        let note =
            format!("image {image:?} has a mutable tag; pin a version or digest so rollbacks are possible");
        publish(&ctx, &reference, EventType::Warning, "MutableImageTag", "Validate", note).await;
    }
    let failures = diagnose_pods(&ctx, &reference, &pods, service.status.as_ref()).await;
    let problem = rendered.as_ref().err().map(|p| (p.reason, p.message.clone()));
    let rendered = rendered.ok();
    let stuck = match &progress {
        Some(stuck @ Progress::Stuck { pod, .. }) => {
            let failure = failure_of(stuck, &failures);
            let rollback = rollback_note(strategy.rollback, completed, history.rollback());
            Some(stuck_condition(pod, strategy.progress_deadline, failure, rollback.as_deref()))
        }
        _ => None,
    };
    // Without a rendered configuration the condition stays as it was.
    let previous_conditions = service.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let rolled_back = rendered
        .as_ref()
        .and_then(|r| rolled_back_condition(canary.state.as_ref(), &r.config_hash, previous_conditions));

    let mut status = compute(&StatusInput {
        generation: service.metadata.generation,
        desired: if spec.suspend { 0 } else { spec.replicas },
        suspended: spec.suspend,
        pods: &pods,
        hashes: rendered
            .as_ref()
            .zip(effective_hash.as_deref())
            .map(|(r, c)| (r.pod_template_hash.as_str(), c)),
        selector: selector_string(&owner),
        dependencies: &dependencies,
        problem: problem.clone(),
        mutable_image,
        failures: &failures,
        previous: service.status.as_ref(),
        reloads: &reloads.results,
        stuck: stuck.clone(),
        canary: canary.state.as_ref(),
        rolled_back,
        config_held: config_held.is_some(),
        restarts_queued,
        restart_limit: ctx.restarts.limit(),
        now: ctx.now(),
    });
    history.fill(&mut status, kept_revisions);
    // Dependents are woken by this write's watch event (see `dependents_of`), so they read
    // the new status from the cache rather than a stale one.
    apply_status(&ctx, &*service, service.status.as_ref(), &status).await?;
    let stuck_pod = match (&progress, &stuck) {
        (Some(Progress::Stuck { pod, uid }), Some(condition)) => {
            Some((pod.as_str(), uid.as_deref().unwrap_or(pod), condition.message.as_str()))
        }
        _ => None,
    };
    announce_stuck(&ctx, &service, &reference, stuck_pod).await;
    let wait = match problem {
        // Invalid input: wait for the next change instead of requeueing hot.
        Some(_) => return Ok(Action::await_change()),
        None if status.ready_replicas == status.replicas && status.updated_replicas == status.replicas => {
            Duration::from_secs(300)
        }
        None => Duration::from_secs(30),
    };
    // The reload phase may need to come back sooner (settle delay, a newer configuration),
    // and so may a pod whose readiness check should have passed by then (no watch event
    // announces that it did not).
    // A held configuration is written when its window ends; a queued restart asks for a slot again.
    let queued_retry = (restarts_queued > 0).then_some(QUEUED_RETRY);
    let rollout = progress.as_ref().and_then(|p| requeue_after(p, ctx.now()));
    let deadline = next_deadline(pods.iter().map(|p| &**p), ctx.now());
    let sooner = [reloads.requeue, canary.requeue, deadline, rollout, config_held, queued_retry]
        .into_iter()
        .flatten()
        .min();
    Ok(Action::requeue(sooner.map_or(wait, |s| s.min(wait))))
}

/// How much longer the service's new configuration is held by `reload.debounce` (see
/// [`crate::controller::debounce`]); `None` when it may be written now. The applied
/// configuration is the one in the ConfigMap as cached.
fn debounce_hold(
    ctx: &Context,
    owner: &Owner,
    spec: &RelayServiceSpec,
    rendered: &RenderedService,
) -> Option<Duration> {
    let reload = spec.reload.as_ref()?;
    let name = owner.config_map_name();
    let applied = ctx
        .caches
        .config_maps
        .get(&ObjectRef::new(&name).within(&owner.namespace))
        .and_then(|c| c.config_hash.clone());
    ctx.debounce.hold(
        &service_key(owner),
        applied.as_deref(),
        &rendered.config_hash,
        reload.debounce.get(),
        ctx.now(),
    )
}

/// Diagnose every pod that is not Ready for a reason worth showing, read what that needs
/// (a crash log, one health fetch) and publish a Warning Event about the pod for each new
/// problem.
async fn diagnose_pods(
    ctx: &Context,
    reference: &ObjectReference,
    pods: &[Arc<CachedPod>],
    previous: Option<&RelayServiceStatus>,
) -> BTreeMap<String, FailureDetail> {
    let namespace = reference.namespace.as_deref().unwrap_or_default();
    let previous_pods = entries_by_name(previous);
    let mut failures = BTreeMap::new();
    let mut to_announce = Vec::new();
    let mut problems = BTreeMap::new();
    let now = ctx.now();
    let mut diagnosed: Vec<(&CachedPod, Diagnosis)> = pods
        .iter()
        .filter_map(|pod| {
            let entry = pod.metadata.name.as_deref().and_then(|name| previous_pods.get(name).copied());
            Some((&**pod, diagnose(pod, entry, now)?))
        })
        .collect();
    // In name order, so the Events of one pass come out in a stable order.
    diagnosed.sort_by(|(a, _), (b, _)| a.metadata.name.cmp(&b.metadata.name));
    for (pod, Diagnosis { mut failure, lookup, new }) in diagnosed {
        let name = pod.name_any();
        match lookup {
            Some(Lookup::Log(request)) => failure.log_tail = Some(read_log(ctx, namespace, &request).await),
            Some(Lookup::Health(url)) => {
                let answer = health_detail::fetch(&ctx.health_client, url.clone()).await;
                failure.message = format!("readiness check GET {} answered {answer}", url.path());
            }
            None => {}
        }
        // The UID tells a recreated pod from the one it replaces.
        let uid = pod.uid().unwrap_or_else(|| name.clone());
        problems.insert(uid.clone(), failure.reason.clone());
        if new {
            to_announce.push((uid, name.clone()));
        }
        failures.insert(name, failure);
    }
    // New by the status read *and* not announced by an earlier pass of this process.
    let service = format!("{namespace}/{}", reference.name.as_deref().unwrap_or_default());
    let fresh = ctx.announced.record(&service, problems);
    for (_, name) in to_announce.into_iter().filter(|(uid, _)| fresh.contains(uid)) {
        let Some(failure) = failures.get(&name) else { continue };
        let note = health_detail::truncate(
            &format!("pod {name}: {}", failure.message),
            health_detail::MAX_SHOWN_BYTES,
        );
        publish_about_pod(ctx, reference, &name, EventType::Warning, &failure.reason, "Diagnose", note).await;
    }
    failures
}

/// `rollback: auto`: once the status says the rollout to its `podTemplateHash` is stuck, pin
/// the revision applied before the current one, as the rollback request
/// `previous@auto-HASH` would (once per stuck template). The pin renders from the next
/// reconcile on and lasts until the spec's configuration or pod template changes.
async fn roll_back_if_stuck(
    ctx: &Context,
    service: &RelayService,
    owner: &Owner,
    reference: &ObjectReference,
    history: &mut revisions::History,
) {
    let Some(status) = service.status.as_ref() else { return };
    let Some(stuck) = status.pod_template_hash.as_deref() else { return };
    let request = format!("previous@{AUTO_ROLLBACK_PREFIX}{stuck}");
    let stuck_now = has_condition_reason(service, ConditionType::Progressing, PROGRESS_DEADLINE_EXCEEDED);
    if !stuck_now || history.rollback().is_some_and(|r| r.request == request) {
        return;
    }
    match history.pin(owner, &request, RollbackTarget::Previous, &ctx.now().to_string()) {
        Ok(entry) => {
            let note = format!(
                "rollback: auto: pod template {stuck} exceeded its progress deadline; rolling back to \
                 revision {} until the spec's configuration or pod template changes",
                entry.revision
            );
            publish(ctx, reference, EventType::Warning, "RollingBack", "Rollback", note).await;
        }
        Err(message) => {
            let note =
                format!("rollback: auto: pod template {stuck} exceeded its progress deadline: {message}");
            publish(ctx, reference, EventType::Warning, "RollbackFailed", "Rollback", note).await;
        }
    }
}

/// One Warning Event per stuck pod (`stuck`: name, UID, condition message): not when the
/// status read already said the rollout was stuck (a restarted operator), nor when an
/// earlier pass of this process announced it.
async fn announce_stuck(
    ctx: &Context,
    service: &RelayService,
    reference: &ObjectReference,
    stuck: Option<(&str, &str, &str)>,
) {
    let key = format!("{}/{}/rollout", service.namespace().unwrap_or_default(), service.name_any());
    let problem = stuck.iter().map(|(_, uid, _)| ((*uid).to_owned(), PROGRESS_DEADLINE_EXCEEDED.to_owned()));
    let fresh = !ctx.announced.record(&key, problem.collect()).is_empty();
    let Some((pod, _, message)) = stuck.filter(|_| fresh) else { return };
    if !has_condition_reason(service, ConditionType::Progressing, PROGRESS_DEADLINE_EXCEEDED) {
        let note = message.to_owned();
        publish_about_pod(
            ctx,
            reference,
            pod,
            EventType::Warning,
            PROGRESS_DEADLINE_EXCEEDED,
            "Rollout",
            note,
        )
        .await;
    }
}

/// The services in `service`'s namespace that depend on it, when it is Ready: the event of
/// its status turning Ready wakes them, and they find it Ready in the cache.
pub fn dependents_of(services: &Store<RelayService>, service: &RelayService) -> Vec<ObjectRef<RelayService>> {
    if !is_ready(service) {
        return Vec::new();
    }
    referencing(services, service, |s, name| s.spec.depends_on.iter().any(|d| d == name))
}

fn has_condition_reason(service: &RelayService, type_: ConditionType, reason: &str) -> bool {
    service
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
        .is_some_and(|c| c.reason == reason)
}

/// RelayServices that reference `policy` (a change to it reaches every one of them).
pub fn services_using_policy(
    services: &Store<RelayService>,
    policy: &HealthPolicy,
) -> Vec<ObjectRef<RelayService>> {
    referencing(services, policy, |s, name| s.spec.health_policy_ref.as_ref().is_some_and(|r| r.name == name))
}

/// RelayServices that read `secret` (config keys or the hook's bearer token).
pub fn services_using_secret(
    services: &Store<RelayService>,
    secret: &Secret,
) -> Vec<ObjectRef<RelayService>> {
    referencing(services, secret, |s, name| {
        let config =
            s.spec.config.as_ref().is_some_and(|c| c.secrets.iter().any(|k| k.secret_key_ref.name == name));
        let token = s
            .spec
            .reload
            .as_ref()
            .and_then(|r| r.bearer_token_secret_ref.as_ref())
            .is_some_and(|t| t.name == name);
        config || token
    })
}

/// RelayServices in the object's namespace for which `references(service, object name)` holds.
fn referencing<K: ResourceExt>(
    services: &Store<RelayService>,
    object: &K,
    references: impl Fn(&RelayService, &str) -> bool,
) -> Vec<ObjectRef<RelayService>> {
    let name = object.name_any();
    let namespace = object.namespace();
    services
        .state_filter(|s| s.metadata.namespace == namespace && references(s, &name))
        .iter()
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}
