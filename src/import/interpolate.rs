//! Compose variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` (defaults may nest) and `$$`.
//!
//! Values come only from the variables given (`--env-file`), never from the process
//! environment, so the output does not depend on the shell it was made in.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::{Outcome, Report};

/// Something the report should say about one substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// `${VAR}` with VAR unset: replaced by an empty string.
    Unset(String),
    /// `${VAR:?message}` with VAR unset or empty: compose would refuse the file.
    Required { name: String, message: String },
    /// A `$` compose would reject; left as written.
    Invalid(String),
}

/// Interpolate one string.
pub fn string(text: &str, vars: &BTreeMap<String, String>) -> (String, Vec<Finding>) {
    let mut findings = Vec::new();
    let out = expand(text, vars, &mut findings);
    (out, findings)
}

fn expand(text: &str, vars: &BTreeMap<String, String>, findings: &mut Vec<Finding>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            match braced_end(body) {
                Some(end) => {
                    out.push_str(&braced(&body[..end], vars, findings));
                    rest = &body[end + 1..];
                }
                None => {
                    findings.push(Finding::Invalid(rest.to_string()));
                    out.push_str(rest);
                    rest = "";
                }
            }
        } else {
            let len = name_len(after);
            if len == 0 {
                findings.push(Finding::Invalid(format!(
                    "${}",
                    after.chars().next().map_or(String::new(), String::from)
                )));
                out.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                out.push_str(&lookup(name, vars, findings));
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length of a variable name at the start of `text`.
fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok =
            if i == 0 { c.is_ascii_alphabetic() || c == '_' } else { c.is_ascii_alphanumeric() || c == '_' };
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Index of the `}` closing a `${`, counting nested braces.
fn braced_end(body: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn lookup(name: &str, vars: &BTreeMap<String, String>, findings: &mut Vec<Finding>) -> String {
    match vars.get(name) {
        Some(value) => value.clone(),
        None => {
            findings.push(Finding::Unset(name.into()));
            String::new()
        }
    }
}

fn braced(body: &str, vars: &BTreeMap<String, String>, findings: &mut Vec<Finding>) -> String {
    let len = name_len(body);
    let (name, op) = (&body[..len], &body[len..]);
    if len == 0 {
        findings.push(Finding::Invalid(format!("${{{body}}}")));
        return format!("${{{body}}}");
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let (operator, word) = ["?", ":?", ":-", "-", ":+", "+"]
        .iter()
        .filter(|o| op.starts_with(**o))
        .max_by_key(|o| o.len())
        .map_or(("", op), |o| (*o, &op[o.len()..]));
    match operator {
        "" if op.is_empty() => lookup(name, vars, findings),
        ":-" if non_empty => value.cloned().unwrap_or_default(),
        "-" if set => value.cloned().unwrap_or_default(),
        ":-" | "-" => expand(word, vars, findings),
        ":?" if non_empty => value.cloned().unwrap_or_default(),
        "?" if set => value.cloned().unwrap_or_default(),
        ":?" | "?" => {
            let message = expand(word, vars, findings);
            findings.push(Finding::Required { name: name.into(), message });
            String::new()
        }
        ":+" if non_empty => expand(word, vars, findings),
        "+" if set => expand(word, vars, findings),
        ":+" | "+" => String::new(),
        _ => {
            findings.push(Finding::Invalid(format!("${{{body}}}")));
            format!("${{{body}}}")
        }
    }
}

/// Interpolate every string value of the compose tree in place (keys are left alone), and
/// report each unset variable, failed `:?` and invalid `$` where it occurs: under its
/// service as `interpolation SERVICE.key…`, else as a top-level `interpolation key…`.
pub fn tree(value: &mut Value, vars: &BTreeMap<String, String>, report: &mut Report) {
    let Value::Object(top) = value else { return };
    for (key, item) in top.iter_mut() {
        match (key.as_str(), item) {
            ("services", Value::Object(services)) => {
                for (service, definition) in services.iter_mut() {
                    walk(definition, service.clone(), Some(service), vars, report);
                }
            }
            (_, item) => walk(item, key.clone(), None, vars, report),
        }
    }
}

fn walk(
    value: &mut Value,
    path: String,
    service: Option<&str>,
    vars: &BTreeMap<String, String>,
    report: &mut Report,
) {
    match value {
        Value::String(text) if text.contains('$') => {
            let (out, findings) = string(text, vars);
            for finding in findings {
                let (outcome, detail) = match finding {
                    Finding::Unset(name) => (
                        Outcome::Reported,
                        format!(
                            "${{{name}}} is not set (pass it with --env-file): replaced by an empty string"
                        ),
                    ),
                    Finding::Required { name, message } => (
                        Outcome::Reported,
                        format!(
                            "${{{name}}} is required ({message}) and not set: replaced by an empty string; compose would refuse the file"
                        ),
                    ),
                    Finding::Invalid(found) => {
                        (Outcome::Unsupported, format!("invalid interpolation {found:?}: left as written"))
                    }
                };
                report.push(service, format!("interpolation {path}"), None, outcome, detail);
            }
            *text = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), service, vars, report);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, format!("{path}.{key}"), service, vars, report);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("A".into(), "a".into()), ("EMPTY".into(), String::new())])
    }

    #[test]
    fn every_form() {
        let v = vars();
        for (text, expected) in [
            ("$A-${A}", "a-a"),
            ("${A:-x}|${EMPTY:-x}|${UNSET:-x}", "a|x|x"),
            ("${A-x}|${EMPTY-x}|${UNSET-x}", "a||x"),
            ("${A:+y}|${EMPTY:+y}|${EMPTY+y}|${UNSET+y}", "y||y|"),
            ("${UNSET:-${A}}", "a"),
            ("${UNSET:-${UNSET2:-deep}}", "deep"),
            ("$$A and $${A}", "$A and ${A}"),
            ("cost: 5$", "cost: 5$"),
        ] {
            assert_eq!(string(text, &v).0, expected, "{text}");
        }
    }

    #[test]
    fn findings() {
        let v = vars();
        assert_eq!(string("${NOPE}", &v).1, [Finding::Unset("NOPE".into())]);
        assert_eq!(
            string("${EMPTY:?must be set}", &v).1,
            [Finding::Required { name: "EMPTY".into(), message: "must be set".into() }]
        );
        assert!(string("${EMPTY?must be set}", &v).1.is_empty());
        assert_eq!(string("a $ b", &v).1, [Finding::Invalid("$ ".into())]);
    }

    #[test]
    fn the_tree_is_interpolated_and_findings_reported_where_they_occur() {
        let mut value = serde_json::json!({"services": {"web": {"image": "web:${TAG:-1.0}", "environment": ["X=${NOPE}"]}}});
        let mut report = Report::default();
        tree(&mut value, &vars(), &mut report);
        assert_eq!(value["services"]["web"]["image"], "web:1.0");
        assert_eq!(value["services"]["web"]["environment"][0], "X=");
        assert_eq!(report.lines.len(), 1);
        assert_eq!(report.lines[0].key, "interpolation web.environment[0]");
        assert_eq!(report.lines[0].service.as_deref(), Some("web"));
    }
}
