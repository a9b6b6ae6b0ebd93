//! The effective service spec of a TestDeployment: its inline template, or a copy of a
//! RelayService's spec (without its exposure) with the overrides applied.

use crate::api::{ConfigSpec, LocalRef, RelayServiceSpec, TestDeploymentSpec};

/// The spec a TestDeployment's children are rendered from. `source` is the spec of
/// `fromRelayService` as copied at creation; `None` when the template is inline or the
/// source is missing (then the result is `None` too).
pub fn effective_spec(
    td: &TestDeploymentSpec,
    source: Option<&RelayServiceSpec>,
) -> Option<RelayServiceSpec> {
    let mut spec = match (&td.template, source) {
        (Some(template), _) => template.clone(),
        // A copied RelayService's own `suspend` is its operational state, not part of what is
        // tested: the TestDeployment's `suspend` alone governs the copy.
        // Nor is its exposure: a copy must not claim the RelayService's host or load
        // balancer, so a TestDeployment's Service is ClusterIP and it has no Ingress.
        (None, Some(source)) => {
            RelayServiceSpec { suspend: false, service: None, ingress: None, ..source.clone() }
        }
        (None, None) => return None,
    };
    spec.suspend |= td.suspend;
    if let Some(overrides) = &td.overrides {
        if let Some(image) = &overrides.image {
            spec.image = image.clone();
        }
        for var in &overrides.env {
            match spec.env.iter_mut().find(|e| e.name == var.name) {
                Some(existing) => *existing = var.clone(),
                None => spec.env.push(var.clone()),
            }
        }
        if !overrides.config.is_empty() {
            let config = spec.config.get_or_insert_with(ConfigSpec::default);
            config.data.extend(overrides.config.clone());
        }
        if let Some(replicas) = overrides.replicas {
            spec.replicas = replicas;
        }
    }
    if let Some(policy) = &td.health_policy_ref {
        spec.health_policy_ref = Some(LocalRef { name: policy.name.clone() });
        spec.health = None;
    }
    Some(spec)
}
