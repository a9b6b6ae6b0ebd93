//! The operator-process layer: metrics, the HTTP endpoint for metrics and probes, logging,
//! leader election and shutdown signals.
//!
//! Nothing here knows about reconciliation logic; the controller uses these pieces.

pub mod http;
pub mod leader;
pub mod metrics;
pub mod objects;
mod process;
pub mod shutdown;
pub mod telemetry;

use std::net::SocketAddr;

pub use http::{HttpState, router, serve, serve_listener};
pub use leader::{LeaderConfig, LeaderHandle, acquire, act_alone, default_identity};
pub use metrics::{Metrics, ReconcileTimer, ReloadHookResult};
pub use objects::{ObjectSamples, ObjectSource};
pub use shutdown::signal;
pub use telemetry::{LogFormat, init as init_telemetry};

/// Errors of the operator-process layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP server could not bind its address.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address that was to be bound.
        addr: SocketAddr,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The log filter directive string is invalid.
    #[error("invalid log filter {filter:?}: {message}")]
    LogFilter {
        /// The rejected directive string.
        filter: String,
        /// Why it was rejected.
        message: String,
    },
    /// A global tracing subscriber was already installed.
    #[error("cannot install the tracing subscriber: {0}")]
    Telemetry(String),
    /// Invalid leader-election timing (`duration` and `grace` must be > 0 and `grace < duration`).
    #[error("invalid lease timing: duration {duration}s, grace {grace}s (need 0 < grace < duration)")]
    LeaseTiming {
        /// Lease duration in seconds.
        duration: u64,
        /// Renewal grace period in seconds.
        grace: u64,
    },
    /// Talking to the Lease API failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The background task that renews the lease ended (or panicked).
    #[error("leader election task ended: {0}")]
    LeaderTask(String),
}
