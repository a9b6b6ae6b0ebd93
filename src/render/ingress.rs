//! The Ingress routing a host and path to one port of a service's Service.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec as KubeIngressSpec, IngressTLS, ServiceBackendPort,
};

use super::Owner;
use super::labels::owned_meta;
use crate::api::RelayServiceSpec;

/// The Ingress of `spec.ingress`, named like the Service; `None` without `spec.ingress` or
/// without ports (then there is no Service to route to).
pub fn render_ingress(owner: &Owner, spec: &RelayServiceSpec) -> Option<Ingress> {
    let ingress = spec.ingress.as_ref()?;
    let port = match &ingress.port {
        Some(port) => port.clone(),
        None => spec.ports.first()?.name.clone(),
    };
    let mut metadata = owned_meta(owner, owner.base_name());
    metadata.annotations = (!ingress.annotations.is_empty()).then(|| ingress.annotations.clone());
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: owner.base_name(),
            port: Some(ServiceBackendPort { name: Some(port), number: None }),
        }),
        resource: None,
    };
    let rule = IngressRule {
        host: ingress.host.clone(),
        http: Some(HTTPIngressRuleValue {
            paths: vec![HTTPIngressPath {
                path: Some(ingress.path.clone()),
                path_type: ingress.path_type.as_str().into(),
                backend,
            }],
        }),
    };
    let tls = ingress.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS { hosts: ingress.host.clone().map(|h| vec![h]), secret_name: Some(secret.clone()) }]
    });
    Some(Ingress {
        metadata,
        spec: Some(KubeIngressSpec {
            ingress_class_name: ingress.class_name.clone(),
            rules: Some(vec![rule]),
            tls,
            default_backend: None,
        }),
        status: None,
    })
}
