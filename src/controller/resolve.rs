//! Everything a reconcile reads: the caches (HealthPolicies, Secrets, owned pods, other
//! services for dependencies), resolved into what rendering and status need. No writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::conditions::Problem;
use super::context::Context;
use crate::api::{HealthPolicySpec, RelayService, RelayServiceSpec};
use crate::controller::cached::CachedPod;
use crate::deps::{Dependencies, evaluate};
use crate::render::{
    LABEL_SERVICE, Owner, RenderedService, SecretData, ServiceInput, image_is_pinned, render_service,
};

/// Resolve the health check and Secrets from the caches and render; a missing HealthPolicy,
/// a Secret in a namespace the operator may not read, an unrenderable spec or (with
/// `--require-pinned-images`) a mutable image is a [`Problem`].
pub fn resolve_and_render(
    ctx: &Context,
    owner: &Owner,
    spec: &RelayServiceSpec,
) -> Result<RenderedService, Problem> {
    let namespace = &owner.namespace;
    let health: Option<HealthPolicySpec> = match &spec.health_policy_ref {
        Some(reference) => {
            let policy = ctx.caches.policies.get(&ObjectRef::new(&reference.name).within(namespace));
            let policy = policy.ok_or_else(|| Problem {
                reason: "HealthPolicyNotFound",
                message: format!(
                    "HealthPolicy {namespace}/{} not found; running pods are left as they are",
                    reference.name
                ),
            })?;
            Some(policy.spec.clone())
        }
        None => spec.health.as_deref().cloned(),
    };
    if let Some(problem) = unreadable_secret(ctx, namespace, spec) {
        return Err(problem);
    }
    let secrets = secret_data(ctx, namespace, spec);
    let rendered = render_service(ServiceInput { owner, spec, health: health.as_ref(), secrets: &secrets })
        .map_err(|e| Problem { reason: e.reason(), message: e.to_string() })?;
    if ctx.require_pinned_images && !image_is_pinned(&spec.image) {
        return Err(Problem {
            reason: "ImageNotPinned",
            message: format!("image {:?} has a mutable tag and --require-pinned-images is set", spec.image),
        });
    }
    Ok(rendered)
}

/// The pods of `owner`, from the cache (shared with it: a reconcile copies only the pods it
/// changes locally).
pub fn owned_pods(ctx: &Context, owner: &Owner) -> Vec<Arc<CachedPod>> {
    let base = owner.base_name();
    // Every pod of the service is named BASE-ORDINAL: the name rules out the pods of other
    // services before their labels are searched (this runs over every cached pod).
    ctx.caches.pods.state_filter(|p| {
        named_after(p.metadata.name.as_deref(), &base)
            && p.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
            && p.label(LABEL_SERVICE) == Some(base.as_str())
    })
}

/// A Secret the spec references (config keys or the reload hook's token) in a namespace whose
/// Secrets the operator may not read: it would otherwise look missing.
fn unreadable_secret(ctx: &Context, namespace: &str, spec: &RelayServiceSpec) -> Option<Problem> {
    if ctx.caches.secrets.readable(namespace) {
        return None;
    }
    let config = spec.config.iter().flat_map(|c| c.secrets.iter()).enumerate().map(|(index, entry)| {
        (format!("spec.config.secrets[{index}].secretKeyRef"), entry.secret_key_ref.name.as_str())
    });
    let token = spec
        .reload
        .iter()
        .filter_map(|r| r.bearer_token_secret_ref.as_ref())
        .map(|selector| ("spec.reload.bearerTokenSecretRef".to_owned(), selector.name.as_str()));
    let (field, name) = config.chain(token).next()?;
    Some(Problem {
        reason: "SecretNotReadable",
        message: format!(
            "{field}: Secret {namespace}/{name} cannot be read: the operator may not read Secrets in \
             namespace {namespace:?}; grant it with the chart value rbac.secretNamespaces \
             (the operator flag --secret-namespace {namespace})"
        ),
    })
}

/// Referenced Secrets' data, for the configuration hash (values never leave memory).
pub fn secret_data(ctx: &Context, namespace: &str, spec: &RelayServiceSpec) -> SecretData {
    let referenced: BTreeSet<&str> =
        spec.config.iter().flat_map(|c| c.secrets.iter().map(|s| s.secret_key_ref.name.as_str())).collect();
    referenced
        .into_iter()
        .filter_map(|name| ctx.caches.secrets.get(namespace, name))
        .map(|s| {
            let data = s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            (s.name_any(), data)
        })
        .collect()
}

/// Whether `name` is `BASE-…`, the name of a pod or revision of the service named `base`.
pub fn named_after(name: Option<&str>, base: &str) -> bool {
    name.and_then(|n| n.strip_prefix(base)).is_some_and(|rest| rest.starts_with('-'))
}

/// Dependency state of `service`, from the RelayService cache: only the services reachable
/// through `dependsOn` are looked up (by name), so a reconcile does not visit every service
/// of its namespace.
pub fn dependencies(ctx: &Context, service: &RelayService, namespace: &str) -> Dependencies {
    let mut reachable = Vec::new();
    let mut seen = BTreeSet::from([service.name_any()]);
    let mut next = service.spec.depends_on.clone();
    while let Some(name) = next.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(found) = ctx.caches.services.get(&ObjectRef::new(&name).within(namespace)) {
            next.extend(found.spec.depends_on.iter().cloned());
            reachable.push(found);
        }
    }
    let in_namespace: Vec<&RelayService> = reachable.iter().map(|s| &**s).collect();
    evaluate(service, &in_namespace)
}

#[cfg(test)]
mod tests {
    use super::named_after;

    #[test]
    fn names_after_a_base() {
        assert!(named_after(Some("web-0"), "web"));
        assert!(named_after(Some("web-td-3"), "web-td"));
        assert!(named_after(Some("web-td-3"), "web"), "a test deployment's pods pass; their label decides");
        assert!(!named_after(Some("webx-0"), "web"));
        assert!(!named_after(Some("web"), "web"));
        assert!(!named_after(Some("api-0"), "web"));
        assert!(!named_after(None, "web"));
    }
}
