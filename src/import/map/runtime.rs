//! How the container runs: image, command, resources, replicas, user and security keys.

use serde_json::{Map, Value, json};

use super::super::parse::shell_words;
use super::super::report::{Outcome, show};
use super::Ctx;

/// A command as compose writes it: a list, or a string split like a shell would.
pub fn words(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Value::String(s) => shell_words(s),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// Whether an image names a fixed version (same rule as `render`).
fn pinned(image: &str) -> bool {
    crate::render::image_is_pinned(image)
}

/// Map `image` and `build`: the image, or a placeholder when only `build` is given.
pub fn image(ctx: &mut Ctx<'_>, definition: &Map<String, Value>, spec: &mut Map<String, Value>) {
    let image = definition.get("image").and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(image) = image {
        let note = if pinned(image) {
            String::new()
        } else {
            " (warning: mutable tag — :latest or none; pin a version or digest so rollbacks are possible)"
                .into()
        };
        ctx.line("image", definition.get("image"), Outcome::Mapped, format!("spec.image{note}"));
        spec.insert("image".into(), json!(image));
    }
    if let Some(build) = definition.get("build") {
        match image {
            Some(_) => ctx.line(
                "build",
                Some(build),
                Outcome::Reported,
                "not mapped: a cluster pulls images; the image named by `image` is used (build and push it first)",
            ),
            None => {
                let placeholder = format!("registry.invalid/{}:REPLACE_ME", ctx.name);
                ctx.line(
                    "build",
                    Some(build),
                    Outcome::Reported,
                    format!("needs an image: build and push it, then replace the placeholder spec.image {placeholder}"),
                );
                spec.insert("image".into(), json!(placeholder));
            }
        }
    }
    if image.is_none() && !definition.contains_key("build") {
        let placeholder = format!("registry.invalid/{}:REPLACE_ME", ctx.name);
        ctx.line(
            "image",
            None::<String>,
            Outcome::Reported,
            format!("neither image nor build: placeholder spec.image {placeholder}"),
        );
        spec.insert("image".into(), json!(placeholder));
    }
}

/// Map `command` (→ `args`: it replaces the image's CMD) and `entrypoint` (→ `command`).
pub fn command(ctx: &mut Ctx<'_>, key: &str, value: &Value, spec: &mut Map<String, Value>) {
    let field = if key == "command" { "args" } else { "command" };
    let why = if key == "command" {
        "compose's command replaces the image's CMD, which is Kubernetes' args"
    } else {
        "entrypoint replaces the image's ENTRYPOINT, which is Kubernetes' command; as in Docker, the image's CMD is then not used unless command is set"
    };
    match words(value) {
        Some(words) if words.is_empty() => ctx.line(
            key,
            Some(value),
            Outcome::Unsupported,
            format!("an empty {key} (clearing the image's) has no equivalent: the image's default applies"),
        ),
        Some(words) => {
            ctx.line(
                key,
                Some(value),
                Outcome::Mapped,
                format!("spec.{field} {} ({why})", show(&json!(words))),
            );
            spec.insert(field.into(), json!(words));
        }
        None => ctx.line(
            key,
            Some(value),
            Outcome::Unsupported,
            "cannot split this command (unterminated quote): not mapped",
        ),
    }
}

/// Docker's byte quantities (`512m`, `1.5g`, `2gb`, `1024`) as a Kubernetes quantity.
pub fn memory(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return None,
    };
    let digits = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let number: f64 = text[..digits].parse().ok()?;
    let scale: f64 = match &text[digits..] {
        "" | "b" => 1.0,
        "k" | "kb" | "ki" | "kib" => 1024.0,
        "m" | "mb" | "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "ti" | "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let bytes = (number * scale).round() as u64;
    if bytes == 0 {
        return None;
    }
    for (unit, size) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return Some(format!("{}{unit}", bytes / size));
        }
    }
    Some(bytes.to_string())
}

/// Docker's CPU count (`0.5`, `"2.0"`) as a Kubernetes quantity (`500m`, `2`).
pub fn cpus(value: &Value) -> Option<String> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let milli = (number * 1000.0).round() as u64;
    if milli == 0 {
        return None;
    }
    Some(if milli.is_multiple_of(1000) { (milli / 1000).to_string() } else { format!("{milli}m") })
}

/// `resources.limits` / `resources.requests` being built.
#[derive(Default)]
pub struct Resources {
    /// `limits`.
    pub limits: Map<String, Value>,
    /// `requests`.
    pub requests: Map<String, Value>,
}

impl Resources {
    /// The `spec.resources` value, if anything was set.
    pub fn into_value(self) -> Option<Value> {
        let mut out = Map::new();
        if !self.limits.is_empty() {
            out.insert("limits".into(), Value::Object(self.limits));
        }
        if !self.requests.is_empty() {
            out.insert("requests".into(), Value::Object(self.requests));
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }
}

/// One resource quantity (`cpus`, `memory`) into limits or requests.
pub fn quantity(ctx: &mut Ctx<'_>, key: &str, value: &Value, into_limits: bool, resources: &mut Resources) {
    let (kind, parsed) = if key.ends_with("cpus") { ("cpu", cpus(value)) } else { ("memory", memory(value)) };
    let target = if into_limits { &mut resources.limits } else { &mut resources.requests };
    let field = if into_limits { "limits" } else { "requests" };
    match parsed {
        Some(q) => {
            ctx.line(key, Some(value), Outcome::Mapped, format!("resources.{field}.{kind} {q}"));
            target.insert(kind.into(), json!(q));
        }
        None => {
            ctx.line(key, Some(value), Outcome::Unsupported, format!("not a {kind} quantity: not mapped"))
        }
    }
}

/// Map `deploy`: replicas, resources; the rest is reported.
pub fn deploy(ctx: &mut Ctx<'_>, value: &Value, spec: &mut Map<String, Value>, resources: &mut Resources) {
    let Some(deploy) = value.as_object() else { return };
    for (key, item) in deploy {
        let report_key = format!("deploy.{key}");
        match key.as_str() {
            "replicas" => match item.as_i64().filter(|n| (0..=1000).contains(n)) {
                Some(n) => {
                    ctx.line(
                        &report_key,
                        Some(item),
                        Outcome::Mapped,
                        format!("spec.replicas {n} (pods NAME-0 … NAME-{})", n.max(1) - 1),
                    );
                    spec.insert("replicas".into(), json!(n));
                }
                None => ctx.line(
                    &report_key,
                    Some(item),
                    Outcome::Unsupported,
                    "not a number in 0–1000: not mapped",
                ),
            },
            "resources" => {
                for (group, limits) in item.as_object().into_iter().flatten() {
                    let into_limits = match group.as_str() {
                        "limits" => true,
                        "reservations" => false,
                        _ => {
                            ctx.line(
                                &format!("{report_key}.{group}"),
                                Some(limits),
                                Outcome::Unsupported,
                                "unknown resources key: not mapped",
                            );
                            continue;
                        }
                    };
                    for (name, q) in limits.as_object().into_iter().flatten() {
                        let k = format!("{report_key}.{group}.{name}");
                        match name.as_str() {
                            "cpus" | "memory" => quantity(ctx, &k, q, into_limits, resources),
                            "pids" => ctx.line(&k, Some(q), Outcome::Unsupported, "no per-container pids limit in a RelayService"),
                            "devices" | "generic_resources" => ctx.line(
                                &k,
                                Some(q),
                                Outcome::Unsupported,
                                "devices (GPUs) need a device plugin's extended resource, which a RelayService cannot request yet",
                            ),
                            _ => ctx.line(&k, Some(q), Outcome::Unsupported, "unknown resources key: not mapped"),
                        }
                    }
                }
            }
            "restart_policy" => ctx.line(
                &report_key,
                Some(item),
                Outcome::Reported,
                "not mapped: pods always restart (restartPolicy Always)",
            ),
            "update_config" | "rollback_config" => ctx.line(
                &report_key,
                Some(item),
                Outcome::Reported,
                "not mapped: pods are replaced one at a time by default (spec.updateStrategy.maxUnavailable)",
            ),
            "placement" => ctx.line(
                &report_key,
                Some(item),
                Outcome::Unsupported,
                "placement constraints: no node placement fields in a RelayService yet",
            ),
            "mode" => ctx.line(
                &report_key,
                Some(item),
                Outcome::Reported,
                "mode: replicated is what a RelayService does; global has no equivalent",
            ),
            "labels" => ctx.line(&report_key, Some(item), Outcome::Unsupported, "service labels: not mapped"),
            "endpoint_mode" => ctx.line(
                &report_key,
                Some(item),
                Outcome::Reported,
                "a Service load-balances over Ready pods (like vip)",
            ),
            _ => ctx.line(&report_key, Some(item), Outcome::Unsupported, "unknown deploy key: not mapped"),
        }
    }
}

/// Map `user` (numeric `UID[:GID]` → securityContext runAsUser/runAsGroup).
pub fn user(ctx: &mut Ctx<'_>, value: &Value, security: &mut Map<String, Value>) {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (uid, gid) = text.split_once(':').map_or((text.as_str(), None), |(u, g)| (u, Some(g)));
    let uid: Option<i64> = uid.parse().ok();
    let gid: Option<Option<i64>> = match gid {
        None => Some(None),
        Some(g) => g.parse().ok().map(Some),
    };
    match (uid, gid) {
        (Some(uid), Some(gid)) => {
            security.insert("runAsUser".into(), json!(uid));
            let mut detail = format!("securityContext.runAsUser {uid}");
            if let Some(gid) = gid {
                security.insert("runAsGroup".into(), json!(gid));
                detail.push_str(&format!(", runAsGroup {gid}"));
            }
            if uid == 0 {
                security.insert("runAsNonRoot".into(), json!(false));
                detail.push_str(", runAsNonRoot false (root: the restricted default is relaxed for this service)");
            }
            ctx.line("user", Some(value), Outcome::Mapped, detail);
        }
        _ => ctx.line(
            "user",
            Some(value),
            Outcome::Reported,
            "a user name cannot be mapped (Kubernetes needs numeric IDs): look the UID up in the image (`id NAME`) and set securityContext.runAsUser",
        ),
    }
}

/// Map `restart`.
pub fn restart(ctx: &mut Ctx<'_>, value: &Value) {
    match value.as_str().unwrap_or_default() {
        "always" | "unless-stopped" => {
            ctx.line("restart", Some(value), Outcome::Mapped, "pods restart always (restartPolicy Always, the only policy of managed pods)")
        }
        other => ctx.line(
            "restart",
            Some(value),
            Outcome::Reported,
            format!("{other:?} has no equivalent: managed pods always restart (a run-to-completion task is a Job, not a RelayService)"),
        ),
    }
}

/// Map `pull_policy`.
pub fn pull_policy(ctx: &mut Ctx<'_>, value: &Value, spec: &mut Map<String, Value>) {
    let policy = match value.as_str().unwrap_or_default() {
        "always" => Some("Always"),
        "never" => Some("Never"),
        "missing" | "if_not_present" => Some("IfNotPresent"),
        _ => None,
    };
    match policy {
        Some(p) => {
            ctx.line("pull_policy", Some(value), Outcome::Mapped, format!("spec.imagePullPolicy {p}"));
            spec.insert("imagePullPolicy".into(), json!(p));
        }
        None => ctx.line(
            "pull_policy",
            Some(value),
            Outcome::Unsupported,
            "no equivalent (build/daily/every_N): not mapped",
        ),
    }
}

/// Map `cap_add` and `cap_drop` onto the restricted default (drop ALL).
pub fn capabilities(ctx: &mut Ctx<'_>, key: &str, value: &Value, security: &mut Map<String, Value>) {
    let caps: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    if key == "cap_drop" {
        ctx.line(
            key,
            Some(value),
            Outcome::Mapped,
            "already covered: managed containers drop ALL capabilities by default (securityContext.capabilities.drop [ALL])",
        );
        return;
    }
    security.insert("capabilities".into(), json!({"drop": ["ALL"], "add": caps}));
    let beyond: Vec<&String> = caps.iter().filter(|c| c.as_str() != "NET_BIND_SERVICE").collect();
    let note = if beyond.is_empty() {
        String::new()
    } else {
        format!(
            " (the restricted Pod Security Standard allows only NET_BIND_SERVICE: a namespace enforcing it refuses {})",
            beyond.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )
    };
    ctx.line(
        key,
        Some(value),
        Outcome::Mapped,
        format!("securityContext.capabilities drop [ALL] add {}{note}", show(&json!(caps))),
    );
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(memory(&json!("512M")).as_deref(), Some("512Mi"));
        assert_eq!(memory(&json!("2G")).as_deref(), Some("2Gi"));
        assert_eq!(memory(&json!("1.5g")).as_deref(), Some("1536Mi"));
        assert_eq!(memory(&json!("50mb")).as_deref(), Some("50Mi"));
        assert_eq!(memory(&json!(1000)).as_deref(), Some("1000"));
        assert_eq!(memory(&json!("lots")), None);
        assert_eq!(cpus(&json!("0.5")).as_deref(), Some("500m"));
        assert_eq!(cpus(&json!("2.0")).as_deref(), Some("2"));
        assert_eq!(cpus(&json!(0.25)).as_deref(), Some("250m"));
    }

    #[test]
    fn command_strings_split_like_compose() {
        assert_eq!(words(&json!("python -m src.scheduler")).unwrap(), ["python", "-m", "src.scheduler"]);
        assert_eq!(words(&json!(["a b", 1])).unwrap(), ["a b", "1"]);
    }
}
