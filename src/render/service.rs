//! The Service in front of a service's pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{owned_meta, selector_labels};
use crate::api::RelayServiceSpec;

/// The Service (`ClusterIP` unless `spec.service.type` says otherwise), or `None` when the
/// spec declares no ports (e.g. a scheduler).
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
    let exposure = spec.service.clone().unwrap_or_default();
    let mut metadata = owned_meta(owner, owner.base_name());
    metadata.annotations = (!exposure.annotations.is_empty()).then_some(exposure.annotations);
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(exposure.type_.as_str().into()),
            selector: Some(selector_labels(owner)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
