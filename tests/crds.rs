//! The generated CRDs: no drift from the Rust types, structural schemas, affordable CEL
//! rules, and the validation rules doing what they say.

use std::path::Path;

use relay_operator::crdgen::crd_documents;
use relay_operator::manifest::SchemaValidator;
use serde_json::{Value, json};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn assert_no_drift(dir: &str) {
    let documents = crd_documents().unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = documents.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(on_disk, expected, "{dir} holds other files than the generator writes");
    for (name, content) in documents {
        let committed = std::fs::read_to_string(repo(dir).join(&name)).unwrap();
        assert!(
            committed == content,
            "{dir}/{name} differs from the Rust types: run `cargo run -- crd --dir {dir}` and commit"
        );
    }
}

#[test]
fn crds_dir_matches_the_generator() {
    assert_no_drift("crds");
}

#[test]
fn chart_crds_match_the_generator() {
    assert_no_drift("charts/relay-operator/crds");
}

fn schemas() -> Vec<(String, Value)> {
    relay_operator::api::crds()
        .into_iter()
        .map(|crd| {
            let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            (crd.spec.names.kind, serde_json::to_value(schema).unwrap())
        })
        .collect()
}

/// Kubernetes' structural schema rules (apiextensions `ValidateStructural`), the subset our
/// generator could break: a type everywhere, no `$ref`, no type/default/description inside
/// `anyOf`/`allOf`/`oneOf`/`not` (except the int-or-string pattern), and not both
/// `properties` and `additionalProperties`.
fn structural_violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    let flag = |key: &str| map.get(key) == Some(&Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    if !map.contains_key("type") && !int_or_string && !flag("x-kubernetes-preserve-unknown-fields") {
        out.push(format!("{path}: no type"));
    }
    for forbidden in ["$ref", "definitions", "$defs", "$schema"] {
        if map.contains_key(forbidden) {
            out.push(format!("{path}: {forbidden}"));
        }
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!("{path}: properties and additionalProperties"));
    }
    for junctor in ["anyOf", "allOf", "oneOf", "not"] {
        let branches: Vec<&Value> = match map.get(junctor) {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(other) => vec![other],
            None => continue,
        };
        for branch in branches {
            for key in
                ["default", "description", "nullable", "additionalProperties", "x-kubernetes-validations"]
            {
                if branch.get(key).is_some() {
                    out.push(format!("{path}.{junctor}: {key}"));
                }
            }
            if branch.get("type").is_some() && !(junctor == "anyOf" && int_or_string) {
                out.push(format!("{path}.{junctor}: type"));
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, child) in props {
            structural_violations(child, &format!("{path}.{name}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child @ Value::Object(_)) = map.get(key) {
            structural_violations(child, &format!("{path}.{key}"), out);
        }
    }
}

#[test]
fn every_schema_is_structural() {
    for (kind, schema) in schemas() {
        let mut violations = Vec::new();
        structural_violations(&schema, &kind, &mut violations);
        assert!(violations.is_empty(), "{kind} is not structural: {violations:#?}");
    }
    // The checker itself catches what it claims to.
    let mut found = Vec::new();
    structural_violations(
        &json!({"type": "object", "properties": {"x": {"description": "untyped"}}}),
        "t",
        &mut found,
    );
    assert_eq!(found, ["t.x: no type"]);
}

/// Every CEL rule compiles and stays within the API server's per-rule cost budget.
#[test]
fn cel_rules_compile_within_cost_budget() {
    fn walk(node: &Value, path: &str, rules: &mut usize) {
        let Some(map) = node.as_object() else { return };
        if let Some(Value::Array(validations)) = map.get("x-kubernetes-validations") {
            let compiled = kube_cel::compile_schema(node);
            for validation in validations {
                let rule = validation["rule"].as_str().unwrap();
                kube_cel::cel::Program::compile(rule).unwrap_or_else(|e| panic!("{path}: {rule}: {e}"));
                let warnings = kube_cel::estimate_rule_cost(rule, &compiled);
                assert!(warnings.is_empty(), "{path}: {rule}: {warnings:?}");
                *rules += 1;
            }
        }
        for (key, child) in map {
            match child {
                Value::Object(children) if key == "properties" => {
                    children.iter().for_each(|(name, c)| walk(c, &format!("{path}.{name}"), rules))
                }
                Value::Object(_) if key == "items" || key == "additionalProperties" => {
                    walk(child, path, rules)
                }
                _ => {}
            }
        }
    }
    let mut rules = 0;
    for (kind, schema) in schemas() {
        walk(&schema, &kind, &mut rules);
    }
    assert!(rules >= 8, "expected the CEL rules of all three kinds, found {rules}");
}

fn check(kind: &str, spec: Value) -> Result<Value, String> {
    let object = json!({"apiVersion": "relayops.io/v1alpha1", "kind": kind, "metadata": {"name": "web"}, "spec": spec});
    SchemaValidator::new()
        .unwrap()
        .validate(kind, &object)
        .map_err(|v| v.iter().map(|v| format!("{}: {}", v.field, v.message)).collect::<Vec<_>>().join("; "))
}

#[test]
fn defaults_come_from_the_schema() {
    let object = check("RelayService", json!({"image": "a:1", "reload": {"port": 80}, "storage": [{"name": "d", "size": "1Gi", "mountPath": "/d"}]})).unwrap();
    let spec = &object["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["reload"]["path"], "/reload-config");
    assert_eq!(spec["reload"]["method"], "POST");
    assert_eq!(spec["reload"]["onFailure"], "Restart");
    assert_eq!(spec["storage"][0]["retention"]["whenDeleted"], "Retain");
    assert_eq!(spec["storage"][0]["retention"]["whenScaled"], "Retain");
    assert_eq!(spec["updateStrategy"]["maxUnavailable"], 1);
    let td = check("TestDeployment", json!({"fromRelayService": "relay"})).unwrap();
    assert_eq!(td["spec"]["ttl"], "24h");
    assert_eq!(td["spec"]["progressDeadline"], "10m");
}

#[test]
fn ranges_formats_and_enums_are_enforced() {
    let cases = [
        ("RelayService", json!({"image": "a:1", "replicas": -1}), "spec.replicas"),
        (
            "RelayService",
            json!({"image": "a:1", "ports": [{"name": "http", "containerPort": 0}]}),
            "spec.ports[0].containerPort",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "updateStrategy": {"maxUnavailable": 0}}),
            "spec.updateStrategy.maxUnavailable",
        ),
        ("RelayService", json!({"image": "a:1", "dependsOn": ["Not_A_Name"]}), "spec.dependsOn[0]"),
        (
            "RelayService",
            json!({"image": "a:1", "storage": [{"name": "d", "size": "lots", "mountPath": "/d"}]}),
            "spec.storage[0].size",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "reload": {"port": 80, "onFailure": "Explode"}}),
            "spec.reload.onFailure",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "reload": {"port": 80, "timeout": "5 seconds"}}),
            "spec.reload.timeout",
        ),
        ("RelayService", json!({"replicas": 1}), "spec"),
        ("TestDeployment", json!({"fromRelayService": "relay", "ttl": "1d"}), "spec.ttl"),
        ("HealthPolicy", json!({"tcp": {"port": 1}, "retries": 0}), "spec.retries"),
    ];
    for (kind, spec, field) in cases {
        let err = check(kind, spec.clone()).expect_err(&format!("{spec} accepted"));
        assert!(err.starts_with(field), "{spec}: expected an error at {field}, got {err}");
    }
}

#[test]
fn cross_field_rules_are_enforced() {
    let cases = [
        (
            "HealthPolicy",
            json!({"tcp": {"port": 1}, "http": {"port": 2}}),
            "exactly one of http, tcp or exec",
        ),
        ("HealthPolicy", json!({"interval": "10s"}), "exactly one of http, tcp or exec"),
        (
            "RelayService",
            json!({"image": "a:1", "health": {"tcp": {"port": 1}}, "healthPolicyRef": {"name": "p"}}),
            "either healthPolicyRef or health",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "config": {"data": {"not-a-var": "x"}}}),
            "valid variable name",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "config": {"format": "json", "data": {"not-a-var": "x"}}}),
            "",
        ),
        (
            "RelayService",
            json!({"image": "a:1", "config": {"data": {"K": "1"}, "secrets": [{"name": "K", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            "either in data or in secrets",
        ),
        ("TestDeployment", json!({}), "exactly one of template or fromRelayService"),
        (
            "TestDeployment",
            json!({"template": {"image": "a:1"}, "overrides": {"image": "b:1"}}),
            "overrides apply only with fromRelayService",
        ),
    ];
    for (kind, spec, message) in cases {
        match (check(kind, spec.clone()), message) {
            (Ok(_), "") => {}
            (Ok(_), _) => panic!("{spec} accepted, expected {message:?}"),
            (Err(err), _) => assert!(!message.is_empty() && err.contains(message), "{spec}: {err}"),
        }
    }
    let long_name = json!({"apiVersion": "relayops.io/v1alpha1", "kind": "RelayService", "metadata": {"name": "a".repeat(53)}, "spec": {"image": "a:1"}});
    assert!(SchemaValidator::new().unwrap().validate("RelayService", &long_name).is_err());
}

/// Every label and annotation the operator puts on a pod is its own: `podTemplate.metadata`
/// cannot set one (the API server refuses it); other keys are fine.
#[test]
fn pod_template_metadata_cannot_take_the_operators_keys() {
    use relay_operator::render::{Owner, OwnerKind, SecretData, ServiceInput, render_service};
    let spec = serde_json::from_value(json!({"image": "a:1", "config": {"data": {"A": "1"}}})).unwrap();
    let owner =
        Owner { kind: OwnerKind::RelayService, name: "web".into(), namespace: "demo".into(), uid: None };
    let rendered = render_service(ServiceInput {
        owner: &owner,
        spec: &spec,
        health: None,
        secrets: &SecretData::new(),
    })
    .unwrap();
    let pod = &rendered.pods()[0].metadata;
    let labels = pod.labels.clone().unwrap();
    let annotations = pod.annotations.clone().unwrap();
    assert!(labels.len() >= 7 && !annotations.is_empty());
    for key in labels.keys() {
        let err = check(
            "RelayService",
            json!({"image": "a:1", "podTemplate": {"metadata": {"labels": {key: "x"}}}}),
        )
        .expect_err(key);
        assert!(err.contains("are set by the operator"), "{key}: {err}");
    }
    for key in annotations.keys() {
        let err = check(
            "RelayService",
            json!({"image": "a:1", "podTemplate": {"metadata": {"annotations": {key: "x"}}}}),
        )
        .expect_err(key);
        assert!(err.contains("are set by the operator"), "{key}: {err}");
    }
    check(
        "RelayService",
        json!({"image": "a:1", "podTemplate": {"metadata": {
            "labels": {"app.kubernetes.io/part-of": "shop", "team": "payments", "example.com/tier": ""},
            "annotations": {"prometheus.io/scrape": "true", "example.com/note": "any text: here"}}}}),
    )
    .unwrap();
}

#[test]
fn new_fields_are_validated() {
    let port = json!([{"name": "http", "containerPort": 8080}]);
    let cases = [
        (
            json!({"podTemplate": {"metadata": {"labels": {"team": "not a value"}}}}),
            "spec.podTemplate.metadata.labels.team",
        ),
        (
            json!({"podTemplate": {"metadata": {"labels": {"bad key!": "x"}}}}),
            "label keys are NAME or PREFIX/NAME",
        ),
        (
            json!({"podTemplate": {"metadata": {"labels": {"team": "x".repeat(64)}}}}),
            "spec.podTemplate.metadata.labels.team",
        ),
        (
            json!({"podTemplate": {"metadata": {"annotations": {"/x": "y"}}}}),
            "annotation keys are NAME or PREFIX/NAME",
        ),
        (json!({"serviceAccountName": "Not_A_Name"}), "spec.serviceAccountName"),
        (json!({"imagePullSecrets": [{}]}), "spec.imagePullSecrets[0].name: required"),
        (
            json!({"tolerations": [{"key": "k", "tolerationSeconds": "soon"}]}),
            "spec.tolerations[0].tolerationSeconds",
        ),
        (json!({"ports": port, "service": {"type": "External"}}), "spec.service.type"),
        (json!({"service": {"type": "NodePort"}}), "service needs a port"),
        (
            json!({"ports": port, "service": {"annotations": {"relayops.io/desired-hash": "x"}}}),
            "are set by the operator",
        ),
        (json!({"ingress": {"host": "a.example.com"}}), "an ingress needs a port"),
        (json!({"ports": port, "ingress": {"port": "admin"}}), "ingress.port must name one of ports"),
        (json!({"ports": port, "ingress": {"tlsSecretName": "tls"}}), "tlsSecretName needs a host"),
        (json!({"ports": port, "ingress": {"host": "Not A Host"}}), "spec.ingress.host"),
        (json!({"ports": port, "ingress": {"path": "api"}}), "spec.ingress.path"),
        (json!({"ports": port, "ingress": {"pathType": "Regex"}}), "spec.ingress.pathType"),
        (
            json!({"ports": port, "ingress": {"annotations": {"relayops.io/x": "y"}}}),
            "are set by the operator",
        ),
    ];
    for (fields, expected) in cases {
        let mut spec = json!({"image": "a:1"});
        for (key, value) in fields.as_object().unwrap() {
            spec[key] = value.clone();
        }
        let err = check("RelayService", spec.clone()).expect_err(&format!("{spec} accepted"));
        assert!(err.contains(expected), "{spec}: expected {expected:?}, got {err}");
    }
    let err = check("TestDeployment", json!({"template": {"image": "a:1", "ports": port, "ingress": {}}}))
        .expect_err("an exposed TestDeployment");
    assert!(err.contains("a TestDeployment is not exposed"), "{err}");
}

#[test]
fn new_fields_default_to_todays_behaviour() {
    let object = check("RelayService", json!({"image": "a:1"})).unwrap();
    for absent in [
        "imagePullSecrets",
        "serviceAccountName",
        "podTemplate",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "service",
        "ingress",
    ] {
        assert!(object["spec"].get(absent).is_none(), "{absent} defaulted: {}", object["spec"]);
    }
    let object = check(
        "RelayService",
        json!({"image": "a:1", "ports": [{"name": "http", "containerPort": 80}], "service": {}, "ingress": {}}),
    )
    .unwrap();
    assert_eq!(object["spec"]["service"]["type"], "ClusterIP");
    assert_eq!(object["spec"]["ingress"]["path"], "/");
    assert_eq!(object["spec"]["ingress"]["pathType"], "Prefix");
}
