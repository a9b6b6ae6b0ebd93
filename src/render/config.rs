//! The owned ConfigMap: the rendered configuration file, its hash, and the restart-key digest.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::labels::owned_meta;
use super::{Owner, RenderError, SecretData};
use crate::api::{ConfigFormat, ConfigSpec, RelayServiceSpec};

/// ConfigMap key holding the configuration hash, mounted next to the configuration file
/// so an app can echo the hash it loaded (`cat $MOUNT_PATH/config-hash`).
pub const CONFIG_HASH_KEY: &str = "config-hash";

/// The configuration of one service, rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedConfig {
    /// The ConfigMap (absent without `spec.config`).
    pub config_map: Option<ConfigMap>,
    /// sha256 (hex) of the canonical configuration: file name and content, plus every
    /// Secret-backed key's value. Secret values enter only through this digest.
    pub hash: String,
    /// Digest of the values of the restart keys only (all keys when there is no reload hook).
    pub restart_digest: String,
}

/// Default file name for a format.
pub fn default_file_name(format: ConfigFormat) -> &'static str {
    match format {
        ConfigFormat::Env => "config.env",
        ConfigFormat::Json => "config.json",
        ConfigFormat::Yaml => "config.yaml",
    }
}

/// The file name the configuration is written to.
pub fn file_name(config: &ConfigSpec) -> String {
    config.file_name.clone().unwrap_or_else(|| default_file_name(config.format).into())
}

/// Render the configuration of `spec` and its hashes.
pub fn render_config(
    owner: &Owner,
    spec: &RelayServiceSpec,
    secrets: &SecretData,
) -> Result<RenderedConfig, RenderError> {
    let empty = ConfigSpec::default();
    let config = spec.config.as_ref().unwrap_or(&empty);
    let content = render_file(config)?;
    let file = file_name(config);
    let secret_values = secret_values(config, secrets)?;

    let mut hasher = Sha256::new();
    feed(&mut hasher, "file", file.as_bytes());
    feed(&mut hasher, "content", content.as_bytes());
    for (name, value) in &secret_values {
        feed(&mut hasher, "secret", name.as_bytes());
        feed(&mut hasher, "value", value);
    }
    let hash = hex(&hasher.finalize());

    let restart_digest = restart_digest(spec, config, &secret_values)?;
    let config_map = spec.config.as_ref().map(|_| ConfigMap {
        metadata: owned_meta(owner, owner.config_map_name()),
        data: Some(BTreeMap::from([(file.clone(), content), (CONFIG_HASH_KEY.into(), hash.clone())])),
        ..ConfigMap::default()
    });
    Ok(RenderedConfig { config_map, hash, restart_digest })
}

/// A ConfigMap named `name` owned by `owner` holding `data` (the last good copy of a
/// configuration, or that copy restored).
pub fn owned_config_map(owner: &Owner, name: String, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap { metadata: owned_meta(owner, name), data: Some(data), ..ConfigMap::default() }
}

/// Digest of what forces a pod replacement: the values of the restart keys, or the whole
/// configuration when the service has no reload hook (nothing else could apply it).
fn restart_digest(
    spec: &RelayServiceSpec,
    config: &ConfigSpec,
    secret_values: &BTreeMap<String, Vec<u8>>,
) -> Result<String, RenderError> {
    let mut hasher = Sha256::new();
    match &spec.reload {
        None => {
            for (key, value) in &config.data {
                feed(&mut hasher, key, value.as_bytes());
            }
            for (key, value) in secret_values {
                feed(&mut hasher, key, value);
            }
            feed(&mut hasher, "format", default_file_name(config.format).as_bytes());
            feed(&mut hasher, "file", file_name(config).as_bytes());
        }
        Some(reload) => {
            let mut keys: Vec<&String> = reload.restart_keys.iter().collect();
            keys.sort();
            keys.dedup();
            for (index, key) in reload.restart_keys.iter().enumerate() {
                if !config.data.contains_key(key) && !secret_values.contains_key(key) {
                    return Err(RenderError::UnknownRestartKey {
                        field: format!("spec.reload.restartKeys[{index}]"),
                        key: key.clone(),
                    });
                }
            }
            for key in keys {
                let value = config.data.get(key).map(|v| v.as_bytes().to_vec());
                let value = value.or_else(|| secret_values.get(key).cloned()).unwrap_or_default();
                feed(&mut hasher, key, &value);
            }
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Values of the Secret-backed keys, by key name.
fn secret_values(
    config: &ConfigSpec,
    secrets: &SecretData,
) -> Result<BTreeMap<String, Vec<u8>>, RenderError> {
    let mut values = BTreeMap::new();
    for (index, entry) in config.secrets.iter().enumerate() {
        let field = format!("spec.config.secrets[{index}].secretKeyRef");
        let selector = &entry.secret_key_ref;
        let optional = selector.optional.unwrap_or(false);
        let value = match secrets.get(&selector.name) {
            Some(data) => match data.get(&selector.key) {
                Some(value) => value.clone(),
                None if optional => Vec::new(),
                None => {
                    return Err(RenderError::MissingSecretKey {
                        field,
                        secret: selector.name.clone(),
                        key: selector.key.clone(),
                    });
                }
            },
            None if optional => Vec::new(),
            None => return Err(RenderError::MissingSecret { field, secret: selector.name.clone() }),
        };
        values.insert(entry.name.clone(), value);
    }
    Ok(values)
}

/// Render the configuration file in its format. Keys are sorted, so output is canonical.
fn render_file(config: &ConfigSpec) -> Result<String, RenderError> {
    match config.format {
        ConfigFormat::Env => Ok(config.data.iter().map(|(k, v)| format!("{k}={}\n", env_value(v))).collect()),
        ConfigFormat::Json => serde_json::to_string_pretty(&config.data)
            .map(|s| s + "\n")
            .map_err(|e| RenderError::ConfigFormat { format: "json", message: e.to_string() }),
        ConfigFormat::Yaml if config.data.is_empty() => Ok("{}\n".into()),
        ConfigFormat::Yaml => serde_saphyr::to_string(&config.data)
            .map_err(|e| RenderError::ConfigFormat { format: "yaml", message: e.to_string() }),
    }
}

/// Quote an env-file value when it holds anything but plain characters (dotenv double-quote rules).
fn env_value(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@,+%=^~".contains(c);
    if value.chars().all(plain) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '$' => quoted.push_str("\\$"),
            '`' => quoted.push_str("\\`"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Length-prefixed feed, so `("ab","c")` and `("a","bc")` hash differently.
fn feed(hasher: &mut Sha256, tag: &str, value: &[u8]) {
    hasher.update((tag.len() as u64).to_le_bytes());
    hasher.update(tag.as_bytes());
    hasher.update((value.len() as u64).to_le_bytes());
    hasher.update(value);
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_quoted_only_when_needed() {
        assert_eq!(env_value("100"), "100");
        assert_eq!(env_value("wss://example.org/ws"), "wss://example.org/ws");
        assert_eq!(env_value("a b"), "\"a b\"");
        assert_eq!(env_value("^(test|spam)$"), "\"^(test|spam)\\$\"");
        assert_eq!(env_value("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(env_value(""), "");
    }
}
