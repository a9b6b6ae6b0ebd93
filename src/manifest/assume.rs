//! `--assume-exists`: objects referenced by the inputs but created elsewhere (out of band, by
//! another repository), which render takes as existing instead of failing.

use std::str::FromStr;

/// The kinds an input may reference by name.
const KINDS: [&str; 3] = ["Secret", "HealthPolicy", "RelayService"];

/// One `[NAMESPACE/]KIND/NAME` pattern; `*` in any part matches any run of characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeExists {
    namespace: Option<String>,
    kind: &'static str,
    name: String,
}

impl AssumeExists {
    /// Whether the object `kind namespace/name` is assumed to exist.
    pub fn matches(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.kind == kind
            && self.namespace.as_deref().is_none_or(|pattern| glob_match(pattern, namespace))
            && glob_match(&self.name, name)
    }
}

impl FromStr for AssumeExists {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let (namespace, kind, name) = match parts.as_slice() {
            [kind, name] => (None, *kind, *name),
            [namespace, kind, name] => (Some(*namespace), *kind, *name),
            _ => {
                return Err(format!(
                    "{text:?}: expected KIND/NAME or NAMESPACE/KIND/NAME, e.g. secret/db-credentials"
                ));
            }
        };
        let kind = KINDS.into_iter().find(|k| k.eq_ignore_ascii_case(kind)).ok_or_else(|| {
            format!(
                "{text:?}: kind {kind:?} is not referenced by relay-operator objects; use one of {}",
                KINDS.join(", ")
            )
        })?;
        if name.is_empty() || namespace.is_some_and(str::is_empty) {
            return Err(format!("{text:?}: empty namespace or name; use * to match any"));
        }
        Ok(Self { namespace: namespace.map(String::from), kind, name: name.into() })
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> AssumeExists {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn kind_and_name_match_in_any_namespace() {
        let secret = pattern("secret/db-credentials");
        assert!(secret.matches("Secret", "demo", "db-credentials"));
        assert!(secret.matches("Secret", "other", "db-credentials"));
        assert!(!secret.matches("Secret", "demo", "db"));
        assert!(!secret.matches("HealthPolicy", "demo", "db-credentials"));
    }

    #[test]
    fn namespace_limits_the_match() {
        let policy = pattern("demo/HealthPolicy/web");
        assert!(policy.matches("HealthPolicy", "demo", "web"));
        assert!(!policy.matches("HealthPolicy", "prod", "web"));
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(pattern("secret/*").matches("Secret", "demo", "anything"));
        assert!(pattern("secret/db-*").matches("Secret", "demo", "db-credentials"));
        assert!(!pattern("secret/db-*").matches("Secret", "demo", "web-credentials"));
        assert!(pattern("*/secret/*-token").matches("Secret", "demo", "reload-token"));
        assert!(pattern("secret/a*b*c").matches("Secret", "demo", "a-b-c"));
        assert!(!pattern("secret/a*b*c").matches("Secret", "demo", "a-c-b"));
        assert!(!pattern("secret/ab*ba").matches("Secret", "demo", "aba"));
    }

    #[test]
    fn bad_patterns_say_what_is_expected() {
        let wrong = |text: &str| text.parse::<AssumeExists>().expect_err(text);
        assert!(wrong("db-credentials").contains("expected KIND/NAME"));
        assert!(wrong("configmap/x").contains("use one of Secret, HealthPolicy, RelayService"));
        assert!(wrong("secret/").contains("use * to match any"));
    }
}
