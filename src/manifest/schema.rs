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
        let mut violations: Vec<Violation> =
            entry.validator.iter_errors(object).flat_map(|e| describe(&e)).collect();
        if !violations.is_empty() {
            violations.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(violations);
        }
        let defaulted = kube_cel::apply_defaults(&entry.schema, object);
        if let Err(errors) = self.cel.validate(&entry.schema, &defaulted, None) {
            return Err(errors
                .iter()
                .map(|e| Violation {
                    field: if e.field_path.is_empty() {
                        field_of_rule(&e.rule)
                    } else {
                        e.field_path.clone()
                    },
                    message: e.message.clone(),
                })
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

/// A JSON Schema error in words: the field it is about (for a missing or unknown property,
/// the property itself) and what is wrong, without raw regular expressions.
fn describe(error: &jsonschema::ValidationError<'_>) -> Vec<Violation> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
    let path = pointer_to_path(&error.instance_path().to_string());
    let child = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    let value = shown(error.instance());
    let message = match error.kind() {
        Kind::Required { property } => {
            let property = property.as_str().map(String::from).unwrap_or_else(|| property.to_string());
            return vec![Violation { field: child(&property), message: "required".into() }];
        }
        Kind::AdditionalProperties { unexpected } => {
            return unexpected
                .iter()
                .map(|name| Violation { field: child(name), message: "unknown field".into() })
                .collect();
        }
        Kind::Pattern { pattern } => format!("{value} {}", pattern_in_words(pattern)),
        Kind::Type { kind: TypeKind::Single(expected) } => {
            let article =
                if matches!(expected.as_str(), "array" | "integer" | "object") { "an" } else { "a" };
            format!("{value} is not {article} {expected}")
        }
        Kind::Maximum { limit } => format!("{value} is greater than the maximum of {}", number(limit)),
        Kind::Minimum { limit } => format!("{value} is less than the minimum of {}", number(limit)),
        Kind::Enum { options } => {
            let options: Vec<String> = options.as_array().into_iter().flatten().map(shown).collect();
            format!("{value} is not one of {}", options.join(", "))
        }
        _ => error.to_string(),
    };
    vec![Violation { field: path, message }]
}

/// The field a CEL rule on the whole object is about, when it names exactly one:
/// `size(self.metadata.name) <= 52` → `metadata.name`.
fn field_of_rule(rule: &str) -> String {
    let fields: std::collections::BTreeSet<&str> = rule
        .match_indices("self.")
        .map(|(at, _)| {
            let rest = &rule[at + "self.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .collect();
    match fields.into_iter().collect::<Vec<_>>().as_slice() {
        [field] => (*field).to_string(),
        _ => String::new(),
    }
}

/// A schema limit as written in the CRD (`65535`, not `65535.0`).
fn number(limit: &Value) -> String {
    match limit.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 1e15 => format!("{}", float as i64),
        _ => limit.to_string(),
    }
}

/// A value as it appears in a message, shortened when long.
fn shown(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// What the patterns of the CRD schemas mean.
fn pattern_in_words(pattern: &str) -> String {
    match pattern {
        "^([0-9]{1,6}(ms|s|m|h)){1,4}$" => "must be a duration such as 30s, 5m or 1h30m".into(),
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" => {
            "must be a lowercase RFC 1123 label: a-z, 0-9 and '-', starting and ending with a letter or digit".into()
        }
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" => {
            "must be a lowercase RFC 1123 name: a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit"
                .into()
        }
        "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" => "must be a quantity such as 512Mi, 1Gi or 10G".into(),
        "^[A-Za-z_][A-Za-z0-9_]*$" => {
            "must be a variable name: letters, digits and '_', not starting with a digit".into()
        }
        "^[-._a-zA-Z0-9]+$" => "must be a file name: letters, digits, '-', '_' and '.'".into(),
        "^/" => "must be an absolute path (starting with /)".into(),
        other => format!("does not match the pattern {other}"),
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
    use super::{SchemaValidator, Violation, pointer_to_path};

    fn violations(kind: &str, yaml: &str) -> Vec<Violation> {
        let object: serde_json::Value = serde_saphyr::from_str(yaml).expect("test input parses");
        let validator = SchemaValidator::new().expect("built-in schemas compile");
        validator.validate(kind, &object).expect_err("input is invalid")
    }

    fn service(spec: &str) -> Vec<Violation> {
        violations(
            "RelayService",
            &format!(
                "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {{name: web}}\nspec: {spec}\n"
            ),
        )
    }

    fn one(field: &str, message: &str) -> Vec<Violation> {
        vec![Violation { field: field.into(), message: message.into() }]
    }

    #[test]
    fn durations_are_described_in_words() {
        let found = violations(
            "HealthPolicy",
            "apiVersion: relayops.io/v1alpha1\nkind: HealthPolicy\nmetadata: {name: hp}\nspec: {tcp: {port: 5432}, interval: ten seconds}\n",
        );
        assert_eq!(
            found,
            one("spec.interval", "\"ten seconds\" must be a duration such as 30s, 5m or 1h30m")
        );
    }

    #[test]
    fn names_are_described_in_words() {
        let found = service("{image: a:1, dependsOn: [Postgres_DB]}");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "spec.dependsOn[0]");
        assert!(
            found[0].message.starts_with("\"Postgres_DB\" must be a lowercase RFC 1123 label"),
            "{found:?}"
        );
    }

    #[test]
    fn quantities_and_paths_are_described_in_words() {
        let found = service("{image: a:1, storage: [{name: data, size: lots, mountPath: data}]}");
        assert_eq!(
            found,
            vec![
                Violation {
                    field: "spec.storage[0].mountPath".into(),
                    message: "\"data\" must be an absolute path (starting with /)".into()
                },
                Violation {
                    field: "spec.storage[0].size".into(),
                    message: "\"lots\" must be a quantity such as 512Mi, 1Gi or 10G".into()
                },
            ]
        );
    }

    #[test]
    fn limits_are_written_as_in_the_crd() {
        assert_eq!(
            service("{image: a:1, ports: [{name: http, containerPort: 0}]}"),
            one("spec.ports[0].containerPort", "0 is less than the minimum of 1")
        );
    }

    #[test]
    fn a_missing_property_is_named_as_the_field() {
        assert_eq!(service("{replicas: 1}"), one("spec.image", "required"));
        let found = violations(
            "RelayService",
            "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\n",
        );
        assert_eq!(found, one("spec", "required"));
    }

    #[test]
    fn unknown_fields_are_named_one_by_one() {
        let found =
            service("{image: a:1, replica: 2, imagePullPolice: Always, reload: {port: 80, restartKey: [A]}}");
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["spec.imagePullPolice", "spec.reload.restartKey", "spec.replica"], "{found:?}");
        assert!(found.iter().all(|v| v.message == "unknown field"));
    }

    #[test]
    fn types_and_enums_are_described_in_words() {
        assert_eq!(
            service("{image: a:1, replicas: three}"),
            one("spec.replicas", "\"three\" is not an integer")
        );
        assert_eq!(
            service("{image: a:1, config: {format: toml}}"),
            one("spec.config.format", "\"toml\" is not one of \"env\", \"json\", \"yaml\"")
        );
    }

    #[test]
    fn a_rule_on_the_whole_object_names_its_field() {
        let long_name = "a".repeat(60);
        let found = violations(
            "RelayService",
            &format!(
                "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {{name: {long_name}}}\nspec: {{image: a:1}}\n"
            ),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "metadata.name");
        assert_eq!(super::field_of_rule("has(self.a) != has(self.b)"), "");
    }

    #[test]
    fn no_message_has_an_empty_field_or_a_raw_pattern() {
        let long_name = "a".repeat(60);
        let inputs = [
            format!("apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {{name: {long_name}}}\nspec: {{image: a:1}}\n"),
            "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, health: {interval: 1 minute, tcp: {port: 1}}, config: {fileName: a b, secrets: [{name: 1X, secretKeyRef: {name: s, key: k}}]}}\n".into(),
        ];
        for input in inputs {
            for violation in violations("RelayService", &input) {
                assert!(!violation.field.is_empty(), "{violation:?}");
                assert!(
                    !violation.message.contains('^') && !violation.message.contains('$'),
                    "{violation:?}"
                );
            }
        }
    }

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
