//! The reload phase of a reconcile: after [`super::converge::converge`] wrote the
//! ConfigMap, bring every Ready pod of the current template to the desired `configHash`
//! through its reload hook (see "Reload protocol" in the README).
//!
//! Per pod whose annotation `relayops.io/config-hash` differs from the desired hash:
//!
//! 1. **Nudge.** Patch the annotation `relayops.io/config-nudge: <hash> <time>`. A pod
//!    update makes the kubelet sync that pod now, and syncing remounts its ConfigMap
//!    volume; without it the new file appears only at the kubelet's periodic sync
//!    (`syncFrequency`, 1 min, plus the ConfigMap cache delay): 60–90 s in the worst
//!    case. The time in the value survives operator restarts.
//! 2. **Call.** Concurrent calls (at most `--hook-concurrency` attempts in flight)
//!    through the `--hook-via` transport, retried with backoff until
//!    `reload.retryDeadline`. An app known to echo `configHash` is called right after
//!    the nudge (a stale answer is retried); any other app only once
//!    `reload.settleDelay` has passed since the nudge — otherwise the reconcile requeues
//!    for the remainder instead of sleeping.
//! 3. **Record.** On success, patch `relayops.io/config-hash` with the hash that was
//!    sent — only if it still equals the hash freshly rendered from the caches at that
//!    moment, so during A→B→C a pod is never recorded at B once C is desired. The
//!    annotation is durable: a restarted operator neither repeats nor forgets a reload.
//! 4. **Fail.** After the deadline, `onFailure: Restart` deletes the pod (it comes back
//!    with the new configuration; `relay_operator_reload_restarts_total`) once the restart
//!    budget (`--max-concurrent-restarts`) has a slot — until then the restart is queued and
//!    made by a later reconcile — `Ignore` leaves it; both are a Warning Event and
//!    `pods[].lastReload` in status.
//!
//! Design: the phase runs inside the reconcile — each pod's calls bounded by
//! `retryDeadline` (plus one call timeout) from its first attempt — and is abandoned as soon as the service's generation or freshly rendered
//! configuration hash changes. kube-runtime never runs two reconciles of one object at
//! once, so no pod is called twice concurrently, and other services reconcile in
//! parallel. A background task per service would need its own registry, cancellation and
//! a second writer of status for the same guarantees.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Semaphore;
use tracing::{info, warn};

pub mod plan;

use super::Error;
use super::context::Context;
use super::converge::{Target, service_key};
use super::pods::{health_url, ordinal_of};
use super::resolve::secret_data;
use super::writes::{delete, patch_metadata, publish, publish_about_pod};
use crate::api::{RelayServiceStatus, ReloadFailurePolicy, ReloadOutcome, ReloadResult, ReloadSpec};
use crate::controller::cached::CachedPod;
use crate::hook::{BearerToken, HookCall, HookOutcome, HookReport, HookSlots, RetryPolicy};
use crate::ops::metrics::ReloadHookResult;
use crate::render::{ANNOTATION_CONFIG_HASH, Owner, RenderedService, render_config};
use plan::{
    ANNOTATION_CONFIG_NUDGE, ANNOTATION_RELOAD_RESULT, Nudge, PodView, ReloadInput, awaits_restart, plan,
};

/// Most of one service's per-pod API writes (nudge and result annotations) in flight at
/// once: each takes the API server a few milliseconds, and its default limit on mutating
/// requests in flight is 200.
const API_WRITE_CONCURRENCY: usize = 64;

/// What a reload phase did, for status and requeueing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadRound {
    /// New `pods[].lastReload` entries.
    pub results: BTreeMap<String, ReloadResult>,
    /// Pods whose `relayops.io/config-hash` was written, with the hash.
    pub applied: BTreeMap<String, String>,
    /// Pods deleted by `onFailure: Restart` (still listed until the watch reports them
    /// gone, so their failed `lastReload` is visible).
    pub restarted: BTreeSet<String>,
    /// Restarts (`onFailure: Restart`) waiting for a slot of the restart budget.
    pub restarts_queued: usize,
    /// Reconcile again after this long (settle delay remaining, or a newer change).
    pub requeue: Option<Duration>,
}

impl ReloadRound {
    /// Reflect the round's writes in local copies of the pods (the cache lags behind);
    /// only the pods written are copied.
    pub fn apply_to(&self, pods: &mut [Arc<CachedPod>]) {
        if self.applied.is_empty() {
            return;
        }
        for pod in pods {
            let Some(hash) = pod.metadata.name.as_ref().and_then(|name| self.applied.get(name)) else {
                continue;
            };
            Arc::make_mut(pod).set_annotation(ANNOTATION_CONFIG_HASH, hash);
        }
    }
}

/// Which pods a reload round reaches (a canary configuration rollout narrows it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadScope {
    /// The hash the spec renders to, when the round sends another one (the last good
    /// configuration after a rollback): the round is superseded when the spec renders to
    /// anything else. `None`: the hash sent.
    pub spec_hash: Option<String>,
    /// Only these pods take part (the canaries); `None`: every pod.
    pub only: Option<BTreeSet<String>>,
    /// A failing hook never restarts the pod (`onFailure` is not applied): a canary's
    /// failure reverts the configuration instead.
    pub canary: bool,
    /// Pods called even when not Ready: reverted canaries, often unready because of the
    /// very configuration being reverted.
    pub even_unready: BTreeSet<String>,
}

/// Run the reload phase for a converged service. `generation` is the service's
/// `metadata.generation` this reconcile acts on; `pods` are its pods from the cache.
pub async fn propagate(
    ctx: &Context,
    target: &Target<'_>,
    generation: Option<i64>,
    rendered: &RenderedService,
    pods: &[Arc<CachedPod>],
    previous: Option<&RelayServiceStatus>,
    scope: &ReloadScope,
) -> Result<ReloadRound, Error> {
    let (Some(reload), Some(_)) = (&target.spec.reload, &target.spec.config) else {
        return Ok(ReloadRound::default());
    };
    let owner = target.owner;
    let desired = rendered.config_hash.as_str();
    let now = ctx.now();
    let written_at =
        ctx.reload_state.written_at(&service_key(owner), desired, config_map_time(ctx, owner, desired), now);
    // Records this process wrote that the cache does not show yet count as written: a
    // reconcile that runs before its own writes come back never calls a pod twice.
    let unobserved = ctx.reload_state.unobserved_records(pods.iter().map(|p| &**p));
    let mut pods = pods.to_vec();
    ReloadRound { applied: unobserved.clone(), ..ReloadRound::default() }.apply_to(&mut pods);
    // Only the pods the service keeps: a pod being scaled away is not reloaded.
    let base = owner.base_name();
    // A canary rollout reaches only its canaries.
    let kept = |view: &PodView| {
        ordinal_of(&base, &view.name).is_some_and(|o| o < rendered.replicas)
            && scope.only.as_ref().is_none_or(|only| only.contains(&view.name))
    };
    let views: Vec<PodView> = pods
        .iter()
        .map(|p| PodView::of(p))
        .filter(kept)
        .map(|p| PodView { ready: p.ready || scope.even_unready.contains(&p.name), ..p })
        .collect();
    let by_name: BTreeMap<&str, &CachedPod> =
        pods.iter().filter_map(|p| Some((p.metadata.name.as_deref()?, &**p))).collect();
    let uids: BTreeMap<&str, &str> =
        by_name.iter().filter_map(|(name, p)| Some((*name, p.metadata.uid.as_deref()?))).collect();
    // The last results this process produced count over the status it reads: a reconcile
    // that runs before its own status write comes back must not lose or repeat them.
    let remembered = ctx.reload_state.remembered_results(pods.iter().map(|p| &**p));
    let mut last_reload: BTreeMap<&str, &ReloadResult> = previous
        .map(|s| s.pods.iter().filter_map(|p| Some((p.name.as_str(), p.last_reload.as_deref()?))).collect())
        .unwrap_or_default();
    last_reload.extend(remembered.iter().map(|(name, result)| (name.as_str(), result)));
    let input = ReloadInput {
        desired_hash: desired,
        template_hash: &rendered.pod_template_hash,
        pods: &views,
        last_reload: &last_reload,
        settle_delay: reload.settle_delay.get(),
        now,
    };
    let steps = plan(&input);
    let awaiting: Vec<&str> = match reload.on_failure {
        ReloadFailurePolicy::Restart => {
            views.iter().filter(|v| awaits_restart(v, &input)).map(|v| v.name.as_str()).collect()
        }
        ReloadFailurePolicy::Ignore => Vec::new(),
    };
    let mut round = ReloadRound {
        requeue: steps.wait,
        applied: unobserved,
        results: remembered,
        ..ReloadRound::default()
    };
    for name in awaiting {
        let uid = uids.get(name).copied().unwrap_or(name);
        if ctx.restarts.holds(uid) {
            // Deleted already; the cache has not shown it terminating yet.
            continue;
        }
        if restart_pod(ctx, owner, name, uid).await? {
            round.restarted.insert(name.to_owned());
            let note = format!(
                "deleted pod {name} so it restarts with configuration {}: its reload failed (onFailure: Restart)",
                short(desired)
            );
            publish_about_pod(
                ctx,
                &target.reference,
                name,
                EventType::Normal,
                "ReloadRestart",
                "Restart",
                note,
            )
            .await;
        } else {
            round.restarts_queued += 1;
        }
    }
    if steps.nudge.is_empty() && steps.call.is_empty() {
        return Ok(round);
    }
    let options = &ctx.reload;
    let writes = Semaphore::new(API_WRITE_CONCURRENCY);

    // 1. Nudge.
    let nudge = Nudge { hash: desired.to_owned(), at: now }.annotation_value();
    let nudged = join_all(steps.nudge.iter().map(|name| {
        let metadata = serde_json::json!({"annotations": {ANNOTATION_CONFIG_NUDGE: nudge}});
        annotate_pod(ctx, &owner.namespace, name, metadata, &writes)
    }))
    .await;
    nudged.into_iter().collect::<Result<Vec<()>, Error>>()?;
    for name in &steps.nudge {
        if let Some(uid) = uids.get(name.as_str()) {
            ctx.reload_state.note_nudge(uid, desired);
        }
    }
    if steps.call.is_empty() {
        return Ok(round);
    }
    let spec_hash = scope.spec_hash.as_deref().unwrap_or(desired);
    let fresh = Freshness { ctx, owner, generation, pinned: target.pinned, sent: desired, spec_hash };
    let finished: Mutex<Vec<(HookReport, Recorded)>> = Mutex::default();
    // A pod an earlier operator process nudged for this hash may have been called before that
    // process stopped: if its health endpoint reports the hash, it is recorded, not called.
    let mut to_call = Vec::new();
    for (name, ip) in steps.call {
        let pod = by_name.get(name.as_str()).copied();
        let inherited = pod.and_then(Nudge::of).is_some_and(|n| n.hash == desired)
            && uids.get(name.as_str()).is_some_and(|uid| !ctx.reload_state.nudged_here(uid, desired));
        if inherited
            && let Some(url) = pod.and_then(health_url)
            && reported_hash(&ctx.health_client, url).await.as_deref() == Some(desired)
        {
            let report = HookReport {
                pod: name,
                outcome: HookOutcome::AppliedUnverified,
                attempts: 0,
                elapsed: Duration::ZERO,
            };
            let written = record(ctx, &fresh, &report, &writes, uids.get(report.pod.as_str()).copied()).await;
            finished.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((report, written));
        } else {
            to_call.push((name, ip));
        }
    }

    // 2. Call.
    let token = match bearer_token(ctx, &owner.namespace, reload) {
        Ok(token) => token,
        Err(message) => {
            publish(ctx, &target.reference, EventType::Warning, "ReloadTokenNotFound", "Reload", message)
                .await;
            round.requeue = Some(Duration::from_secs(30));
            return Ok(round);
        }
    };
    let transport = &options.transport;
    let policy = RetryPolicy {
        initial: options.retry_initial,
        max: options.retry_max,
        deadline: reload.retry_deadline.get(),
    };
    let mut calls = Vec::new();
    for (name, ip) in &to_call {
        let call = HookCall {
            pod: name.clone(),
            namespace: owner.namespace.clone(),
            pod_ip: ip.clone(),
            port: u16::try_from(reload.port).unwrap_or_default(),
            path: reload.path.clone(),
            method: reload.method,
            config_hash: desired.to_owned(),
            // The API proxy transport never sends it.
            bearer_token: token.clone(),
            timeout: reload.timeout.get(),
        };
        match transport.target(&call) {
            Ok(_) => calls.push(call),
            Err(e) => {
                round.results.insert(name.clone(), result(ReloadOutcome::Failed, desired, e.to_string()));
            }
        }
    }
    let limit = HookSlots::new(options.per_service, &options.slots);
    let run = join_all(calls.iter().map(|call| async {
        let report = transport.call_with_retry(call, &policy, Some(&limit)).await;
        ctx.metrics.reload_hook_call(ReloadHookResult::from(&report.outcome));
        let written = if report.succeeded() {
            record(ctx, &fresh, &report, &writes, uids.get(report.pod.as_str()).copied()).await
        } else {
            Recorded::Superseded
        };
        if written == Recorded::Written {
            let seconds = ctx.now().duration_since(written_at).as_secs_f64();
            ctx.metrics.observe_reload_propagation(seconds.max(0.0));
        }
        finished.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((report, written));
    }));
    let superseded = tokio::select! {
        _ = run => false,
        () = fresh.wait_superseded() => true,
    };
    let finished = finished.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());

    // 3. Record and 4. apply onFailure.
    let mut applied = 0usize;
    for (report, written) in finished {
        let name = report.pod.clone();
        let message = if report.attempts == 0 {
            "the app reports this configuration on its health endpoint (an earlier operator process called it); not called again".to_owned()
        } else {
            format!(
                "{} after {} attempt(s) in {} ms",
                report.outcome,
                report.attempts,
                report.elapsed.as_millis()
            )
        };
        if report.succeeded() {
            match written {
                Recorded::Failed(error) => {
                    round.results.insert(
                        name,
                        result(report.outcome.status_result(), desired, format!("{message}; {error}")),
                    );
                }
                Recorded::Written => {
                    applied += 1;
                    round.applied.insert(name.clone(), desired.to_owned());
                    round.results.insert(name, result(report.outcome.status_result(), desired, message));
                }
                // A newer configuration is desired: nothing is recorded for this one.
                Recorded::Superseded => {}
            }
            continue;
        }
        // A hook that answered too late may still have reloaded the app: if the app reports
        // the desired hash on its health endpoint, that is recorded and nothing is restarted.
        if let Some(url) = by_name.get(name.as_str()).and_then(|p| health_url(p))
            && reported_hash(&ctx.health_client, url).await.as_deref() == Some(desired)
        {
            let late = HookReport { outcome: HookOutcome::AppliedUnverified, ..report };
            if record(ctx, &fresh, &late, &writes, uids.get(name.as_str()).copied()).await
                == Recorded::Written
            {
                applied += 1;
                round.applied.insert(name.clone(), desired.to_owned());
                let note =
                    format!("{message}, but the app reports this configuration on its health endpoint");
                round.results.insert(name, result(ReloadOutcome::AppliedUnverified, desired, note));
            }
            continue;
        }
        round.results.insert(name.clone(), result(ReloadOutcome::Failed, desired, message.clone()));
        let policy = if scope.canary { ReloadFailurePolicy::Ignore } else { reload.on_failure };
        let (action, consequence) = match policy {
            ReloadFailurePolicy::Ignore if scope.canary => {
                warn!(pod = %name, %message, "canary reload failed; the configuration is reverted");
                ("Reload", "it is a canary: the configuration is reverted")
            }
            ReloadFailurePolicy::Restart => {
                let uid = uids.get(name.as_str()).copied().unwrap_or(&name);
                if restart_pod(ctx, owner, &name, uid).await? {
                    round.restarted.insert(name.clone());
                    warn!(pod = %name, %message, "reload failed; deleting the pod (onFailure: Restart)");
                    ("Restart", "deleted it so it restarts with the new configuration (onFailure: Restart)")
                } else {
                    round.restarts_queued += 1;
                    warn!(pod = %name, %message, "reload failed; its restart waits for a slot (--max-concurrent-restarts)");
                    (
                        "Restart",
                        "its restart is queued until --max-concurrent-restarts has a free slot (onFailure: Restart)",
                    )
                }
            }
            ReloadFailurePolicy::Ignore => {
                warn!(pod = %name, %message, "reload failed; leaving the pod (onFailure: Ignore)");
                ("Reload", "it keeps its previous configuration (onFailure: Ignore)")
            }
        };
        let note = format!("reload of pod {name} failed ({message}); {consequence}");
        publish_about_pod(ctx, &target.reference, &name, EventType::Warning, "ReloadFailed", action, note)
            .await;
    }
    if applied > 0 {
        info!(pods = applied, hash = %short(desired), "configuration reloaded");
        let note = format!("reloaded configuration {} in {applied} pod(s) through the hook", short(desired));
        publish(ctx, &target.reference, EventType::Normal, "ConfigReloaded", "Reload", note).await;
    }
    if superseded {
        info!(hash = %short(desired), "a newer configuration is desired; abandoning this reload");
        round.requeue = Some(Duration::from_millis(100));
    }
    for (name, result) in &round.results {
        if let Some(uid) = uids.get(name.as_str()) {
            ctx.reload_state.remember_result(uid, result);
        }
    }
    Ok(round)
}

/// Delete the pod `name` (UID `uid`) whose reload failed, if the restart budget has a slot;
/// returns whether it did.
async fn restart_pod(ctx: &Context, owner: &Owner, name: &str, uid: &str) -> Result<bool, Error> {
    if !ctx.restarts.acquire(&service_key(owner), name, uid, ctx.now()) {
        return Ok(false);
    }
    if let Err(e) = delete::<Pod>(ctx, &owner.namespace, name).await {
        ctx.restarts.release(uid);
        return Err(e);
    }
    ctx.metrics.reload_restart();
    Ok(true)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn result(result: ReloadOutcome, hash: &str, message: String) -> ReloadResult {
    ReloadResult {
        result,
        config_hash: hash.to_owned(),
        time: Some(Timestamp::now().to_string()),
        message: Some(message),
    }
}

/// The time the operator last applied the ConfigMap, when it carries `hash`.
fn config_map_time(ctx: &Context, owner: &Owner, hash: &str) -> Option<Timestamp> {
    let config_map =
        ctx.caches.config_maps.get(&ObjectRef::new(&owner.config_map_name()).within(&owner.namespace))?;
    if config_map.config_hash.as_deref() != Some(hash) {
        return None;
    }
    config_map.applied_at.as_ref().map(|t| t.0)
}

/// The token from `reload.bearerTokenSecretRef` (trailing whitespace trimmed), from the cache.
fn bearer_token(ctx: &Context, namespace: &str, reload: &ReloadSpec) -> Result<Option<BearerToken>, String> {
    let Some(selector) = &reload.bearer_token_secret_ref else { return Ok(None) };
    let secret = ctx.caches.secrets.get(namespace, &selector.name).ok_or_else(|| {
        format!("spec.reload.bearerTokenSecretRef: Secret {namespace}/{} not found", selector.name)
    })?;
    let value = secret.data.as_ref().and_then(|d| d.get(&selector.key)).ok_or_else(|| {
        format!(
            "spec.reload.bearerTokenSecretRef: Secret {namespace}/{} has no key {:?}",
            selector.name, selector.key
        )
    })?;
    let text = std::str::from_utf8(&value.0)
        .map_err(|_| format!("spec.reload.bearerTokenSecretRef: key {:?} is not UTF-8", selector.key))?;
    Ok(Some(BearerToken::new(text.trim_end())))
}

/// Annotate a pod, at most `writes` patches in flight at once; a pod already gone is fine.
async fn annotate_pod(
    ctx: &Context,
    namespace: &str,
    name: &str,
    metadata: serde_json::Value,
    writes: &Semaphore,
) -> Result<(), Error> {
    let _permit = writes.acquire().await.ok();
    patch_metadata::<Pod>(ctx, namespace, name, metadata).await.map(|_| ())
}

/// Whether the configuration this round sends is still the desired one.
struct Freshness<'a> {
    ctx: &'a Context,
    owner: &'a Owner,
    generation: Option<i64>,
    /// The configuration comes from a rolled-back revision, not from the spec.
    pinned: bool,
    sent: &'a str,
    /// What the spec rendered to when the round started (`sent`, except during a rollback).
    spec_hash: &'a str,
}

impl Freshness<'_> {
    /// The service in the cache has another generation, or its configuration now renders
    /// to another hash (spec or Secret changed; a rolled-back configuration is not the
    /// spec's, so only the generation counts). A service missing from the cache is judged
    /// by the spec this reconcile started with, i.e. not superseded.
    fn superseded(&self) -> bool {
        let key = ObjectRef::new(&self.owner.name).within(&self.owner.namespace);
        let Some(service) = self.ctx.caches.services.get(&key) else { return false };
        if service.metadata.generation != self.generation {
            return true;
        }
        if self.pinned {
            return false;
        }
        let secrets = secret_data(self.ctx, &self.owner.namespace, &service.spec);
        match render_config(self.owner, &service.spec, &secrets) {
            Ok(config) => config.hash != self.spec_hash,
            Err(_) => true,
        }
    }

    async fn wait_superseded(&self) {
        while !self.superseded() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What became of a successful call's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Recorded {
    /// `relayops.io/config-hash` now holds the sent hash.
    Written,
    /// A newer configuration is desired (or the call failed): nothing written.
    Superseded,
    /// The annotation patch failed (the reload will be repeated).
    Failed(String),
}

/// The `configHash` an app reports on its health endpoint, if it does (any status code).
async fn reported_hash(client: &reqwest::Client, url: url::Url) -> Option<String> {
    let read = async {
        let mut response = client.get(url).send().await.ok()?;
        let mut body = Vec::new();
        while body.len() < 64 * 1024 {
            let Some(chunk) = response.chunk().await.ok()? else { break };
            body.extend_from_slice(&chunk);
        }
        Some(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(3), read).await.ok()??;
    let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
    body.get("configHash")?.as_str().map(str::to_owned)
}

/// After a successful call: write the sent hash if it is still the desired one, and remember
/// it for the pod `uid` until the watch shows it.
async fn record(
    ctx: &Context,
    fresh: &Freshness<'_>,
    report: &HookReport,
    writes: &Semaphore,
    uid: Option<&str>,
) -> Recorded {
    if fresh.superseded() {
        return Recorded::Superseded;
    }
    let metadata = serde_json::json!({"annotations": {
        ANNOTATION_CONFIG_HASH: fresh.sent,
        ANNOTATION_RELOAD_RESULT: report.outcome.status_result().as_str(),
    }});
    match annotate_pod(ctx, &fresh.owner.namespace, &report.pod, metadata, writes).await {
        Ok(()) => {
            if let Some(uid) = uid {
                ctx.reload_state.expect_recorded(uid, fresh.sent);
            }
            Recorded::Written
        }
        Err(e) => {
            warn!(pod = %report.pod, error = %e, "cannot record the applied configuration hash");
            Recorded::Failed(format!("cannot record the applied hash: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_at_keeps_the_first_sighting_per_hash() {
        let state = crate::controller::context::ReloadState::default();
        let t = |s: &str| s.parse::<Timestamp>().expect("ts");
        assert_eq!(state.written_at("k", "a", None, t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:00Z"));
        assert_eq!(state.written_at("k", "a", None, t("2026-01-01T00:00:05Z")), t("2026-01-01T00:00:00Z"));
        assert_eq!(state.written_at("k", "b", None, t("2026-01-01T00:00:09Z")), t("2026-01-01T00:00:09Z"));
        assert_eq!(
            state.written_at("k", "b", Some(t("2026-01-01T00:00:08Z")), t("2026-01-01T00:00:10Z")),
            t("2026-01-01T00:00:08Z")
        );
    }
}
