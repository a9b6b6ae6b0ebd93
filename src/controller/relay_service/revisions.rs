//! The revision history at the edge of a RelayService's reconcile (pure parts in
//! [`crate::history`]): before rendering, a new rollback request (annotation
//! `relayops.io/rollback-to`) is handled and the spec to render is chosen — the pinned
//! revision's or the user's; after the children converged, the applied revision is kept as
//! a ControllerRevision `NAME-HASH` and the oldest beyond `revisionHistoryLimit` are deleted.
//!
//! The pin is durable in `status.rollback`: it holds while the spec's own revision content
//! (`specHash`) stays what it was when the rollback was made, so an operator restart keeps
//! it and the user's next change of configuration or pod template ends it.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::super::Error;
use super::super::context::Context;
use super::super::resolve::named_after;
use super::super::writes::{create, delete, publish, read_uncached};
use crate::api::{
    DEFAULT_REVISION_HISTORY_LIMIT, RelayService, RelayServiceSpec, RelayServiceStatus, RevisionEntry,
    RevisionOutcome, RollbackStatus,
};
use crate::controller::cached::CachedRevision;
use crate::history::{
    ANNOTATION_REVISION_GENERATION, ANNOTATION_ROLLBACK_TO, Applied, LABEL_REVISION_HASH, RollbackTarget,
    Snapshot, adopt, choose, current, record, revision_name,
};
use crate::render::{LABEL_SERVICE, Owner, render_revision};

/// A service's revision history for one reconcile.
pub struct History {
    /// The revision content of the user's spec (absent if it cannot be serialized).
    own: Option<Snapshot>,
    /// The service's ControllerRevisions in the cache.
    found: Vec<Arc<CachedRevision>>,
    /// Kept revisions, in order of application.
    entries: Vec<RevisionEntry>,
    /// The last handled rollback request.
    rollback: Option<RollbackStatus>,
    /// The pinned revision's hash and the spec restored from it.
    pinned: Option<(String, RelayServiceSpec)>,
}

impl History {
    /// The spec to render: the pinned revision's, or the user's.
    pub fn spec<'a>(&'a self, user: &'a RelayServiceSpec) -> &'a RelayServiceSpec {
        self.pinned.as_ref().map_or(user, |(_, spec)| spec)
    }

    /// Whether a rollback pins the rendered spec.
    pub fn pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// The last handled rollback request.
    pub fn rollback(&self) -> Option<&RollbackStatus> {
        self.rollback.as_ref()
    }

    /// The kept revisions, in order of application (the current one last).
    pub fn entries(&self) -> &[RevisionEntry] {
        &self.entries
    }

    /// Pin the revision `target` means — [`RollbackTarget::Previous`]: the one applied before
    /// the one the pods run — as the handling of rollback request `request`, recorded in
    /// `status.rollback`. [`prepare`] renders from a pin made by the annotation at once; a pin
    /// made later in a reconcile (an automatic revert) takes effect from the next one. Either
    /// way it lasts until the spec's revision content changes. Returns the revision, or why
    /// none (recorded as the request's `message` too).
    pub fn pin(
        &mut self,
        owner: &Owner,
        request: &str,
        target: RollbackTarget,
        now: &str,
    ) -> Result<RevisionEntry, String> {
        let pinned = self.rollback.as_ref().and_then(|r| r.hash.clone());
        let running = pinned.or_else(|| current(&self.entries).map(|e| e.hash.clone()));
        let chosen =
            choose(&self.entries, running.as_deref(), target).map_err(|e| e.to_string()).and_then(|entry| {
                if self.found.iter().any(|r| hash_of(r) == Some(entry.hash.as_str())) {
                    Ok(entry.clone())
                } else {
                    Err(format!(
                        "ControllerRevision {} of revision {} not found",
                        revision_name(&owner.base_name(), &entry.hash),
                        entry.revision
                    ))
                }
            });
        // The annotation last handled stays handled whatever this request is.
        let annotation = self.rollback.as_ref().and_then(|r| r.annotation.clone());
        let handled = RollbackStatus {
            request: request.to_owned(),
            time: Some(now.to_owned()),
            annotation,
            ..Default::default()
        };
        self.rollback = Some(match &chosen {
            Ok(entry) => RollbackStatus {
                revision: Some(entry.revision),
                hash: Some(entry.hash.clone()),
                spec_hash: self.own.as_ref().map(Snapshot::hash),
                ..handled
            },
            Err(message) => RollbackStatus { message: Some(message.clone()), ..handled },
        });
        chosen
    }

    /// Put the history into `status`: the revisions `kept` after this reconcile applied
    /// one ([`keep_applied`]), or those read when it applied none.
    pub fn fill(&self, status: &mut RelayServiceStatus, kept: Option<Vec<RevisionEntry>>) {
        status.revisions = kept.unwrap_or_else(|| self.entries.clone());
        status.current_revision = current(&status.revisions).map(|e| e.revision);
        status.rollback = self.rollback.clone().map(Box::new);
    }
}

/// Read the history, handle a new rollback request and choose the spec to render. Requests
/// that cannot be served are reported in `status.rollback.message` and a Warning Event; an
/// error is returned only when a pinned revision's content cannot be read.
pub async fn prepare(
    ctx: &Context,
    service: &RelayService,
    owner: &Owner,
    reference: &ObjectReference,
) -> Result<History, Error> {
    let status = service.status.as_ref();
    let found = stored(ctx, owner);
    let entries =
        adopt(status.map(|s| s.revisions.as_slice()).unwrap_or_default(), found.iter().map(|r| entry_of(r)));
    let own = Snapshot::of(&service.spec)
        .inspect_err(|e| warn!(error = %e, "cannot take the revision content of the spec"))
        .ok();
    let rollback = status.and_then(|s| s.rollback.as_deref().cloned());
    let mut history = History { own, found, entries, rollback, pinned: None };
    let own_hash = history.own.as_ref().map(Snapshot::hash);
    let now = ctx.now().to_string();

    // The user changed the configuration or pod template: the rollback is over.
    if let Some(ended) = history.rollback.as_mut().filter(|r| r.hash.is_some() && r.spec_hash != own_hash) {
        let note = format!(
            "rollback to revision {} ended: the spec's configuration or pod template changed (generation {})",
            ended.revision.unwrap_or_default(),
            service.metadata.generation.unwrap_or_default()
        );
        (ended.hash, ended.spec_hash, ended.message) = (None, None, Some(note.clone()));
        publish(ctx, reference, EventType::Normal, "RollbackEnded", "Rollback", note).await;
    }

    let handled = history.rollback.as_ref().map(|r| r.annotation.as_deref().unwrap_or(&r.request));
    if let Some(request) =
        service.annotations().get(ANNOTATION_ROLLBACK_TO).filter(|r| Some(r.as_str()) != handled)
    {
        let from = current(&history.entries).map_or_else(|| "none".to_owned(), |e| e.revision.to_string());
        let pinned = match RollbackTarget::parse(request) {
            Ok(target) => history.pin(owner, request, target, &now),
            Err(e) => {
                let message = e.to_string();
                history.rollback = Some(RollbackStatus {
                    request: request.clone(),
                    time: Some(now.clone()),
                    message: Some(message.clone()),
                    ..Default::default()
                });
                Err(message)
            }
        };
        if let Some(handled) = history.rollback.as_mut() {
            handled.annotation = Some(request.clone());
        }
        match pinned {
            Ok(entry) => {
                let note = format!(
                    "rolling back from revision {from} to revision {n} ({ANNOTATION_ROLLBACK_TO}={request}); \
                     the spec is left as it is and rendered from revision {n} until its configuration \
                     or pod template changes",
                    n = entry.revision
                );
                publish(ctx, reference, EventType::Normal, "RollingBack", "Rollback", note).await;
            }
            Err(message) => {
                let note = format!("{ANNOTATION_ROLLBACK_TO}={request}: {message}");
                publish(ctx, reference, EventType::Warning, "RollbackFailed", "Rollback", note).await;
            }
        }
    }

    if let Some(hash) = history.rollback.as_ref().and_then(|r| r.hash.clone()) {
        let content = content_of(ctx, &history.found, &hash).await?;
        let Some(active) = history.rollback.as_mut() else { return Ok(history) };
        match content.map(|s| s.restore(&service.spec)) {
            Some(Ok(spec)) => history.pinned = Some((hash, spec)),
            unusable => {
                let why = match unusable {
                    Some(Err(e)) => e.to_string(),
                    _ => format!("ControllerRevision {} not found", revision_name(&owner.base_name(), &hash)),
                };
                let note =
                    format!("rollback to revision {} ended: {why}", active.revision.unwrap_or_default());
                (active.hash, active.spec_hash, active.message) = (None, None, Some(note.clone()));
                publish(ctx, reference, EventType::Warning, "RollbackFailed", "Rollback", note).await;
            }
        }
    }
    Ok(history)
}

/// Keep the revision just applied (the pinned one, or the spec's, created as a
/// ControllerRevision when new) as the current one, delete the revisions beyond the limit
/// and return those kept.
pub async fn keep_applied(
    ctx: &Context,
    service: &RelayService,
    owner: &Owner,
    history: &History,
) -> Result<Vec<RevisionEntry>, Error> {
    let (hash, snapshot) = match (&history.pinned, &history.own) {
        (Some((hash, _)), _) => (hash.clone(), None),
        (None, Some(own)) => (own.hash(), Some(own)),
        (None, None) => return Ok(history.entries.clone()),
    };
    let found = &history.found;
    let mut number = history.entries().iter().find(|e| e.hash == hash).map(|e| e.revision);
    if let Some(snapshot) = snapshot.filter(|_| !found.iter().any(|r| hash_of(r) == Some(hash.as_str()))) {
        let known = history.entries.iter().map(|e| e.revision).chain(found.iter().map(|r| r.revision));
        let floor = known.max().unwrap_or(0) + 1;
        let key = format!("{}/{}", owner.namespace, owner.name);
        let wanted = number.unwrap_or_else(|| ctx.revision_numbers.next(&key, floor));
        let object = render_revision(owner, snapshot, wanted, service.metadata.generation);
        if create(ctx, &object).await? || number.is_some() {
            number = Some(wanted);
        } else {
            // Created by an earlier pass that neither the cache nor the status shows yet (the
            // status this reconcile read is older than its own last write): its number is
            // read, so the status written now does not drop it.
            let name = object.name_any();
            match read_uncached::<ControllerRevision>(ctx, &owner.namespace, &name).await? {
                Some(existing) if existing.labels().get(LABEL_REVISION_HASH) == Some(&hash) => {
                    number = Some(existing.revision)
                }
                _ => return Ok(history.entries.clone()),
            }
        }
    }
    let limit = service.spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let applied = Applied {
        hash: &hash,
        generation: service.metadata.generation,
        time: ctx.now().to_string(),
        rollback: history.pinned.is_some(),
        next_number: number.unwrap_or(1),
    };
    let keep = history.pinned.as_ref().map(|(hash, _)| hash.as_str());
    let recorded = record(&history.entries, &applied, usize::try_from(limit).unwrap_or(1), keep);
    for pruned in &recorded.pruned {
        let name = revision_name(&owner.base_name(), &pruned.hash);
        delete::<ControllerRevision>(ctx, &owner.namespace, &name).await?;
    }
    Ok(recorded.entries)
}

/// The ControllerRevisions of `owner` in the cache.
fn stored(ctx: &Context, owner: &Owner) -> Vec<Arc<CachedRevision>> {
    let (base, uid) = (owner.base_name(), owner.owner_reference().uid);
    ctx.caches.revisions.state_filter(|r| {
        named_after(r.metadata.name.as_deref(), &base)
            && r.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
            && r.label(LABEL_SERVICE) == Some(base.as_str())
            && hash_of(r).is_some()
            && r.owner_references().iter().any(|o| o.uid == uid)
    })
}

fn hash_of(revision: &CachedRevision) -> Option<&str> {
    revision.label(LABEL_REVISION_HASH)
}

/// The status entry of a stored revision whose entry was lost.
fn entry_of(revision: &CachedRevision) -> RevisionEntry {
    RevisionEntry {
        revision: revision.revision,
        hash: hash_of(revision).unwrap_or_default().to_owned(),
        generation: revision.annotation(ANNOTATION_REVISION_GENERATION).and_then(|g| g.parse().ok()),
        time: revision.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()),
        outcome: RevisionOutcome::Applied,
    }
}

/// The content of the stored revision with `hash`; none when there is no such revision or
/// its data is unreadable. The caches keep revisions without their data
/// ([`crate::controller::cached`]): it is read from the API server once per revision
/// and kept in the context.
async fn content_of(
    ctx: &Context,
    found: &[Arc<CachedRevision>],
    hash: &str,
) -> Result<Option<Snapshot>, Error> {
    let Some(revision) = found.iter().find(|r| hash_of(r) == Some(hash)) else { return Ok(None) };
    let uid = revision.uid().unwrap_or_default();
    if let Some(content) = ctx.revision_contents.get(&uid) {
        return Ok(Some(content));
    }
    let namespace = revision.namespace().unwrap_or_default();
    let read = read_uncached::<ControllerRevision>(ctx, &namespace, &revision.name_any()).await?;
    let Some(read) = read.filter(|r| r.uid().as_deref() == Some(uid.as_str())) else { return Ok(None) };
    let Some(content) = read.data.and_then(|data| Snapshot::from_data(data.0).ok()) else { return Ok(None) };
    ctx.revision_contents.insert(&uid, content.clone());
    Ok(Some(content))
}
