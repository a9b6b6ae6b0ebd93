//! `relay-operator rollback`: asks the operator to roll a RelayService back by setting the
//! annotation `relayops.io/rollback-to` (what a GitOps user writes by hand), then waits
//! for the operator's answer in `status.rollback` and for the revision to become current.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::api::RelayService;
use crate::history::{ANNOTATION_ROLLBACK_TO, HistoryError, RollbackTarget, choose, current};

/// Why a rollback could not be asked for or did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The API server refused or could not be reached.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// No such RelayService.
    #[error("RelayService {0} not found")]
    NotFound(String),
    /// The target is not among the kept revisions.
    #[error("RelayService {service}: {source}")]
    Target {
        /// `namespace/name`.
        service: String,
        /// Why.
        #[source]
        source: HistoryError,
    },
    /// The operator answered that it cannot roll back.
    #[error("RelayService {service}: the operator refused the rollback: {message}")]
    Refused {
        /// `namespace/name`.
        service: String,
        /// Its message in `status.rollback.message`.
        message: String,
    },
    /// No answer in time.
    #[error(
        "RelayService {service}: no answer from the operator within {waited:?}; the annotation \
         {ANNOTATION_ROLLBACK_TO}={request} stays and is handled when the operator runs"
    )]
    Timeout {
        /// `namespace/name`.
        service: String,
        /// How long it waited.
        waited: Duration,
        /// The annotation value.
        request: String,
    },
}

/// A rollback to ask for.
#[derive(Clone, Debug)]
pub struct RollbackRequest {
    /// Namespace of the service.
    pub namespace: String,
    /// Name of the service.
    pub name: String,
    /// The revision to restore; the one applied before the current one when `None`.
    pub to_revision: Option<i64>,
    /// How long to wait for the operator (zero: do not wait).
    pub timeout: Duration,
}

/// Ask for the rollback and wait for it; returns a line for the user.
pub async fn rollback(client: Client, request: &RollbackRequest) -> Result<String, RollbackError> {
    let service = format!("{}/{}", request.namespace, request.name);
    let api: Api<RelayService> = Api::namespaced(client, &request.namespace);
    let found = api
        .get_opt(&request.name)
        .await
        .map_err(|source| RollbackError::Api { what: format!("read RelayService {service}"), source })?
        .ok_or_else(|| RollbackError::NotFound(service.clone()))?;
    let entries = found.status.as_ref().map(|s| s.revisions.clone()).unwrap_or_default();
    let target = request.to_revision.map_or(RollbackTarget::Previous, RollbackTarget::Revision);
    // Checked here for a clear message; the operator checks again against its own view.
    let running = found.status.as_ref().and_then(|s| s.rollback.as_ref()).and_then(|r| r.hash.clone());
    let from = current(&entries).map(|e| e.revision);
    let running = running.or_else(|| current(&entries).map(|e| e.hash.clone()));
    let chosen = choose(&entries, running.as_deref(), target)
        .map_err(|source| RollbackError::Target { service: service.clone(), source })?
        .revision;
    let value = target.request(&k8s_openapi::jiff::Timestamp::now().to_string());
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_ROLLBACK_TO: value}}});
    api.patch(&request.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| RollbackError::Api { what: format!("annotate RelayService {service}"), source })?;
    let asked = format!(
        "RelayService {service}: rollback from revision {} to revision {chosen} requested ({ANNOTATION_ROLLBACK_TO}={value})",
        from.map_or_else(|| "none".to_owned(), |n| n.to_string())
    );
    if request.timeout.is_zero() {
        return Ok(asked);
    }
    let started = Instant::now();
    while started.elapsed() < request.timeout {
        let now = api
            .get_opt(&request.name)
            .await
            .map_err(|source| RollbackError::Api { what: format!("read RelayService {service}"), source })?
            .ok_or_else(|| RollbackError::NotFound(service.clone()))?;
        let status = now.status.unwrap_or_default();
        if let Some(answer) = status.rollback.filter(|r| r.request == value) {
            match answer.revision {
                None => {
                    let message = answer.message.unwrap_or_default();
                    return Err(RollbackError::Refused { service, message });
                }
                Some(revision) if status.current_revision == Some(revision) => {
                    return Ok(format!(
                        "RelayService {service} rolled back to revision {revision} (generation {} of the spec stays; \
                         its next change of configuration or pod template is applied as usual)",
                        now.metadata.generation.unwrap_or_default()
                    ));
                }
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(RollbackError::Timeout { service, waited: request.timeout, request: value })
}
