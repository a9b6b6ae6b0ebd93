//! The metrics/probe server end to end over real HTTP: exposition format and readiness flip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_operator::ops::objects::{ServiceSample, TestDeploymentSample};
use relay_operator::ops::{HttpState, Metrics, ObjectSamples, ReloadHookResult, serve_listener};
use tokio::net::TcpListener;

struct Server {
    addr: SocketAddr,
    state: HttpState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), relay_operator::ops::Error>>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState::new(Arc::new(Metrics::new().unwrap()));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_listener(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Server { addr, state, stop, task }
}

async fn get(addr: SocketAddr, path: &str) -> reqwest::Response {
    // No proxy: a CI environment's HTTP_PROXY must not capture requests to 127.0.0.1.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.get(format!("http://{addr}{path}")).send().await.unwrap()
}

/// A parsed metric family: its TYPE and the names of its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    has_help: bool,
    samples: Vec<(String, f64)>,
}

/// Parses the text exposition format strictly enough to catch ordering and naming mistakes:
/// every family has HELP and TYPE before any of its samples, no family appears twice, and every
/// sample belongs to the family declared last (histograms: `_bucket`, `_sum`, `_count`).
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(helped.insert(name.clone()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            assert!(["counter", "gauge", "histogram"].contains(&kind.as_str()), "{line}");
            assert!(!families.contains_key(&name), "TYPE twice for {name}");
            families.insert(name.clone(), Family { kind, has_help: helped.contains(&name), samples: vec![] });
            current = Some(name);
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let name_end = line.find(['{', ' ']).unwrap();
            let sample = &line[..name_end];
            let value: f64 =
                line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("value in {line}"));
            let family = current.as_deref().unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
            let f = families.get_mut(family).unwrap();
            let ok = match f.kind.as_str() {
                "histogram" => {
                    ["_bucket", "_sum", "_count"].iter().any(|s| sample == format!("{family}{s}").as_str())
                }
                _ => sample == family,
            };
            assert!(ok, "sample {sample} does not belong to the preceding TYPE {family}");
            f.samples.push((line[..line.rfind(' ').unwrap()].to_owned(), value));
        }
    }
    families
}

fn value(families: &BTreeMap<String, Family>, family: &str, series: &str) -> f64 {
    families[family]
        .samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no series {series} in {family}: {:?}", families[family].samples))
        .1
}

#[tokio::test]
async fn metrics_exposition_is_well_formed_and_readiness_flips() {
    let server = start().await;
    let metrics = server.state.metrics.clone();

    // Liveness is independent of readiness.
    let health = get(server.addr, "/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    assert_eq!(get(server.addr, "/readyz").await.status(), 503);

    {
        let _timer = metrics.reconcile_timer("RelayService");
    }
    metrics.reconcile_failure("RelayService", "api");
    metrics.set_managed_pods("", "ready", 2);
    metrics.reload_hook_call(ReloadHookResult::Applied);
    metrics.observe_reload_propagation(1.5);
    metrics.reload_restart();
    metrics.set_test_deployments("", "Running", 1);
    metrics.test_deployment_expired();
    metrics.observe_time_to_running(42.0);
    metrics.set_leader(true);
    metrics.reconcile_retry("RelayService", "RelayService/demo/web");
    metrics.add_object_source(Box::new(|| ObjectSamples {
        services: vec![ServiceSample {
            namespace: "demo".into(),
            name: "web".into(),
            desired_replicas: 2,
            ready_replicas: 1,
            conditions: vec![("Ready".into(), "False".into())],
        }],
        test_deployments: vec![TestDeploymentSample {
            namespace: "demo".into(),
            name: "pr-1".into(),
            phase: "Running",
            expires_at: Some(1_800_000_000.0),
        }],
    }));

    let resp = get(server.addr, "/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let text = resp.text().await.unwrap();
    let families = parse(&text);

    let expected = [
        ("relay_operator_reconciliations_total", "counter"),
        ("relay_operator_reconcile_errors_total", "counter"),
        ("relay_operator_reconcile_duration_seconds", "histogram"),
        ("relay_operator_managed_pods", "gauge"),
        ("relay_operator_reload_hook_calls_total", "counter"),
        ("relay_operator_reload_propagation_seconds", "histogram"),
        ("relay_operator_reload_restarts_total", "counter"),
        ("relay_operator_config_rollbacks_total", "counter"),
        ("relay_operator_pod_restarts", "gauge"),
        ("relay_operator_test_deployments", "gauge"),
        ("relay_operator_test_deployment_expirations_total", "counter"),
        ("relay_operator_test_deployment_time_to_running_seconds", "histogram"),
        ("relay_operator_leader", "gauge"),
        ("relay_operator_build_info", "gauge"),
        ("relay_operator_unreadable_objects_total", "counter"),
        ("relay_operator_reconcile_retries_total", "counter"),
        ("relay_operator_reconcile_queue_depth", "gauge"),
        // Per-object series, from the source added above.
        ("relay_operator_service_desired_replicas", "gauge"),
        ("relay_operator_service_ready_replicas", "gauge"),
        ("relay_operator_service_condition", "gauge"),
        ("relay_operator_test_deployment_phase", "gauge"),
        ("relay_operator_test_deployment_expiry_timestamp_seconds", "gauge"),
    ];
    // The process metrics of the `prometheus` crate come along on Linux.
    let names: BTreeSet<&str> =
        families.keys().map(String::as_str).filter(|n| !n.starts_with("process_")).collect();
    assert_eq!(names, expected.iter().map(|(n, _)| *n).collect(), "{text}");
    for (name, kind) in expected {
        let f = &families[name];
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.has_help, "{name} has no HELP");
        assert!(!f.samples.is_empty(), "{name} has no samples");
    }

    assert_eq!(
        value(
            &families,
            "relay_operator_reconciliations_total",
            "relay_operator_reconciliations_total{kind=\"RelayService\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "relay_operator_reconcile_errors_total",
            "relay_operator_reconcile_errors_total{error=\"api\",kind=\"RelayService\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "relay_operator_reconcile_duration_seconds",
            "relay_operator_reconcile_duration_seconds_count{kind=\"RelayService\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&families, "relay_operator_managed_pods", "relay_operator_managed_pods{state=\"ready\"}"),
        2.0
    );
    assert_eq!(
        value(
            &families,
            "relay_operator_reload_hook_calls_total",
            "relay_operator_reload_hook_calls_total{result=\"applied\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "relay_operator_reload_propagation_seconds",
            "relay_operator_reload_propagation_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    assert_eq!(value(&families, "relay_operator_leader", "relay_operator_leader"), 1.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &families,
            "relay_operator_build_info",
            &format!("relay_operator_build_info{{version=\"{version}\"}}")
        ),
        1.0
    );

    assert_eq!(
        value(
            &families,
            "relay_operator_service_condition",
            "relay_operator_service_condition{name=\"web\",namespace=\"demo\",status=\"False\",type=\"Ready\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "relay_operator_reconcile_queue_depth",
            "relay_operator_reconcile_queue_depth{kind=\"RelayService\"}"
        ),
        1.0
    );
    #[cfg(target_os = "linux")]
    for process in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
        assert!(families.contains_key(process), "no {process}:\n{text}");
    }

    promtool_check(&text);

    // Readiness flips once the controller reports synced caches, and back.
    server.state.ready.store(true, Ordering::Release);
    let ready = get(server.addr, "/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ok");
    server.state.ready.store(false, Ordering::Release);
    assert_eq!(get(server.addr, "/readyz").await.status(), 503);

    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.task).await.unwrap().unwrap().unwrap();
}

/// Runs `promtool check metrics` on the exposition when promtool is installed; skipped otherwise.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed; skipping `promtool check metrics`");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn fresh_exposition_passes_promtool() {
    let server = start().await;
    let text = get(server.addr, "/metrics").await.text().await.unwrap();
    let families = parse(&text);
    assert!(families.contains_key("relay_operator_build_info"));
    // Counted from the start, before the first error.
    assert_eq!(
        value(
            &families,
            "relay_operator_reconcile_errors_total",
            "relay_operator_reconcile_errors_total{error=\"api\",kind=\"RelayService\"}"
        ),
        0.0
    );
    promtool_check(&text);
    server.stop.send(()).unwrap();
}
