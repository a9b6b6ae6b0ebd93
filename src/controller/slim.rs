//! What the caches keep of the kinds the operator caches whole (RelayServices, HealthPolicies,
//! TestDeployments, claims, Ingresses, Secrets): everything but the field-ownership records
//! (`managedFields`, most of an object's size, never read) and the client-side-apply copy
//! `kubectl.kubernetes.io/last-applied-configuration` (the whole object again, never read).
//! The kinds kept per service have their own, smaller types ([`super::cached`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// The annotation `kubectl apply` (client side) keeps a copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop `managedFields` and the last-applied annotation from `object`.
pub fn slim<K: Resource>(object: &mut K) {
    slim_metadata(object.meta_mut());
}

/// Drop `meta.managedFields` and the last-applied annotation.
pub fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    #[test]
    fn managed_fields_and_the_last_applied_copy_go_real_annotations_stay() {
        let mut claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "data-web-0",
                "annotations": {LAST_APPLIED: "{\"big\": \"copy\"}", "team": "payments"},
                "managedFields": [{"manager": "relay-operator", "operation": "Apply"}],
            },
        }))
        .unwrap();
        slim(&mut claim);
        assert!(claim.metadata.managed_fields.is_none());
        assert_eq!(claim.metadata.annotations.unwrap().keys().collect::<Vec<_>>(), ["team"]);

        let mut other: PersistentVolumeClaim =
            serde_json::from_value(serde_json::json!({"metadata": {"annotations": {LAST_APPLIED: "{}"}}}))
                .unwrap();
        slim(&mut other);
        assert!(other.metadata.annotations.is_none(), "no empty map is left");
    }
}
