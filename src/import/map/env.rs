//! `environment`, `env_file` and `secrets` → `config.data` (or `env`), `config.secrets` and
//! Secret templates.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::names::{env_key, is_env_key};
use super::super::parse;
use super::super::project::as_map;
use super::super::report::{Outcome, show};
use super::super::{EnvTarget, FileReader, ImportOptions};
use super::Ctx;

/// Where the configuration of one service ended up.
#[derive(Clone, Debug, Default)]
pub struct EnvResult {
    /// Plain keys and values.
    pub data: BTreeMap<String, String>,
    /// Secret-looking keys, moved to the service's Secret template.
    pub secret_keys: Vec<String>,
}

/// Why a key looks secret, if it does: its name (`*PASSWORD*`, `*TOKEN*`, `*SECRET*`, a
/// last word `KEY`, `PASS`, `PWD`, `PW`…), or a URL with credentials in its value. Names
/// ending in `_FILE`, `_PATH` or `_DIR` hold a path, not a secret.
pub fn secret_reason(key: &str, value: &str) -> Option<&'static str> {
    if url_has_credentials(value) {
        return Some("URL with credentials");
    }
    let upper = key.to_ascii_uppercase();
    let words: Vec<&str> =
        upper.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let last = words.last().copied().unwrap_or_default();
    if ["FILE", "PATH", "DIR", "FILENAME"].contains(&last) {
        return None;
    }
    let secretish = words.iter().any(|w| {
        ["PASSWORD", "PASSWD", "SECRET", "TOKEN"].iter().any(|s| w.contains(s))
            || ["PASS", "PWD", "PW", "CREDENTIALS", "APIKEY"].contains(w)
    }) || last.ends_with("KEY");
    secretish.then_some("secret-looking name")
}

/// `scheme://user:password@host…` (or any user info before `@`).
fn url_has_credentials(value: &str) -> bool {
    let Some(at) = value.find("://") else { return false };
    let rest = &value[at + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rfind('@').is_some_and(|i| i > 0)
}

/// Map `env_file` and `environment` (environment wins), moving secret-looking keys out.
/// `rewrites` replace `/run/secrets/NAME` paths by where the secrets are mounted now.
pub fn map(
    ctx: &mut Ctx<'_>,
    definition: &Map<String, Value>,
    options: &ImportOptions,
    files: &dyn FileReader,
    rewrites: &[(String, String)],
) -> EnvResult {
    // key → (value, report key)
    let mut entries: BTreeMap<String, (String, String)> = BTreeMap::new();
    if let Some(env_file) = definition.get("env_file") {
        let items = match env_file {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("env_file[{i}]");
            let (path, required) = match item {
                Value::String(path) => (path.clone(), true),
                Value::Object(o) => (
                    o.get("path").and_then(Value::as_str).unwrap_or_default().to_string(),
                    o.get("required").and_then(Value::as_bool).unwrap_or(true),
                ),
                _ => (String::new(), true),
            };
            match files.read(&path) {
                Ok(text) => {
                    let parsed = parse::dotenv(&text);
                    let mut count = 0;
                    for (name, value) in parsed {
                        let value = value.or_else(|| options.variables.get(&name).cloned());
                        if let Some(value) = value {
                            entries.insert(name.clone(), (value, format!("env_file.{name}")));
                            count += 1;
                        }
                    }
                    ctx.line(
                        &key,
                        Some(item),
                        Outcome::Mapped,
                        format!("{count} keys read from {path} (each reported below; `environment` wins on a clash)"),
                    );
                }
                Err(why) if required => ctx.line(
                    &key,
                    Some(item),
                    Outcome::Reported,
                    format!("cannot read it ({why}): its keys are missing from the output; add them to config.data"),
                ),
                Err(_) => ctx.line(&key, Some(item), Outcome::Reported, "optional file not found: skipped, as compose does"),
            }
        }
    }
    if let Some(environment) = definition.get("environment") {
        for (name, value) in as_map(environment.clone()) {
            let report_key = format!("environment.{name}");
            let value = match value {
                Value::Null => match options.variables.get(&name) {
                    Some(value) => value.clone(),
                    None if secret_reason(&name, "").is_some() => String::new(),
                    None => {
                        ctx.line(
                            &report_key,
                            None::<String>,
                            Outcome::Reported,
                            "no value: compose takes it from the shell at `docker compose up`; import never reads the process environment (pass it with --env-file)",
                        );
                        continue;
                    }
                },
                Value::String(s) => s,
                other => other.to_string(),
            };
            entries.insert(name, (value, report_key));
        }
    }

    let mut result = EnvResult::default();
    for (name, (mut value, report_key)) in entries {
        let mut notes = Vec::new();
        for (from, to) in rewrites {
            if value.contains(from.as_str()) {
                value = value.replace(from.as_str(), to);
                notes.push(format!("{from} rewritten to {to}"));
            }
        }
        if let Some(reason) = secret_reason(&name, &value) {
            if !is_env_key(&name) {
                ctx.line(
                    &report_key,
                    None::<String>,
                    Outcome::Unsupported,
                    format!(
                        "{reason}, but {name:?} is not a valid variable name for config.secrets: not mapped"
                    ),
                );
                continue;
            }
            ctx.line(
                &report_key,
                Some("<hidden>".to_string()),
                Outcome::Mapped,
                format!(
                    "config.secrets {name} from Secret {}-env key {name} ({reason}: kept out of the plain configuration; the Secret is a template, the value was not copied)",
                    ctx.name
                ),
            );
            result.secret_keys.push(name);
            continue;
        }
        let shown = show(&Value::String(value.clone()));
        let note = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        match options.env_target {
            EnvTarget::Config if !is_env_key(&name) => {
                ctx.line(
                    &report_key,
                    Some(shown),
                    Outcome::Unsupported,
                    format!(
                        "{name:?} is not a valid key for config format env: not mapped (use --env-into env, or rename it to {})",
                        env_key(&name)
                    ),
                );
                continue;
            }
            EnvTarget::Config => {
                ctx.line(&report_key, Some(shown), Outcome::Mapped, format!("config.data.{name}{note}"))
            }
            EnvTarget::Env => {
                ctx.line(&report_key, Some(shown), Outcome::Mapped, format!("env {name}{note}"))
            }
        }
        result.data.insert(name, value);
    }
    result
}

/// A compose secret used by a service: the Secret template holding it and where it is
/// mounted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedSecret {
    /// Compose secret name.
    pub source: String,
    /// The config key (env var and file name under `MOUNT_PATH/secrets/`).
    pub key: String,
}

/// Map the service's `secrets:` (short and long form).
pub fn secrets(
    ctx: &mut Ctx<'_>,
    value: &Value,
    known: &Map<String, Value>,
    mount_path: &str,
) -> Vec<UsedSecret> {
    let mut used = Vec::new();
    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
        let key = format!("secrets[{i}]");
        let (source, target) = match item {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("source").and_then(Value::as_str).unwrap_or_default().to_string(),
                o.get("target").and_then(Value::as_str).map(str::to_string),
            ),
            _ => (String::new(), None),
        };
        if !known.contains_key(&source) {
            ctx.line(
                &key,
                Some(item),
                Outcome::Unsupported,
                format!("secret {source:?} is not defined at the top level: not mapped"),
            );
            continue;
        }
        let config_key = env_key(&source);
        let mut notes = vec![format!(
            "compose mounts it at /run/secrets/{}; it is now the file {mount_path}/secrets/{config_key} and the env var {config_key}",
            target.as_deref().unwrap_or(&source)
        )];
        if let Value::Object(o) = item {
            for extra in ["uid", "gid", "mode"] {
                if o.contains_key(extra) {
                    notes.push(format!("{extra} not mapped"));
                }
            }
        }
        ctx.line(
            &key,
            Some(item),
            Outcome::Mapped,
            format!(
                "config.secrets {config_key} from Secret {} key {source} (template; {})",
                super::secret_object_name(&source),
                notes.join("; ")
            ),
        );
        used.push(UsedSecret { source, key: config_key });
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_keys() {
        for key in [
            "POSTGRES_PASSWORD",
            "DB_PASSWD",
            "API_TOKEN",
            "SECRET_KEY_BASE",
            "KEEPA_API_KEY",
            "POSTGRES_PW",
            "RABBITMQ_DEFAULT_PASS",
            "WEBPASSWORD",
            "APIKEY",
        ] {
            assert_eq!(secret_reason(key, "x"), Some("secret-looking name"), "{key}");
        }
        for key in ["POSTGRES_PASSWORD_FILE", "CONNECT_KEY_CONVERTER", "KEYCLOAK_URL", "POSTGRES_DB", "PATH"]
        {
            assert_eq!(secret_reason(key, "x"), None, "{key}");
        }
        assert_eq!(
            secret_reason("DATABASE_URL", "postgresql+asyncpg://postgres:postgres@db:5432/keeper"),
            Some("URL with credentials")
        );
        assert_eq!(secret_reason("ES_URL", "http://elasticsearch:9200"), None);
        assert_eq!(secret_reason("MAIL", "user@example.com"), None);
    }
}
