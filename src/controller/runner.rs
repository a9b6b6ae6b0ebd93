//! Wiring: one watch per kind feeding both a reflector cache and the controllers' triggers
//! (Secrets: one watch per namespace the operator may read, never cluster-wide), every
//! object slimmed ([`super::slim`]) or decoded into the caches' own types
//! ([`super::cached`]) before it enters a cache:
//! the RelayService Controller owns the child streams, whose TestDeployment-owned objects
//! also wake the TestDeployment Controller; a third Controller serves HealthPolicies.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::controller::{self, Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use super::Error;
use super::cached::{CachedConfigMap, CachedPod, CachedRevision, CachedService};
use super::context::{Caches, Context, SecretCaches};
use super::events::EventPublisher;
use super::health_policy;
use super::pods::{is_finished, is_ready, is_terminating};
use super::relay_service::{dependents_of, reconcile, services_using_policy, services_using_secret};
use super::restart_budget::RestartBudget;
use super::slim::slim;
use super::test_deployment::{self, health_policy_name};
use super::tolerant;
use crate::api::{HealthPolicy, RelayService, TestDeployment, TestDeploymentPhase};
use crate::hook::ReloadOptions;
use crate::ops::ObjectSamples;
use crate::ops::metrics::Metrics;
use crate::render::MANAGER;

/// Every cache whose initial list must complete before the operator reports ready.
const CACHES: [&str; 10] = [
    "Pod",
    "ControllerRevision",
    "ConfigMap",
    "Service",
    "PersistentVolumeClaim",
    "Ingress",
    "Secret",
    "HealthPolicy",
    "RelayService",
    "TestDeployment",
];

/// Which caches have completed their initial list, observed on the reflector streams.
///
/// `Store::wait_until_ready` is not used here: its one-shot channel keeps a single waker,
/// so a second waiter on a store (next to the Controller's own) can miss the wake-up and
/// hang — seen as a `/readyz` that never turned ready.
#[derive(Clone, Default)]
struct SyncTracker(Arc<tokio::sync::watch::Sender<std::collections::BTreeSet<&'static str>>>);

impl SyncTracker {
    /// Pass `events` through, recording `name` once its first initial list is applied.
    fn track<K, S>(&self, name: &'static str, events: S) -> impl futures::Stream<Item = S::Item> + use<K, S>
    where
        S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    {
        let synced = self.0.clone();
        events.inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                synced.send_if_modified(|set| set.insert(name));
            }
        })
    }

    /// Whether every cache in `names` has synced.
    fn has(&self, names: &[&str]) -> bool {
        let synced = self.0.borrow();
        names.iter().all(|n| synced.contains(n))
    }

    /// Pass the merged events of `streams` through, recording `name` once each of them has
    /// applied its first initial list — at once when there are none.
    fn track_all<K, S>(
        &self,
        name: &'static str,
        streams: Vec<S>,
    ) -> impl futures::Stream<Item = S::Item> + use<K, S>
    where
        S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
    {
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(streams.len()));
        if streams.is_empty() {
            self.0.send_if_modified(|set| set.insert(name));
        }
        let tracked = streams.into_iter().map(|events| {
            let (synced, pending) = (self.0.clone(), pending.clone());
            let mut listed = false;
            events.inspect(move |event| {
                if !listed && matches!(event, Ok(watcher::Event::InitDone)) {
                    listed = true;
                    if pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        synced.send_if_modified(|set| set.insert(name));
                    }
                }
            })
        });
        futures::stream::select_all(tracked)
    }

    /// Resolve once every cache in `names` has synced.
    async fn wait_for(&self, names: &[&str]) {
        let mut synced = self.0.subscribe();
        // An error means the sender is gone, i.e. the operator is shutting down.
        let _ = synced.wait_for(|set| names.iter().all(|n| set.contains(n))).await;
    }
}

/// How long a watch waits before it tries again after an error: 250 ms doubling to 5 s, and
/// back to 250 ms as soon as the watch delivers again. kube-runtime's default grows to 30 s
/// and resets only after 2 quiet minutes, so a burst of watch errors could leave a cache
/// without updates for that long.
#[derive(Clone, Copy, Debug)]
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// No pause of all trigger streams together after one of them failed: every watch already
/// backs off by itself ([`WatchBackoff`]).
#[derive(Clone, Copy, Debug)]
struct NoJointBackoff;

impl Iterator for NoJointBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoJointBackoff {
    fn reset(&mut self) {}
}

/// Reconciles of one controller running at once. Unbounded (kube-runtime's default), a
/// start over 1,000 services ran about 500 at once, each API request of them on its own
/// connection: the connections and their buffers, kept in the client's pool, were most of
/// the operator's memory (measured with heaptrack, see BENCHMARKS.md). The API server is the
/// bottleneck well below this bound.
const RECONCILE_CONCURRENCY: u16 = 64;

/// How often `relay_operator_managed_pods` is recounted from the pod cache.
const POD_STATES_EVERY: Duration = Duration::from_secs(2);

/// When an object whose cached copy is older than the operator's own last status write is
/// looked at again, should the write's watch event not come first (it wakes the object).
const OWN_WRITE_WAIT: Duration = Duration::from_secs(1);

/// Options of the controller.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Namespace to watch, or all when `None`.
    pub namespace: Option<String>,
    /// Namespaces whose Secrets are watched and read (see [`secret_namespaces`]).
    pub secret_namespaces: Vec<String>,
    /// Refuse pods for images with mutable tags.
    pub require_pinned_images: bool,
    /// Identity for Events (pod name).
    pub instance: Option<String>,
    /// Reload options: the `--hook-via` transport, concurrency, retry delays.
    pub reload: ReloadOptions,
    /// The restart budget (`--max-concurrent-restarts`), shared by every controller.
    pub restarts: Arc<RestartBudget>,
}

/// The namespaces whose Secrets a controller watching `watched` (all when `None`) reads, given
/// the namespaces `granted` with `--secret-namespace`: watching one namespace, that one unless
/// a non-empty `granted` leaves it out; watching all, exactly `granted` (none when empty). The
/// operator never lists Secrets cluster-wide.
pub fn secret_namespaces(watched: Option<&str>, granted: &[String]) -> Vec<String> {
    let granted: std::collections::BTreeSet<&str> =
        granted.iter().map(String::as_str).filter(|ns| !ns.is_empty()).collect();
    match watched {
        Some(ns) if granted.is_empty() || granted.contains(ns) => vec![ns.to_owned()],
        Some(_) => Vec::new(),
        None => granted.into_iter().map(str::to_owned).collect(),
    }
}

/// One Secret watch per namespace of `namespaces`, each feeding its own cache, and their merged
/// events; `sync` records `Secret` once every one has listed.
fn secret_watches(
    client: &Client,
    namespaces: &[String],
    sync: &SyncTracker,
) -> (SecretCaches, impl futures::Stream<Item = Result<Secret, watcher::Error>> + use<>) {
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for namespace in namespaces {
        let (reader, writer) = reflector::store::<Secret>();
        let watch = watcher(Api::<Secret>::namespaced(client.clone(), namespace), watcher::Config::default())
            .modify(slim)
            .backoff(WatchBackoff::default());
        stores.push((namespace.clone(), reader));
        streams.push(reflector::reflector(writer, watch).boxed());
    }
    (SecretCaches::new(stores), sync.track_all("Secret", streams).touched_objects())
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the RelayService, HealthPolicy and TestDeployment controllers until `shutdown` resolves;
/// `synced` is called once every cache has synced.
pub async fn run(
    client: Client,
    options: RunOptions,
    synced: impl FnOnce() + Send + 'static,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let all = watcher::Config::default();
    let ns = &options.namespace;

    let sync = SyncTracker::default();
    // `$name` names the kind for the sync tracker; `$slim` trims the kinds cached whole, the
    // others decode into the caches' own types ([`super::cached`]).
    macro_rules! cached {
        ($kind:ty, $name:literal, $config:expr $(, $slim:expr)?) => {{
            let (reader, writer) = reflector::store::<$kind>();
            let watch = watcher(api::<$kind>(&client, ns), $config)$(.modify($slim))?;
            let events = reflector(writer, watch.backoff(WatchBackoff::default()));
            (reader, sync.track($name, events).touched_objects())
        }};
    }
    // The operator's own kinds are decoded object by object: one it cannot read (version
    // skew) is skipped and reported instead of failing the whole list.
    let unreadable = tolerant::Reporter::new(
        Recorder::new(
            client.clone(),
            Reporter { controller: MANAGER.into(), instance: options.instance.clone() },
        ),
        metrics.clone(),
    );
    macro_rules! cached_tolerant {
        ($kind:ty) => {{
            let (reader, writer) = reflector::store::<$kind>();
            let watch =
                tolerant::watch::<$kind>(client.clone(), ns.as_deref(), all.clone(), unreadable.clone());
            let events = reflector(writer, watch.modify(slim).backoff(WatchBackoff::default()));
            (reader, sync.track(stringify!($kind), events).touched_objects())
        }};
    }
    use reflector::reflector;
    let (pods, pod_stream) = cached!(CachedPod, "Pod", managed.clone());
    let (config_maps, cm_stream) = cached!(CachedConfigMap, "ConfigMap", managed.clone());
    let (service_objects, svc_stream) = cached!(CachedService, "Service", managed.clone());
    let (claims, pvc_stream) = cached!(PersistentVolumeClaim, "PersistentVolumeClaim", managed.clone(), slim);
    // Only RelayServices have Ingresses: no TestDeployment owner to wake.
    let (ingresses, ingress_stream) = cached!(Ingress, "Ingress", managed.clone(), slim);
    let (revisions, revision_stream) = cached!(CachedRevision, "ControllerRevision", managed.clone());
    // Children of TestDeployments come through the same watches: their events wake the
    // owning TestDeployment, so the TestDeployment controller needs no watches of its own.
    let (td_children_tx, td_children) = futures::channel::mpsc::unbounded();
    let pod_stream = wake_test_deployment_owners(pod_stream, td_children_tx.clone());
    let cm_stream = wake_test_deployment_owners(cm_stream, td_children_tx.clone());
    let svc_stream = wake_test_deployment_owners(svc_stream, td_children_tx.clone());
    let pvc_stream = wake_test_deployment_owners(pvc_stream, td_children_tx);
    info!(namespaces = ?options.secret_namespaces, "reading Secrets only in these namespaces");
    let (secrets, secret_stream) = secret_watches(&client, &options.secret_namespaces, &sync);
    let (policies, policy_stream) = cached_tolerant!(HealthPolicy);
    let (services, service_stream) = cached_tolerant!(RelayService);
    // The HealthPolicy controller, too, is woken through these watches: by a policy's own
    // events and by the services that reference it.
    let (policy_tx, policy_wake) = futures::channel::mpsc::unbounded();
    let policy_stream = wake_policies(policy_stream, policy_tx.clone(), |policy: &HealthPolicy| {
        Some(ObjectRef::from_obj(policy))
    });
    let service_stream = wake_policies(service_stream, policy_tx.clone(), |service: &RelayService| {
        let reference = service.spec.health_policy_ref.as_ref()?;
        Some(ObjectRef::new(&reference.name).within(&service.namespace()?))
    });
    // A service's own events wake its dependents once it is Ready: the cache they read
    // already holds the status that made it Ready.
    let (wake_tx, wake_rx) = futures::channel::mpsc::unbounded();
    let service_stream = {
        let services = services.clone();
        service_stream.inspect(move |service| {
            for dependent in service.as_ref().map(|s| dependents_of(&services, s)).unwrap_or_default() {
                // A closed channel only means the controller has stopped.
                let _ = wake_tx.unbounded_send(dependent);
            }
        })
    };
    let (test_deployments, td_stream) = cached_tolerant!(TestDeployment);
    let td_stream = wake_policies(td_stream, policy_tx, |td: &TestDeployment| {
        Some(ObjectRef::new(&health_policy_name(td)?).within(&td.namespace()?))
    });
    // The per-object series are read from these caches at every scrape.
    metrics.add_object_source({
        let (services, test_deployments) = (services.clone(), test_deployments.clone());
        Box::new(move || ObjectSamples::read(&services, &test_deployments))
    });

    let caches = Caches {
        services: services.clone(),
        policies: policies.clone(),
        pods: pods.clone(),
        config_maps: config_maps.clone(),
        service_objects: service_objects.clone(),
        claims: claims.clone(),
        ingresses,
        secrets,
        test_deployments: test_deployments.clone(),
        revisions,
    };
    let readiness = {
        let sync = sync.clone();
        async move {
            sync.wait_for(&CACHES).await;
            info!("caches synced");
            synced();
        }
    };
    tokio::spawn(readiness);

    let reporter = Reporter { controller: MANAGER.into(), instance: options.instance.clone() };
    let events = EventPublisher::new(client.clone(), reporter);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            caches,
            events,
            options.require_pinned_images,
            options.reload.clone(),
            metrics.clone(),
        )
        .with_restart_budget(options.restarts.clone()),
    );

    let shutdown = shutdown.shared();
    let stopping = shutdown.clone();
    let scope = options.namespace.clone().unwrap_or_default();
    let gate = Gate { sync: sync.clone(), stopping: shutdown.clone() };
    let policies_controller = run_policy_controller(
        policies.clone(),
        policy_wake,
        Wiring { ctx: ctx.clone(), metrics: metrics.clone(), gate: gate.clone(), scope: scope.clone() },
    );
    let test_deployment_controller = run_test_deployments(
        td_children,
        test_deployments,
        td_stream,
        Wiring { ctx: ctx.clone(), metrics: metrics.clone(), gate: gate.clone(), scope: scope.clone() },
    );

    let services_for_policies = services.clone();
    let services_for_secrets = services.clone();
    let store = services.clone();
    let output = report_output::<RelayService, _, _>(metrics.clone());
    let metrics_for_reconciles = metrics.clone();
    let ctx_for_pod_states = ctx.clone();
    let relay_service_controller = Controller::for_stream(service_stream, services)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .owns_stream(pod_stream)
        .owns_stream(cm_stream)
        .owns_stream(svc_stream)
        .owns_stream(pvc_stream)
        .owns_stream(ingress_stream)
        .owns_stream(revision_stream)
        .watches_stream(policy_stream, move |policy: HealthPolicy| {
            services_using_policy(&services_for_policies, &policy)
        })
        .watches_stream(secret_stream, move |secret: Secret| {
            services_using_secret(&services_for_secrets, &secret)
        })
        // Dependents of a service that turned Ready (from its watch event, above).
        .reconcile_on(wake_rx)
        // Each watch backs off by itself; kube-runtime would add a joint backoff over all
        // trigger streams that holds back every watch whenever one fails — seen as minutes
        // without relisting after 410s.
        .trigger_backoff(NoJointBackoff)
        .graceful_shutdown_on(shutdown)
        .run(
            move |service, ctx| {
                let metrics = metrics_for_reconciles.clone();
                let gate = gate.clone();
                let store = store.clone();
                async move {
                    observed(&gate, &store, service, &ctx, &metrics, |s| reconcile(s, ctx.clone())).await
                }
            },
            requeue_with_backoff,
            ctx,
        )
        .for_each(output);
    // Managed pods by state, recounted from the cache on a timer: a count after every
    // reconcile visits every pod each time, N² visits for a start of N services.
    let pod_states = async {
        let mut every = tokio::time::interval(POD_STATES_EVERY);
        loop {
            every.tick().await;
            record_pod_states(&ctx_for_pod_states, &metrics, &scope);
        }
    };
    let controllers = async {
        let all = async {
            futures::join!(relay_service_controller, policies_controller, test_deployment_controller);
        };
        tokio::select! {
            () = all => {}
            () = pod_states => {}
        }
    };
    // A Controller whose store never synced (a watch refused: CRDs missing, RBAC) does not
    // finish on shutdown. Nothing can be running then — every reconcile waits at the gate —
    // so stopping at once loses nothing.
    let stopped_unsynced = async {
        stopping.await;
        if sync.has(&CACHES) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = controllers => {}
        () = stopped_unsynced => warn!("stopping before every cache synced"),
    }
}

/// Holds every reconcile back until all caches have synced: a reconcile that reads a cache
/// still being listed acts on a world that does not exist (an empty pod cache looks like
/// missing pods, a Secret not yet listed like a broken reference).
#[derive(Clone)]
struct Gate<S> {
    sync: SyncTracker,
    /// Resolves when the operator stops; a held reconcile then ends at once.
    stopping: S,
}

impl<S: std::future::Future<Output = ()> + Clone> Gate<S> {
    /// The newest cached copy of `object` once every cache has synced; `None` when the
    /// operator stops first or the object is gone by then.
    async fn pass<K>(&self, store: &Store<K>, object: &K) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        tokio::select! {
            () = self.sync.wait_for(&CACHES) => store.get(&ObjectRef::from_obj(object)),
            () = self.stopping.clone() => None,
        }
    }
}

/// What every controller's reconcile wrapper needs.
struct Wiring<S> {
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    gate: Gate<S>,
    /// The watched namespace (empty: all), the scope of the gauges recomputed from caches.
    scope: String,
}

/// Pass `objects` through, sending the owning TestDeployment of each into `owners`.
fn wake_test_deployment_owners<K: Resource>(
    objects: impl futures::Stream<Item = Result<K, watcher::Error>>,
    owners: futures::channel::mpsc::UnboundedSender<ObjectRef<TestDeployment>>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> {
    objects.inspect(move |object| {
        let Ok(object) = object else { return };
        let namespace = object.namespace().unwrap_or_default();
        for owner in object.owner_references().iter().filter(|o| o.kind == TestDeployment::kind(&())) {
            // A closed channel only means the TestDeployment controller has stopped.
            let _ = owners.unbounded_send(ObjectRef::new(&owner.name).within(&namespace));
        }
    })
}

/// The TestDeployment controller, woken by its own watch and by its children's events.
async fn run_test_deployments<St, S>(
    children: futures::channel::mpsc::UnboundedReceiver<ObjectRef<TestDeployment>>,
    store: Store<TestDeployment>,
    stream: St,
    wiring: Wiring<S>,
) where
    St: futures::Stream<Item = Result<TestDeployment, watcher::Error>> + Send + 'static,
    S: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let Wiring { ctx, metrics, gate, scope } = wiring;
    let reader = store.clone();
    let output = report_output::<TestDeployment, _, _>(metrics.clone());
    Controller::for_stream(stream, store)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .reconcile_on(children)
        // Each watch backs off by itself; kube-runtime would add a joint backoff over all
        // trigger streams that holds back every watch whenever one fails — seen as minutes
        // without relisting after 410s.
        .trigger_backoff(NoJointBackoff)
        .graceful_shutdown_on(gate.stopping.clone())
        .run(
            move |td, ctx| {
                let metrics = metrics.clone();
                let scope = scope.clone();
                let gate = gate.clone();
                let reader = reader.clone();
                async move {
                    let result = observed(&gate, &reader, td, &ctx, &metrics, |td| {
                        test_deployment::reconcile(td, ctx.clone())
                    })
                    .await;
                    record_test_deployment_phases(&reader, &metrics, &scope);
                    result
                }
            },
            requeue_with_backoff,
            ctx,
        )
        .for_each(output)
        .await;
}

/// Pass `objects` through, sending the HealthPolicy `policy_of` each into `policies`.
fn wake_policies<K>(
    objects: impl futures::Stream<Item = Result<K, watcher::Error>>,
    policies: futures::channel::mpsc::UnboundedSender<ObjectRef<HealthPolicy>>,
    policy_of: impl Fn(&K) -> Option<ObjectRef<HealthPolicy>>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> {
    objects.inspect(move |object| {
        if let Some(policy) = object.as_ref().ok().and_then(&policy_of) {
            // A closed channel only means the HealthPolicy controller has stopped.
            let _ = policies.unbounded_send(policy);
        }
    })
}

/// The HealthPolicy controller: no watch of its own — it reads the shared policy cache and
/// is woken by policy, RelayService and TestDeployment events, so `status.usedBy` follows
/// the services and test deployments referencing each policy.
async fn run_policy_controller<S>(
    policies: Store<HealthPolicy>,
    wake: futures::channel::mpsc::UnboundedReceiver<ObjectRef<HealthPolicy>>,
    wiring: Wiring<S>,
) where
    S: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let Wiring { ctx, metrics, gate, .. } = wiring;
    let reader = policies.clone();
    let output = report_output::<HealthPolicy, _, _>(metrics.clone());
    Controller::for_stream(futures::stream::empty::<Result<HealthPolicy, watcher::Error>>(), policies)
        .reconcile_on(wake)
        // Each watch backs off by itself; kube-runtime would add a joint backoff over all
        // trigger streams that holds back every watch whenever one fails — seen as minutes
        // without relisting after 410s.
        .trigger_backoff(NoJointBackoff)
        .graceful_shutdown_on(gate.stopping.clone())
        .run(
            move |policy, ctx| {
                let metrics = metrics.clone();
                let gate = gate.clone();
                let reader = reader.clone();
                async move {
                    observed(&gate, &reader, policy, &ctx, &metrics, |p| {
                        health_policy::reconcile(p, ctx.clone())
                    })
                    .await
                }
            },
            requeue_with_backoff,
            ctx,
        )
        .for_each(output)
        .await;
}

/// TestDeployments by phase, recomputed from the cache.
fn record_test_deployment_phases(store: &Store<TestDeployment>, metrics: &Metrics, scope: &str) {
    let mut counts: std::collections::BTreeMap<&str, i64> =
        TestDeploymentPhase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
    for td in store.state() {
        let phase = td.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *counts.entry(phase.as_str()).or_insert(0) += 1;
    }
    for (phase, count) in counts {
        metrics.set_test_deployments(scope, phase, count);
    }
}

/// Managed pods by state, from the cache.
fn record_pod_states(ctx: &Context, metrics: &Metrics, scope: &str) {
    let mut counts = std::collections::BTreeMap::from([
        ("ready", 0),
        ("unready", 0),
        ("pending", 0),
        ("failed", 0),
        ("terminating", 0),
    ]);
    for pod in ctx.caches.pods.state() {
        let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Pending");
        let state = if is_terminating(&pod) {
            "terminating"
        } else if is_finished(&pod) {
            "failed"
        } else if pending {
            "pending"
        } else if is_ready(&pod) {
            "ready"
        } else {
            "unready"
        };
        *counts.entry(state).or_insert(0) += 1;
    }
    for (state, count) in counts {
        metrics.set_managed_pods(scope, state, count);
    }
}

/// Run one reconcile of the newest cached copy of `object` once every cache has synced, in
/// a span carrying its kind, namespace and name, timing it and counting failures by kind; a
/// success resets the object's backoff. The object counts as waiting (queue depth) until its
/// reconcile starts.
async fn observed<K, S, Fut>(
    gate: &Gate<S>,
    store: &Store<K>,
    object: Arc<K>,
    ctx: &Context,
    metrics: &Metrics,
    reconcile: impl FnOnce(Arc<K>) -> Fut,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    S: std::future::Future<Output = ()> + Clone,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let kind = K::kind(&());
    let key = backoff_key(&*object);
    metrics.reconcile_waiting(&kind, &key);
    let passed = gate.pass(store, &object).await;
    metrics.reconcile_not_waiting(&kind, &key);
    let Some(object) = passed else {
        ctx.own_writes.forget(&*object);
        return Ok(Action::await_change());
    };
    // The cache has not yet seen this operator's last status write to the object: starting
    // from the older copy would write back a status computed without that write. Its watch
    // event wakes the object again; the requeue is the fallback.
    if !ctx.own_writes.caught_up(&*object) {
        debug!(object = %key, "cached copy older than the operator's last status write: waiting for it");
        return Ok(Action::requeue(OWN_WRITE_WAIT));
    }
    let span = info_span!("reconcile", %kind, namespace = %object.namespace().unwrap_or_default(), name = %object.name_any());
    async {
        let timer = metrics.reconcile_timer(&kind);
        let result = reconcile(object).await;
        drop(timer);
        match &result {
            Ok(_) => ctx.reset_backoff(&key),
            Err(e) => metrics.reconcile_failure(&kind, e.metric_label()),
        }
        result
    }
    .instrument(span)
    .await
}

/// Error policy of every controller: requeue with exponential backoff per object, counted as
/// a retry that waits until it starts.
fn requeue_with_backoff<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = backoff_key(&*object);
    let wait = ctx.failure_backoff(&key);
    ctx.metrics.reconcile_retry(&K::kind(&()), &key);
    warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// `Kind/namespace/name`: a RelayService and a TestDeployment may share a name.
fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    object_key::<K>(&object.namespace().unwrap_or_default(), &object.name_any())
}

fn object_key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

/// Handles what the Controller of `K` reports after each request: logs its errors (reconcile
/// errors are logged by the error policy), and a scheduled retry of an object deleted
/// meanwhile — the Controller finds no object to reconcile — no longer waits.
fn report_output<K, T, QueueErr>(
    metrics: Arc<Metrics>,
) -> impl FnMut(Result<T, ControllerError<Error, QueueErr>>) -> futures::future::Ready<()>
where
    K: Resource<DynamicType = ()>,
    QueueErr: std::error::Error + 'static,
{
    move |result| {
        if let Err(e) = result {
            if let ControllerError::ObjectNotFound(object) = &e {
                let key = object_key::<K>(object.namespace.as_deref().unwrap_or_default(), &object.name);
                metrics.reconcile_not_waiting(&K::kind(&()), &key);
            }
            warn!(error = %e, "controller error");
        }
        futures::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn td(name: &str, phase: Option<TestDeploymentPhase>) -> TestDeployment {
        let mut td: TestDeployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "relayops.io/v1alpha1", "kind": "TestDeployment",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"template": {"image": "x:1"}},
        }))
        .unwrap();
        td.status = phase.map(|phase| crate::api::TestDeploymentStatus { phase, ..Default::default() });
        td
    }

    #[tokio::test]
    async fn a_retry_of_an_object_deleted_meanwhile_no_longer_waits() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let depth = || metrics.sample("relay_operator_reconcile_queue_depth{kind=\"RelayService\"}");
        metrics.reconcile_retry("RelayService", "RelayService/demo/web");
        metrics.reconcile_retry("RelayService", "RelayService/demo/db");
        assert_eq!(depth(), Some(2.0));
        // The retry of `web` fires after `web` was deleted: the Controller reports it not found.
        let mut output = report_output::<RelayService, (), watcher::Error>(metrics.clone());
        let gone = ObjectRef::<RelayService>::new("web").within("demo").erase();
        output(Err(ControllerError::ObjectNotFound(Box::new(gone)))).await;
        assert_eq!(depth(), Some(1.0));
    }

    #[test]
    fn secrets_are_read_only_in_granted_namespaces() {
        let granted = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // Watching all namespaces: exactly the granted ones, none by default.
        assert!(secret_namespaces(None, &[]).is_empty());
        assert_eq!(secret_namespaces(None, &granted(&["b", "a", "b", ""])), ["a", "b"]);
        // Watching one namespace: that one, unless the grants leave it out.
        assert_eq!(secret_namespaces(Some("a"), &[]), ["a"]);
        assert_eq!(secret_namespaces(Some("a"), &granted(&["a", "b"])), ["a"]);
        assert!(secret_namespaces(Some("c"), &granted(&["a", "b"])).is_empty());
    }

    #[tokio::test]
    async fn secret_caches_sync_when_every_namespace_listed() {
        let sync = SyncTracker::default();
        let (a, b) = (futures::channel::mpsc::unbounded(), futures::channel::mpsc::unbounded());
        let merged = sync.track_all::<Secret, _>("Secret", vec![a.1, b.1]);
        futures::pin_mut!(merged);
        a.0.unbounded_send(Ok(Event::InitDone)).unwrap();
        a.0.unbounded_send(Ok(Event::InitDone)).unwrap();
        merged.next().await;
        merged.next().await;
        assert!(!sync.has(&["Secret"]), "one namespace listed twice is not both");
        b.0.unbounded_send(Ok(Event::InitDone)).unwrap();
        merged.next().await;
        assert!(sync.has(&["Secret"]));

        let none = SyncTracker::default();
        let _ = none.track_all::<Secret, futures::channel::mpsc::UnboundedReceiver<_>>("Secret", Vec::new());
        assert!(none.has(&["Secret"]), "no Secret watch: nothing to wait for");
    }

    #[test]
    fn watch_backoff_doubles_to_five_seconds_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u128> = backoff.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn phase_gauge_is_recomputed_from_the_cache() {
        let (store, mut writer) = reflector::store::<TestDeployment>();
        for object in [
            td("a", Some(TestDeploymentPhase::Running)),
            td("b", Some(TestDeploymentPhase::Running)),
            td("c", Some(TestDeploymentPhase::Expired)),
            td("d", None),
        ] {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        let metrics = Metrics::new().unwrap();
        metrics.set_test_deployments("", "Failed", 7);
        record_test_deployment_phases(&store, &metrics, "");
        let count = |phase: &str| {
            metrics.sample(&format!("relay_operator_test_deployments{{phase=\"{phase}\"}}")).unwrap_or(-1.0)
                as i64
        };
        assert_eq!(
            (count("Running"), count("Expired"), count("Pending"), count("Failed")),
            (2, 1, 1, 0),
            "a phase with no deployment left drops to 0"
        );
    }
}
