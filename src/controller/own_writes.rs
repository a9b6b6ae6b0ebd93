//! Read-your-writes for the reconciled objects: the `resourceVersion` of the operator's own
//! last status write per object, so that a reconcile never starts from a cached copy older
//! than that write.
//!
//! A reconcile that starts while its previous pass's status write is still on its way to the
//! cache (another change queued it meanwhile) would read the status before that write and
//! write back what it computed from it — a lost revision history, rollback or reload record.
//! Resource versions of one resource type are comparable integers (Kubernetes 1.35,
//! KEP-5504), so "older" is well defined; one that is not an integer is never waited for.
//! Nor is a write whose copy has not come within [`OwnWrites::PATIENCE`]: versions that went
//! backwards (etcd restored from a backup) must not stop an object's reconciles for good.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use serde::Deserialize;

/// The resourceVersion each reconciled object got from the operator's last status write,
/// until its cached copy has caught up.
#[derive(Debug)]
pub struct OwnWrites {
    /// Version and time of the write, by object UID.
    written: Mutex<HashMap<String, (u64, Instant)>>,
    patience: Duration,
}

impl Default for OwnWrites {
    fn default() -> Self {
        Self::with_patience(Self::PATIENCE)
    }
}

impl OwnWrites {
    /// How long a write's copy is waited for; its watch event normally takes milliseconds.
    pub const PATIENCE: Duration = Duration::from_secs(10);

    /// Records waited for at most `patience`.
    pub fn with_patience(patience: Duration) -> Self {
        Self { written: Mutex::default(), patience }
    }

    /// Remember the version a write answered with (`answer`: the written object's JSON) for
    /// the object with `uid`.
    pub fn record(&self, uid: &str, answer: &str) {
        let Some(version) = answered_version(answer) else { return };
        let mut written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let newest = written.get(uid).map_or(version, |&(known, _)| known.max(version));
        written.insert(uid.to_owned(), (newest, Instant::now()));
    }

    /// Drop the record of `object` (deleted: no copy of it will come).
    pub fn forget<K: Resource>(&self, object: &K) {
        if let Some(uid) = object.meta().uid.as_deref() {
            self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(uid);
        }
    }

    /// Whether `cached` is at least as new as the operator's last write to it, or that write
    /// was made longer than the patience ago; the record is dropped once either holds.
    pub fn caught_up<K: Resource>(&self, cached: &K) -> bool {
        let meta = cached.meta();
        let Some(uid) = meta.uid.as_deref() else { return true };
        let mut written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(&(version, at)) = written.get(uid) else { return true };
        let seen = meta.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok());
        if seen.is_some_and(|seen| seen < version) && at.elapsed() < self.patience {
            return false;
        }
        written.remove(uid);
        true
    }
}

/// `metadata.resourceVersion` of a written object's JSON. The API server writes `metadata`
/// right after `apiVersion` and `kind`, before a status of maybe 1,000 pod entries: only that
/// object is parsed (parsing the whole answer, even skipping the rest, added ~0.9 ms to each
/// status-writing reconcile of a 1,000-pod service).
fn answered_version(answer: &str) -> Option<u64> {
    const KEY: &str = "\"metadata\":";
    let metadata = &answer[answer.find(KEY)? + KEY.len()..];
    let mut values = serde_json::Deserializer::from_str(metadata).into_iter::<AnswerMeta>();
    values.next()?.ok()?.resource_version?.parse().ok()
}

/// The part of a write's answer read here.
#[derive(Deserialize)]
struct AnswerMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::OwnWrites;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cached(uid: &str, version: &str) -> ConfigMap {
        let metadata = ObjectMeta {
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        };
        ConfigMap { metadata, ..ConfigMap::default() }
    }

    fn answer(version: &str) -> String {
        serde_json::json!({"kind": "RelayService", "metadata": {"name": "web", "resourceVersion": version},
            "status": {"pods": [{"name": "web-0"}]}})
        .to_string()
    }

    #[test]
    fn a_cached_copy_older_than_the_own_write_is_behind_until_the_write_arrives() {
        let writes = OwnWrites::default();
        writes.record("u1", &answer("120"));
        assert!(!writes.caught_up(&cached("u1", "98")), "older than the write");
        assert!(!writes.caught_up(&cached("u1", "119")));
        assert!(writes.caught_up(&cached("u1", "120")), "the write itself");
        // Caught up once: the record is gone, an older copy is no longer compared.
        assert!(writes.caught_up(&cached("u1", "98")));
        writes.record("u1", &answer("130"));
        assert!(writes.caught_up(&cached("u1", "131")), "a later change by someone else");
        writes.record("u1", &answer("140"));
        writes.forget(&cached("u1", "120"));
        assert!(writes.caught_up(&cached("u1", "120")), "forgotten once the object is gone");
    }

    #[test]
    fn only_the_object_written_waits_and_the_newest_write_counts() {
        let writes = OwnWrites::default();
        writes.record("u1", &answer("120"));
        writes.record("u1", &answer("110"));
        assert!(writes.caught_up(&cached("u2", "5")), "another object, or the same name recreated");
        assert!(!writes.caught_up(&cached("u1", "115")));
        assert!(writes.caught_up(&cached("u1", "120")));
    }

    #[test]
    fn a_write_whose_copy_does_not_come_is_not_waited_for_beyond_the_patience() {
        let writes = OwnWrites::with_patience(std::time::Duration::ZERO);
        writes.record("u1", &answer("120"));
        assert!(writes.caught_up(&cached("u1", "98")), "versions gone backwards: reconciled anyway");
        let patient = OwnWrites::default();
        patient.record("u1", &answer("120"));
        assert!(!patient.caught_up(&cached("u1", "98")));
    }

    #[test]
    fn versions_that_are_not_integers_are_never_waited_for() {
        let writes = OwnWrites::default();
        writes.record("u1", &answer("opaque-7"));
        writes.record("u2", "not json");
        assert!(writes.caught_up(&cached("u1", "1")));
        assert!(writes.caught_up(&cached("u2", "1")));
        writes.record("u3", &answer("50"));
        assert!(writes.caught_up(&cached("u3", "x")), "a cached version that is not an integer");
    }
}
