//! Typed objects from validated documents, references resolved among them, rendered.
//!
//! Two phases, each reporting every error it finds: every document on its own (kind,
//! schema, CEL rules), then the references among them and the rendering itself.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Secret, SecretKeySelector};
use serde_json::Value;

use super::assume::AssumeExists;
use super::error::{DocLocation, ManifestError};
use super::load::Document;
use super::schema::SchemaValidator;
use crate::api::{HealthPolicy, HealthPolicySpec, RelayService, RelayServiceSpec, TestDeployment};
use crate::deps::{DependencyGraph, cycle_through, start_order};
use crate::render::{self, Owner, OwnerKind, SecretData, ServiceInput};

/// How references to objects that are not among the inputs are treated.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Objects created elsewhere: references to them are neither errors nor warnings.
    pub assume_exists: Vec<AssumeExists>,
}

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
    /// Findings that may need action: mutable image tags, objects assumed to exist.
    pub warnings: Vec<String>,
    /// Documents passed over because relay-operator does not manage their kind.
    pub notes: Vec<String>,
}

struct Located<T> {
    location: DocLocation,
    object: T,
}

type Key = (String, String);
type SecretDataOf = BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct Inputs {
    services: BTreeMap<Key, Located<RelayService>>,
    policies: BTreeMap<Key, Located<HealthPolicy>>,
    tests: BTreeMap<Key, Located<TestDeployment>>,
    secrets: BTreeMap<Key, SecretDataOf>,
    /// `(kind, namespace, name)` of objects whose document has errors: references to them
    /// are not reported a second time.
    invalid: BTreeSet<(String, String, String)>,
}

const DEFAULT_NAMESPACE: &str = "default";
const API_VERSION: &str = "relayops.io/v1alpha1";

/// Validate, resolve and render documents. Every error is reported; with any error there is
/// no rendering. With `complete` false (some input could not be read) references are not
/// resolved: what they point to may be in the unreadable input.
pub(super) fn render(
    documents: Vec<Document>,
    complete: bool,
    options: &RenderOptions,
) -> Result<Rendering, Vec<ManifestError>> {
    let validator = SchemaValidator::new().map_err(|message| {
        vec![ManifestError::Document {
            location: DocLocation { file: "<built-in CRDs>".into(), line: 0, index: 0, object: None },
            message,
        }]
    })?;
    let mut inputs = Inputs::default();
    let mut resolver = Resolver { options, rendering: Rendering::default(), errors: Vec::new() };
    for document in documents.into_iter().flat_map(list_items) {
        classify(&validator, document, &mut inputs, &mut resolver);
    }
    if complete {
        resolver.render_inputs(&inputs);
    }
    if resolver.errors.is_empty() { Ok(resolver.rendering) } else { Err(resolver.errors) }
}

/// The items of a `v1` `List` (as `kubectl get -o yaml` writes), each a document of its own
/// at the List's location; any other document as it is.
fn list_items(document: Document) -> Vec<Document> {
    let is_list = str_field(&document.value, "/apiVersion") == Some("v1")
        && str_field(&document.value, "/kind") == Some("List");
    match document.value.get("items").and_then(Value::as_array) {
        Some(items) if is_list => items
            .iter()
            .map(|item| Document { location: document.location.clone(), value: item.clone() })
            .collect(),
        _ => vec![document],
    }
}

fn str_field<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn field_error(location: &DocLocation, field: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Field { location: location.clone(), field: field.into(), message: message.into() }
}

fn doc_error(location: &DocLocation, message: impl Into<String>) -> ManifestError {
    ManifestError::Document { location: location.clone(), message: message.into() }
}

/// Sort one document into the inputs, or report what is wrong with it.
fn classify(
    validator: &SchemaValidator,
    document: Document,
    inputs: &mut Inputs,
    resolver: &mut Resolver<'_>,
) {
    let Document { mut location, value } = document;
    let Some(map) = value.as_object() else {
        resolver.errors.push(doc_error(
            &location,
            "not a Kubernetes object (expected a mapping with apiVersion and kind)",
        ));
        return;
    };
    let kind = str_field(&value, "/kind");
    let api_version = str_field(&value, "/apiVersion");
    if kind.is_none() && map.contains_key("services") {
        resolver.errors.push(doc_error(
            &location,
            format!(
                "this looks like a docker-compose file: convert it with `relay-operator import -f {}`",
                location.file
            ),
        ));
        return;
    }
    let (Some(kind), Some(api_version)) = (kind, api_version) else {
        for (field, given) in [("apiVersion", api_version), ("kind", kind)] {
            if given.is_none() {
                resolver.errors.push(field_error(
                    &location,
                    field,
                    "required (a Kubernetes object has apiVersion and kind)",
                ));
            }
        }
        return;
    };
    let name = str_field(&value, "/metadata/name").unwrap_or_default();
    let given_namespace = str_field(&value, "/metadata/namespace");
    let namespace = given_namespace.unwrap_or(DEFAULT_NAMESPACE);
    let ours = api_version.split('/').next() == Some(crate::api::GROUP);
    let used = ours || (api_version == "v1" && matches!(kind, "Secret" | "ConfigMap"));
    location.object = Some(match given_namespace {
        None if !used => format!("{kind} {name}"),
        _ => format!("{kind} {namespace}/{name}"),
    });
    if !used {
        resolver.rendering.notes.push(format!("{location}: not managed by relay-operator: passed over"));
        return;
    }
    let key = (namespace.to_string(), name.to_string());
    let mut errors = Vec::new();
    if name.is_empty() {
        errors.push(field_error(&location, "metadata.name", "required"));
    }
    if ours && api_version != API_VERSION {
        errors.push(field_error(
            &location,
            "apiVersion",
            format!("{api_version:?} is not served; relay-operator serves {API_VERSION}"),
        ));
    } else if ours && !validator.knows(kind) {
        errors.push(field_error(
            &location,
            "kind",
            format!(
                "unknown kind {kind:?}: relay-operator knows RelayService, HealthPolicy and TestDeployment \
                 ({API_VERSION})"
            ),
        ));
    } else if ours {
        if !name.is_empty() && !is_dns_label(name) {
            errors.push(field_error(
                &location,
                "metadata.name",
                format!(
                    "{name:?} must be a lowercase RFC 1123 label: a-z, 0-9 and '-', starting and ending \
                     with a letter or digit, at most 63 characters"
                ),
            ));
        }
        match validator.validate(kind, &value) {
            Err(violations) => {
                errors.extend(violations.into_iter().map(|v| field_error(&location, &v.field, v.message)))
            }
            Ok(defaulted) if errors.is_empty() => {
                if let Err(error) = insert_ours(kind, key.clone(), defaulted, &location, inputs) {
                    errors.push(error);
                }
            }
            Ok(_) => {}
        }
    } else if kind == "Secret" && !name.is_empty() {
        match serde_json::from_value::<Secret>(value.clone()) {
            Ok(secret) => {
                let mut data: SecretDataOf =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                data.extend(
                    secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())),
                );
                inputs.secrets.insert(key.clone(), data);
            }
            Err(e) => errors.push(doc_error(&location, format!("invalid Secret: {e}"))),
        }
    }
    // A ConfigMap is accepted so a manifest set renders as it is applied; nothing to render.
    if !errors.is_empty() && !name.is_empty() {
        inputs.invalid.insert((kind.to_string(), key.0, key.1));
    }
    resolver.errors.extend(errors);
}

/// Decode a valid, defaulted custom resource into the inputs.
fn insert_ours(
    kind: &str,
    key: Key,
    defaulted: Value,
    location: &DocLocation,
    inputs: &mut Inputs,
) -> Result<(), ManifestError> {
    let decode = |e: serde_json::Error| doc_error(location, format!("cannot decode: {e}"));
    let first = match kind {
        "RelayService" => {
            let mut object: RelayService = serde_json::from_value(defaulted).map_err(decode)?;
            object.metadata.namespace = Some(key.0.clone());
            inputs.services.insert(key, Located { location: location.clone(), object }).map(|l| l.location)
        }
        "HealthPolicy" => {
            let object: HealthPolicy = serde_json::from_value(defaulted).map_err(decode)?;
            inputs.policies.insert(key, Located { location: location.clone(), object }).map(|l| l.location)
        }
        _ => {
            let mut object: TestDeployment = serde_json::from_value(defaulted).map_err(decode)?;
            object.metadata.namespace = Some(key.0.clone());
            inputs.tests.insert(key, Located { location: location.clone(), object }).map(|l| l.location)
        }
    };
    match first {
        Some(first) => Err(field_error(
            location,
            "metadata.name",
            format!("defined twice (first at {}:{})", first.file, first.line),
        )),
        None => Ok(()),
    }
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

/// What a reference by name points to.
enum Lookup<'a, T> {
    /// Among the inputs.
    Found(&'a T),
    /// Among the inputs, with errors already reported.
    Invalid,
    /// Not among the inputs; `--assume-exists` says it is created elsewhere.
    Assumed,
    /// Not among the inputs.
    Missing,
}

fn lookup<'a, T>(
    found: Option<&'a T>,
    inputs: &Inputs,
    options: &RenderOptions,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Lookup<'a, T> {
    if let Some(found) = found {
        Lookup::Found(found)
    } else if inputs.invalid.contains(&(kind.to_string(), namespace.to_string(), name.to_string())) {
        Lookup::Invalid
    } else if options.assume_exists.iter().any(|pattern| pattern.matches(kind, namespace, name)) {
        Lookup::Assumed
    } else {
        Lookup::Missing
    }
}

/// The second phase: references and rendering, collecting every error and warning.
struct Resolver<'a> {
    options: &'a RenderOptions,
    rendering: Rendering,
    errors: Vec<ManifestError>,
}

impl Resolver<'_> {
    fn render_inputs(&mut self, inputs: &Inputs) {
        let namespaces: BTreeSet<&String> =
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
                self.check_dependencies(inputs, namespace, &graph, service);
                let owner =
                    owner_of(OwnerKind::RelayService, &name, namespace, service.object.metadata.uid.clone());
                self.render_one(inputs, &service.location, &owner, &service.object.spec);
            }
            for ((ns, name), test) in inputs.tests.iter().filter(|((ns, _), _)| ns == namespace) {
                let source = match &test.object.spec.from_relay_service {
                    Some(source) => {
                        let found = inputs.services.get(&(ns.clone(), source.clone()));
                        match lookup(found, inputs, self.options, "RelayService", ns, source) {
                            Lookup::Found(found) => Some(&found.object.spec),
                            Lookup::Invalid => continue,
                            Lookup::Assumed => {
                                self.rendering.warnings.push(format!(
                                    "{}: spec.fromRelayService: RelayService {ns}/{source} is assumed to exist: \
                                     not rendered (its template is that service's spec)",
                                    test.location
                                ));
                                continue;
                            }
                            Lookup::Missing => {
                                self.errors.push(field_error(
                                    &test.location,
                                    "spec.fromRelayService",
                                    format!(
                                        "RelayService {ns}/{source} not found among the inputs; add its manifest \
                                         (a TestDeployment is rendered from its source's spec)"
                                    ),
                                ));
                                continue;
                            }
                        }
                    }
                    None => None,
                };
                let Some(spec) = render::effective_spec(&test.object.spec, source) else { continue };
                let owner = owner_of(OwnerKind::TestDeployment, name, ns, test.object.metadata.uid.clone());
                self.render_one(inputs, &test.location, &owner, &spec);
            }
        }
    }

    fn check_dependencies(
        &mut self,
        inputs: &Inputs,
        namespace: &str,
        graph: &DependencyGraph,
        service: &Located<RelayService>,
    ) {
        let name = service.object.metadata.name.clone().unwrap_or_default();
        for (index, dependency) in service.object.spec.depends_on.iter().enumerate() {
            let found = inputs.services.get(&(namespace.to_string(), dependency.clone()));
            if let Lookup::Missing =
                lookup(found, inputs, self.options, "RelayService", namespace, dependency)
            {
                self.errors.push(field_error(
                    &service.location,
                    &format!("spec.dependsOn[{index}]"),
                    format!(
                        "RelayService {namespace}/{dependency} not found among the inputs; if it is created \
                         elsewhere, pass --assume-exists relayservice/{dependency}"
                    ),
                ));
            }
        }
        if let Some(cycle) = cycle_through(graph, &name) {
            self.errors.push(field_error(
                &service.location,
                "spec.dependsOn",
                format!("dependency cycle: {}", cycle.join(" → ")),
            ));
        }
    }

    /// The HealthPolicy of a spec: `Err(())` when the service cannot be rendered.
    fn health<'i>(
        &mut self,
        inputs: &'i Inputs,
        location: &DocLocation,
        namespace: &str,
        spec: &'i RelayServiceSpec,
    ) -> Result<Option<&'i HealthPolicySpec>, ()> {
        let Some(reference) = &spec.health_policy_ref else { return Ok(spec.health.as_deref()) };
        let name = &reference.name;
        let found = inputs.policies.get(&(namespace.to_string(), name.clone()));
        match lookup(found, inputs, self.options, "HealthPolicy", namespace, name) {
            Lookup::Found(policy) => Ok(Some(&policy.object.spec)),
            Lookup::Invalid => Err(()),
            Lookup::Assumed => {
                self.rendering.warnings.push(format!(
                    "{location}: spec.healthPolicyRef.name: HealthPolicy {namespace}/{name} is assumed to exist: \
                     pods rendered without its probes (on the cluster they have them, and another \
                     pod-template-hash)"
                ));
                Ok(None)
            }
            Lookup::Missing => {
                self.errors.push(field_error(
                    location,
                    "spec.healthPolicyRef.name",
                    format!(
                        "HealthPolicy {namespace}/{name} not found among the inputs; add its manifest, or pass \
                         --assume-exists healthpolicy/{name} to render the pods without its probes"
                    ),
                ));
                Err(())
            }
        }
    }

    /// The Secrets a spec references, with empty stand-ins for those created out of band.
    /// `Err(())` when a referenced Secret's document has errors.
    fn secrets(
        &mut self,
        inputs: &Inputs,
        location: &DocLocation,
        namespace: &str,
        spec: &RelayServiceSpec,
    ) -> Result<SecretData, ()> {
        let mut secrets: SecretData = inputs
            .secrets
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, name), data)| (name.clone(), data.clone()))
            .collect();
        let mut warned = BTreeSet::new();
        let mut renderable = true;
        for reference in secret_refs(spec) {
            let name = &reference.name;
            let found = inputs.secrets.get(&(namespace.to_string(), name.clone()));
            match lookup(found, inputs, self.options, "Secret", namespace, name) {
                Lookup::Found(data) => {
                    if let Some(key) = reference.key.filter(|_| reference.checked)
                        && !data.contains_key(&key)
                    {
                        self.errors.push(field_error(
                            location,
                            &reference.field,
                            format!("Secret {namespace}/{name} has no key {key:?}"),
                        ));
                    }
                }
                Lookup::Invalid => renderable = false,
                Lookup::Assumed | Lookup::Missing if reference.optional => {}
                lookup => {
                    if matches!(lookup, Lookup::Missing) && warned.insert(name.clone()) {
                        let hashes = if reference.hashed {
                            " (config hashes are computed without its values)"
                        } else {
                            ""
                        };
                        self.rendering.warnings.push(format!(
                            "{location}: {}: Secret {namespace}/{name} is not among the inputs: assumed to exist: \
                             create it before applying{hashes}",
                            reference.field
                        ));
                    }
                    if let Some(key) = reference.key.filter(|_| reference.hashed) {
                        secrets.entry(name.clone()).or_default().entry(key).or_default();
                    }
                }
            }
        }
        if renderable { Ok(secrets) } else { Err(()) }
    }

    fn render_one(
        &mut self,
        inputs: &Inputs,
        location: &DocLocation,
        owner: &Owner,
        spec: &RelayServiceSpec,
    ) {
        let ns = &owner.namespace;
        let health = self.health(inputs, location, ns, spec);
        let secrets = self.secrets(inputs, location, ns, spec);
        let (Ok(health), Ok(secrets)) = (health, secrets) else { return };
        let rendered = match render::render_service(ServiceInput { owner, spec, health, secrets: &secrets }) {
            Ok(rendered) => rendered,
            Err(e) => {
                self.errors.push(doc_error(location, e.to_string()));
                return;
            }
        };
        let owner_label = format!("{} {ns}/{}", owner.kind.as_str(), owner.name);
        if !render::image_is_pinned(&spec.image) {
            self.rendering.warnings.push(format!(
                "{owner_label}: image {:?} has a mutable tag; pin a version or digest so rollbacks are possible",
                spec.image
            ));
        }
        let mut values = Vec::new();
        values.extend(rendered.config_map.iter().map(serde_json::to_value));
        values.extend(rendered.claims.iter().map(serde_json::to_value));
        values.extend(rendered.service.iter().map(serde_json::to_value));
        values.extend(rendered.ingress.iter().map(serde_json::to_value));
        values.extend(rendered.pods().iter().map(serde_json::to_value));
        for value in values {
            match value {
                Ok(value) => {
                    self.rendering.objects.push(RenderedObject { owner: owner_label.clone(), value })
                }
                Err(e) => self.errors.push(doc_error(location, e.to_string())),
            }
        }
    }
}

/// A spec's reference to a Secret.
struct SecretRef {
    field: String,
    name: String,
    key: Option<String>,
    optional: bool,
    /// Its value enters the config hash (`config.secrets`).
    hashed: bool,
    /// Render checks the key (the operator reads it; the kubelet checks the others).
    checked: bool,
}

/// Every Secret a spec references: configuration, reload token, environment.
fn secret_refs(spec: &RelayServiceSpec) -> Vec<SecretRef> {
    let selector = |field: String, selector: &SecretKeySelector, hashed: bool, checked: bool| SecretRef {
        field,
        name: selector.name.clone(),
        key: Some(selector.key.clone()),
        optional: selector.optional == Some(true),
        hashed,
        checked,
    };
    let mut refs: Vec<SecretRef> = spec
        .config
        .iter()
        .flat_map(|c| c.secrets.iter().enumerate())
        .map(|(index, entry)| {
            let field = format!("spec.config.secrets[{index}].secretKeyRef");
            selector(field, &entry.secret_key_ref, true, false)
        })
        .collect();
    if let Some(token) = spec.reload.as_ref().and_then(|r| r.bearer_token_secret_ref.as_ref()) {
        refs.push(selector("spec.reload.bearerTokenSecretRef".into(), token, false, true));
    }
    for (index, env) in spec.env.iter().enumerate() {
        if let Some(reference) = env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
            let field = format!("spec.env[{index}].valueFrom.secretKeyRef");
            refs.push(selector(field, reference, false, false));
        }
    }
    for (index, source) in spec.env_from.iter().enumerate() {
        if let Some(reference) = &source.secret_ref {
            refs.push(SecretRef {
                field: format!("spec.envFrom[{index}].secretRef"),
                name: reference.name.clone(),
                key: None,
                optional: reference.optional == Some(true),
                hashed: false,
                checked: false,
            });
        }
    }
    refs
}

fn owner_of(kind: OwnerKind, name: &str, namespace: &str, uid: Option<String>) -> Owner {
    Owner { kind, name: name.into(), namespace: namespace.into(), uid }
}
