//! The controllers: one folder per reconciler, shared steps beside them.
//!
//! Data flows one way: [`resolve`] reads the caches, `crate::render` builds the desired
//! objects (pure), [`converge`] applies them and executes the pod plan ([`rollout`], pure),
//! the [`reload`] phase brings running pods to the desired configuration, and each
//! reconciler computes its status (pure) and writes it. [`writes`] is the only module that
//! changes anything through the API; [`pods`] and [`conditions`] are pure vocabulary;
//! [`runner`] wires watches, caches and the kube-runtime Controllers. See ARCHITECTURE.md.

pub mod cached;
pub mod canary;
pub mod conditions;
pub mod container_log;
pub mod context;
pub mod converge;
pub mod debounce;
pub mod events;
pub mod health_policy;
pub mod own_writes;
pub mod pods;
pub mod relay_service;
pub mod reload;
pub mod resolve;
pub mod restart_budget;
pub mod rollout;
pub mod runner;
pub mod slim;
pub mod test_deployment;
pub mod tolerant;
pub mod writes;

/// A write the controller made: what it did to which object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// `apply`, `create`, `delete`, `annotate`, `write status of`.
    pub verb: &'static str,
    /// Kind of the object.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Write {
    /// This write failed with `source`.
    pub fn failed(self, source: kube::Error) -> Error {
        Error::Api { write: Box::new(self), source }
    }
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}/{}", self.verb, self.kind, self.namespace, self.name)
    }
}

/// Errors of a reconcile; all of them requeue with backoff. Problems with the resource
/// itself are not errors: they become conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write was refused or failed (including conflicts).
    #[error("{write}: {source}")]
    Api {
        /// The write that failed.
        write: Box<Write>,
        /// What the API server (or the connection) said.
        #[source]
        source: kube::Error,
    },
    /// An object could not be serialized.
    #[error("cannot serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A namespaced object came without a namespace.
    #[error("object has no namespace")]
    MissingNamespace,
    /// A rolled back configuration cannot be reverted: its last good copy is gone.
    #[error(
        "ConfigMap {namespace}/{name} with the last good configuration {hash} not found (yet); cannot revert"
    )]
    MissingLastGoodConfig {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// The configuration hash it should hold.
        hash: String,
    },
}

impl Error {
    /// Stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Api { source: kube::Error::Api(status), .. } if status.code == 409 => "conflict",
            Self::Api { .. } => "api",
            Self::Serialize(_) => "serialize",
            Self::MissingNamespace => "missing_namespace",
            Self::MissingLastGoodConfig { .. } => "missing_last_good_config",
        }
    }
}
