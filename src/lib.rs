//! relay-operator: a Kubernetes operator for long-lived network services.
//!
//! Data flows one way: [`api`] types → [`render`] (pure: spec → desired objects) →
//! [`controller`] (apply, pod plan, status). [`manifest`] feeds `render` offline;
//! [`hook`] calls the pods' reload hooks.

pub mod api;
pub mod controller;
pub mod crdgen;
pub mod deps;
pub mod history;
pub mod hook;
pub mod import;
pub mod manifest;
pub mod ops;
pub mod render;
pub mod rollback;
