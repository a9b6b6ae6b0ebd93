//! Each compose service → a RelayService (plus its HealthPolicy and Secret template); then
//! dependencies, shared volumes and secrets across services.

mod env;
mod health;
mod keys;
mod ports;
mod runtime;
mod storage;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::names::{dns_label, service_names};
use super::output::Object;
use super::project::{Project, Service, as_map};
use super::report::{Outcome, Report, show};
use super::{EnvTarget, FileReader, ImportOptions};

/// The placeholder of every Secret value.
pub const PLACEHOLDER: &str = "REPLACE_ME";
/// API version of the operator's kinds.
const API_VERSION: &str = "relayops.io/v1alpha1";
/// Where `config` is mounted (the RelayService default).
const MOUNT_PATH: &str = "/etc/relay";

/// Report lines of one compose service.
pub struct Ctx<'a> {
    /// Compose name.
    pub svc: &'a str,
    /// RelayService name.
    pub name: &'a str,
    /// The report.
    pub report: &'a mut Report,
}

impl Ctx<'_> {
    /// A line about `SERVICE.key`.
    pub fn line(
        &mut self,
        key: &str,
        value: Option<impl Shown>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        let key = if key.is_empty() { self.svc.to_string() } else { format!("{}.{key}", self.svc) };
        self.report.push(Some(self.svc), key, value.map(Shown::shown), outcome, detail);
    }
}

/// A value as the report prints it.
pub trait Shown {
    /// The rendering.
    fn shown(self) -> String;
}

impl Shown for &Value {
    fn shown(self) -> String {
        show(self)
    }
}

impl Shown for String {
    fn shown(self) -> String {
        self
    }
}

/// Name of the Secret template holding a compose secret.
pub fn secret_object_name(source: &str) -> String {
    dns_label(source, 253, "secret")
}

/// What one service became.
struct Mapped {
    svc: String,
    name: String,
    spec: Map<String, Value>,
    policy: Option<Value>,
    env_secret_keys: Vec<String>,
    compose_secrets: Vec<String>,
}

/// Map every selected service; the objects in output order.
pub fn project(
    project: &Project,
    options: &ImportOptions,
    files: &dyn FileReader,
    report: &mut Report,
) -> Vec<Object> {
    let compose_names: Vec<String> = project.services.iter().map(|s| s.name.clone()).collect();
    let names: BTreeMap<String, String> =
        compose_names.iter().cloned().zip(service_names(&compose_names)).collect();
    report.renames = names.iter().filter(|(a, b)| a != b).map(|(a, b)| (a.clone(), b.clone())).collect();

    // Named volume → compose services mounting it.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for service in &project.services {
        for item in service.definition.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            if let Some(storage::Mount { kind, source: Some(source), .. }) =
                storage::parse(item, &project.volumes)
                && kind == "volume"
            {
                users.entry(source).or_default().push(service.name.clone());
            }
        }
    }

    let mut mapped = Vec::new();
    for service in &project.services {
        let name = &names[&service.name];
        let mut ctx = Ctx { svc: &service.name, name, report };
        if name != &service.name {
            ctx.line(
                "",
                None::<String>,
                Outcome::Mapped,
                format!("RelayService {name} (renamed: {:?} is not a DNS-1035 label of at most 52 characters; other services now reach it as {name}, so update host names in their configuration)", service.name),
            );
        }
        mapped.push(map_service(&mut ctx, service, project, options, files, &users));
    }
    dependencies(project, &names, &mut mapped, report);
    top_level(project, &users, &mapped, report);
    objects(options, &mapped)
}

fn map_service(
    ctx: &mut Ctx<'_>,
    service: &Service,
    project: &Project,
    options: &ImportOptions,
    files: &dyn FileReader,
    users: &BTreeMap<String, Vec<String>>,
) -> Mapped {
    let definition = &service.definition;
    let mut spec = Map::new();
    let mut security = Map::new();
    let mut resources = runtime::Resources::default();
    let mut ports = ports::Ports::default();
    runtime::image(ctx, definition, &mut spec);

    let used_secrets = match definition.get("secrets") {
        Some(value) => env::secrets(ctx, value, &project.secrets, MOUNT_PATH),
        None => Vec::new(),
    };
    let rewrites: Vec<(String, String)> = used_secrets
        .iter()
        .flat_map(|s| {
            let target = format!("{MOUNT_PATH}/secrets/{}", s.key);
            let mut from = vec![(format!("/run/secrets/{}", s.source), target.clone())];
            let long_target =
                definition.get("secrets").and_then(Value::as_array).into_iter().flatten().find_map(|item| {
                    let o = item.as_object()?;
                    (o.get("source")?.as_str()? == s.source)
                        .then(|| o.get("target")?.as_str().map(str::to_string))
                        .flatten()
                });
            if let Some(t) = long_target {
                from.push((if t.starts_with('/') { t } else { format!("/run/secrets/{t}") }, target));
            }
            from
        })
        .collect();
    let env = env::map(ctx, definition, options, files, &rewrites);

    let replicas = definition
        .get("deploy")
        .and_then(|d| d.get("replicas"))
        .or_else(|| definition.get("scale"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let policy_name = format!("{}-health", ctx.name);
    let mut policy = None;
    for (key, value) in definition {
        match key.as_str() {
            "image" | "build" | "secrets" | "environment" | "env_file" | "depends_on" => {}
            "command" | "entrypoint" => runtime::command(ctx, key, value, &mut spec),
            "ports" => ports::ports(ctx, value, &mut ports),
            "expose" => ports::expose(ctx, value, &mut ports),
            "healthcheck" => {
                let mut value = value.clone();
                rewrite_strings(&mut value, &rewrites);
                policy = health::map(ctx, &value, &policy_name);
            }
            "volumes" => {
                let storage = storage::volumes(ctx, value, &project.volumes, users, replicas);
                if !storage.is_empty() {
                    spec.insert("storage".into(), Value::Array(storage));
                }
            }
            "tmpfs" => ctx.line(
                key,
                Some(value),
                Outcome::Reported,
                "tmpfs: not mapped (a RelayService has no emptyDir volumes); the paths are part of the container's filesystem",
            ),
            "deploy" => runtime::deploy(ctx, value, &mut spec, &mut resources),
            "scale" => match value.as_i64().filter(|n| (0..=1000).contains(n)) {
                Some(n) if !spec.contains_key("replicas") => {
                    ctx.line(key, Some(value), Outcome::Mapped, format!("spec.replicas {n}"));
                    spec.insert("replicas".into(), json!(n));
                }
                Some(_) => ctx.line(key, Some(value), Outcome::Reported, "deploy.replicas wins: ignored"),
                None => ctx.line(key, Some(value), Outcome::Unsupported, "not a number in 0–1000: not mapped"),
            },
            "mem_limit" | "cpus" => runtime::quantity(ctx, key, value, true, &mut resources),
            "mem_reservation" => runtime::quantity(ctx, key, value, false, &mut resources),
            "user" => runtime::user(ctx, value, &mut security),
            "read_only" => {
                let on = value.as_bool() == Some(true);
                ctx.line(key, Some(value), Outcome::Mapped, format!("securityContext.readOnlyRootFilesystem {on}"));
                if on {
                    security.insert("readOnlyRootFilesystem".into(), json!(true));
                }
            }
            "cap_add" | "cap_drop" => runtime::capabilities(ctx, key, value, &mut security),
            "restart" => runtime::restart(ctx, value),
            "pull_policy" => runtime::pull_policy(ctx, value, &mut spec),
            "profiles" => ctx.line(key, Some(value), Outcome::Mapped, "imported: one of its profiles is active"),
            k if k.starts_with("x-") => ctx.line(key, Some(value), Outcome::Reported, "extension key: ignored"),
            _ => match keys::other(key) {
                Some((outcome, detail)) => ctx.line(key, Some(value), outcome, detail),
                None => ctx.line(key, Some(value), Outcome::Unsupported, "unknown compose key: not mapped"),
            },
        }
    }
    if !ports.entries.is_empty() {
        spec.insert("ports".into(), Value::Array(ports.entries));
    } else {
        ctx.line(
            "",
            None::<String>,
            Outcome::Reported,
            format!("no ports or expose: no Service is created, so other services cannot reach {} by name (compose reaches any listening port; add `expose` for the ports it serves)", ctx.name),
        );
    }
    if let Some(resources) = resources.into_value() {
        spec.insert("resources".into(), resources);
    }
    if !security.is_empty() {
        spec.insert("securityContext".into(), Value::Object(security));
    }
    if policy.is_some() {
        spec.insert("healthPolicyRef".into(), json!({"name": policy_name}));
    }

    // Configuration: plain keys, then Secret-backed keys (service env Secret, compose secrets).
    let mut config = Map::new();
    let mut secret_entries = Vec::new();
    let mut secret_names = BTreeSet::new();
    for key in &env.secret_keys {
        secret_names.insert(key.clone());
        secret_entries
            .push(json!({"name": key, "secretKeyRef": {"name": format!("{}-env", ctx.name), "key": key}}));
    }
    for used in &used_secrets {
        if !secret_names.insert(used.key.clone()) {
            ctx.line(
                "secrets",
                None::<String>,
                Outcome::Unsupported,
                format!(
                    "key {} is already taken by an environment variable: secret {} not mapped",
                    used.key, used.source
                ),
            );
            continue;
        }
        secret_entries.push(json!({"name": used.key, "secretKeyRef": {"name": secret_object_name(&used.source), "key": used.source}}));
    }
    let data: BTreeMap<String, String> =
        env.data.into_iter().filter(|(k, _)| !secret_names.contains(k)).collect();
    match options.env_target {
        EnvTarget::Config if !data.is_empty() => {
            ctx.line(
                "environment",
                None::<String>,
                Outcome::Reported,
                format!(
                    "{} keys in config.data: the process reads them from the file {MOUNT_PATH}/config.env (hot-reloadable), NOT from its environment; images that read environment variables (databases, most off-the-shelf images) need --env-into env",
                    data.len()
                ),
            );
            config.insert("data".into(), json!(data));
        }
        EnvTarget::Env if !data.is_empty() => {
            spec.insert("env".into(), data.iter().map(|(k, v)| json!({"name": k, "value": v})).collect());
        }
        _ => {}
    }
    if !secret_entries.is_empty() {
        config.insert("secrets".into(), Value::Array(secret_entries));
    }
    if !config.is_empty() {
        spec.insert("config".into(), Value::Object(config));
    }
    Mapped {
        svc: service.name.clone(),
        name: ctx.name.to_string(),
        spec,
        policy,
        env_secret_keys: env.secret_keys,
        compose_secrets: used_secrets.into_iter().map(|s| s.source).collect(),
    }
}

/// Replace `/run/secrets/…` paths in every string (health check commands).
fn rewrite_strings(value: &mut Value, rewrites: &[(String, String)]) {
    match value {
        Value::String(s) => {
            for (from, to) in rewrites {
                if s.contains(from.as_str()) {
                    *s = s.replace(from.as_str(), to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_strings(v, rewrites)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_strings(v, rewrites)),
        _ => {}
    }
}

/// Whether `to` is reachable from `from` over `edges`.
fn reaches(edges: &BTreeMap<String, Vec<String>>, from: &str, to: &str) -> bool {
    let mut stack = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node.clone()) {
            stack.extend(edges.get(&node).into_iter().flatten().cloned());
        }
    }
    false
}

/// Map `depends_on` of every service into `dependsOn`, never closing a cycle.
fn dependencies(
    project: &Project,
    names: &BTreeMap<String, String>,
    mapped: &mut [Mapped],
    report: &mut Report,
) {
    let with_health: BTreeSet<String> =
        mapped.iter().filter(|m| m.policy.is_some()).map(|m| m.svc.clone()).collect();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (service, out) in project.services.iter().zip(mapped.iter_mut()) {
        let Some(value) = service.definition.get("depends_on") else { continue };
        let mut ctx = Ctx { svc: &service.name, name: &out.name, report };
        let entries: Vec<(String, Map<String, Value>)> = as_map(value.clone())
            .into_iter()
            .map(|(dep, opts)| (dep, opts.as_object().cloned().unwrap_or_default()))
            .collect();
        let mut depends_on = Vec::new();
        for (dep, opts) in entries {
            let key = format!("depends_on.{dep}");
            let condition = opts.get("condition").and_then(Value::as_str).unwrap_or("service_started");
            let shown = Some(Value::String(condition.to_string()));
            let Some(dep_name) = names.get(&dep) else {
                let why = if project.skipped.contains(&dep) {
                    format!("{dep} is not imported (no active profile): no dependsOn")
                } else {
                    format!("{dep} is not a service of this file: no dependsOn")
                };
                ctx.line(&key, shown.as_ref(), Outcome::Reported, why);
                continue;
            };
            if condition == "service_completed_successfully" {
                ctx.line(
                    &key,
                    shown.as_ref(),
                    Outcome::Unsupported,
                    format!("no equivalent: {dep} is a one-shot task, and a RelayService runs forever (it is restarted when it exits); run it as a Job or an init step of the image; no dependsOn"),
                );
                continue;
            }
            if reaches(&edges, dep_name, &out.name) {
                ctx.line(
                    &key,
                    shown.as_ref(),
                    Outcome::Unsupported,
                    format!("{dep} already depends on {}: a dependency cycle, not mapped", service.name),
                );
                continue;
            }
            let semantics = match condition {
                "service_healthy" if with_health.contains(&dep) => format!(
                    "waits until {dep_name} is Ready, i.e. its HealthPolicy passes: compose's service_healthy"
                ),
                "service_healthy" => format!(
                    "waits until {dep_name} is Ready; {dep} has no health check here, so Ready means running"
                ),
                _ if with_health.contains(&dep) => format!(
                    "waits until {dep_name} is Ready (its HealthPolicy passes): stricter than compose's service_started, which waits only for the container to start"
                ),
                _ => format!(
                    "waits until {dep_name} is Ready; without a health check that means running, as compose's service_started"
                ),
            };
            let mut notes = vec![semantics];
            if opts.get("required").and_then(Value::as_bool) == Some(false) {
                notes.push("required: false has no equivalent: dependsOn always waits".into());
            }
            if opts.get("restart").and_then(Value::as_bool) == Some(true) {
                notes.push(
                    "restart: true not mapped (this service is not restarted when the dependency is)".into(),
                );
            }
            ctx.line(
                &key,
                shown.as_ref(),
                Outcome::Mapped,
                format!("dependsOn {dep_name}: {}", notes.join("; ")),
            );
            if !depends_on.contains(dep_name) {
                depends_on.push(dep_name.clone());
            }
            edges.entry(out.name.clone()).or_default().push(dep_name.clone());
        }
        if !depends_on.is_empty() {
            out.spec.insert("dependsOn".into(), json!(depends_on));
        }
    }
}

/// Lines for the top-level `volumes:` and `secrets:` entries.
fn top_level(
    project: &Project,
    users: &BTreeMap<String, Vec<String>>,
    mapped: &[Mapped],
    report: &mut Report,
) {
    for (name, definition) in &project.volumes {
        let key = format!("volumes.{name}");
        let used: Vec<&String> =
            users.get(name).into_iter().flatten().filter(|s| mapped.iter().any(|m| &m.svc == *s)).collect();
        if used.is_empty() {
            report.push(
                None,
                key,
                Some(show(definition)),
                Outcome::Reported,
                "not mounted by any imported service: not mapped",
            );
            continue;
        }
        let mut notes = Vec::new();
        for (k, v) in definition.as_object().into_iter().flatten() {
            match k.as_str() {
                "external" if v.as_bool() == Some(true) => {
                    notes.push("external: the claims are created empty; copy the data over".to_string())
                }
                _ => notes.push(format!("{k} not mapped")),
            }
        }
        let users = used.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let note = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        report.push(
            None,
            key,
            Some(show(definition)),
            Outcome::Mapped,
            format!("storage of {users}, retained{note}"),
        );
    }
    for (name, definition) in &project.secrets {
        let key = format!("secrets.{name}");
        if !mapped.iter().any(|m| m.compose_secrets.contains(name)) {
            report.push(None, key, None, Outcome::Reported, "not used by any imported service: not mapped");
            continue;
        }
        let source = ["file", "environment", "content"]
            .into_iter()
            .find(|k| definition.get(k).is_some())
            .map_or(String::new(), |k| format!("; its {k} source was not read"));
        let external = if definition.get("external").and_then(Value::as_bool) == Some(true) {
            "; external: create it yourself in this shape"
        } else {
            ""
        };
        report.push(
            None,
            key,
            None,
            Outcome::Mapped,
            format!(
                "Secret template {} key {name} = {PLACEHOLDER}{source}{external}",
                secret_object_name(name)
            ),
        );
    }
}

fn metadata(name: &str, options: &ImportOptions) -> Value {
    match &options.namespace {
        Some(ns) => json!({"name": name, "namespace": ns}),
        None => json!({"name": name}),
    }
}

fn secret(name: &str, keys: &[String], options: &ImportOptions) -> Value {
    let data: Map<String, Value> = keys.iter().map(|k| (k.clone(), json!(PLACEHOLDER))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(name, options), "type": "Opaque", "stringData": data})
}

fn objects(options: &ImportOptions, mapped: &[Mapped]) -> Vec<Object> {
    let mut out = Vec::new();
    let compose_secrets: BTreeSet<&String> = mapped.iter().flat_map(|m| &m.compose_secrets).collect();
    for source in compose_secrets {
        out.push(Object {
            comment: Some(format!(
                "Secret template for the compose secret {source}: no value was copied from the compose project or the host.\nReplace {PLACEHOLDER} before applying (kubectl create secret generic {} --from-file={source}=PATH)",
                secret_object_name(source)
            )),
            value: secret(&secret_object_name(source), std::slice::from_ref(source), options),
        });
    }
    let mut sorted: Vec<&Mapped> = mapped.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for m in sorted {
        if !m.env_secret_keys.is_empty() {
            out.push(Object {
                comment: Some(format!(
                    "Secret template for the secret-looking variables of compose service {}: no value was copied.\nReplace every {PLACEHOLDER} before applying.",
                    m.svc
                )),
                value: secret(&format!("{}-env", m.name), &m.env_secret_keys, options),
            });
        }
        if let Some(policy) = &m.policy {
            out.push(Object {
                comment: Some(format!("healthcheck of compose service {}", m.svc)),
                value: json!({"apiVersion": API_VERSION, "kind": "HealthPolicy", "metadata": metadata(&format!("{}-health", m.name), options), "spec": policy}),
            });
        }
        out.push(Object {
            comment: Some(format!("compose service {}", m.svc)),
            value: json!({"apiVersion": API_VERSION, "kind": "RelayService", "metadata": metadata(&m.name, options), "spec": m.spec}),
        });
    }
    out
}
