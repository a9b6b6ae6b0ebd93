//! The controller: reconcilers that apply rendered objects and compute status.
//!
//! `plan`, `reload_plan`, `status`, `phase` and `conditions` are pure; `reload` runs the
//! reload hooks; `apply`, `children`, `relay_service` and `test_deployment` do the API I/O;
//! `runner` wires watches, caches and the kube-runtime Controller.

pub mod apply;
pub mod children;
pub mod conditions;
pub mod context;
pub mod health_detail;
pub mod health_policy;
pub mod phase;
pub mod plan;
pub mod relay_service;
pub mod reload;
pub mod reload_plan;
pub mod runner;
pub mod status;
pub mod test_deployment;

/// Errors of a reconcile; all of them requeue with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed (including conflicts).
    #[error("API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// An object could not be serialized.
    #[error("cannot serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A namespaced object came without a namespace.
    #[error("object has no namespace")]
    MissingNamespace,
    /// The reload hook HTTP client could not be built.
    #[error("{0}")]
    HookClient(#[source] crate::reload::HookClientError),
}

impl Error {
    /// Stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(_) => "api",
            Self::Serialize(_) => "serialize",
            Self::MissingNamespace => "missing_namespace",
            Self::HookClient(_) => "hook_client",
        }
    }
}
