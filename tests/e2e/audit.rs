//! What the API server's audit log says one user did: every request the operator makes is
//! there, so "zero writes" is counted by the server itself, not by the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Verbs that change something.
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// A position in the audit log; requests after it are counted.
pub struct Mark {
    path: PathBuf,
    offset: u64,
}

impl Mark {
    /// The end of the log now.
    pub fn now(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self { path: path.to_owned(), offset }
    }

    /// Completed requests of `user` since the mark.
    pub fn requests(&self, user: &str) -> Vec<Request> {
        let Ok(bytes) = std::fs::read(&self.path) else { return Vec::new() };
        let start = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
            .map(|e| Request {
                verb: e["verb"].as_str().unwrap_or_default().to_owned(),
                resource: e["objectRef"]["resource"].as_str().unwrap_or_default().to_owned(),
                subresource: e["objectRef"]["subresource"].as_str().unwrap_or_default().to_owned(),
                namespace: e["objectRef"]["namespace"].as_str().unwrap_or_default().to_owned(),
                name: e["objectRef"]["name"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Writes of `user` since the mark, as `verb resource[/subresource] name` → count.
    pub fn writes(&self, user: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.requests(user).into_iter().filter(|r| WRITES.contains(&r.verb.as_str())) {
            let resource = if r.subresource.is_empty() {
                r.resource
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            *counts.entry(format!("{} {resource} {}", r.verb, r.name)).or_default() += 1;
        }
        counts
    }
}

/// One audited request.
#[derive(Debug)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `patch`, …
    pub verb: String,
    /// e.g. `pods`, `events`.
    pub resource: String,
    /// e.g. `status`.
    pub subresource: String,
    /// Namespace, empty for a cluster-wide request.
    pub namespace: String,
    /// Object name, if any.
    pub name: String,
}
