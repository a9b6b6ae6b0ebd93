//! The Service in front of a service's pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{owned_meta, selector_labels};
use crate::api::RelayServiceSpec;

/// The ClusterIP Service, or `None` when the spec declares no ports (e.g. a scheduler).
pub fn render_service_object(owner: &Owner, spec: &RelayServiceSpec) -> Option<Service> {
    if spec.ports.is_empty() {
        return None;
    }
    let ports = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.service_port.unwrap_or(p.container_port),
            target_port: Some(IntOrString::String(p.name.clone())),
            protocol: Some(p.protocol.as_str().into()),
            ..ServicePort::default()
        })
        .collect();
    Some(Service {
        metadata: owned_meta(owner, owner.base_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(owner)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
