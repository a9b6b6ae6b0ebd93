//! Label, annotation and field-manager names shared by rendering and the controller.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Owner;

/// Server-side apply field manager of every write the operator makes.
pub const MANAGER: &str = "relay-operator";
/// Selector label: the base name of the owning service.
pub const LABEL_SERVICE: &str = "relayops.io/service";
/// Kind of the owning resource.
pub const LABEL_OWNER_KIND: &str = "relayops.io/owner-kind";
/// Ordinal of a pod.
pub const LABEL_POD_INDEX: &str = "relayops.io/pod-index";
/// Hash of the pod template (and restart keys) a pod was created from.
pub const LABEL_POD_TEMPLATE_HASH: &str = "relayops.io/pod-template-hash";
/// Storage volume a claim belongs to.
pub const LABEL_VOLUME: &str = "relayops.io/volume";
/// Configuration hash a pod has applied (set at creation and after each acknowledged reload).
pub const ANNOTATION_CONFIG_HASH: &str = "relayops.io/config-hash";

/// Labels on every child of `owner`.
pub fn common_labels(owner: &Owner) -> BTreeMap<String, String> {
    let mut labels = selector_labels(owner);
    labels.insert("app.kubernetes.io/name".into(), owner.name.clone());
    labels.insert("app.kubernetes.io/instance".into(), owner.base_name());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels.insert(LABEL_OWNER_KIND.into(), owner.kind.as_str().into());
    labels
}

/// Labels selecting the pods of `owner`.
pub fn selector_labels(owner: &Owner) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SERVICE.to_string(), owner.base_name())])
}

/// The pod selector as a `key=value` string (status `selector`, scale subresource).
pub fn selector_string(owner: &Owner) -> String {
    format!("{LABEL_SERVICE}={}", owner.base_name())
}

/// Metadata of an owned child: name, namespace, common labels, controller owner reference.
pub fn owned_meta(owner: &Owner, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(owner.namespace.clone()),
        labels: Some(common_labels(owner)),
        owner_references: Some(vec![owner.owner_reference()]),
        ..ObjectMeta::default()
    }
}
