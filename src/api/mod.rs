//! API types of the `relayops.io/v1alpha1` custom resources.
//!
//! Pure data: serde + schemars types from which the CRDs in `crds/` are generated.
//! No I/O lives here; defaults and validation rules are part of the schema so the
//! API server (and `relay-operator render`, which evaluates the same schema) refuses
//! a bad manifest with a field path.

mod common;
mod exposure;
// Clippy reads repeated `printcolumn(type_ = ...)` arguments of the kube derive as duplicates.
#[allow(clippy::duplicated_attributes)]
mod health_policy;
#[allow(clippy::duplicated_attributes)]
mod relay_service;
#[allow(clippy::duplicated_attributes)]
mod test_deployment;

pub use common::*;
pub use exposure::*;
pub use health_policy::*;
pub use relay_service::*;
pub use test_deployment::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every relay-operator resource.
pub const GROUP: &str = "relayops.io";
/// API version served and stored.
pub const VERSION: &str = "v1alpha1";

/// All custom resource definitions, in a stable order (HealthPolicy, RelayService, TestDeployment).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![HealthPolicy::crd(), RelayService::crd(), TestDeployment::crd()]
}
