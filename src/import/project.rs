//! The compose project: top-level keys, the services selected by profiles, `extends`
//! resolved.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::report::{Outcome, Report, show};

/// One selected service, its definition with `extends` merged in.
#[derive(Clone, Debug)]
pub struct Service {
    /// The compose name.
    pub name: String,
    /// The definition.
    pub definition: Map<String, Value>,
}

/// What the mapping needs from the compose file.
#[derive(Clone, Debug, Default)]
pub struct Project {
    /// Selected services, by compose name.
    pub services: Vec<Service>,
    /// Compose names of services left out by profiles.
    pub skipped: BTreeSet<String>,
    /// Top-level `volumes:`.
    pub volumes: Map<String, Value>,
    /// Top-level `secrets:`.
    pub secrets: Map<String, Value>,
}

/// Read the top level, report its keys, select services by profile and resolve `extends`
/// (`other` reads the services of a file named by `extends.file`).
pub fn resolve(compose: &Value, profiles: &[String], other: OtherFile<'_>, report: &mut Report) -> Project {
    let empty = Map::new();
    let top = compose.as_object().unwrap_or(&empty);
    let mut project = Project::default();
    for (key, value) in top {
        let (outcome, detail) = match key.as_str() {
            "services" => continue,
            "version" => (Outcome::Reported, "obsolete in the compose specification: ignored".to_string()),
            "name" => (
                Outcome::Reported,
                "project name: not used (objects are named after the services; choose the namespace with --namespace)"
                    .to_string(),
            ),
            "volumes" => {
                project.volumes = value.as_object().cloned().unwrap_or_default();
                continue;
            }
            "secrets" => {
                project.secrets = value.as_object().cloned().unwrap_or_default();
                continue;
            }
            "networks" => (
                Outcome::Reported,
                "not mapped: a cluster has one flat pod network; services reach each other by RelayService name through their Services; isolate them with NetworkPolicies".to_string(),
            ),
            "configs" => (
                Outcome::Unsupported,
                "compose configs: put small files into a service's config.data, larger ones into a ConfigMap".to_string(),
            ),
            "include" => (
                Outcome::Unsupported,
                "include: the included files are not read; import each of them on its own".to_string(),
            ),
            "models" => (Outcome::Unsupported, "AI models have no equivalent".to_string()),
            k if k.starts_with("x-") => (
                Outcome::Reported,
                "extension key: ignored (anchors defined in it were expanded where they are used)".to_string(),
            ),
            _ => (Outcome::Unsupported, "unknown top-level compose key: not mapped".to_string()),
        };
        report.push(None, key.clone(), Some(show(value)), outcome, detail);
    }

    let services = top.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
    if services.is_empty() {
        report.push(None, "services", None, Outcome::Reported, "no services: nothing to import");
    }
    for (name, definition) in &services {
        let definition = definition.as_object().cloned().unwrap_or_default();
        let wanted: Vec<String> = definition
            .get("profiles")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        if !wanted.is_empty() && !wanted.iter().any(|p| profiles.contains(p)) {
            report.push(
                Some(name),
                format!("{name}.profiles"),
                definition.get("profiles").map(show),
                Outcome::Reported,
                format!("not imported: none of its profiles is active (add --profile {})", wanted[0]),
            );
            project.skipped.insert(name.clone());
            continue;
        }
        let scope = Scope { file: None, services: &services, other };
        let definition = extend(name, definition, &scope, report, &mut Vec::new());
        project.services.push(Service { name: name.clone(), definition });
    }
    project
}

/// The `services:` of another compose file named by `extends.file`, read and interpolated.
pub type OtherFile<'a> = &'a dyn Fn(&str) -> Result<Map<String, Value>, String>;

/// Where `extends` looks: the services of one file (`file` is `None` for the imported one).
struct Scope<'a> {
    file: Option<&'a str>,
    services: &'a Map<String, Value>,
    other: OtherFile<'a>,
}

/// The definition with its `extends` chain merged in (compose's merge rules). `chain` holds
/// `FILE/NAME` of the services on the way, to stop at a cycle.
fn extend(
    name: &str,
    mut definition: Map<String, Value>,
    scope: &Scope<'_>,
    report: &mut Report,
    chain: &mut Vec<String>,
) -> Map<String, Value> {
    let Some(extends) = definition.remove("extends") else { return definition };
    let (base_name, file) = match &extends {
        Value::String(s) => (Some(s.clone()), None),
        Value::Object(o) => (
            o.get("service").and_then(Value::as_str).map(str::to_string),
            o.get("file").and_then(Value::as_str).map(str::to_string),
        ),
        _ => (None, None),
    };
    // Only lines for the service being imported, not for bases visited on the way.
    let top = chain.is_empty();
    let line = |report: &mut Report, outcome, detail: String| {
        if top {
            report.push(Some(name), format!("{name}.extends"), Some(show(&extends)), outcome, detail);
        }
    };
    let Some(base_name) = base_name else {
        line(report, Outcome::Unsupported, "extends without a service name: ignored".into());
        return definition;
    };
    let loaded;
    let base_scope = match &file {
        Some(path) => match (scope.other)(path) {
            Ok(services) => {
                loaded = services;
                Scope { file: Some(path.as_str()), services: &loaded, other: scope.other }
            }
            Err(why) => {
                line(report, Outcome::Unsupported, format!("cannot read {path} ({why}): extends ignored"));
                return definition;
            }
        },
        None => Scope { file: scope.file, services: scope.services, other: scope.other },
    };
    let here = format!("{}/{name}", scope.file.unwrap_or_default());
    let there = format!("{}/{base_name}", base_scope.file.unwrap_or_default());
    if chain.contains(&there) || there == here {
        line(report, Outcome::Unsupported, format!("extends cycle through {base_name}: ignored"));
        return definition;
    }
    let Some(base) = base_scope.services.get(&base_name).and_then(Value::as_object) else {
        line(report, Outcome::Unsupported, format!("extends an unknown service {base_name:?}: ignored"));
        return definition;
    };
    chain.push(here);
    let mut base = extend(&base_name, base.clone(), &base_scope, report, chain);
    chain.pop();
    base.remove("profiles");
    let from = file.map_or(String::new(), |f| format!(" from {f}"));
    line(
        report,
        Outcome::Mapped,
        format!("merged {base_name}'s definition{from} (its keys are reported below as this service's)"),
    );
    merge(base, definition)
}

/// Keys whose sequences are concatenated by compose's merge.
const APPENDED: &[&str] = &[
    "ports",
    "expose",
    "external_links",
    "dns",
    "dns_search",
    "cap_add",
    "cap_drop",
    "devices",
    "volumes",
    "secrets",
    "configs",
    "env_file",
    "tmpfs",
    "security_opt",
    "profiles",
];
/// Keys merged as mappings (list forms are normalised first).
const MAPPED: &[&str] = &["environment", "labels", "depends_on", "extra_hosts", "sysctls", "ulimits"];

/// Compose's merge: `local` overrides `base`; sequences in [`APPENDED`] are concatenated,
/// mappings in [`MAPPED`] and other mappings merge key by key, anything else is replaced.
pub fn merge(mut base: Map<String, Value>, local: Map<String, Value>) -> Map<String, Value> {
    for (key, value) in local {
        let merged = match (base.remove(&key), value) {
            (Some(Value::Array(mut a)), Value::Array(b)) if APPENDED.contains(&key.as_str()) => {
                for item in b {
                    if !a.contains(&item) {
                        a.push(item);
                    }
                }
                Value::Array(a)
            }
            (Some(old), new) if MAPPED.contains(&key.as_str()) => {
                let mut map = as_map(old);
                map.extend(as_map(new));
                Value::Object(map)
            }
            (Some(Value::Object(a)), Value::Object(b)) => Value::Object(merge(a, b)),
            (_, new) => new,
        };
        base.insert(key, merged);
    }
    base
}

/// A mapping from either compose form: `{K: V}` or `["K=V", "K"]` (`K: null`).
pub fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                    None => (s, Value::Null),
                }),
                _ => None,
            })
            .collect(),
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_files(path: &str) -> Result<Map<String, Value>, String> {
        Err(format!("{path}: no files in this test"))
    }

    #[test]
    fn profiles_select_services() {
        let compose =
            json!({"services": {"web": {"image": "w:1"}, "debug": {"image": "d:1", "profiles": ["debug"]}}});
        let mut report = Report::default();
        let project = resolve(&compose, &[], &no_files, &mut report);
        assert_eq!(project.services.len(), 1);
        assert!(project.skipped.contains("debug"));
        assert!(report.find("debug.profiles")[0].detail.contains("--profile debug"));
        let project = resolve(&compose, &["debug".into()], &no_files, &mut Report::default());
        assert_eq!(project.services.len(), 2);
    }

    #[test]
    fn extends_merges_by_compose_rules() {
        let compose = json!({"services": {
            "base": {"image": "b:1", "environment": ["A=1", "B=2"], "ports": ["80"], "healthcheck": {"test": "x", "interval": "5s"}},
            "mid": {"extends": "base", "environment": {"B": "3"}},
            "web": {"extends": {"service": "mid"}, "ports": ["81"], "healthcheck": {"interval": "9s"}, "image": "w:1"},
        }});
        let mut report = Report::default();
        let project = resolve(&compose, &[], &no_files, &mut report);
        let web = &project.services.iter().find(|s| s.name == "web").unwrap().definition;
        assert_eq!(web["image"], "w:1");
        assert_eq!(web["environment"], json!({"A": "1", "B": "3"}));
        assert_eq!(web["ports"], json!(["80", "81"]));
        assert_eq!(web["healthcheck"], json!({"test": "x", "interval": "9s"}));
        assert!(web.get("extends").is_none());
        assert_eq!(report.find("web.extends")[0].outcome, Outcome::Mapped);
    }

    #[test]
    fn top_level_keys_are_reported() {
        let compose = json!({"version": "3.8", "x-common": {}, "networks": {}, "bogus": 1, "services": {}});
        let mut report = Report::default();
        resolve(&compose, &[], &no_files, &mut report);
        assert_eq!(report.find("version")[0].outcome, Outcome::Reported);
        assert_eq!(report.find("x-common")[0].outcome, Outcome::Reported);
        assert_eq!(report.find("bogus")[0].outcome, Outcome::Unsupported);
    }
}
