//! Revision history and rollback in the RelayService reconciler, against the fake API
//! (writes reach the caches at once) and real hook servers on 127.0.0.x: revisions kept as
//! ControllerRevisions and listed in status, the rollback annotation restoring an earlier
//! configuration through the hook without replacing pods, the pin surviving a restart and a
//! scale and ending with the user's next change, refused requests, pruning to the limit,
//! a configuration superseded inside `reload.debounce` never kept, a pass reading an older
//! status than its own last write keeping the revision it created, a cached copy older than
//! the operator's own status write held back until the write arrives; and the
//! `relay-operator rollback` command against the fake API on a socket.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use relay_operator::controller::context::Context;
use serde_json::{Value, json};
use support::hook_servers::{Behavior, HookServers};
use support::{Call, FakeApi, RelayServiceFixture, Svc};

const ROLLBACK_TO: &str = "relayops.io/rollback-to";

/// `web`: two replicas, configuration `GREETING`, hooks on `port` (the app echoes the hash).
fn web(port: u16, greeting: &str) -> RelayServiceFixture {
    RelayServiceFixture::new("web")
        .image("ghcr.io/example/relay:1.4.2")
        .replicas(2)
        .config([("GREETING", greeting)])
        .reload(json!({"port": port, "retryDeadline": "600ms", "settleDelay": "0s", "timeout": "1s", "debounce": "0s"}))
}

impl Svc {
    /// Set the rollback annotation (no new generation, as on a real API server).
    fn annotate(&mut self, api: &mut FakeApi, value: &str) {
        self.rs.metadata.annotations.get_or_insert_default().insert(ROLLBACK_TO.into(), value.into());
        api.put(&self.rs);
    }

    fn hash(&self) -> String {
        self.status()["configHash"].as_str().unwrap().to_string()
    }

    /// `(revision, outcome)` of each kept revision, in order of application.
    fn revisions(&self) -> Vec<(i64, String)> {
        let status = self.status();
        status["revisions"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|r| (r["revision"].as_i64().unwrap(), r["outcome"].as_str().unwrap().into()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn revisions(expected: &[(i64, &str)]) -> Vec<(i64, String)> {
    expected.iter().map(|(n, o)| (*n, o.to_string())).collect()
}

/// Requests that create or delete pods.
fn pod_replacements(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| matches!(c.method.as_str(), "POST" | "DELETE") && c.path.contains("/pods"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

fn events(calls: &[Call], reason: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("/events") && c.body["reason"] == reason)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn echoing(replicas: usize) -> (FakeApi, HookServers, Arc<Context>) {
    let api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers =
        HookServers::start(replicas, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let ctx = Arc::new(api.context());
    (api, servers, ctx)
}

#[tokio::test]
async fn a_rollback_restores_the_previous_config_through_the_hook_until_the_spec_changes() {
    let (mut api, servers, ctx) = echoing(2).await;
    let port = servers.port;
    let mut svc = Svc::new(web(port, "a"));
    let calls = svc.reconcile(&mut api, &ctx).await;
    let a = svc.hash();
    let created: Vec<&Call> =
        calls.iter().filter(|c| c.method == "POST" && c.path.contains("/controllerrevisions")).collect();
    assert_eq!(created.len(), 1, "one revision kept");
    let revision = &created[0].body;
    let name = revision["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 10, "{name}");
    assert_eq!(revision["revision"], 1);
    assert_eq!(revision["metadata"]["ownerReferences"][0]["kind"], "RelayService");
    assert_eq!(revision["data"]["config"]["data"]["GREETING"], "a");
    assert!(revision["data"].get("replicas").is_none(), "scale is not part of a revision");
    assert_eq!(svc.revisions(), revisions(&[(1, "Current")]));
    assert_eq!(svc.status()["currentRevision"], 1);

    svc.change(&mut api, &web(port, "b"));
    svc.reconcile(&mut api, &ctx).await;
    let b = svc.hash();
    assert_eq!(servers.calls_for(&b), BTreeMap::from([(0, 1), (1, 1)]));
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));
    assert_eq!(svc.status()["revisions"][1]["generation"], 2);

    // The annotation asks for the previous revision: A comes back through the hook.
    svc.annotate(&mut api, "previous");
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.hash(), a, "the configuration of revision 1 is rendered");
    assert_eq!(servers.calls_for(&a), BTreeMap::from([(0, 1), (1, 1)]), "one hook call per pod");
    assert_eq!(pod_replacements(&calls), Vec::<String>::new(), "no pod replaced");
    assert_eq!(svc.revisions(), revisions(&[(2, "RolledBack"), (1, "Current")]));
    assert_eq!(svc.status()["currentRevision"], 1);
    assert_eq!(svc.status()["rollback"]["request"], "previous");
    assert_eq!(svc.status()["rollback"]["revision"], 1);
    let notes = events(&calls, "RollingBack");
    assert!(notes.len() == 1 && notes[0].contains("from revision 2 to revision 1"), "{notes:?}");
    assert_eq!(svc.rs.spec.config.as_ref().unwrap().data["GREETING"], "b", "the spec stays the user's");
    assert_eq!(svc.status()["configSyncedReplicas"], 2);

    // Converged on the rollback: nothing more, even for a restarted operator (the pin is in
    // status) — which reads the pinned revision's content once (the caches keep revisions
    // without it) and writes nothing.
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(calls.iter().filter(|c| !c.path.contains("/events")).count(), 0, "{calls:#?}");
    let restarted = Arc::new(api.context());
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert_eq!(svc.hash(), a);
    let requests: Vec<_> = calls.iter().filter(|c| !c.path.contains("/events")).collect();
    assert!(
        requests.len() == 1
            && requests[0].method == "GET"
            && requests[0].path.contains("/controllerrevisions/"),
        "{requests:#?}"
    );
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert_eq!(calls.iter().filter(|c| !c.path.contains("/events")).count(), 0, "{calls:#?}");

    // Scaling is not a change of configuration or template: the rollback holds.
    svc.change(&mut api, &web(port, "b").replicas(2).spec(json!({"revisionHistoryLimit": 5})));
    svc.reconcile(&mut api, &restarted).await;
    assert_eq!(svc.hash(), a, "a live field changed: still rolled back");

    // The user's fix ends it: C is applied as usual and becomes revision 3.
    svc.change(&mut api, &web(port, "c"));
    let calls = svc.reconcile(&mut api, &restarted).await;
    let c = svc.hash();
    assert_ne!(c, a);
    assert_eq!(servers.calls_for(&c), BTreeMap::from([(0, 1), (1, 1)]));
    assert_eq!(svc.revisions(), revisions(&[(2, "RolledBack"), (1, "Applied"), (3, "Current")]));
    let rollback = &svc.status()["rollback"];
    assert!(rollback.get("hash").is_none(), "{rollback}");
    assert!(rollback["message"].as_str().unwrap().contains("ended"), "{rollback}");
    assert_eq!(events(&calls, "RollbackEnded").len(), 1);
    assert_eq!(pod_replacements(&calls), Vec::<String>::new());

    // The handled annotation is not handled again; a new value is: back to a numbered revision.
    svc.annotate(&mut api, "2@again");
    svc.reconcile(&mut api, &restarted).await;
    assert_eq!(svc.hash(), b);
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (3, "RolledBack"), (2, "Current")]));
}

#[tokio::test]
async fn requests_that_cannot_be_served_are_reported_and_change_nothing() {
    let (mut api, servers, ctx) = echoing(1).await;
    let mut svc = Svc::new(web(servers.port, "a").replicas(1));
    svc.reconcile(&mut api, &ctx).await;
    let a = svc.hash();

    svc.annotate(&mut api, "previous");
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.status()["rollback"]["message"], "no revision before the current one is kept");
    assert_eq!(events(&calls, "RollbackFailed").len(), 1);
    assert_eq!(svc.hash(), a);

    svc.change(&mut api, &web(servers.port, "b").replicas(1));
    svc.reconcile(&mut api, &ctx).await;
    for (value, message) in [
        ("7", "revision 7 is not kept (kept: [1, 2])"),
        ("latest", "relayops.io/rollback-to: \"latest\" is neither \"previous\" nor a revision number"),
    ] {
        svc.annotate(&mut api, value);
        let calls = svc.reconcile(&mut api, &ctx).await;
        assert_eq!(svc.status()["rollback"]["message"], message);
        assert!(svc.status()["rollback"].get("revision").is_none());
        // The recorder folds a repeated reason into the first Event (a PATCH of its series).
        assert!(calls.iter().any(|c| c.path.contains("/events")), "{value}: an Event");
        assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));
    }
}

#[tokio::test]
async fn revisions_beyond_the_limit_are_deleted_oldest_first() {
    let (mut api, servers, ctx) = echoing(1).await;
    let service =
        |greeting: &str| web(servers.port, greeting).replicas(1).spec(json!({"revisionHistoryLimit": 2}));
    let mut svc = Svc::new(service("a"));
    let calls = svc.reconcile(&mut api, &ctx).await;
    let first = calls
        .iter()
        .find(|c| c.method == "POST" && c.path.contains("/controllerrevisions"))
        .map(|c| c.body["metadata"]["name"].as_str().unwrap().to_owned())
        .unwrap();
    svc.change(&mut api, &service("b"));
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(calls.iter().all(|c| c.method != "DELETE"));
    svc.change(&mut api, &service("c"));
    let calls = svc.reconcile(&mut api, &ctx).await;
    let deleted: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.path.contains("/controllerrevisions/"))
        .map(|c| c.path.rsplit('/').next().unwrap().split('?').next().unwrap())
        .collect();
    assert_eq!(deleted, [first.as_str()]);
    assert_eq!(svc.revisions(), revisions(&[(2, "Applied"), (3, "Current")]));
}

/// Run `relay-operator rollback ARGS` against the fake API at `server`: (success, stdout, stderr).
fn rollback_command(server: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .arg("rollback")
        .args(args)
        .env("KUBECONFIG", support::process::kubeconfig(server))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_command_checks_the_target_and_sets_the_annotation() {
    let mut api = FakeApi::new();
    let mut rs = web(8080, "b").build();
    rs.status = Some(
        serde_json::from_value(json!({
            "currentRevision": 2,
            "revisions": [{"revision": 1, "hash": "aaaaaaaaaa", "outcome": "Applied"},
                          {"revision": 2, "hash": "bbbbbbbbbb", "outcome": "Current"}],
        }))
        .unwrap(),
    );
    api.put(&rs);
    let server = support::process::serve(api.clone()).await;
    let run = |args: &'static [&'static str]| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || rollback_command(&server, args))
    };

    let (ok, _, stderr) = run(&["web", "-n", "demo", "--to-revision", "9"]).await.unwrap();
    assert!(
        !ok && stderr.contains("RelayService demo/web: revision 9 is not kept (kept: [1, 2])"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["nope", "-n", "demo"]).await.unwrap();
    assert!(!ok && stderr.contains("RelayService demo/nope not found"), "{stderr}");
    assert!(api.calls().iter().all(|c| c.method == "GET"), "nothing written for a refused target");

    let (ok, stdout, stderr) = run(&["web", "-n", "demo", "--timeout", "0s"]).await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("rollback from revision 2 to revision 1 requested"), "{stdout}");
    let patch = api.calls().into_iter().find(|c| c.method == "PATCH").expect("the annotation was set");
    let value = patch.body["metadata"]["annotations"][ROLLBACK_TO].as_str().unwrap().to_owned();
    assert!(value.starts_with("previous@"), "{value}");
    assert!(stdout.contains(&value), "{stdout}");
}

#[tokio::test]
async fn a_lost_status_is_rebuilt_from_the_stored_revisions() {
    let (mut api, servers, ctx) = echoing(1).await;
    let mut svc = Svc::new(web(servers.port, "a").replicas(1));
    svc.reconcile(&mut api, &ctx).await;
    svc.change(&mut api, &web(servers.port, "b").replicas(1));
    svc.reconcile(&mut api, &ctx).await;
    // The status is gone (restored from a backup without it, say): the ControllerRevisions remain.
    svc.rs.status = None;
    let restarted = Arc::new(api.context());
    let calls = svc.reconcile(&mut api, &restarted).await;
    assert!(calls.iter().all(|c| !c.path.contains("/controllerrevisions")), "no revision made or deleted");
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));
    assert_eq!(
        svc.status()["revisions"][0]["generation"],
        1,
        "the generation comes from the stored revision"
    );
}

#[tokio::test]
async fn a_rollback_to_another_image_replaces_the_pods_like_any_template_change() {
    let (mut api, servers, ctx) = echoing(2).await;
    let mut svc = Svc::new(web(servers.port, "a"));
    svc.reconcile(&mut api, &ctx).await;
    svc.change(&mut api, &web(servers.port, "a").image("ghcr.io/example/relay:1.5.0"));
    svc.reconcile(&mut api, &ctx).await;
    let rolled = |calls: &[Call]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.method == "DELETE" && c.path.contains("/pods/"))
            .map(|c| c.path.clone())
            .collect()
    };
    // Wait for the roll to the new image to finish (instant pods: a few passes).
    for _ in 0..6 {
        svc.reconcile(&mut api, &ctx).await;
    }
    assert_eq!(svc.status()["updatedReplicas"], 2);

    svc.annotate(&mut api, "previous");
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert_eq!(rolled(&calls).len(), 1, "rolling, maxUnavailable 1: {:#?}", rolled(&calls));
    for _ in 0..6 {
        svc.reconcile(&mut api, &ctx).await;
    }
    let images: Vec<String> = api
        .caches
        .pods
        .state()
        .iter()
        .map(|p| {
            let path = format!("/api/v1/namespaces/demo/pods/{}", p.name_any());
            let pod: Pod = api.stored(&path).unwrap();
            pod.spec.unwrap().containers[0].image.clone().unwrap()
        })
        .collect();
    assert_eq!(images, ["ghcr.io/example/relay:1.4.2", "ghcr.io/example/relay:1.4.2"]);
    assert_eq!(svc.revisions(), revisions(&[(2, "RolledBack"), (1, "Current")]));
}

#[tokio::test]
async fn a_configuration_superseded_inside_the_debounce_window_never_becomes_a_revision() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    let api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(2, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let mut api = api;
    let t0 = Timestamp::now();
    let clock = Arc::new(std::sync::Mutex::new(t0));
    let ctx = {
        let clock = clock.clone();
        Arc::new(api.context().with_clock(Arc::new(move || *clock.lock().unwrap())))
    };
    let debounced = |greeting: &str| {
        web(servers.port, greeting)
            .reload(json!({"port": servers.port, "settleDelay": "0s", "debounce": "2s"}))
    };
    let mut svc = Svc::new(debounced("a"));
    svc.reconcile(&mut api, &ctx).await;
    // B, then C half a second later; C's window ends 2 s after it.
    svc.change(&mut api, &debounced("b"));
    svc.reconcile(&mut api, &ctx).await;
    *clock.lock().unwrap() = t0 + SignedDuration::from_millis(500);
    svc.change(&mut api, &debounced("c"));
    let calls = svc.reconcile(&mut api, &ctx).await;
    assert!(!calls.iter().any(|c| c.path.contains("/controllerrevisions")), "nothing kept while held");
    assert_eq!(svc.revisions(), revisions(&[(1, "Current")]));
    *clock.lock().unwrap() = t0 + SignedDuration::from_millis(2500);
    let calls = svc.reconcile(&mut api, &ctx).await;
    let kept: Vec<&Value> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("/controllerrevisions"))
        .map(|c| &c.body["data"]["config"]["data"]["GREETING"])
        .collect();
    assert_eq!(kept, [&json!("c")], "C is kept; B never was");
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));
    let c = svc.hash();
    assert_eq!(servers.calls_for(&c), BTreeMap::from([(0, 1), (1, 1)]));
}

/// `web` with one replica converged on configuration A, writes reaching the caches only on
/// [`FakeApi::sync`].
async fn converged_with_manual_sync() -> (FakeApi, HookServers, Arc<Context>, Svc) {
    let api = FakeApi::with_manual_sync();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(1, Duration::ZERO, move |_| Behavior::Echo(mounted.clone())).await;
    let (mut api, ctx) = (api.clone(), Arc::new(api.context()));
    let mut svc = Svc::new(web(servers.port, "a").replicas(1));
    svc.reconcile(&mut api, &ctx).await;
    api.sync(true);
    svc.reconcile(&mut api, &ctx).await;
    api.sync(true);
    (api, servers, ctx, svc)
}

#[tokio::test]
async fn a_reconcile_reading_an_older_status_keeps_the_revision_an_earlier_pass_created() {
    let (mut api, servers, ctx, mut svc) = converged_with_manual_sync().await;
    assert_eq!(svc.revisions(), revisions(&[(1, "Current")]));

    // B is applied and kept as revision 2; its ControllerRevision has not reached the cache.
    svc.change(&mut api, &web(servers.port, "b").replicas(1));
    let older = svc.rs.clone();
    svc.reconcile(&mut api, &ctx).await;
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));

    // The next pass reads the status from before that write (its watch event is late too):
    // the revision it finds existing is read, not dropped from the status.
    svc.rs = older;
    let calls = svc.reconcile(&mut api, &ctx).await;
    let read: Vec<&Call> =
        calls.iter().filter(|c| c.method == "GET" && c.path.contains("/controllerrevisions/")).collect();
    assert_eq!(read.len(), 1, "{calls:#?}");
    assert_eq!(svc.revisions(), revisions(&[(1, "Applied"), (2, "Current")]));
    assert_eq!(svc.status()["currentRevision"], 2);
}

#[tokio::test]
async fn a_cached_copy_older_than_the_own_status_write_is_not_reconciled_until_the_write_arrives() {
    use kube::runtime::reflector::ObjectRef;
    use relay_operator::api::RelayService;
    use relay_operator::controller::relay_service::reconcile;

    let (mut api, servers, ctx, mut svc) = converged_with_manual_sync().await;

    // B is applied from the cached copy; the status write recording revision 2 has not
    // reached the cache (its watch event is late), while the user's next change would wake
    // the service again at once.
    let key = ObjectRef::<RelayService>::new("web").within("demo");
    svc.change(&mut api, &web(servers.port, "b").replicas(1));
    let older = ctx.caches.services.get(&key).unwrap();
    reconcile(older.clone(), ctx.clone()).await.unwrap();
    assert!(
        !ctx.own_writes.caught_up(&*ctx.caches.services.get(&key).unwrap()),
        "the cache still holds the copy from before the status write"
    );

    // The write arrives: its copy, with revision 2 current, is the one reconciled next.
    api.sync(true);
    let caught_up = ctx.caches.services.get(&key).unwrap();
    assert!(ctx.own_writes.caught_up(&*caught_up));
    let revisions: Vec<(i64, String)> = caught_up
        .status
        .iter()
        .flat_map(|s| &s.revisions)
        .map(|r| (r.revision, serde_json::to_value(r.outcome).unwrap().as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(revisions, self::revisions(&[(1, "Applied"), (2, "Current")]));
}
