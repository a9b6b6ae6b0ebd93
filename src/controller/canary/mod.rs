//! Canary configuration rollouts (`spec.reload.canary`; "Reload protocol" in the README):
//! a new configuration is reloaded on the canary pods only, watched for `hold`, then
//! either reaches every pod or is reverted — the ConfigMap returns to the last good
//! configuration and the canaries are reloaded back, the other pods are never called.
//!
//! Durable state: `status.canary` (written before the ConfigMap changes, so a restarted
//! operator resumes the canary instead of reloading every pod) and the owned ConfigMap
//! `NAME-config-last-good`, a copy of the ConfigMap the canary replaced. A ConfigMap never
//! holds Secret values (they are mounted from the Secret and enter only the hash), so
//! neither does the copy. Decisions are pure ([`plan`]); this module reads and writes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

pub mod plan;

use super::Error;
use super::context::Context;
use super::converge::Target;
use super::pods::{health_url, is_ready, is_terminating};
use super::relay_service::health_detail;
use super::reload::plan::PodView;
use super::reload::{ReloadRound, ReloadScope};
use super::writes::{apply_if_changed, apply_status, publish, read_uncached};
use crate::api::{CanaryPhase, CanaryStatus, RelayService, ReloadOutcome};
use crate::controller::cached::CachedPod;
use crate::render::{ANNOTATION_CONFIG_HASH, CONFIG_HASH_KEY, Owner, RenderedService, owned_config_map};
use plan::{Health, Observation, Stage, Verdict, judge, short, stage};

/// How often the canaries are looked at during the hold.
pub const POLL: Duration = Duration::from_secs(1);

/// Name of the ConfigMap holding the last good configuration.
pub fn last_good_name(owner: &Owner) -> String {
    format!("{}{LAST_GOOD_SUFFIX}", owner.config_map_name())
}

/// The name suffix of the last good ConfigMap copies (their whole data is read back on a revert).
pub const LAST_GOOD_SUFFIX: &str = "-last-good";

/// What the rest of a reconcile does about the canary.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// What to converge and reload: the rendered service, or after a rollback the same
    /// with the last good configuration.
    pub rendered: Cow<'a, RenderedService>,
    /// Which pods the reload phase reaches.
    pub scope: ReloadScope,
    /// The canary state so far.
    pub state: Option<CanaryStatus>,
    /// The hash the spec renders to.
    spec_hash: String,
}

impl Prepared<'_> {
    /// Whether this reconcile applies the spec's configuration to every pod: not while it is
    /// on trial on the canaries, nor once it was rolled back.
    pub fn applies_spec(&self) -> bool {
        self.scope.only.is_none() && matches!(self.rendered, Cow::Borrowed(_))
    }
}

/// After the reload phase: the canary state for status, and when to look again.
#[derive(Debug, Default)]
pub struct Concluded {
    /// `status.canary`.
    pub state: Option<CanaryStatus>,
    /// Reconcile again after this long (the hold is polled).
    pub requeue: Option<Duration>,
}

fn memory_key(owner: &Owner) -> String {
    owner.uid.clone().unwrap_or_else(|| format!("{}/{}", owner.namespace, owner.name))
}

/// The canary state as this process last decided it, else as status says: kept as it is
/// by a reconcile that cannot render the service (e.g. a Secret is missing for a while).
pub fn remembered(ctx: &Context, owner: &Owner, service: &RelayService) -> Option<CanaryStatus> {
    ctx.canaries
        .get(&memory_key(owner))
        .unwrap_or_else(|| service.status.as_ref().and_then(|s| s.canary.as_deref().cloned()))
}

/// Decide the canary stage before converging; starting a canary copies the live ConfigMap
/// as the last good one and writes `status.canary` first.
pub async fn prepare<'a>(
    ctx: &Context,
    target: &Target<'_>,
    service: &RelayService,
    rendered: &'a RenderedService,
    pods: &[Arc<CachedPod>],
) -> Result<Prepared<'a>, Error> {
    let owner = target.owner;
    let key = memory_key(owner);
    let state = remembered(ctx, owner, service);
    let spec_hash = rendered.config_hash.clone();
    let mut prepared =
        Prepared { rendered: Cow::Borrowed(rendered), scope: ReloadScope::default(), state, spec_hash };
    let canary = target.spec.reload.as_ref().and_then(|r| r.canary.as_ref());
    let Some(canary) = canary.filter(|_| target.spec.config.is_some()) else {
        if prepared.state.take().is_some() {
            ctx.canaries.set(&key, None);
        }
        return Ok(prepared);
    };
    let live = ctx.caches.config_maps.get(&ObjectRef::new(&owner.config_map_name()).within(&owner.namespace));
    let live_hash = live.as_ref().and_then(|c| c.config_hash.clone());
    match stage(prepared.state.as_ref(), &prepared.spec_hash, live_hash.as_deref()) {
        Stage::Off => {
            if prepared.state.as_ref().is_some_and(|s| s.phase.in_progress()) {
                prepared.state = None;
            }
        }
        Stage::Continue => {
            let only = prepared.state.as_ref().map(|s| s.pods.iter().cloned().collect());
            prepared.scope = ReloadScope { only, canary: true, ..ReloadScope::default() };
        }
        Stage::Reverted => {
            let previous =
                prepared.state.as_ref().map(|s| s.previous_config_hash.clone()).unwrap_or_default();
            let copy = last_good(ctx, owner, &previous)?;
            prepared.rendered = Cow::Owned(with_config(owner, rendered, &previous, copy));
            let even_unready =
                prepared.state.as_ref().map(|s| s.pods.iter().cloned().collect()).unwrap_or_default();
            prepared.scope = ReloadScope {
                spec_hash: Some(prepared.spec_hash.clone()),
                only: None,
                canary: false,
                even_unready,
            };
        }
        Stage::Start { previous, copy_live } => {
            let views: Vec<PodView> = pods.iter().map(|p| PodView::of(p)).collect();
            let canaries = plan::choose(
                &views,
                &owner.base_name(),
                &rendered.pod_template_hash,
                canary.pods,
                usize::try_from(target.spec.replicas).unwrap_or_default(),
            );
            if canaries.is_empty() {
                // Nothing Ready runs the current template: nothing to protect.
                prepared.state = None;
            } else {
                // The cache keeps only a live ConfigMap's hash: its data is read once here.
                let live_data = if copy_live {
                    read_uncached::<ConfigMap>(ctx, &owner.namespace, &owner.config_map_name()).await?
                } else {
                    None
                };
                if let Some(data) = live_data.and_then(|c| c.data) {
                    let copy = owned_config_map(owner, last_good_name(owner), data);
                    apply_if_changed(ctx, &ctx.caches.config_maps, copy).await?;
                }
                let state = CanaryStatus {
                    config_hash: prepared.spec_hash.clone(),
                    previous_config_hash: previous,
                    phase: CanaryPhase::Reloading,
                    pods: canaries,
                    started: Some(ctx.now().to_string()),
                    ..CanaryStatus::default()
                };
                // Durable before the ConfigMap changes: a restarted operator resumes the canary.
                let mut status = service.status.clone().unwrap_or_default();
                status.canary = Some(Box::new(state.clone()));
                apply_status(ctx, service, service.status.as_ref(), &status).await?;
                let note = format!(
                    "trying configuration {} on {} for {} before the other pods; the last good one is {}",
                    short(&state.config_hash),
                    state.pods.join(", "),
                    canary.hold,
                    short(&state.previous_config_hash)
                );
                info!(pods = %state.pods.join(","), hash = %short(&state.config_hash), "canary started");
                publish(ctx, &target.reference, EventType::Normal, "CanaryStarted", "Reload", note).await;
                let only = state.pods.iter().cloned().collect();
                prepared.scope = ReloadScope { only: Some(only), canary: true, ..ReloadScope::default() };
                prepared.state = Some(state);
            }
        }
    }
    ctx.canaries.set(&key, prepared.state.clone());
    Ok(prepared)
}

/// After the reload phase: judge the canaries of a canary under way — revert on a
/// failure, start or count the hold, or pass it.
pub async fn conclude(
    ctx: &Context,
    target: &Target<'_>,
    prepared: Prepared<'_>,
    round: &ReloadRound,
    pods: &[Arc<CachedPod>],
    previous: &BTreeMap<String, crate::api::ReloadResult>,
) -> Result<Concluded, Error> {
    let owner = target.owner;
    let hold = target.spec.reload.as_ref().and_then(|r| r.canary.as_ref()).map(|c| c.hold.get());
    let (Some(mut state), Some(hold)) = (prepared.state, hold) else {
        return Ok(Concluded { state: None, requeue: None });
    };
    if !(state.phase.in_progress() && state.config_hash == prepared.spec_hash) {
        return Ok(Concluded { state: Some(state), requeue: None });
    }
    let now = ctx.now();
    let observations = observe(ctx, &state, round, pods, previous).await;
    let hold_since = state.hold_since.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let requeue = match judge(&observations, hold_since, hold, now) {
        Verdict::Fail { reason, message } => {
            revert(ctx, target, &state).await?;
            let note = format!(
                "configuration {} reverted to {}: {message}; the other pods never received it",
                short(&state.config_hash),
                short(&state.previous_config_hash)
            );
            warn!(hash = %short(&state.config_hash), reason, %message, "canary failed; configuration reverted");
            ctx.metrics.config_rollback(reason);
            publish(
                ctx,
                &target.reference,
                EventType::Warning,
                "ConfigRolledBack",
                "Rollback",
                health_detail::truncate(&note, health_detail::MAX_SHOWN_BYTES),
            )
            .await;
            state.phase = CanaryPhase::RolledBack;
            state.reason = Some(reason.to_owned());
            state.message = Some(message);
            state.finished = Some(now.to_string());
            Duration::from_millis(100)
        }
        Verdict::Reloading => POLL,
        Verdict::Holding { since, remaining } => {
            state.phase = CanaryPhase::Holding;
            state.hold_since = Some(since.to_string());
            remaining.min(POLL)
        }
        Verdict::Pass => {
            state.phase = CanaryPhase::Passed;
            state.finished = Some(now.to_string());
            let note = format!(
                "configuration {} passed its hold on {}; reloading the other pods",
                short(&state.config_hash),
                state.pods.join(", ")
            );
            info!(hash = %short(&state.config_hash), "canary passed");
            publish(ctx, &target.reference, EventType::Normal, "CanaryPassed", "Reload", note).await;
            Duration::from_millis(100)
        }
    };
    ctx.canaries.set(&memory_key(owner), Some(state.clone()));
    Ok(Concluded { state: Some(state), requeue: Some(requeue) })
}

/// Look at each canary: there, Ready, applied, its hook, and (once applied, or when it is
/// unready) its health endpoint — the canaries' endpoints are fetched concurrently.
async fn observe(
    ctx: &Context,
    state: &CanaryStatus,
    round: &ReloadRound,
    pods: &[Arc<CachedPod>],
    previous: &BTreeMap<String, crate::api::ReloadResult>,
) -> Vec<Observation> {
    join_all(state.pods.iter().map(|name| async move {
        let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
        let Some(pod) = pod.filter(|p| !is_terminating(p)) else {
            return Observation { name: name.clone(), ..Observation::default() };
        };
        let applied = pod.annotation(ANNOTATION_CONFIG_HASH) == Some(state.config_hash.as_str());
        let hook_failure = round
            .results
            .get(name)
            .or_else(|| previous.get(name))
            .filter(|r| r.result == ReloadOutcome::Failed && r.config_hash == state.config_hash)
            .map(|r| r.message.clone().unwrap_or_else(|| "failed".into()));
        let ready = is_ready(pod);
        let health = match health_url(pod) {
            Some(url) if applied || !ready => {
                let path = url.path().to_owned();
                let answer = health_detail::check(&ctx.health_client, url).await;
                let detail = format!("readiness check GET {path} answered {}", answer.detail);
                Some(Health { healthy: answer.healthy(), detail })
            }
            _ => None,
        };
        Observation { name: name.clone(), present: true, ready, applied, hook_failure, health }
    }))
    .await
}

/// Put the last good configuration back into the ConfigMap now (the next reconcile reloads
/// the canaries with it).
async fn revert(ctx: &Context, target: &Target<'_>, state: &CanaryStatus) -> Result<(), Error> {
    let owner = target.owner;
    let data = last_good(ctx, owner, &state.previous_config_hash)?;
    let restored = owned_config_map(owner, owner.config_map_name(), data);
    apply_if_changed(ctx, &ctx.caches.config_maps, restored).await?;
    Ok(())
}

/// The data of the last good ConfigMap copy holding `hash`, from the cache (written when
/// the canary started, long before any revert; a copy not seen yet is an error, retried).
fn last_good(ctx: &Context, owner: &Owner, hash: &str) -> Result<BTreeMap<String, String>, Error> {
    let name = last_good_name(owner);
    let cached = ctx.caches.config_maps.get(&ObjectRef::new(&name).within(&owner.namespace));
    let data = cached.and_then(|c| c.last_good.clone());
    match data {
        Some(data) if data.get(CONFIG_HASH_KEY).map(String::as_str) == Some(hash) => Ok(data),
        _ => Err(Error::MissingLastGoodConfig {
            namespace: owner.namespace.clone(),
            name,
            hash: hash.to_owned(),
        }),
    }
}

/// `rendered` with the configuration `data` (hash `hash`) instead of the rendered one.
fn with_config(
    owner: &Owner,
    rendered: &RenderedService,
    hash: &str,
    data: BTreeMap<String, String>,
) -> RenderedService {
    let mut effective = rendered.clone();
    effective.config_map = Some(owned_config_map(owner, owner.config_map_name(), data));
    effective.config_hash = hash.to_owned();
    effective.template.set_config_hash(hash);
    effective
}
