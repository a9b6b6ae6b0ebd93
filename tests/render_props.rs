//! Property test: rendering never panics, whatever the spec, and keeps its invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;
use relay_operator::api::{HealthPolicySpec, RelayServiceSpec};
use relay_operator::render::{Owner, OwnerKind, SecretData, ServiceInput, render_service};
use serde_json::{Value, json};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z_][a-zA-Z0-9_]{0,8}", "[0-9]{1,4}(ms|s|m|h)", Just(String::new())]
}

fn spec_json() -> impl Strategy<Value = Value> {
    (
        text(),
        -3i32..40,
        any::<bool>(),
        prop::collection::btree_map(text(), text(), 0..6),
        prop::collection::vec((text(), text(), text()), 0..3),
        prop::option::of((any::<i32>(), prop::collection::vec(text(), 0..3), duration())),
        prop::collection::vec((text(), 0u8..2, 0u8..2), 0..3),
        prop::collection::vec((text(), any::<i32>(), prop::option::of(any::<i32>())), 0..3),
        prop::sample::select(vec!["env", "json", "yaml"]),
    )
        .prop_map(|(image, replicas, suspend, data, secrets, reload, storage, ports, format)| {
            let secrets: Vec<Value> = secrets
                .into_iter()
                .map(|(name, secret, key)| json!({"name": name, "secretKeyRef": {"name": secret, "key": key}}))
                .collect();
            let storage: Vec<Value> = storage
                .into_iter()
                .map(|(name, scope, retention)| {
                    json!({"name": name, "size": "1Gi", "mountPath": "/d",
                        "scope": if scope == 0 { "PerReplica" } else { "Shared" },
                        "retention": {"whenDeleted": if retention == 0 { "Retain" } else { "Delete" }}})
                })
                .collect();
            let ports: Vec<Value> = ports
                .into_iter()
                .map(|(name, port, service_port)| json!({"name": name, "containerPort": port, "servicePort": service_port}))
                .collect();
            let mut spec = json!({
                "image": image, "replicas": replicas, "suspend": suspend,
                "config": {"format": format, "data": data, "secrets": secrets},
                "storage": storage, "ports": ports,
            });
            if let Some((port, restart_keys, timeout)) = reload {
                spec["reload"] = json!({"port": port, "restartKeys": restart_keys, "timeout": timeout});
            }
            spec
        })
}

/// Any duration the CRD schema admits (durations are typed: nothing else deserializes).
fn duration() -> impl Strategy<Value = String> {
    "([0-9]{1,6}(ms|s|m|h)){1,4}"
}

fn health_json() -> impl Strategy<Value = Value> {
    (duration(), duration(), duration(), any::<i32>(), any::<bool>(), 0u8..3).prop_map(|(interval, timeout, start, retries, restart, kind)| {
        let mut health = json!({"interval": interval, "timeout": timeout, "startPeriod": start, "retries": retries, "restartUnhealthy": restart});
        match kind {
            0 => health["http"] = json!({"port": 8000}),
            1 => health["tcp"] = json!({"port": 5432}),
            _ => health["exec"] = json!({"command": ["true"]}),
        }
        health
    })
}

fn secret_data() -> impl Strategy<Value = SecretData> {
    prop::collection::btree_map(text(), prop::collection::btree_map(text(), any::<Vec<u8>>(), 0..3), 0..3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn render_never_panics(spec in spec_json(), health in prop::option::of(health_json()), secrets in secret_data(), td in any::<bool>()) {
        let spec: RelayServiceSpec = serde_json::from_value(spec).expect("generator builds valid JSON shapes");
        let health: Option<HealthPolicySpec> = health.map(|h| serde_json::from_value(h).expect("health shape"));
        let kind = if td { OwnerKind::TestDeployment } else { OwnerKind::RelayService };
        let owner = Owner { kind, name: "svc".into(), namespace: "ns".into(), uid: None };
        let input = ServiceInput { owner: &owner, spec: &spec, health: health.as_ref(), secrets: &secrets };
        if let Ok(rendered) = render_service(input) {
            let expected = if spec.suspend { 0 } else { spec.replicas.max(0) as usize };
            prop_assert_eq!(rendered.pods().len(), expected);
            prop_assert!(rendered.pods().iter().all(|p| p.metadata.labels.as_ref().unwrap()["relayops.io/pod-template-hash"] == rendered.pod_template_hash));
            // Deterministic: a second render is identical.
            prop_assert_eq!(render_service(input).ok(), Some(rendered.clone()));
            // No secret value of 8+ bytes ever lands in the ConfigMap.
            if let Some(data) = rendered.config_map.and_then(|c| c.data) {
                let text: String = data.values().cloned().collect();
                let values: BTreeMap<_, _> = secrets.values().flat_map(|d| d.values()).map(|v| (v.clone(), ())).collect();
                for value in values.keys().filter(|v| v.len() >= 8) {
                    if let Ok(value) = std::str::from_utf8(value) {
                        prop_assert!(!text.contains(value) || spec.config.as_ref().is_some_and(|c| c.data.values().any(|d| d.contains(value))));
                    }
                }
            }
        }
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..70_000).prop_map(Value::from),
        text().prop_map(Value::from),
        duration().prop_map(Value::from),
        Just(json!(["a", "Bad_Name"])),
        Just(json!({"name": "x", "key": "k"})),
    ]
}

/// A manifest of any kind with fields picked from the specs' vocabulary, right or wrong.
fn manifest() -> impl Strategy<Value = Value> {
    let kinds = prop::sample::select(vec![
        "RelayService",
        "HealthPolicy",
        "TestDeployment",
        "Secret",
        "ConfigMap",
        "Namespace",
        "RelayServer",
        "",
    ]);
    let fields = prop::sample::select(vec![
        "image",
        "replicas",
        "ports",
        "dependsOn",
        "healthPolicyRef",
        "interval",
        "tcp",
        "config",
        "template",
        "fromRelayService",
        "stringData",
        "unknown",
    ]);
    (kinds, "[a-z][a-z0-9-]{0,8}|Bad_Name|", prop::collection::btree_map(fields, scalar(), 0..5)).prop_map(
        |(kind, name, spec)| {
            let api_version = if matches!(kind, "Secret" | "ConfigMap" | "Namespace") {
                "v1"
            } else {
                "relayops.io/v1alpha1"
            };
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec})
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the manifests, render answers: objects, or errors that each name the input
    /// and document and never leave a field path empty.
    #[test]
    fn every_error_names_its_place(docs in prop::collection::vec(manifest(), 1..6)) {
        use relay_operator::manifest::{RenderOptions, render_text};
        let text: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
        if let Err(errors) = render_text("generated.yaml", &text, &RenderOptions::default()) {
            prop_assert!(!errors.0.is_empty());
            for error in &errors.0 {
                let message = error.to_string();
                prop_assert!(message.starts_with("generated.yaml:"), "{}", message);
                prop_assert!(message.contains(": document "), "{}", message);
                prop_assert!(!message.contains(": :") && !message.contains(":  "), "{}", message);
                prop_assert!(!message.contains("^("), "raw pattern: {}", message);
            }
        }
    }
}
