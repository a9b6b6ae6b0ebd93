//! Typed objects from validated documents, references resolved among them, rendered.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::error::{DocLocation, ManifestError};
use super::load::Document;
use super::schema::SchemaValidator;
use crate::api::{HealthPolicy, RelayService, RelayServiceSpec, TestDeployment};
use crate::deps::{DependencyGraph, cycle_through, start_order};
use crate::render::{self, Owner, OwnerKind, SecretData, ServiceInput};

/// One object the operator would create.
#[derive(Clone, Debug)]
pub struct RenderedObject {
    /// The resource it belongs to, `Kind namespace/name`.
    pub owner: String,
    /// The object.
    pub value: Value,
}

/// Result of rendering a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Rendering {
    /// Objects in a stable order: by namespace, services in dependency order, then test
    /// deployments; per service ConfigMap, claims, Service, pods.
    pub objects: Vec<RenderedObject>,
    /// Non-fatal findings, e.g. mutable image tags.
    pub warnings: Vec<String>,
}

struct Located<T> {
    location: DocLocation,
    object: T,
}

#[derive(Default)]
struct Inputs {
    services: BTreeMap<(String, String), Located<RelayService>>,
    policies: BTreeMap<(String, String), Located<HealthPolicy>>,
    tests: BTreeMap<(String, String), Located<TestDeployment>>,
    secrets: BTreeMap<(String, String), SecretDataOf>,
}

type SecretDataOf = BTreeMap<String, Vec<u8>>;

const DEFAULT_NAMESPACE: &str = "default";
const API_VERSION: &str = "relayops.io/v1alpha1";

/// Validate, resolve and render documents. Fails on the first bad document, with no output.
pub fn render_documents(documents: Vec<Document>) -> Result<Rendering, ManifestError> {
    let validator = SchemaValidator::new().map_err(|message| ManifestError::Document {
        location: DocLocation { file: "<built-in CRDs>".into(), index: 0, object: None },
        message,
    })?;
    let mut inputs = Inputs::default();
    for document in documents {
        classify(&validator, document, &mut inputs)?;
    }
    render_inputs(&inputs)
}

fn str_field<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn classify(
    validator: &SchemaValidator,
    document: Document,
    inputs: &mut Inputs,
) -> Result<(), ManifestError> {
    let mut location = document.location.clone();
    let value = document.value;
    let doc_error = |location: &DocLocation, message: String| ManifestError::Document {
        location: location.clone(),
        message,
    };
    if !value.is_object() {
        return Err(doc_error(
            &location,
            "not a Kubernetes object (expected a mapping with apiVersion and kind)".into(),
        ));
    }
    let kind =
        str_field(&value, "/kind").ok_or_else(|| doc_error(&location, "kind: required".into()))?.to_string();
    let api_version = str_field(&value, "/apiVersion")
        .ok_or_else(|| doc_error(&location, "apiVersion: required".into()))?
        .to_string();
    let name = str_field(&value, "/metadata/name").unwrap_or_default().to_string();
    let namespace = str_field(&value, "/metadata/namespace").unwrap_or(DEFAULT_NAMESPACE).to_string();
    location.object = Some(format!("{kind} {namespace}/{name}"));
    if name.is_empty() {
        return Err(ManifestError::Field {
            location,
            field: "metadata.name".into(),
            message: "required".into(),
        });
    }
    let field_error = |location: &DocLocation, field: &str, message: String| ManifestError::Field {
        location: location.clone(),
        field: field.into(),
        message,
    };
    let key = (namespace.clone(), name.clone());

    match (api_version.as_str(), kind.as_str()) {
        (API_VERSION, _) if validator.knows(&kind) => {
            if !is_dns_label(&name) {
                return Err(field_error(
                    &location,
                    "metadata.name",
                    format!(
                        "{name:?} is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)"
                    ),
                ));
            }
            let defaulted = validator.validate(&kind, &value).map_err(|violations| {
                let first = violations
                    .into_iter()
                    .next()
                    .unwrap_or(super::schema::Violation { field: String::new(), message: "invalid".into() });
                field_error(&location, &first.field, first.message)
            })?;
            let typed_err = |e: serde_json::Error| doc_error(&location, format!("cannot decode: {e}"));
            let duplicate = || doc_error(&location, "defined twice".into());
            match kind.as_str() {
                "RelayService" => {
                    let mut object: RelayService = serde_json::from_value(defaulted).map_err(typed_err)?;
                    object.metadata.namespace = Some(namespace);
                    if inputs.services.insert(key, Located { location: location.clone(), object }).is_some() {
                        return Err(duplicate());
                    }
                }
                "HealthPolicy" => {
                    let object: HealthPolicy = serde_json::from_value(defaulted).map_err(typed_err)?;
                    if inputs.policies.insert(key, Located { location: location.clone(), object }).is_some() {
                        return Err(duplicate());
                    }
                }
                _ => {
                    let mut object: TestDeployment = serde_json::from_value(defaulted).map_err(typed_err)?;
                    object.metadata.namespace = Some(namespace);
                    if inputs.tests.insert(key, Located { location: location.clone(), object }).is_some() {
                        return Err(duplicate());
                    }
                }
            }
        }
        ("v1", "Secret") => {
            let secret: Secret = serde_json::from_value(value)
                .map_err(|e| doc_error(&location, format!("invalid Secret: {e}")))?;
            let mut data: SecretDataOf =
                secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
            inputs.secrets.insert(key, data);
        }
        ("v1", "ConfigMap") => {
            // Accepted so a manifest set can be rendered as it is applied; nothing to render.
        }
        _ => {
            return Err(doc_error(
                &location,
                format!(
                    "unknown kind {kind:?} (apiVersion {api_version:?}): render accepts RelayService, HealthPolicy and \
                     TestDeployment ({API_VERSION}), Secret and ConfigMap (v1)"
                ),
            ));
        }
    }
    Ok(())
}

/// RFC 1123 label.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn render_inputs(inputs: &Inputs) -> Result<Rendering, ManifestError> {
    let mut rendering = Rendering::default();
    let namespaces: std::collections::BTreeSet<&String> =
        inputs.services.keys().chain(inputs.tests.keys()).map(|(ns, _)| ns).collect();
    for namespace in namespaces {
        let graph: DependencyGraph = inputs
            .services
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, name), s)| (name.clone(), s.object.spec.depends_on.clone()))
            .collect();
        for name in start_order(&graph) {
            let Some(service) = inputs.services.get(&(namespace.clone(), name.clone())) else { continue };
            check_dependencies(inputs, namespace, &graph, service)?;
            let owner =
                owner_of(OwnerKind::RelayService, &name, namespace, service.object.metadata.uid.clone());
            render_one(inputs, &service.location, &owner, &service.object.spec, &mut rendering)?;
        }
        for ((ns, name), test) in inputs.tests.iter().filter(|((ns, _), _)| ns == namespace) {
            let source = match &test.object.spec.from_relay_service {
                Some(source) => {
                    let found = inputs.services.get(&(ns.clone(), source.clone())).ok_or_else(|| {
                        ManifestError::Field {
                            location: test.location.clone(),
                            field: "spec.fromRelayService".into(),
                            message: format!("RelayService {ns}/{source} not found among the inputs"),
                        }
                    })?;
                    Some(&found.object.spec)
                }
                None => None,
            };
            let Some(spec) = render::effective_spec(&test.object.spec, source) else { continue };
            let owner = owner_of(OwnerKind::TestDeployment, name, ns, test.object.metadata.uid.clone());
            render_one(inputs, &test.location, &owner, &spec, &mut rendering)?;
        }
    }
    Ok(rendering)
}

fn owner_of(kind: OwnerKind, name: &str, namespace: &str, uid: Option<String>) -> Owner {
    Owner { kind, name: name.into(), namespace: namespace.into(), uid }
}

fn check_dependencies(
    inputs: &Inputs,
    namespace: &str,
    graph: &DependencyGraph,
    service: &Located<RelayService>,
) -> Result<(), ManifestError> {
    let name = service.object.metadata.name.clone().unwrap_or_default();
    for (index, dependency) in service.object.spec.depends_on.iter().enumerate() {
        if !inputs.services.contains_key(&(namespace.to_string(), dependency.clone())) {
            return Err(ManifestError::Field {
                location: service.location.clone(),
                field: format!("spec.dependsOn[{index}]"),
                message: format!("RelayService {namespace}/{dependency} not found among the inputs"),
            });
        }
    }
    if let Some(cycle) = cycle_through(graph, &name) {
        return Err(ManifestError::Field {
            location: service.location.clone(),
            field: "spec.dependsOn".into(),
            message: format!("dependency cycle: {}", cycle.join(" → ")),
        });
    }
    Ok(())
}

fn render_one(
    inputs: &Inputs,
    location: &DocLocation,
    owner: &Owner,
    spec: &RelayServiceSpec,
    rendering: &mut Rendering,
) -> Result<(), ManifestError> {
    let ns = &owner.namespace;
    let health = match &spec.health_policy_ref {
        Some(reference) => {
            let policy = inputs.policies.get(&(ns.clone(), reference.name.clone())).ok_or_else(|| {
                ManifestError::Field {
                    location: location.clone(),
                    field: "spec.healthPolicyRef.name".into(),
                    message: format!("HealthPolicy {ns}/{} not found among the inputs", reference.name),
                }
            })?;
            Some(&policy.object.spec)
        }
        None => spec.health.as_ref(),
    };
    let secrets: SecretData = inputs
        .secrets
        .iter()
        .filter(|((secret_ns, _), _)| secret_ns == ns)
        .map(|((_, name), data)| (name.clone(), data.clone()))
        .collect();
    if let Some(selector) = spec.reload.as_ref().and_then(|r| r.bearer_token_secret_ref.as_ref())
        && !secrets.get(&selector.name).is_some_and(|data| data.contains_key(&selector.key))
    {
        return Err(ManifestError::Field {
            location: location.clone(),
            field: "spec.reload.bearerTokenSecretRef".into(),
            message: format!(
                "Secret {ns}/{} with key {:?} not found among the inputs",
                selector.name, selector.key
            ),
        });
    }
    let rendered = render::render_service(ServiceInput { owner, spec, health, secrets: &secrets })
        .map_err(|e| ManifestError::Document { location: location.clone(), message: e.to_string() })?;
    let owner_label = format!("{} {ns}/{}", owner.kind.as_str(), owner.name);
    if !render::image_is_pinned(&spec.image) {
        rendering.warnings.push(format!(
            "{owner_label}: image {:?} has a mutable tag; pin a version or digest so rollbacks are possible",
            spec.image
        ));
    }
    let to_object = |value: Result<Value, serde_json::Error>| {
        value
            .map(|value| RenderedObject { owner: owner_label.clone(), value })
            .map_err(|e| ManifestError::Document { location: location.clone(), message: e.to_string() })
    };
    let mut objects = Vec::new();
    objects.extend(rendered.config_map.iter().map(serde_json::to_value));
    objects.extend(rendered.claims.iter().map(serde_json::to_value));
    objects.extend(rendered.service.iter().map(serde_json::to_value));
    objects.extend(rendered.ingress.iter().map(serde_json::to_value));
    objects.extend(rendered.pods.iter().map(serde_json::to_value));
    for value in objects {
        rendering.objects.push(to_object(value)?);
    }
    Ok(())
}
