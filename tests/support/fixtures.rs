//! Fixture builders of the three kinds: objects in namespace `demo` with uid `uid-<name>`,
//! generation 1 and resourceVersion "1", e.g.
//! `RelayServiceFixture::new("web").image("x:1").replicas(2).config([("K", "v")]).depends_on(["db"]).build()`.
//! The builders name the spec fields the tests set; `RelayServiceFixture::spec(json!({…}))`
//! sets any other top-level field.
#![allow(dead_code)]

use k8s_openapi::jiff::Timestamp;
use relay_operator::api::{HealthPolicy, RelayService, TestDeployment};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Meta {
    name: String,
    uid: String,
    generation: i64,
    resource_version: String,
    created: Option<Timestamp>,
}

impl Meta {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            uid: format!("uid-{name}"),
            generation: 1,
            resource_version: "1".into(),
            created: None,
        }
    }

    fn object<K: DeserializeOwned>(&self, kind: &str, spec: &Value) -> K {
        let mut metadata = json!({"name": self.name, "namespace": "demo", "uid": self.uid,
            "generation": self.generation, "resourceVersion": self.resource_version});
        if let Some(created) = self.created {
            metadata["creationTimestamp"] = json!(created.to_string());
        }
        let object =
            json!({"apiVersion": "relayops.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec});
        serde_json::from_value(object).unwrap_or_else(|e| panic!("{kind} {}: {e}", self.name))
    }
}

/// Append `item` to the list `spec[field]`.
fn push(spec: &mut Value, field: &str, item: Value) {
    match spec[field].as_array_mut() {
        Some(items) => items.push(item),
        None => spec[field] = json!([item]),
    }
}

/// A RelayService; image `ghcr.io/example/web:1.0.0` unless set.
#[derive(Clone, Debug)]
pub struct RelayServiceFixture {
    meta: Meta,
    spec: Value,
}

impl RelayServiceFixture {
    pub fn new(name: &str) -> Self {
        Self { meta: Meta::new(name), spec: json!({"image": "ghcr.io/example/web:1.0.0"}) }
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.meta.uid = uid.into();
        self
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.meta.generation = generation;
        self
    }

    pub fn resource_version(mut self, version: &str) -> Self {
        self.meta.resource_version = version.into();
        self
    }

    /// Set top-level spec fields the builder has no method for.
    pub fn spec(mut self, fields: Value) -> Self {
        for (key, value) in fields.as_object().expect("spec fields as a JSON object") {
            self.spec[key] = value.clone();
        }
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.spec["image"] = json!(image);
        self
    }

    pub fn replicas(mut self, replicas: i32) -> Self {
        self.spec["replicas"] = json!(replicas);
        self
    }

    pub fn suspend(mut self, suspend: bool) -> Self {
        self.spec["suspend"] = json!(suspend);
        self
    }

    /// Add a container port.
    pub fn port(mut self, name: &str, container_port: u16) -> Self {
        push(&mut self.spec, "ports", json!({"name": name, "containerPort": container_port}));
        self
    }

    /// The configuration data (format env).
    pub fn config<'a>(mut self, data: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let data: serde_json::Map<String, Value> =
            data.into_iter().map(|(k, v)| (k.into(), json!(v))).collect();
        self.spec["config"] = json!({"data": data});
        self
    }

    /// Add a storage volume (claims retained by default).
    pub fn storage(mut self, name: &str, size: &str, mount_path: &str) -> Self {
        push(&mut self.spec, "storage", json!({"name": name, "size": size, "mountPath": mount_path}));
        self
    }

    /// What happens to the claims of the last storage volume when scaled down: `Delete`.
    pub fn when_scaled(mut self, policy: &str) -> Self {
        let volume = self.spec["storage"].as_array_mut().and_then(|s| s.last_mut()).expect("a volume");
        volume["retention"] = json!({"whenScaled": policy});
        self
    }

    pub fn depends_on<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.spec["dependsOn"] = json!(names.into_iter().collect::<Vec<_>>());
        self
    }

    pub fn health_policy(mut self, name: &str) -> Self {
        self.spec["healthPolicyRef"] = json!({"name": name});
        self
    }

    /// The `reload` section.
    pub fn reload(mut self, reload: Value) -> Self {
        self.spec["reload"] = reload;
        self
    }

    pub fn build(&self) -> RelayService {
        self.meta.object("RelayService", &self.spec)
    }
}

/// A HealthPolicy; no check unless set, the rest defaulted.
#[derive(Clone, Debug)]
pub struct HealthPolicyFixture {
    meta: Meta,
    spec: Value,
}

impl HealthPolicyFixture {
    pub fn new(name: &str) -> Self {
        Self { meta: Meta::new(name), spec: json!({}) }
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.meta.generation = generation;
        self
    }

    pub fn tcp(mut self, port: u16) -> Self {
        self.spec["tcp"] = json!({"port": port});
        self
    }

    pub fn http(mut self, path: &str, port: u16) -> Self {
        self.spec["http"] = json!({"path": path, "port": port});
        self
    }

    pub fn interval(mut self, interval: &str) -> Self {
        self.spec["interval"] = json!(interval);
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.spec["timeout"] = json!(timeout);
        self
    }

    pub fn build(&self) -> HealthPolicy {
        self.meta.object("HealthPolicy", &self.spec)
    }
}

/// A TestDeployment; a template or a source must be set.
#[derive(Clone, Debug)]
pub struct TestDeploymentFixture {
    meta: Meta,
    spec: Value,
}

impl TestDeploymentFixture {
    pub fn new(name: &str) -> Self {
        Self { meta: Meta::new(name), spec: json!({}) }
    }

    pub fn created_at(mut self, created: Timestamp) -> Self {
        self.meta.created = Some(created);
        self
    }

    /// An inline template: the spec of `service`.
    pub fn template(mut self, service: RelayServiceFixture) -> Self {
        self.spec["template"] = service.spec;
        self
    }

    /// Copy the spec of this RelayService (`fromRelayService`).
    pub fn source(mut self, name: &str) -> Self {
        self.spec["fromRelayService"] = json!(name);
        self
    }

    pub fn overrides(mut self, overrides: Value) -> Self {
        self.spec["overrides"] = overrides;
        self
    }

    pub fn ttl(mut self, ttl: &str) -> Self {
        self.spec["ttl"] = json!(ttl);
        self
    }

    pub fn progress_deadline(mut self, deadline: &str) -> Self {
        self.spec["progressDeadline"] = json!(deadline);
        self
    }

    pub fn delete_on_expiry(mut self, delete: bool) -> Self {
        self.spec["deleteOnExpiry"] = json!(delete);
        self
    }

    pub fn build(&self) -> TestDeployment {
        self.meta.object("TestDeployment", &self.spec)
    }
}
