//! The HealthPolicy reconciler: whether the check maps onto probes, and how many RelayServices
//! and TestDeployments use it.
//!
//! Deleting a policy that is in use is handled on the services' side: their pods are left
//! as they are and they get `Degraded=True, reason HealthPolicyNotFound`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::Error;
use super::conditions::{NewCondition, merge};
use super::context::Context;
use super::test_deployment::health_policy_name;
use super::writes::apply_status;
use crate::api::{ConditionType, HealthPolicy, HealthPolicyStatus};
use crate::render::probes_for;

/// Status of `policy` given the number of services referencing it.
pub fn compute(policy: &HealthPolicy, used_by: i32, now: Timestamp) -> HealthPolicyStatus {
    // The schema admits only checks that map onto probes: reaching here means it does.
    let probes = probes_for(&policy.spec);
    let kinds = [
        Some("readiness"),
        probes.liveness.as_ref().map(|_| "liveness"),
        probes.startup.as_ref().map(|_| "startup"),
    ];
    let message = format!("maps onto {} probes", kinds.into_iter().flatten().collect::<Vec<_>>().join(", "));
    let accepted = NewCondition::new(ConditionType::Accepted, true, "Valid", message);
    let previous = policy.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    HealthPolicyStatus {
        observed_generation: policy.metadata.generation,
        used_by,
        conditions: merge(previous, vec![accepted], policy.metadata.generation, now),
    }
}

/// Reconcile one HealthPolicy: count its users (RelayServices and TestDeployments) in the
/// caches, write status.
pub async fn reconcile(policy: Arc<HealthPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::MissingNamespace)?;
    let name = policy.name_any();
    let here = |ns: Option<&str>| ns == Some(namespace.as_str());
    let services = ctx
        .caches
        .services
        .state()
        .iter()
        .filter(|s| here(s.metadata.namespace.as_deref()))
        .filter(|s| s.spec.health_policy_ref.as_ref().is_some_and(|r| r.name == name))
        .count();
    let test_deployments = ctx
        .caches
        .test_deployments
        .state()
        .iter()
        .filter(|td| here(td.metadata.namespace.as_deref()))
        .filter(|td| health_policy_name(td).as_deref() == Some(name.as_str()))
        .count();
    let used_by = services + test_deployments;
    let status = compute(&policy, i32::try_from(used_by).unwrap_or(i32::MAX), ctx.now());
    apply_status(&ctx, &*policy, policy.status.as_ref(), &status).await?;
    // Services that stop referencing the policy are noticed by this periodic pass.
    Ok(Action::requeue(Duration::from_secs(60)))
}
