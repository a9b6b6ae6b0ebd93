//! The controller: reconcilers that apply rendered objects and compute status.
//!
//! `plan`, `status` and `conditions` are pure; the reconcilers do the API I/O.

pub mod conditions;
pub mod plan;
pub mod status;
