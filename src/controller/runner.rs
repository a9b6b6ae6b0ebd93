//! Wiring: one watch per kind feeding both a reflector cache and the Controller's triggers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use super::Error;
use super::context::{Caches, Context};
use super::relay_service::reconcile;
use super::reload::ReloadOptions;
use crate::api::{HealthPolicy, RelayService};
use crate::ops::metrics::Metrics;
use crate::render::MANAGER;

/// Options of the controller.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Namespace to watch, or all when `None`.
    pub namespace: Option<String>,
    /// Refuse pods for images with mutable tags.
    pub require_pinned_images: bool,
    /// Identity for Events (pod name).
    pub instance: Option<String>,
    /// Reload hook client, concurrency and `--hook-via`.
    pub reload: ReloadOptions,
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

/// Run the RelayService controller until `shutdown` resolves. `ready` is set once every
/// cache has synced.
pub async fn run(
    client: Client,
    options: RunOptions,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let all = watcher::Config::default();
    let ns = &options.namespace;

    macro_rules! cached {
        ($kind:ty, $config:expr) => {{
            let (reader, writer) = reflector::store::<$kind>();
            let stream = reflector(writer, watcher(api::<$kind>(&client, ns), $config))
                .default_backoff()
                .touched_objects();
            (reader, stream)
        }};
    }
    use reflector::reflector;
    let (pods, pod_stream) = cached!(Pod, managed.clone());
    let (config_maps, cm_stream) = cached!(ConfigMap, managed.clone());
    let (service_objects, svc_stream) = cached!(Service, managed.clone());
    let (claims, pvc_stream) = cached!(PersistentVolumeClaim, managed.clone());
    let (secrets, secret_stream) = cached!(Secret, all.clone());
    let (policies, policy_stream) = cached!(HealthPolicy, all.clone());
    let (services, service_stream) = cached!(RelayService, all.clone());

    let caches = Caches {
        services: services.clone(),
        policies: policies.clone(),
        pods: pods.clone(),
        config_maps: config_maps.clone(),
        service_objects: service_objects.clone(),
        claims: claims.clone(),
        secrets: secrets.clone(),
    };
    let readiness = {
        let caches = caches.clone();
        async move {
            let synced = futures::future::join_all([
                caches.services.wait_until_ready().boxed(),
                caches.policies.wait_until_ready().boxed(),
                caches.pods.wait_until_ready().boxed(),
                caches.config_maps.wait_until_ready().boxed(),
                caches.service_objects.wait_until_ready().boxed(),
                caches.claims.wait_until_ready().boxed(),
                caches.secrets.wait_until_ready().boxed(),
            ])
            .await;
            if synced.iter().all(Result::is_ok) {
                info!("caches synced");
                ready.store(true, Ordering::SeqCst);
            }
        }
    };
    tokio::spawn(readiness);

    let reporter = Reporter { controller: MANAGER.into(), instance: options.instance.clone() };
    let (wake_tx, wake_rx) = futures::channel::mpsc::unbounded();
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(
        Context::new(client.clone(), caches, recorder, options.require_pinned_images, wake_tx)
            .with_reload(options.reload.clone())
            .with_metrics(metrics.clone()),
    );

    let services_for_policies = services.clone();
    let services_for_secrets = services.clone();
    Controller::for_stream(service_stream, services)
        .owns_stream(pod_stream)
        .owns_stream(cm_stream)
        .owns_stream(svc_stream)
        .owns_stream(pvc_stream)
        .watches_stream(policy_stream, move |policy: HealthPolicy| referencing(&services_for_policies, &policy, |s, name| {
            s.spec.health_policy_ref.as_ref().is_some_and(|r| r.name == name)
        }))
        .watches_stream(secret_stream, move |secret: Secret| referencing(&services_for_secrets, &secret, |s, name| {
            s.spec.config.as_ref().is_some_and(|c| c.secrets.iter().any(|k| k.secret_key_ref.name == name))
        }))
        // A dependency turning Ready wakes its dependents (sent by the reconciler).
        .reconcile_on(wake_rx)
        .graceful_shutdown_on(shutdown)
        .run(
            move |service, ctx| {
                let metrics = metrics.clone();
                let span = info_span!("reconcile", namespace = %service.namespace().unwrap_or_default(), name = %service.name_any());
                async move {
                    let key = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
                    let timer = metrics.reconcile_timer(KIND);
                    let result = reconcile(service, ctx.clone()).await;
                    drop(timer);
                    match &result {
                        Ok(_) => ctx.reset_backoff(&key),
                        Err(e) => metrics.reconcile_failure(KIND, e.metric_label()),
                    }
                    record_pod_states(&ctx, &metrics);
                    result
                }
                .instrument(span)
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller error");
            }
        })
        .await;
}

const KIND: &str = "RelayService";

/// Managed pods by state, from the cache.
fn record_pod_states(ctx: &Context, metrics: &Metrics) {
    let mut counts = std::collections::BTreeMap::from([
        ("ready", 0),
        ("unready", 0),
        ("pending", 0),
        ("failed", 0),
        ("terminating", 0),
    ]);
    for pod in ctx.caches.pods.state() {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let state = match (pod.metadata.deletion_timestamp.is_some(), phase, ready) {
            (true, _, _) => "terminating",
            (_, "Failed" | "Succeeded", _) => "failed",
            (_, "Pending", _) => "pending",
            (_, _, true) => "ready",
            _ => "unready",
        };
        *counts.entry(state).or_insert(0) += 1;
    }
    for (state, count) in counts {
        metrics.set_managed_pods(state, count);
    }
}

/// Requeue a failed reconcile with exponential backoff per object.
fn error_policy(service: Arc<RelayService>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
    let wait = ctx.failure_backoff(&key);
    warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// RelayServices in the object's namespace for which `references(service, object name)` holds.
fn referencing<K: ResourceExt>(
    services: &Store<RelayService>,
    object: &K,
    references: impl Fn(&RelayService, &str) -> bool,
) -> Vec<ObjectRef<RelayService>> {
    let name = object.name_any();
    let namespace = object.namespace();
    services
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace && references(s, &name))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}
