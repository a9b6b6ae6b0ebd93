//! Leader election on a `coordination.k8s.io/v1` Lease, a thin layer over `kube-lease-manager`.
//!
//! ```no_run
//! # async fn example(client: kube::Client, metrics: std::sync::Arc<relay_operator::ops::Metrics>)
//! # -> Result<(), relay_operator::ops::Error> {
//! use relay_operator::ops::{LeaderConfig, acquire};
//!
//! let mut leader = acquire(client, &LeaderConfig::new("relay-system", "relay-operator"), metrics).await?;
//! leader.wait_until_leader().await?;
//! let mut state = leader.subscribe();
//! tokio::select! {
//!     _ = state.wait_for(|leader| !*leader) => { /* lost: stop reconciling and exit */ }
//!     () = relay_operator::ops::signal() => { /* stop reconciling, then: */ }
//! }
//! leader.release().await?;
//! # Ok(()) }
//! ```
//!
//! The library creates, acquires, renews and releases the Lease ([`LeaseManager::changed`],
//! [`LeaseManager::release`]). This module adds what it does not do:
//!
//! - the identity ([`default_identity`]) and validated timing;
//! - prompt takeover: a replica waiting for the lease reads it again every [`RETRY_PERIOD`]
//!   (the library alone sleeps until the holder's lease would expire, so a released lease stays
//!   free for up to `duration - grace` seconds);
//! - the leadership state as a `watch` channel, and the `relay_operator_leader` gauge;
//! - [`LeaderHandle::release`], bounded by [`RELEASE_TIMEOUT`], to hand the lease back on
//!   shutdown.
//!
//! So after a crash, fail-over takes at most `duration` seconds; after a release, at most
//! about [`RETRY_PERIOD`]. The leader renews `grace` seconds before its lease expires; a
//! renewal that fails counts as losing the lease (reported as `false`), rather than risking two
//! leaders once the lease has expired.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::Error;
use super::metrics::Metrics;

/// Default lease duration: a crashed leader is replaced after at most this many seconds.
pub const DEFAULT_LEASE_DURATION_SECONDS: u64 = 15;
/// Default grace: the leader renews this many seconds before its lease expires.
pub const DEFAULT_LEASE_GRACE_SECONDS: u64 = 5;
/// How often a replica waiting for the lease reads it again (two GETs each time).
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// How long [`LeaderHandle::release`] waits for the Lease to be handed back.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and as whom to take part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease (usually the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease; created if missing.
    pub lease_name: String,
    /// Unique identity of this replica, written to `spec.holderIdentity`.
    pub identity: String,
    /// Lease duration in seconds.
    pub duration_seconds: u64,
    /// Renew this many seconds before expiry; `0 < grace < duration`.
    pub grace_seconds: u64,
}

impl LeaderConfig {
    /// Config with [`default_identity`] and the default timing.
    pub fn new(namespace: impl Into<String>, lease_name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: default_identity(),
            duration_seconds: DEFAULT_LEASE_DURATION_SECONDS,
            grace_seconds: DEFAULT_LEASE_GRACE_SECONDS,
        }
    }

    /// The library's parameters; its constructor panics on the timing this rejects.
    fn params(&self) -> Result<LeaseParams, Error> {
        let (duration, grace) = (self.duration_seconds, self.grace_seconds);
        if duration == 0 || grace == 0 || grace >= duration {
            return Err(Error::LeaseTiming { duration, grace });
        }
        Ok(LeaseParams::new(&self.identity, duration, grace)
            .with_field_manager(format!("relay-operator-{}", self.identity)))
    }
}

/// This replica's identity: `$POD_NAME` (set it from the downward API), else the hostname
/// (`$HOSTNAME`, `/proc/sys/kernel/hostname`, `/etc/hostname`; in a pod that is the pod name),
/// else `relay-operator-<pid>`.
pub fn default_identity() -> String {
    let hostname = std::env::var("HOSTNAME").ok().or_else(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"].iter().find_map(|p| std::fs::read_to_string(p).ok())
    });
    identity_from(std::env::var("POD_NAME").ok(), hostname)
}

fn identity_from(pod_name: Option<String>, hostname: Option<String>) -> String {
    [pod_name, hostname]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| format!("relay-operator-{}", std::process::id()))
}

/// Without leader election this replica acts alone, so it leads from the start:
/// `relay_operator_leader` is 1 (dashboards and alerts count leaders the same way with and
/// without election).
pub fn act_alone(metrics: &Metrics) {
    metrics.set_leader(true);
}

/// Starts taking part in the election: makes sure the Lease exists (creating it if needed) and
/// spawns the task that acquires and renews it. Returns at once; use
/// [`LeaderHandle::wait_until_leader`] to wait for leadership.
///
/// # Errors
/// [`Error::LeaseTiming`] for invalid timing, [`Error::Lease`] if the Lease cannot be read or
/// created (e.g. missing RBAC: `get`, `create`, `patch` on `leases` are needed).
pub async fn acquire(
    client: Client,
    config: &LeaderConfig,
    metrics: Arc<Metrics>,
) -> Result<LeaderHandle, Error> {
    let election = Election { client, config: config.clone(), params: config.params()? };
    let manager = election.manager().await?;
    metrics.set_leader(false);
    let (tx, rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(election.run(manager, tx, stopped, metrics));
    tracing::info!(lease = %config.lease_name, namespace = %config.namespace, identity = %config.identity,
                   "joined leader election");
    Ok(LeaderHandle { rx, stop, task })
}

struct Election {
    client: Client,
    config: LeaderConfig,
    params: LeaseParams,
}

impl Election {
    /// A manager with fresh state: the library reads the Lease again only once the state it
    /// last read has expired, so a waiting replica starts over with a new manager.
    async fn manager(&self) -> Result<LeaseManager, Error> {
        let LeaderConfig { lease_name, namespace, .. } = &self.config;
        let (client, params) = (self.client.clone(), self.params.clone());
        Ok(LeaseManager::new(client, lease_name, namespace, params, LeaseCreateMode::AutoCreate).await?)
    }

    /// Until this replica holds the lease: try for [`RETRY_PERIOD`], then read it again.
    async fn follow(&self, mut next: Option<LeaseManager>) -> LeaseManager {
        loop {
            let manager = match next.take() {
                Some(manager) => manager,
                None => match self.manager().await {
                    Ok(manager) => manager,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read the leader lease; retrying");
                        tokio::time::sleep(RETRY_PERIOD).await;
                        continue;
                    }
                },
            };
            // A fresh manager's `changed()` returns only once it holds the lease. Cut short (even
            // mid-acquisition), the next fresh read finds the lease held by us and returns at once.
            match tokio::time::timeout(RETRY_PERIOD, manager.changed()).await {
                Ok(Ok(true)) => return manager,
                Ok(Ok(false)) | Err(_) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot acquire the leader lease; retrying");
                    tokio::time::sleep(RETRY_PERIOD).await;
                }
            }
        }
    }

    /// Follows, leads until the lease is lost, follows again …, until `stop` fires (or its
    /// sender is dropped); then releases the lease if this replica holds it.
    async fn run(
        self,
        first: LeaseManager,
        tx: watch::Sender<bool>,
        mut stop: oneshot::Receiver<()>,
        metrics: Arc<Metrics>,
    ) -> Result<(), Error> {
        let identity = &self.config.identity;
        let mut next = Some(first);
        loop {
            let manager = tokio::select! {
                _ = &mut stop => return Ok(()),
                manager = self.follow(next.take()) => manager,
            };
            metrics.set_leader(true);
            tx.send_replace(true);
            tracing::info!(%identity, "acquired leadership");
            // While this runs, the library renews the lease; it returns when the lease is lost.
            let lost = tokio::select! {
                _ = &mut stop => None,
                changed = manager.changed() => Some(changed),
            };
            metrics.set_leader(false);
            tx.send_replace(false);
            match lost {
                None => {
                    manager.release().await?;
                    tracing::info!(%identity, "released the leader lease");
                    return Ok(());
                }
                Some(Ok(_)) => tracing::warn!(%identity, "lost leadership"),
                Some(Err(err)) => {
                    tracing::warn!(%identity, error = %err, "cannot renew the leader lease; stepped down")
                }
            }
        }
    }
}

/// Participation in the election, returned by [`acquire`].
///
/// Dropping the handle without [`release`](Self::release) also releases the lease, in the
/// background (if the runtime keeps running long enough).
#[derive(Debug)]
pub struct LeaderHandle {
    rx: watch::Receiver<bool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

impl LeaderHandle {
    /// The leadership state (`true` = this replica holds the lease). It turns `false` when the
    /// lease is lost or about to be released; `changed()` fails once the election has ended.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Waits until this replica holds the lease.
    ///
    /// # Errors
    /// [`Error::LeaderTask`] if the election task ended before leadership was acquired.
    pub async fn wait_until_leader(&mut self) -> Result<(), Error> {
        self.rx
            .wait_for(|leader| *leader)
            .await
            .map(|_| ())
            .map_err(|_| Error::LeaderTask("election ended before leadership was acquired".into()))
    }

    /// Leaves the election: stops renewing and, if this replica holds the lease, hands it back
    /// (clears `holderIdentity`) so a waiting replica takes over within [`RETRY_PERIOD`]. Waits
    /// at most [`RELEASE_TIMEOUT`].
    ///
    /// # Errors
    /// [`Error::Lease`] if the Lease could not be updated, [`Error::LeaderTask`] on timeout or if
    /// the task failed.
    pub async fn release(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Error::LeaderTask(join.to_string())),
            Err(_) => Err(Error::LeaderTask(format!("lease not released within {RELEASE_TIMEOUT:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    #[test]
    fn identity_prefers_pod_name_then_hostname() {
        assert_eq!(identity_from(Some("op-0".into()), Some("host".into())), "op-0");
        assert_eq!(identity_from(None, Some("host\n".into())), "host");
        assert_eq!(identity_from(Some("  ".into()), Some("host".into())), "host");
        assert_eq!(identity_from(None, None), format!("relay-operator-{}", std::process::id()));
        assert!(!default_identity().is_empty());
    }

    #[test]
    fn a_replica_without_election_leads() {
        let metrics = Metrics::new().unwrap();
        assert_eq!(metrics.sample("relay_operator_leader"), Some(0.0));
        act_alone(&metrics);
        assert_eq!(metrics.sample("relay_operator_leader"), Some(1.0));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = LeaderConfig { identity: "me".into(), ..LeaderConfig::new("ns", "lease") };
        assert_eq!((c.duration_seconds, c.grace_seconds), (15, 5));
        assert!(c.params().is_ok());
        for (d, g) in [(0, 0), (10, 0), (5, 5), (5, 6)] {
            let err =
                LeaderConfig { duration_seconds: d, grace_seconds: g, ..c.clone() }.params().unwrap_err();
            assert!(matches!(err, Error::LeaseTiming { .. }), "{err:?}");
        }
    }

    // ---- a tiny in-memory Lease API behind tower-test ----

    /// One Lease object as JSON (None = absent).
    type Store = Arc<Mutex<Option<Value>>>;

    /// JSON merge semantics, good enough for the strategic-merge and apply patches the library
    /// sends (flat maps; `null` deletes a key). Server-side-apply conflicts are not modelled.
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    fn respond(status: StatusCode, body: &Value) -> Response<Body> {
        Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
    }

    fn not_found() -> Response<Body> {
        respond(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found",
                    "reason": "NotFound", "code": 404}),
        )
    }

    async fn handle(store: &Store, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        assert!(path.starts_with("/apis/coordination.k8s.io/v1/namespaces/relay-system/leases"), "{path}");
        let bytes = body.collect_bytes().await.unwrap();
        let mut guard = store.lock().unwrap();
        match parts.method {
            Method::GET => match guard.as_ref() {
                Some(lease) => respond(StatusCode::OK, lease),
                None => not_found(),
            },
            Method::POST => {
                let mut lease: Value = serde_json::from_slice(&bytes).unwrap();
                lease["metadata"]["namespace"] = json!("relay-system");
                lease["metadata"]["resourceVersion"] = json!("1");
                *guard = Some(lease.clone());
                respond(StatusCode::CREATED, &lease)
            }
            Method::PATCH => match guard.as_mut() {
                Some(lease) => {
                    let patch: Value = serde_json::from_slice(&bytes).unwrap();
                    merge(lease, &patch);
                    respond(StatusCode::OK, lease)
                }
                None => not_found(),
            },
            m => panic!("unexpected {m} {path}"),
        }
    }

    fn fake_client(store: Store) -> Client {
        let (service, mut handle_rx) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((req, send)) = handle_rx.next_request().await {
                send.send_response(handle(&store, req).await);
            }
        });
        Client::new(service, "default")
    }

    fn holder(store: &Store) -> Option<String> {
        store.lock().unwrap().as_ref()?["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }

    fn config(identity: &str) -> LeaderConfig {
        let base = LeaderConfig::new("relay-system", "relay-operator");
        LeaderConfig { identity: identity.into(), duration_seconds: 2, grace_seconds: 1, ..base }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn acquires_a_new_lease_and_releases_it() {
        let store = Store::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut leader = acquire(fake_client(store.clone()), &config("op-a"), metrics.clone()).await.unwrap();
        assert!(store.lock().unwrap().is_some(), "lease was not created");

        tokio::time::timeout(WAIT, leader.wait_until_leader()).await.unwrap().unwrap();
        assert_eq!(metrics.sample("relay_operator_leader"), Some(1.0));
        assert_eq!(holder(&store).as_deref(), Some("op-a"));
        let rx = leader.subscribe();
        assert!(*rx.borrow());

        leader.release().await.unwrap();
        assert_eq!(metrics.sample("relay_operator_leader"), Some(0.0));
        assert_eq!(holder(&store), None);
        assert!(!*rx.borrow());
    }

    #[tokio::test]
    async fn waits_while_another_replica_holds_the_lease() {
        let now =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
        let store: Store = Arc::new(Mutex::new(Some(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "relay-operator", "namespace": "relay-system"},
            "spec": {"holderIdentity": "op-other", "leaseDurationSeconds": 3600,
                     "acquireTime": now, "renewTime": now},
        }))));
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut leader = acquire(fake_client(store.clone()), &config("op-b"), metrics.clone()).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(1500), leader.wait_until_leader()).await;
        assert!(waited.is_err(), "became leader although the lease is held");
        assert!(!*leader.subscribe().borrow());
        assert_eq!(metrics.sample("relay_operator_leader"), Some(0.0));
        leader.release().await.unwrap();
        assert_eq!(holder(&store).as_deref(), Some("op-other"), "released someone else's lease");
    }

    #[tokio::test]
    async fn notices_losing_the_lease() {
        let store = Store::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut leader = acquire(fake_client(store.clone()), &config("op-c"), metrics.clone()).await.unwrap();
        tokio::time::timeout(WAIT, leader.wait_until_leader()).await.unwrap().unwrap();

        // Another replica takes the lease over behind our back.
        let now =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
        merge(
            store.lock().unwrap().as_mut().unwrap(),
            &json!({"spec": {"holderIdentity": "op-thief", "renewTime": now, "leaseDurationSeconds": 3600}}),
        );

        let mut state = leader.subscribe();
        tokio::time::timeout(WAIT, state.wait_for(|leader| !*leader)).await.unwrap().unwrap();
        assert_eq!(metrics.sample("relay_operator_leader"), Some(0.0));
        leader.release().await.unwrap();
        assert_eq!(holder(&store).as_deref(), Some("op-thief"));
    }

    #[tokio::test]
    async fn a_waiting_replica_takes_over_a_released_lease_within_the_retry_period() {
        let store = Store::default();
        // A long lease: without the re-reads, the successor would sleep until it expires.
        let timing = |id| LeaderConfig { duration_seconds: 3600, grace_seconds: 5, ..config(id) };
        let (metrics_a, metrics_b) = (Arc::new(Metrics::new().unwrap()), Arc::new(Metrics::new().unwrap()));
        let mut a = acquire(fake_client(store.clone()), &timing("op-a"), metrics_a.clone()).await.unwrap();
        tokio::time::timeout(WAIT, a.wait_until_leader()).await.unwrap().unwrap();
        let mut b = acquire(fake_client(store.clone()), &timing("op-b"), metrics_b.clone()).await.unwrap();
        tokio::time::sleep(RETRY_PERIOD * 2).await;
        assert!(!*b.subscribe().borrow(), "took a held lease");
        assert_eq!(holder(&store).as_deref(), Some("op-a"));

        let released = std::time::Instant::now();
        a.release().await.unwrap();
        assert_eq!(metrics_a.sample("relay_operator_leader"), Some(0.0));
        tokio::time::timeout(WAIT, b.wait_until_leader()).await.unwrap().unwrap();
        let took = released.elapsed();
        assert!(took < RETRY_PERIOD + Duration::from_millis(500), "took over after {took:?}");
        assert_eq!(holder(&store).as_deref(), Some("op-b"));
        assert_eq!(metrics_b.sample("relay_operator_leader"), Some(1.0));
        b.release().await.unwrap();
        assert_eq!(holder(&store), None);
    }

    #[tokio::test]
    async fn rejects_invalid_timing_before_calling_the_api() {
        let store = Store::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let err =
            acquire(fake_client(store.clone()), &LeaderConfig { grace_seconds: 2, ..config("x") }, metrics)
                .await
                .unwrap_err();
        assert!(matches!(err, Error::LeaseTiming { duration: 2, grace: 2 }), "{err:?}");
        assert!(store.lock().unwrap().is_none());
    }
}
