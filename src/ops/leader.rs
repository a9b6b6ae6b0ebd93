//! Leader election on a `coordination.k8s.io/v1` Lease, built on `kube-lease-manager`.
//!
//! ```no_run
//! # async fn example(client: kube::Client, metrics: std::sync::Arc<relay_operator::ops::Metrics>)
//! # -> Result<(), relay_operator::ops::Error> {
//! use relay_operator::ops::{LeaderConfig, acquire};
//!
//! let mut leader = acquire(client, &LeaderConfig::new("relay-system", "relay-operator"), metrics).await?;
//! leader.wait_until_leader().await?;
//! tokio::select! {
//!     () = leader.lost() => { /* stop reconciling and exit non-zero: another replica took over */ }
//!     () = relay_operator::ops::signal() => {}
//! }
//! leader.release().await?;
//! # Ok(()) }
//! ```
//!
//! While this replica holds the lease, the background task renews it `grace` seconds before it
//! expires; any other replica may take it over once `duration` seconds passed without renewal.
//! So after a crash, fail-over takes at most `duration` seconds; after [`LeaderHandle::release`]
//! it is immediate. The `relay_operator_leader` gauge follows the state.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::Error;
use super::metrics::Metrics;

/// Default lease duration: a crashed leader is replaced after at most this many seconds.
pub const DEFAULT_LEASE_DURATION_SECONDS: u64 = 15;
/// Default grace: the leader renews this many seconds before its lease expires.
pub const DEFAULT_LEASE_GRACE_SECONDS: u64 = 5;
/// How long [`LeaderHandle::release`] waits for the Lease to be cleared.
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

    /// Replaces the identity.
    pub fn with_identity(self, identity: impl Into<String>) -> Self {
        Self { identity: identity.into(), ..self }
    }

    /// Replaces duration and grace (seconds).
    pub fn with_timing(self, duration_seconds: u64, grace_seconds: u64) -> Self {
        Self { duration_seconds, grace_seconds, ..self }
    }

    fn validate(&self) -> Result<(), Error> {
        let (duration, grace) = (self.duration_seconds, self.grace_seconds);
        if duration == 0 || grace == 0 || grace >= duration {
            return Err(Error::LeaseTiming { duration, grace });
        }
        Ok(())
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
    config.validate()?;
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_field_manager(format!("relay-operator-{}", config.identity))
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await?;
    metrics.set_leader(false);

    let (tx, rx) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel();
    let identity = config.identity.clone();
    let task = tokio::spawn(forward(manager, tx, stop_rx, metrics, identity.clone()));
    tracing::info!(lease = %config.lease_name, namespace = %config.namespace, %identity, "joined leader election");
    Ok(LeaderHandle { rx, identity, stop: Some(stop_tx), task: Some(task) })
}

/// Runs the library's watcher, mirroring its state into `tx` and the leader gauge, until `stop`
/// fires (or its sender is dropped); then releases the lease.
async fn forward(
    manager: LeaseManager,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    metrics: Arc<Metrics>,
    identity: String,
) -> Result<(), Error> {
    let (mut lease_rx, lease_task) = manager.watch().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = lease_rx.changed() => {
                if changed.is_err() {
                    // The library's task ended on its own; only a channel error does that.
                    metrics.set_leader(false);
                    tx.send_replace(false);
                    tracing::error!(%identity, "leader election task ended unexpectedly");
                    return Err(task_outcome(lease_task.await).err().unwrap_or_else(|| {
                        Error::LeaderTask("the lease watcher stopped".into())
                    }));
                }
                let is_leader = *lease_rx.borrow_and_update();
                metrics.set_leader(is_leader);
                tx.send_replace(is_leader);
                if is_leader {
                    tracing::info!(%identity, "acquired leadership");
                } else {
                    tracing::warn!(%identity, "lost leadership");
                }
            }
        }
    }
    // Stop acting as leader before the lease is handed back.
    metrics.set_leader(false);
    tx.send_replace(false);
    // Dropping the receiver makes the library's task release the lease and finish.
    drop(lease_rx);
    let outcome = task_outcome(lease_task.await);
    if outcome.is_ok() {
        tracing::info!(%identity, "released leader lease");
    }
    outcome
}

fn task_outcome(
    joined: Result<Result<LeaseManager, LeaseManagerError>, tokio::task::JoinError>,
) -> Result<(), Error> {
    match joined {
        Ok(Ok(_manager)) => Ok(()),
        Ok(Err(err)) => Err(Error::Lease(err)),
        Err(err) => Err(Error::LeaderTask(err.to_string())),
    }
}

/// Participation in the election, returned by [`acquire`].
///
/// Dropping the handle without [`release`](Self::release) also releases the lease, in the
/// background (if the runtime keeps running long enough).
#[derive(Debug)]
pub struct LeaderHandle {
    rx: watch::Receiver<bool>,
    identity: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl LeaderHandle {
    /// The identity written to the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this replica holds the lease right now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// A receiver of the leadership state (`true` = leader). It reports `false` when the lease
    /// is lost or released; its `changed()` fails once the election task has ended.
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

    /// Resolves as soon as this replica is not the leader (immediately if it is not the leader
    /// now), or the election task has ended. Call it after [`wait_until_leader`](Self::wait_until_leader)
    /// to notice losing the lease; the caller should then stop reconciling and exit.
    pub async fn lost(&mut self) {
        let _ = self.rx.wait_for(|leader| !*leader).await;
    }

    /// Stops renewing and hands the lease back (clears `holderIdentity`) so another replica can
    /// take over at once. Waits at most [`RELEASE_TIMEOUT`].
    ///
    /// # Errors
    /// [`Error::Lease`] if the Lease could not be updated, [`Error::LeaderTask`] on timeout or if
    /// the task failed.
    pub async fn release(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else { return Ok(()) };
        match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
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
    fn config_defaults_and_validation() {
        let c = LeaderConfig::new("ns", "lease").with_identity("me");
        assert_eq!((c.duration_seconds, c.grace_seconds), (15, 5));
        assert!(c.validate().is_ok());
        for (d, g) in [(0, 0), (10, 0), (5, 5), (5, 6)] {
            let err = c.clone().with_timing(d, g).validate().unwrap_err();
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
        LeaderConfig::new("relay-system", "relay-operator").with_identity(identity).with_timing(2, 1)
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn acquires_a_new_lease_and_releases_it() {
        let store = Store::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut leader = acquire(fake_client(store.clone()), &config("op-a"), metrics.clone()).await.unwrap();
        assert!(store.lock().unwrap().is_some(), "lease was not created");
        assert_eq!(leader.identity(), "op-a");

        tokio::time::timeout(WAIT, leader.wait_until_leader()).await.unwrap().unwrap();
        assert!(leader.is_leader());
        assert_eq!(metrics.leader().get(), 1);
        assert_eq!(holder(&store).as_deref(), Some("op-a"));
        let rx = leader.subscribe();
        assert!(*rx.borrow());

        leader.release().await.unwrap();
        assert_eq!(metrics.leader().get(), 0);
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
        assert!(!leader.is_leader());
        assert_eq!(metrics.leader().get(), 0);
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

        tokio::time::timeout(WAIT, leader.lost()).await.unwrap();
        assert!(!leader.is_leader());
        assert_eq!(metrics.leader().get(), 0);
        leader.release().await.unwrap();
        assert_eq!(holder(&store).as_deref(), Some("op-thief"));
    }

    #[tokio::test]
    async fn rejects_invalid_timing_before_calling_the_api() {
        let store = Store::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let err =
            acquire(fake_client(store.clone()), &config("x").with_timing(3, 3), metrics).await.unwrap_err();
        assert!(matches!(err, Error::LeaseTiming { duration: 3, grace: 3 }), "{err:?}");
        assert!(store.lock().unwrap().is_none());
    }
}
