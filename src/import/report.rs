//! The import report: one line per compose key saying how it was mapped, or why not.

use std::fmt;

/// What became of one compose key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// It has an equivalent in the output (the detail names it, and any difference).
    Mapped,
    /// Not mapped, for a stated reason and with a way forward (or ignored on purpose).
    Reported,
    /// No equivalent in a RelayService; dropped.
    Unsupported,
}

impl Outcome {
    /// The word used in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mapped => "mapped",
            Self::Reported => "reported",
            Self::Unsupported => "unsupported",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The compose service the key belongs to; `None` for top-level keys.
    pub service: Option<String>,
    /// Where the key is, e.g. `web.ports[0]` or `volumes.db_data`.
    pub key: String,
    /// A short rendering of the value (never the value of a secret-looking key).
    pub value: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// How it was mapped, or why not.
    pub detail: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(value) = &self.value {
            write!(f, " {value}")?;
        }
        match self.outcome {
            Outcome::Mapped => write!(f, ": mapped → {}", self.detail),
            other => write!(f, ": {}: {}", other.as_str(), self.detail),
        }
    }
}

/// Every line, in the order the keys were visited; printed grouped by service (by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The lines.
    pub lines: Vec<Line>,
    /// Renames of compose service names into RelayService names (compose name, new name).
    pub renames: Vec<(String, String)>,
}

impl Report {
    /// Add a line.
    pub fn push(
        &mut self,
        service: Option<&str>,
        key: impl Into<String>,
        value: Option<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.lines.push(Line {
            service: service.map(str::to_string),
            key: key.into(),
            value,
            outcome,
            detail: detail.into(),
        });
    }

    /// Lines about one key (exact match), for tests and callers that look one up.
    pub fn find(&self, key: &str) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.key == key).collect()
    }

    /// How many lines have this outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.lines.iter().filter(|l| l.outcome == outcome).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut top: Vec<&Line> = self.lines.iter().filter(|l| l.service.is_none()).collect();
        top.sort_by(|a, b| a.key.cmp(&b.key));
        if !top.is_empty() {
            writeln!(f, "top level:")?;
            for line in top {
                writeln!(f, "  {line}")?;
            }
        }
        let services: std::collections::BTreeSet<&str> =
            self.lines.iter().filter_map(|l| l.service.as_deref()).collect();
        for service in services {
            let renamed = self.renames.iter().find(|(from, _)| from == service).map(|(_, to)| to.as_str());
            match renamed {
                Some(to) => writeln!(f, "service {service} (RelayService {to}):")?,
                None => writeln!(f, "service {service}:")?,
            }
            for line in self.lines.iter().filter(|l| l.service.as_deref() == Some(service)) {
                writeln!(f, "  {line}")?;
            }
        }
        writeln!(
            f,
            "summary: {} keys: {} mapped, {} reported, {} unsupported",
            self.lines.len(),
            self.count(Outcome::Mapped),
            self.count(Outcome::Reported),
            self.count(Outcome::Unsupported)
        )
    }
}

/// A short, single-line rendering of a compose value for the report.
pub fn show(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let text = text.replace('\n', " ");
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}…")
    } else {
        text
    }
}
