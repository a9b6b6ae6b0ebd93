//! Revision history of a RelayService, pure: what a revision holds (the spec fields that
//! produce the configuration and the pod template), its hash and name, how a spec is
//! restored from it, which revision a rollback request means, and how the list of kept
//! revisions changes when one is applied.
//!
//! A revision never holds a Secret value: `config.secrets` and `env` keep their references,
//! so a rollback restores the references and the pods read the Secrets' current values.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{RelayServiceSpec, RevisionEntry, RevisionOutcome};

/// Annotation on a RelayService asking for a rollback: `previous` or a revision number,
/// optionally followed by `@` and any token (`previous@2026-11-28T13:00:00Z`) so that the
/// same target can be asked for again. Each distinct value is handled once.
pub const ANNOTATION_ROLLBACK_TO: &str = "relayops.io/rollback-to";

/// Label of a ControllerRevision: the hash of its content.
pub const LABEL_REVISION_HASH: &str = "relayops.io/revision-hash";

/// Annotation of a ControllerRevision: the generation whose spec produced it.
pub const ANNOTATION_REVISION_GENERATION: &str = "relayops.io/generation";

/// Spec fields a revision holds: everything that produces the configuration or the pod
/// template.
pub const REVISION_FIELDS: [&str; 22] = [
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "resources",
    "config",
    "reload",
    "healthPolicyRef",
    "health",
    "storage",
    "podSecurityContext",
    "securityContext",
    "imagePullSecrets",
    "serviceAccountName",
    "podTemplate",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
];

/// Spec fields that stay the user's during a rollback: scale, start order, rollout pace,
/// exposure and the history itself.
pub const LIVE_FIELDS: [&str; 7] =
    ["replicas", "suspend", "dependsOn", "updateStrategy", "service", "ingress", "revisionHistoryLimit"];

/// Why a revision cannot be made, read or chosen.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The spec could not be turned into JSON, or a revision's data into a spec.
    #[error("revision data: {0}")]
    Data(#[from] serde_json::Error),
    /// A revision's data is not a JSON object.
    #[error("revision data is not an object")]
    NotAnObject,
    /// The annotation value names no target.
    #[error("{ANNOTATION_ROLLBACK_TO}: {0:?} is neither \"previous\" nor a revision number")]
    InvalidRequest(String),
    /// "previous" with no other revision kept.
    #[error("no revision before the current one is kept")]
    NoPrevious,
    /// The revision asked for is not kept.
    #[error("revision {revision} is not kept (kept: {kept:?})")]
    NotKept {
        /// The revision asked for.
        revision: i64,
        /// The kept revision numbers.
        kept: Vec<i64>,
    },
}

/// The content of a revision: the [`REVISION_FIELDS`] of a spec, as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot(Map<String, Value>);

impl Snapshot {
    /// The revision content of `spec`.
    pub fn of(spec: &RelayServiceSpec) -> Result<Self, HistoryError> {
        Self::from_data(serde_json::to_value(spec)?)
    }

    /// The content stored in a ControllerRevision's `data` (fields other than
    /// [`REVISION_FIELDS`] are ignored).
    pub fn from_data(data: Value) -> Result<Self, HistoryError> {
        let Value::Object(mut fields) = data else { return Err(HistoryError::NotAnObject) };
        fields.retain(|key, _| REVISION_FIELDS.contains(&key.as_str()));
        Ok(Self(fields))
    }

    /// The JSON stored in a ControllerRevision's `data`.
    pub fn data(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Short sha256 of the content (10 hex digits, keys in sorted order at every level).
    pub fn hash(&self) -> String {
        let mut canonical = Vec::new();
        write_canonical(&Value::Object(self.0.clone()), &mut canonical);
        Sha256::digest(&canonical).iter().take(5).map(|b| format!("{b:02x}")).collect()
    }

    /// `spec` with its revision fields replaced by this revision's: the live fields stay.
    pub fn restore(&self, spec: &RelayServiceSpec) -> Result<RelayServiceSpec, HistoryError> {
        let Value::Object(mut fields) = serde_json::to_value(spec)? else {
            return Err(HistoryError::NotAnObject);
        };
        fields.retain(|key, _| !REVISION_FIELDS.contains(&key.as_str()));
        fields.extend(self.0.clone());
        Ok(serde_json::from_value(Value::Object(fields))?)
    }
}

/// JSON with object keys sorted at every level, whatever the map type's order.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend(Value::String(key.clone()).to_string().into_bytes());
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(scalar.to_string().into_bytes()),
    }
}

/// Name of the ControllerRevision of `service` with content hash `hash`.
pub fn revision_name(service: &str, hash: &str) -> String {
    format!("{service}-{hash}")
}

/// What a rollback request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The revision applied before the current one.
    Previous,
    /// This revision number.
    Revision(i64),
}

impl RollbackTarget {
    /// Read an annotation value (`previous`, `3`, `previous@token`, `3@token`).
    pub fn parse(value: &str) -> Result<Self, HistoryError> {
        let target = value.split('@').next().unwrap_or_default().trim();
        match target {
            "previous" => Ok(Self::Previous),
            number => match number.parse::<i64>() {
                Ok(n) if n >= 1 => Ok(Self::Revision(n)),
                _ => Err(HistoryError::InvalidRequest(value.to_owned())),
            },
        }
    }

    /// The annotation value asking for this target, made distinct by `token`.
    pub fn request(self, token: &str) -> String {
        match self {
            Self::Previous => format!("previous@{token}"),
            Self::Revision(n) => format!("{n}@{token}"),
        }
    }
}

/// The kept revision `target` means, given the hash of the current one.
pub fn choose<'a>(
    entries: &'a [RevisionEntry],
    current: Option<&str>,
    target: RollbackTarget,
) -> Result<&'a RevisionEntry, HistoryError> {
    match target {
        // Entries are in order of application: the last one that is not current.
        RollbackTarget::Previous => {
            entries.iter().rev().find(|e| Some(e.hash.as_str()) != current).ok_or(HistoryError::NoPrevious)
        }
        RollbackTarget::Revision(revision) => {
            entries.iter().find(|e| e.revision == revision).ok_or_else(|| HistoryError::NotKept {
                revision,
                kept: entries.iter().map(|e| e.revision).collect(),
            })
        }
    }
}

/// The current revision among `entries`.
pub fn current(entries: &[RevisionEntry]) -> Option<&RevisionEntry> {
    entries.iter().rev().find(|e| e.outcome == RevisionOutcome::Current)
}

/// Revisions found as objects but missing from `entries` (a lost status): put first, by
/// number, as applied earlier.
pub fn adopt(
    entries: &[RevisionEntry],
    found: impl IntoIterator<Item = RevisionEntry>,
) -> Vec<RevisionEntry> {
    let mut adopted: Vec<RevisionEntry> =
        found.into_iter().filter(|f| !entries.iter().any(|e| e.hash == f.hash)).collect();
    adopted.sort_by_key(|e| e.revision);
    for entry in &mut adopted {
        entry.outcome = RevisionOutcome::Applied;
    }
    adopted.extend(entries.iter().cloned());
    adopted
}

/// A revision being applied.
#[derive(Clone, Debug)]
pub struct Applied<'a> {
    /// Its content hash.
    pub hash: &'a str,
    /// The service's generation.
    pub generation: Option<i64>,
    /// Now (RFC 3339).
    pub time: String,
    /// It comes from a rollback, not from the spec.
    pub rollback: bool,
    /// The number a new revision gets.
    pub next_number: i64,
}

/// The kept revisions after an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Kept revisions in order of application; the last is current.
    pub entries: Vec<RevisionEntry>,
    /// Revisions beyond the limit, to delete.
    pub pruned: Vec<RevisionEntry>,
}

/// Record the application of `applied` in `entries` (in order of application), keeping at
/// most `limit` revisions: the oldest are pruned first, never the current one nor `keep`
/// (a revision a rollback pins).
pub fn record(
    entries: &[RevisionEntry],
    applied: &Applied<'_>,
    limit: usize,
    keep: Option<&str>,
) -> Recorded {
    let mut entries = entries.to_vec();
    let already = current(&entries).is_some_and(|c| c.hash == applied.hash);
    if !already {
        let left = if applied.rollback { RevisionOutcome::RolledBack } else { RevisionOutcome::Applied };
        for entry in entries.iter_mut().filter(|e| e.outcome == RevisionOutcome::Current) {
            entry.outcome = left;
        }
        let mut entry = match entries.iter().position(|e| e.hash == applied.hash) {
            Some(index) => entries.remove(index),
            None => RevisionEntry {
                revision: applied.next_number,
                hash: applied.hash.to_owned(),
                generation: applied.generation,
                ..RevisionEntry::default()
            },
        };
        // A spec that produces a kept revision again makes it that generation's; a rollback
        // leaves the generation that produced it.
        if !applied.rollback {
            entry.generation = applied.generation;
        }
        entry.time = Some(applied.time.clone());
        entry.outcome = RevisionOutcome::Current;
        entries.push(entry);
    }
    let mut pruned = Vec::new();
    while entries.len() > limit.max(1) {
        let Some(index) =
            entries.iter().position(|e| e.hash != applied.hash && Some(e.hash.as_str()) != keep)
        else {
            break;
        };
        pruned.push(entries.remove(index));
    }
    Recorded { entries, pruned }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> RelayServiceSpec {
        serde_json::from_value(value).unwrap()
    }

    fn entry(revision: i64, hash: &str, outcome: RevisionOutcome) -> RevisionEntry {
        RevisionEntry { revision, hash: hash.into(), generation: Some(revision), time: None, outcome }
    }

    fn applied(hash: &str, rollback: bool, next_number: i64) -> Applied<'_> {
        Applied { hash, generation: Some(9), time: "2026-11-28T13:00:00Z".into(), rollback, next_number }
    }

    #[test]
    fn every_spec_field_is_either_in_a_revision_or_live() {
        let crd = serde_json::to_value(crate::api::crds()[1].clone()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut fields: Vec<&str> =
            schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        let mut classified: Vec<&str> = REVISION_FIELDS.iter().chain(LIVE_FIELDS.iter()).copied().collect();
        classified.sort();
        assert_eq!(fields, classified, "a new spec field must be classified in src/history.rs");
    }

    #[test]
    fn the_hash_names_the_content_not_the_live_fields() {
        let a = spec(json!({"image": "x:1", "replicas": 1, "config": {"data": {"A": "1", "B": "2"}}}));
        let scaled = spec(
            json!({"image": "x:1", "replicas": 5, "suspend": true, "config": {"data": {"B": "2", "A": "1"}}}),
        );
        let changed = spec(json!({"image": "x:1", "config": {"data": {"A": "2", "B": "2"}}}));
        let hash = Snapshot::of(&a).unwrap().hash();
        assert_eq!(hash.len(), 10);
        assert_eq!(Snapshot::of(&scaled).unwrap().hash(), hash, "scale and suspend are not content");
        assert_ne!(Snapshot::of(&changed).unwrap().hash(), hash);
        assert_eq!(revision_name("web", &hash), format!("web-{hash}"));
    }

    #[test]
    fn restoring_keeps_the_live_fields_and_never_holds_secret_values() {
        let old = spec(json!({"image": "x:1", "replicas": 1,
            "config": {"data": {"A": "old"}, "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]}}));
        let now = spec(
            json!({"image": "x:2", "replicas": 3, "dependsOn": ["db"], "config": {"data": {"A": "new"}}}),
        );
        let snapshot = Snapshot::of(&old).unwrap();
        assert_eq!(snapshot.data()["config"]["secrets"][0]["secretKeyRef"], json!({"name": "s", "key": "k"}));
        let restored = snapshot.restore(&now).unwrap();
        assert_eq!(restored.image, "x:1");
        assert_eq!(restored.config.as_ref().unwrap().data["A"], "old");
        assert_eq!((restored.replicas, restored.depends_on.as_slice()), (3, ["db".to_string()].as_slice()));
        // Read back from the stored data, the snapshot is the same content.
        assert_eq!(Snapshot::from_data(snapshot.data()).unwrap().hash(), snapshot.hash());
        assert!(matches!(Snapshot::from_data(json!([1])), Err(HistoryError::NotAnObject)));
    }

    #[test]
    fn requests_name_previous_or_a_number_with_an_optional_token() {
        assert_eq!(RollbackTarget::parse("previous").unwrap(), RollbackTarget::Previous);
        assert_eq!(RollbackTarget::parse("3@2026-11-28T13:00:00Z").unwrap(), RollbackTarget::Revision(3));
        assert_eq!(
            RollbackTarget::parse(&RollbackTarget::Previous.request("t")).unwrap(),
            RollbackTarget::Previous
        );
        for bad in ["", "0", "-1", "last", "2x"] {
            assert!(RollbackTarget::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn previous_is_the_last_applied_other_than_the_current_one() {
        use RevisionOutcome::*;
        let entries = [entry(1, "a", Applied), entry(3, "c", RolledBack), entry(2, "b", Current)];
        assert_eq!(choose(&entries, Some("b"), RollbackTarget::Previous).unwrap().revision, 3);
        assert_eq!(choose(&entries, Some("b"), RollbackTarget::Revision(1)).unwrap().hash, "a");
        let err = choose(&entries, Some("b"), RollbackTarget::Revision(7)).unwrap_err();
        assert_eq!(err.to_string(), "revision 7 is not kept (kept: [1, 3, 2])");
        assert!(matches!(
            choose(&entries[2..], Some("b"), RollbackTarget::Previous),
            Err(HistoryError::NoPrevious)
        ));
    }

    #[test]
    fn a_new_revision_becomes_current_and_the_oldest_are_pruned() {
        use RevisionOutcome::*;
        let entries = [entry(1, "a", Applied), entry(2, "b", Applied), entry(3, "c", Current)];
        let recorded = record(&entries, &applied("d", false, 4), 3, None);
        let summary: Vec<(i64, &str, RevisionOutcome)> =
            recorded.entries.iter().map(|e| (e.revision, e.hash.as_str(), e.outcome)).collect();
        assert_eq!(summary, [(2, "b", Applied), (3, "c", Applied), (4, "d", Current)]);
        assert_eq!(recorded.pruned, [entry(1, "a", Applied)]);
        assert_eq!(recorded.entries[2].generation, Some(9));
        // Applying the current one again changes nothing.
        assert_eq!(record(&recorded.entries, &applied("d", false, 5), 3, None).entries, recorded.entries);
    }

    #[test]
    fn a_rollback_keeps_the_number_and_marks_the_revision_it_left() {
        use RevisionOutcome::*;
        let entries = [entry(1, "a", Applied), entry(2, "b", Current)];
        let recorded = record(&entries, &applied("a", true, 3), 10, Some("a"));
        let summary: Vec<(i64, &str, RevisionOutcome, Option<i64>)> =
            recorded.entries.iter().map(|e| (e.revision, e.hash.as_str(), e.outcome, e.generation)).collect();
        assert_eq!(summary, [(2, "b", RolledBack, Some(2)), (1, "a", Current, Some(1))]);
        // The pinned revision survives pruning even when it is the oldest.
        let entries = [entry(1, "a", Applied), entry(2, "b", Applied), entry(3, "c", Current)];
        let recorded = record(&entries, &applied("d", false, 4), 2, Some("a"));
        let kept: Vec<&str> = recorded.entries.iter().map(|e| e.hash.as_str()).collect();
        assert_eq!(kept, ["a", "d"]);
    }

    #[test]
    fn revisions_found_without_a_status_entry_are_adopted_first() {
        use RevisionOutcome::*;
        let entries = [entry(3, "c", Current)];
        let found = [entry(2, "b", Current), entry(1, "a", Applied), entry(3, "c", Applied)];
        let all = adopt(&entries, found);
        let summary: Vec<(i64, RevisionOutcome)> = all.iter().map(|e| (e.revision, e.outcome)).collect();
        assert_eq!(summary, [(1, Applied), (2, Applied), (3, Current)]);
    }
}
