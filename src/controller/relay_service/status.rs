//! Pure status computation of a RelayService from its pods and what reconcile found.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::api::{
    CanaryStatus, ConditionType, FailureDetail, PodEntry, RelayServiceStatus, ReloadOutcome, ReloadResult,
};
use crate::controller::cached::CachedPod;
use crate::controller::conditions::{NewCondition, merge};
use crate::controller::pods::{is_ready, is_terminating, pod_entry};
use crate::controller::relay_service::health_detail::truncate;
use crate::deps::Dependencies;
use crate::render::{ANNOTATION_CONFIG_HASH, LABEL_POD_TEMPLATE_HASH};

impl Dependencies {
    fn condition(&self) -> NewCondition {
        let new = |status, reason: &str, message: String| {
            NewCondition::new(ConditionType::DependenciesReady, status, reason, message)
        };
        match self {
            Self::Ready => new(true, "AllReady", "all dependencies are Ready".into()),
            Self::Waiting(names) => {
                new(false, "DependenciesNotReady", format!("waiting for {} to be Ready", names.join(", ")))
            }
            Self::Missing(names) => {
                new(false, "DependencyNotFound", format!("RelayService {} not found", names.join(", ")))
            }
            Self::Cycle(path) => {
                new(false, "DependencyCycle", format!("dependency cycle: {}", path.join(" → ")))
            }
        }
    }
}

/// Most bytes said about one failing pod in a condition message (the whole answer is in
/// `pods[].failure`).
const MAX_SAID_BYTES: usize = 300;

/// Everything status is computed from.
#[derive(Clone, Debug)]
pub struct StatusInput<'a> {
    /// `metadata.generation` of the service.
    pub generation: Option<i64>,
    /// Desired replicas (the spec's, 0 when suspended).
    pub desired: i32,
    /// `spec.suspend`.
    pub suspended: bool,
    /// The owned pods as they are.
    pub pods: &'a [Arc<CachedPod>],
    /// Current template hash and config hash (absent when rendering failed).
    pub hashes: Option<(&'a str, &'a str)>,
    /// Pod selector string.
    pub selector: String,
    /// State of `dependsOn`.
    pub dependencies: &'a Dependencies,
    /// A blocking problem: (reason, message), e.g. a missing HealthPolicy or an invalid spec.
    pub problem: Option<(&'a str, String)>,
    /// The image tag is mutable.
    pub mutable_image: Option<&'a str>,
    /// Why pods are not Ready, by pod name (see `diagnosis`).
    pub failures: &'a BTreeMap<String, FailureDetail>,
    /// Status as it is now (for stable transition times and reload results).
    pub previous: Option<&'a RelayServiceStatus>,
    /// Reload results of this reconcile by pod (they replace the previous ones).
    pub reloads: &'a BTreeMap<String, ReloadResult>,
    /// `Progressing=False/ProgressDeadlineExceeded` when the rollout is stuck (see `progress`).
    pub stuck: Option<NewCondition>,
    /// The canary configuration rollout (`status.canary`).
    pub canary: Option<&'a CanaryStatus>,
    /// The `ConfigRolledBack` condition, when there is one to set.
    pub rolled_back: Option<NewCondition>,
    /// A new configuration is held by `reload.debounce`.
    pub config_held: bool,
    /// Pod restarts waiting for a slot of `--max-concurrent-restarts`.
    pub restarts_queued: usize,
    /// `--max-concurrent-restarts`, if set.
    pub restart_limit: Option<usize>,
    /// Current time.
    pub now: Timestamp,
}

/// The pod entries of a status by pod name.
pub fn entries_by_name(status: Option<&RelayServiceStatus>) -> HashMap<&str, &PodEntry> {
    status.map(|s| s.pods.iter().map(|p| (p.name.as_str(), p)).collect()).unwrap_or_default()
}

/// Compute the status.
pub fn compute<'a>(input: &StatusInput<'a>) -> RelayServiceStatus {
    let live: Vec<&CachedPod> = input.pods.iter().map(|p| &**p).filter(|p| !is_terminating(p)).collect();
    let annotation = |pod: &'a CachedPod| pod.annotation(ANNOTATION_CONFIG_HASH);
    let template_label = |pod: &'a CachedPod| pod.label(LABEL_POD_TEMPLATE_HASH);
    let (template_hash, config_hash) = match input.hashes {
        Some((t, c)) => (Some(t.to_string()), Some(c.to_string())),
        None => (None, None),
    };
    let ready = live.iter().filter(|p| is_ready(p)).count() as i32;
    let updated = live
        .iter()
        .filter(|p| template_hash.is_some() && template_label(p) == template_hash.as_deref())
        .count() as i32;
    let synced =
        live.iter().filter(|p| config_hash.is_some() && annotation(p) == config_hash.as_deref()).count()
            as i32;

    let previous_pods = entries_by_name(input.previous);
    let mut pods: Vec<PodEntry> = live
        .iter()
        .map(|pod| {
            let entry = pod_entry(pod);
            let name = entry.name.as_str();
            let previous = previous_pods.get(name).copied();
            let last_reload = input.reloads.get(name).or_else(|| {
                // A failure the pod has since recovered from (e.g. restarted with the new
                // configuration) is no longer reported.
                previous.and_then(|p| p.last_reload.as_deref()).filter(|r| {
                    !(r.result == ReloadOutcome::Failed && annotation(pod) == Some(r.config_hash.as_str()))
                })
            });
            PodEntry {
                last_reload: last_reload.cloned().map(Box::new),
                failure: input.failures.get(name).cloned().map(Box::new),
                ..entry
            }
        })
        .collect();
    pods.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let image_digest = live
        .iter()
        .filter(|p| template_label(p) == template_hash.as_deref())
        .filter_map(|p| Some(p.status.as_ref()?.container_statuses.first()?.image_id.clone()))
        .find(|i| !i.is_empty());

    let desired = input.desired;
    let existing = live.len() as i32;
    let converged = input.problem.is_none() && ready == desired && updated == desired && existing == desired;
    // Why pods fail, in pod order: "web-0: ImagePullBackOff: Back-off pulling image …".
    let failing: Vec<(&str, String)> = pods
        .iter()
        .filter_map(|p| {
            let failure = p.failure.as_ref()?;
            let first_line = failure.message.lines().next().unwrap_or_default();
            let said = truncate(&format!("{}: {}: {first_line}", p.name, failure.reason), MAX_SAID_BYTES);
            Some((failure.reason.as_str(), said))
        })
        .collect();

    let ready_condition = match (&input.problem, input.suspended) {
        (Some((reason, message)), _) => {
            NewCondition::new(ConditionType::Ready, false, *reason, message.clone())
        }
        (None, true) => NewCondition::new(ConditionType::Ready, false, "Suspended", "suspended: no pods run"),
        (None, false) if converged => NewCondition::new(
            ConditionType::Ready,
            true,
            "AllReplicasReady",
            format!("{ready}/{desired} pods ready"),
        ),
        // The first failing pod's reason, so `kubectl get` says why.
        (None, false) => match failing.first() {
            Some((reason, said)) => NewCondition::new(
                ConditionType::Ready,
                false,
                *reason,
                format!("{ready}/{desired} pods ready, {updated} up to date; {said}"),
            ),
            None => NewCondition::new(
                ConditionType::Ready,
                false,
                "ReplicasNotReady",
                format!("{ready}/{desired} pods ready, {updated} up to date"),
            ),
        },
    };
    let progressing = if input.restarts_queued > 0 {
        let limit = input.restart_limit.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
        NewCondition::new(
            ConditionType::Progressing,
            true,
            "RestartQueued",
            format!(
                "{} pod restart(s) wait for a slot (--max-concurrent-restarts {limit}, shared by all services); {updated}/{desired} pods up to date",
                input.restarts_queued
            ),
        )
    } else if converged || input.suspended && existing == 0 {
        NewCondition::new(ConditionType::Progressing, false, "UpToDate", "all pods run the current template")
    } else if let Some(stuck) = &input.stuck {
        stuck.clone()
    } else if !input.dependencies.ready() {
        NewCondition::new(
            ConditionType::Progressing,
            false,
            "WaitingForDependencies",
            "pods are not created or rolled until dependencies are Ready",
        )
    } else if existing > desired {
        NewCondition::new(
            ConditionType::Progressing,
            true,
            "ScalingDown",
            format!("{existing} pods, {desired} desired"),
        )
    } else if updated < existing {
        NewCondition::new(
            ConditionType::Progressing,
            true,
            "RollingUpdate",
            format!("{updated}/{desired} pods up to date"),
        )
    } else {
        NewCondition::new(
            ConditionType::Progressing,
            true,
            "Creating",
            format!("{existing}/{desired} pods created, {ready} ready"),
        )
    };
    let degraded = match (&input.problem, failing.is_empty()) {
        (Some((reason, message)), _) => {
            NewCondition::new(ConditionType::Degraded, true, *reason, message.clone())
        }
        (None, false) => {
            let said: Vec<&str> = failing.iter().map(|(_, said)| said.as_str()).collect();
            NewCondition::new(ConditionType::Degraded, true, "PodsFailing", said.join("; "))
        }
        (None, true) => NewCondition::new(ConditionType::Degraded, false, "AsExpected", "no failing pods"),
    };
    let hook_failed: Vec<String> = pods
        .iter()
        .filter(|p| config_hash.is_some() && p.config_hash != config_hash)
        .filter(|p| {
            p.last_reload.as_ref().is_some_and(|r| {
                r.result == ReloadOutcome::Failed && Some(&r.config_hash) == config_hash.as_ref()
            })
        })
        .map(|p| p.name.clone())
        .collect();
    let config = if existing > 0 && synced == existing {
        NewCondition::new(
            ConditionType::ConfigInSync,
            true,
            "InSync",
            format!("{synced}/{existing} pods run the desired configuration"),
        )
    } else if existing == 0 {
        NewCondition::new(ConditionType::ConfigInSync, true, "NoPods", "no pods to configure")
    } else if input.config_held {
        NewCondition::new(
            ConditionType::ConfigInSync,
            false,
            "Debouncing",
            format!(
                "{synced}/{existing} pods run the desired configuration; it is written and reloaded once it has not changed for reload.debounce"
            ),
        )
    } else if !hook_failed.is_empty() {
        NewCondition::new(
            ConditionType::ConfigInSync,
            false,
            "HookFailed",
            format!(
                "{synced}/{existing} pods run the desired configuration; the reload hook failed on {} (see pods[].lastReload)",
                hook_failed.join(", ")
            ),
        )
    } else {
        NewCondition::new(
            ConditionType::ConfigInSync,
            false,
            "Propagating",
            format!("{synced}/{existing} pods run the desired configuration"),
        )
    };
    let image = match input.mutable_image {
        Some(image) => NewCondition::new(
            ConditionType::ImagePinned,
            false,
            "MutableImageTag",
            format!("image {image:?} has a mutable tag; pin a version or digest"),
        ),
        None => {
            NewCondition::new(ConditionType::ImagePinned, true, "Pinned", "the image names a fixed version")
        }
    };
    let previous_conditions = input.previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut updates =
        vec![ready_condition, progressing, degraded, config, input.dependencies.condition(), image];
    updates.extend(input.rolled_back.clone());
    let conditions = merge(previous_conditions, updates, input.generation, input.now);

    // A rollout completes once every desired pod runs the template Ready (no pods prove nothing).
    let completed_pod_template_hash = match template_hash.as_ref() {
        Some(hash) if converged && desired > 0 => Some(hash.clone()),
        _ => input.previous.and_then(|s| s.completed_pod_template_hash.clone()),
    };

    RelayServiceStatus {
        observed_generation: input.generation,
        replicas: existing,
        ready_replicas: ready,
        updated_replicas: updated,
        ready: Some(format!("{ready}/{desired}")),
        selector: Some(input.selector.clone()),
        config_hash,
        config_synced_replicas: synced,
        pod_template_hash: template_hash,
        completed_pod_template_hash,
        image_digest,
        pods,
        canary: input.canary.cloned().map(Box::new),
        conditions,
        // The revision fields are the revision history's (`super::revisions`).
        ..RelayServiceStatus::default()
    }
}
