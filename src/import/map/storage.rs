//! `volumes` → `storage` (named volumes, retained claims); bind mounts, anonymous volumes
//! and `tmpfs` are reported.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::super::names::{MAX_VOLUME_NAME, dns_label, unique};
use super::super::report::Outcome;
use super::Ctx;

/// Size given to every imported claim: compose volumes have none.
pub const DEFAULT_SIZE: &str = "1Gi";

/// One volume entry of a service, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, …
    pub kind: String,
    /// Volume name or host path; `None` for an anonymous volume.
    pub source: Option<String>,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Parse the short (`SRC:DST[:MODE]`, `DST`) or long form.
pub fn parse(item: &Value, named: &Map<String, Value>) -> Option<Mount> {
    match item {
        Value::String(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => (None, *target, ""),
                [source, target] => (Some(*source), *target, ""),
                [source, target, mode] => (Some(*source), *target, *mode),
                _ => return None,
            };
            let kind = match source {
                None => "volume",
                Some(s)
                    if s.starts_with(['.', '/', '~', '$']) || !named.contains_key(s) && s.contains('/') =>
                {
                    "bind"
                }
                Some(_) => "volume",
            };
            Some(Mount {
                kind: kind.into(),
                source: source.map(str::to_string),
                target: target.into(),
                read_only: mode.split(',').any(|m| m == "ro"),
            })
        }
        Value::Object(o) => Some(Mount {
            kind: o.get("type").and_then(Value::as_str).unwrap_or("volume").into(),
            source: o.get("source").and_then(Value::as_str).map(str::to_string),
            target: o.get("target").and_then(Value::as_str)?.into(),
            read_only: o.get("read_only").and_then(Value::as_bool).unwrap_or(false),
        }),
        _ => None,
    }
}

/// Map `volumes`. `users` lists, per named volume, the compose services mounting it.
pub fn volumes(
    ctx: &mut Ctx<'_>,
    value: &Value,
    named: &Map<String, Value>,
    users: &BTreeMap<String, Vec<String>>,
    replicas: i64,
) -> Vec<Value> {
    let mut storage = Vec::new();
    let mut taken = BTreeSet::new();
    let mut mounted: BTreeMap<String, String> = BTreeMap::new();
    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
        let key = format!("volumes[{i}]");
        let Some(mount) = parse(item, named) else {
            ctx.line(&key, Some(item), Outcome::Unsupported, "cannot parse this volume: not mapped");
            continue;
        };
        match (mount.kind.as_str(), &mount.source) {
            ("volume", Some(source)) => {
                if let Some(first) = mounted.get(source) {
                    ctx.line(
                        &key,
                        Some(item),
                        Outcome::Unsupported,
                        format!("volume {source} is mounted a second time (first as storage {first}); a claim is mounted once per service: not mapped"),
                    );
                    continue;
                }
                let name = unique(&dns_label(source, MAX_VOLUME_NAME, "vol"), MAX_VOLUME_NAME, &mut taken);
                mounted.insert(source.clone(), name.clone());
                let mut entry = json!({"name": name, "size": DEFAULT_SIZE, "mountPath": mount.target});
                if mount.read_only {
                    entry["readOnly"] = json!(true);
                }
                storage.push(entry);
                let mut notes = vec![format!(
                    "size {DEFAULT_SIZE} is a guess (compose volumes have none); retained when the service is deleted or scaled down, like a named volume outlives its containers"
                )];
                let others: Vec<&String> =
                    users.get(source).into_iter().flatten().filter(|s| s.as_str() != ctx.svc).collect();
                if !others.is_empty() {
                    notes.push(format!(
                        "also mounted by {}: each RelayService gets its own claim, the data is not shared",
                        others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
                if replicas > 1 {
                    notes.push("compose's replicas share one volume; here each pod gets its own claim (scope PerReplica)".into());
                }
                if let Value::Object(o) = item
                    && o.contains_key("volume")
                {
                    notes.push("volume options (nocopy, subpath) not mapped".into());
                }
                ctx.line(
                    &key,
                    Some(item),
                    Outcome::Mapped,
                    format!("storage {name} mountPath {}{} ({})", mount.target, if mount.read_only { " readOnly" } else { "" }, notes.join("; ")),
                );
            }
            ("volume", None) => ctx.line(
                &key,
                Some(item),
                Outcome::Reported,
                format!("anonymous volume at {}: not mapped (its data lives as long as the container); name it to get a claim", mount.target),
            ),
            ("bind", source) => ctx.line(
                &key,
                Some(item),
                Outcome::Reported,
                format!(
                    "bind mount of host path {} at {}: not mapped; put configuration files into config.data or a ConfigMap, code into the image, data into a named volume",
                    source.as_deref().unwrap_or("?"),
                    mount.target
                ),
            ),
            ("tmpfs", _) => ctx.line(
                &key,
                Some(item),
                Outcome::Reported,
                format!("tmpfs at {}: not mapped (a RelayService has no emptyDir volumes); the path is part of the container's filesystem", mount.target),
            ),
            (kind, _) => ctx.line(&key, Some(item), Outcome::Unsupported, format!("volume type {kind}: not mapped")),
        }
    }
    storage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_forms() {
        let named: Map<String, Value> = [("db_data".to_string(), Value::Null)].into_iter().collect();
        let m = parse(&json!("db_data:/var/lib/mysql:ro"), &named).unwrap();
        assert_eq!(
            (m.kind.as_str(), m.source.as_deref(), m.target.as_str(), m.read_only),
            ("volume", Some("db_data"), "/var/lib/mysql", true)
        );
        assert_eq!(parse(&json!("./src:/app/src"), &named).unwrap().kind, "bind");
        assert_eq!(parse(&json!("~/data:/data"), &named).unwrap().kind, "bind");
        assert_eq!(parse(&json!("/project/node_modules"), &named).unwrap().source, None);
        let long = json!({"type": "bind", "source": "./nginx.conf", "target": "/etc/nginx/conf.d/default.conf", "read_only": true});
        let m = parse(&long, &named).unwrap();
        assert_eq!((m.kind.as_str(), m.read_only), ("bind", true));
    }
}
