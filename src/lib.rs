//! relay-operator: a Kubernetes operator for long-lived network services.
//!
//! Data flows one way: [`api`] types → [`render`] (pure: spec → desired objects) →
//! apply (controller) → status.

pub mod api;
pub mod crdgen;
pub mod reload;
