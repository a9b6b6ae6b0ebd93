//! Watches of the operator's own kinds that tolerate objects the types cannot read.
//!
//! A typed watch fails its whole list when one object does not deserialize — after a CRD
//! upgrade or an operator rollback (version skew), one such object would stop every
//! RelayService. Here the list and watch are read as untyped objects and each is decoded on
//! its own: one that does not decode is skipped — its last readable version, if any, stays
//! cached until the next relist — counted in `relay_operator_unreadable_objects_total` on
//! every event, and reported once per version with a log line and a Warning Event on it.
//! Every other object keeps being reconciled and the cache still completes its list.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::ops::metrics::Metrics;

/// Where unreadable objects are reported.
#[derive(Clone)]
pub struct Reporter {
    /// Publishes the Warning Event.
    pub recorder: Recorder,
    /// Counts them.
    pub metrics: Arc<Metrics>,
    /// Versions already reported (`uid/resourceVersion`): a relist does not repeat them.
    reported: Arc<Mutex<HashSet<String>>>,
}

impl Reporter {
    /// A reporter publishing with `recorder` and counting in `metrics`.
    pub fn new(recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self { recorder, metrics, reported: Arc::default() }
    }

    fn report(&self, object: &DynamicObject, kind: &str, error: &str) {
        let key =
            format!("{}/{}", object.uid().unwrap_or_default(), object.resource_version().unwrap_or_default());
        let first = self.reported.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        self.metrics.unreadable_object(kind);
        if !first {
            return;
        }
        let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
        warn!(%kind, %namespace, %name, %error, "skipping an object the operator cannot read");
        let reference = ObjectReference {
            api_version: object.types.as_ref().map(|t| t.api_version.clone()),
            kind: Some(kind.to_owned()),
            name: Some(name),
            namespace: Some(namespace),
            uid: object.uid(),
            resource_version: object.resource_version(),
            ..ObjectReference::default()
        };
        let note = format!(
            "relay-operator cannot read this {kind} ({error}); it is left as it is until it is fixed or the operator is upgraded"
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "UnreadableObject".into(),
            note: Some(note),
            action: "Decode".into(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, "cannot publish event");
            }
        });
    }
}

/// A watch of `K` in `namespace` (all when `None`) that skips and reports objects that do not
/// decode as `K`.
pub fn watch<K>(
    client: Client,
    namespace: Option<&str>,
    config: watcher::Config,
    reporter: Reporter,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    };
    watcher(api, config).filter_map(move |event| {
        let decoded = event.map(|event| decode(event, &reporter)).transpose();
        futures::future::ready(decoded)
    })
}

/// The typed event, or `None` when its object does not decode (skipped and reported).
fn decode<K>(event: watcher::Event<DynamicObject>, reporter: &Reporter) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let kind = K::kind(&());
    let typed = |object: DynamicObject| {
        // What a report names (not the content: no copy of every object's JSON tree).
        let meta = &object.metadata;
        let header = DynamicObject {
            types: object.types.clone(),
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectMeta::default()
            },
            data: serde_json::Value::Null,
        };
        match object.try_parse::<K>() {
            Ok(typed) => Some(typed),
            Err(e) => {
                reporter.report(&header, &kind, &e.to_string());
                None
            }
        }
    };
    Some(match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(typed(object)?),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(typed(object)?),
        watcher::Event::Delete(object) => watcher::Event::Delete(typed(object)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RelayService;
    use kube::runtime::events::Reporter as EventReporter;
    use serde_json::json;

    fn object(name: &str, replicas: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "relayops.io/v1alpha1", "kind": "RelayService",
            "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"), "resourceVersion": "7"},
            "spec": {"image": "x:1", "replicas": replicas},
        }))
        .unwrap()
    }

    fn reporter() -> Reporter {
        // The recorder's client is never reached in these tests: an unreadable object's Event is
        // published on a spawned task that the test runtime drops.
        let (client, _) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let client = Client::new(client, "default");
        let recorder =
            Recorder::new(client, EventReporter { controller: "relay-operator".into(), instance: None });
        Reporter::new(recorder, Arc::new(Metrics::new().unwrap()))
    }

    #[tokio::test]
    async fn an_unreadable_object_is_skipped_counted_once_per_version_and_others_pass() {
        let reporter = reporter();
        let good = decode::<RelayService>(watcher::Event::InitApply(object("good", json!(2))), &reporter);
        assert!(matches!(good, Some(watcher::Event::InitApply(s)) if s.spec.replicas == 2));
        for _ in 0..2 {
            let bad =
                decode::<RelayService>(watcher::Event::InitApply(object("bad", json!("two"))), &reporter);
            assert!(bad.is_none());
        }
        assert!(matches!(
            decode::<RelayService>(watcher::Event::InitDone, &reporter),
            Some(watcher::Event::InitDone)
        ));
        let counted = reporter.metrics.encode();
        assert!(
            counted.contains("relay_operator_unreadable_objects_total{kind=\"RelayService\"} 2"),
            "{counted}"
        );
        assert_eq!(reporter.reported.lock().unwrap().len(), 1, "reported once per version");
    }
}
