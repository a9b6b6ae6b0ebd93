//! Facts about one pod, read the same way everywhere: Ready, terminating, finished, its
//! ordinal, and why it fails. Pure.

use crate::api::{FailureDetail, PodEntry};
use crate::controller::cached::{CachedPod, ContainerFacts, ContainerNow};
use crate::render::ANNOTATION_CONFIG_HASH;

/// Container waiting reasons that mean the pod is failing (not just starting).
pub const FAILING_WAITING_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// The pod's Ready condition is True.
pub fn is_ready(pod: &CachedPod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.ready)
}

/// The pod is being deleted.
pub fn is_terminating(pod: &CachedPod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's phase is `Failed` or `Succeeded`: its containers will not run again.
pub fn is_finished(pod: &CachedPod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded"))
}

/// Ordinal of a pod named `BASE-ORDINAL`.
pub fn ordinal_of(base: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(base)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|n| *n >= 0)
}

/// A container log to read into `failure.logTail` (the reconciler does the I/O).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRequest {
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Read the previous (crashed) instance's log rather than the current one.
    pub previous: bool,
}

/// Why `pod` fails, and which log explains it, if it does.
pub fn pod_failure(pod: &CachedPod) -> Option<(FailureDetail, Option<LogRequest>)> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().chain(&status.container_statuses);
    for container in containers {
        if let Some(found) = container_failure(name, container) {
            return Some(found);
        }
    }
    let message = status.unschedulable.clone()?;
    let detail = FailureDetail {
        reason: "Unschedulable".into(),
        message: Some(message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("pod {name} cannot be scheduled")),
        pod: Some(name.to_owned()),
        ..FailureDetail::default()
    };
    Some((detail, None))
}

fn container_failure(pod: &str, container: &ContainerFacts) -> Option<(FailureDetail, Option<LogRequest>)> {
    let last_exit = container.last_exit_code;
    let log = |previous| LogRequest { pod: pod.into(), container: container.name.clone(), previous };
    if let ContainerNow::Waiting { reason, message } = &container.state {
        let reason = reason.as_deref().unwrap_or_default();
        if FAILING_WAITING_REASONS.contains(&reason) {
            let message = message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("container {} is waiting: {reason}", container.name));
            let crashed = reason == "CrashLoopBackOff";
            let detail = FailureDetail {
                reason: reason.into(),
                message,
                pod: Some(pod.into()),
                container: Some(container.name.clone()),
                exit_code: last_exit.filter(|_| crashed),
                log_tail: None,
            };
            return Some((detail, crashed.then(|| log(true))));
        }
    }
    let ContainerNow::Terminated { exit_code, reason, message } = &container.state else { return None };
    if *exit_code == 0 {
        return None;
    }
    let detail = FailureDetail {
        reason: reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "Error".into()),
        message: message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("container {} exited with code {exit_code}", container.name)),
        pod: Some(pod.into()),
        container: Some(container.name.clone()),
        exit_code: Some(*exit_code),
        log_tail: None,
    };
    // The terminated instance is the current one: its log is not "previous".
    Some((detail, Some(log(false))))
}

/// The URL of the pod's HTTP readiness check (`scheme://podIP:port/path`), if it has one.
pub fn health_url(pod: &CachedPod) -> Option<url::Url> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    let get = pod.spec.as_ref()?.readiness_probe.http_get.as_ref()?;
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => *port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_) => return None,
    };
    let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    url::Url::parse(&format!("{scheme}://{host}:{port}{}", get.path.as_deref().unwrap_or("/"))).ok()
}

/// What a pod reports about itself: name, readiness, applied configuration hash, restarts,
/// image digest (no reload result or failure).
pub fn pod_entry(pod: &CachedPod) -> PodEntry {
    let statuses = pod.status.as_ref().map(|s| s.container_statuses.as_slice()).unwrap_or_default();
    PodEntry {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: is_ready(pod),
        config_hash: pod.annotation(ANNOTATION_CONFIG_HASH).map(str::to_owned),
        restarts: statuses.iter().map(|s| s.restart_count).sum(),
        image_id: statuses.iter().find(|s| !s.image_id.is_empty()).map(|s| s.image_id.clone()),
        last_reload: None,
        failure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_from_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-td-0"), None);
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }
}
