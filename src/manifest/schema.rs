//! Validation of custom resources against the generated CRD schemas: structure, types,
//! ranges, patterns and enums (JSON Schema), unknown fields, defaults and CEL rules.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api;

/// Compiled validators for the three custom resource kinds.
pub struct SchemaValidator {
    kinds: BTreeMap<String, KindSchema>,
    cel: kube_cel::Validator,
}

struct KindSchema {
    schema: Value,
    validator: jsonschema::Validator,
}

/// One violation: field path and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path such as `spec.ports[0].containerPort` (empty for the whole object).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl SchemaValidator {
    /// Compile the schemas of every CRD.
    pub fn new() -> Result<Self, String> {
        let mut kinds = BTreeMap::new();
        for crd in api::crds() {
            let kind = crd.spec.names.kind.clone();
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("CRD {kind} has no schema"))?;
            let mut strict = schema.clone();
            // The API server serves these for every kind; the CRD schema leaves them implicit.
            if let Some(properties) = strict.get_mut("properties").and_then(Value::as_object_mut) {
                properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
                properties.insert("kind".into(), serde_json::json!({"type": "string"}));
                properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
            }
            forbid_unknown_fields(&mut strict);
            let validator = jsonschema::validator_for(&strict).map_err(|e| format!("{kind}: {e}"))?;
            kinds.insert(kind, KindSchema { schema, validator });
        }
        Ok(Self { kinds, cel: kube_cel::Validator::new() })
    }

    /// Whether `kind` is one of ours.
    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// Validate `object` of `kind`; on success return it with schema defaults applied.
    pub fn validate(&self, kind: &str, object: &Value) -> Result<Value, Vec<Violation>> {
        let Some(entry) = self.kinds.get(kind) else {
            return Err(vec![Violation { field: "kind".into(), message: format!("unknown kind {kind:?}") }]);
        };
        let mut violations: Vec<Violation> = entry
            .validator
            .iter_errors(object)
            .map(|e| Violation {
                field: pointer_to_path(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect();
        if !violations.is_empty() {
            violations.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(violations);
        }
        let defaulted = kube_cel::apply_defaults(&entry.schema, object);
        if let Err(errors) = self.cel.validate(&entry.schema, &defaulted, None) {
            return Err(errors
                .iter()
                .map(|e| Violation { field: e.field_path.clone(), message: e.message.clone() })
                .collect());
        }
        Ok(defaulted)
    }
}

/// Validate a service spec that no API server has seen — a TestDeployment's template after
/// its overrides were applied — against the RelayService schema, as if it were one.
pub fn validate_service_spec(spec: &crate::api::RelayServiceSpec) -> Result<(), Violation> {
    static VALIDATOR: std::sync::OnceLock<Result<SchemaValidator, String>> = std::sync::OnceLock::new();
    let invalid = |message: String| Violation { field: String::new(), message };
    let validator = VALIDATOR.get_or_init(SchemaValidator::new).as_ref().map_err(|e| invalid(e.clone()))?;
    let spec = serde_json::to_value(spec).map_err(|e| invalid(e.to_string()))?;
    let object = serde_json::json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION),
        "kind": "RelayService",
        "metadata": {"name": "template"},
        "spec": spec,
    });
    validator
        .validate("RelayService", &object)
        .map(|_| ())
        .map_err(|violations| violations.into_iter().next().unwrap_or_else(|| invalid("invalid".into())))
}

/// Structural schemas prune unknown fields and `kubectl apply` refuses them (strict field
/// validation); make them errors here too.
fn forbid_unknown_fields(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else { return };
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object_mut() {
                    props.values_mut().for_each(forbid_unknown_fields);
                }
            }
            "items" | "additionalProperties" => forbid_unknown_fields(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(forbid_unknown_fields);
                }
            }
            _ => {}
        }
    }
}

/// `/spec/ports/0/name` → `spec.ports[0].name`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::pointer_to_path;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(pointer_to_path("/spec/ports/0/containerPort"), "spec.ports[0].containerPort");
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(
            pointer_to_path("/metadata/labels/app.kubernetes.io~1name"),
            "metadata.labels.app.kubernetes.io/name"
        );
    }
}
