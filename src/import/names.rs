//! Compose names turned into Kubernetes names.

use std::collections::BTreeSet;

/// Longest RelayService name (pod and claim names derive from it).
pub const MAX_SERVICE_NAME: usize = 52;
/// Longest storage volume name.
pub const MAX_VOLUME_NAME: usize = 40;

/// A DNS-1035 label of at most `max` characters made from `name`: lower case, `_` `.` and
/// spaces become `-`, other characters are dropped, it starts with a letter and ends with a
/// letter or digit. `fallback` when nothing is left.
pub fn dns_label(name: &str, max: usize, fallback: &str) -> String {
    let mut out: String = name
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' | '.' | ' ' => Some('-'),
            _ => None,
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let mut out = if out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.to_string()
    } else if out.is_empty() {
        fallback.to_string()
    } else {
        format!("{fallback}-{out}")
    };
    out.truncate(max);
    out.trim_end_matches('-').to_string()
}

/// RelayService names for compose service names, in the given order: DNS-1035, at most 52
/// characters, not ending in `-td` (reserved), unique (`-2`, `-3`, … on a clash).
pub fn service_names(names: &[String]) -> Vec<String> {
    let mut taken = BTreeSet::new();
    names
        .iter()
        .map(|name| {
            let mut base = dns_label(name, MAX_SERVICE_NAME, "svc");
            if base.ends_with("-td") {
                base.truncate(MAX_SERVICE_NAME - 4);
                base.push_str("-svc");
            }
            unique(&base, MAX_SERVICE_NAME, &mut taken)
        })
        .collect()
}

/// `base`, or `base-N` for the first N ≥ 2 not yet taken; records the result.
pub fn unique(base: &str, max: usize, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = base.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        let mut stem = base.to_string();
        stem.truncate(max - suffix.len());
        candidate = format!("{}{suffix}", stem.trim_end_matches('-'));
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// A valid environment-variable / config key (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `key` made into a valid config key: other characters become `_`, a leading digit gets `_`.
pub fn env_key(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_names_become_dns_1035_labels() {
        let names: Vec<String> = ["web", "kafka_connect", "Web.App", "2fa", "bw-db", "x-td", "web", "WEB"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            service_names(&names),
            ["web", "kafka-connect", "web-app", "svc-2fa", "bw-db", "x-td-svc", "web-2", "web-3"]
        );
        let long = "a".repeat(80);
        assert_eq!(service_names(&[long])[0].len(), MAX_SERVICE_NAME);
    }

    #[test]
    fn config_keys() {
        assert!(is_env_key("POSTGRES_DB") && is_env_key("_x1"));
        assert!(!is_env_key("discovery.type") && !is_env_key("1A") && !is_env_key(""));
        assert_eq!(env_key("db-password"), "db_password");
        assert_eq!(env_key("1x"), "_1x");
    }
}
