//! `relay-operator run` as a process: `/healthz`, `/readyz` and `/metrics` of the running
//! binary, against an in-process fake API server (caches sync → ready) and against an
//! unreachable one (alive, never ready); and the allocator the binary runs with.

mod support;

use std::time::Duration;

use support::process::*;
use support::{FakeApi, HealthPolicyFixture, summary};

#[tokio::test]
async fn ready_once_caches_sync_and_metrics_are_served() {
    let (address, _) = fake_api().await;
    let (_operator, port) = start(&address);
    assert!(wait_for(port, "/healthz", 200, Duration::from_secs(20)).await, "/healthz never answered");
    assert!(wait_for(port, "/readyz", 200, Duration::from_secs(20)).await, "/readyz never turned ready");
    let (status, metrics) = get(port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for name in
        ["relay_operator_managed_pods", "relay_operator_reload_hook_calls_total", "relay_operator_build_info"]
    {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
}

#[tokio::test]
async fn alive_but_not_ready_without_an_api_server() {
    let (_operator, port) = start("https://127.0.0.1:1");
    assert!(wait_for(port, "/healthz", 200, Duration::from_secs(20)).await, "/healthz never answered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(port, "/readyz").await.map(|(s, _)| s), Some(503), "ready without synced caches");
    assert_eq!(get(port, "/metrics").await.map(|(s, _)| s), Some(200));
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let (address, _) = fake_api().await;
    let (mut operator, port) = start(&address);
    assert!(wait_for(port, "/readyz", 200, Duration::from_secs(20)).await, "/readyz never turned ready");
    let pid = operator.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = operator.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(get(port, "/healthz").await.is_none(), "the probe server stopped too");
}

#[tokio::test]
async fn one_watch_per_kind_and_every_controller_runs() {
    let mut api = FakeApi::with_manual_sync();
    api.put(&HealthPolicyFixture::new("shared").tcp(5432).interval("10s").timeout("5s").build());
    let address = serve(api.clone()).await;
    let (_operator, port) = start(&address);
    assert!(wait_for(port, "/readyz", 200, Duration::from_secs(20)).await, "/readyz never turned ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status_patch = "PATCH /apis/relayops.io/v1alpha1/namespaces/demo/healthpolicies/shared/status";
    while !summary(&api.calls()).iter().any(|r| r == status_patch) {
        assert!(std::time::Instant::now() < deadline, "the HealthPolicy controller never wrote status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut watches: Vec<String> = api
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("watch=true"))
        .map(|c| c.path.split('?').next().unwrap().to_string())
        .collect();
    watches.sort();
    let unique: std::collections::BTreeSet<&String> = watches.iter().collect();
    assert_eq!(unique.len(), 9, "{watches:#?}");
    assert!(unique.iter().any(|w| w.ends_with("/networking.k8s.io/v1/ingresses")), "{watches:#?}");
    assert!(unique.iter().any(|w| w.ends_with("/apps/v1/controllerrevisions")), "{watches:#?}");
    assert_eq!(watches.len(), unique.len(), "a kind is watched twice: {watches:#?}");
    assert!(
        !api.calls().iter().any(|c| c.path.contains("/secrets")),
        "Secrets read without a --secret-namespace: {watches:#?}"
    );
}

/// The Secret lists and watches of an operator started with `args` and `env`, once ready.
async fn secret_requests(args: &[&str], env: &[(&str, &str)]) -> std::collections::BTreeSet<String> {
    let (address, api) = fake_api().await;
    let (_operator, port) = start_with(&address, args, env);
    assert!(wait_for(port, "/readyz", 200, Duration::from_secs(20)).await, "/readyz never turned ready");
    let requests = || -> std::collections::BTreeSet<String> {
        api.calls()
            .iter()
            .filter(|c| c.path.contains("/secrets"))
            .map(|c| {
                let kind = if c.path.contains("watch=true") { "watch" } else { "list" };
                format!("{} {kind} {}", c.method, c.path.split('?').next().unwrap())
            })
            .collect()
    };
    // Ready means every list is done; each list's watch follows it shortly after.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = requests();
        let lists = seen.iter().filter(|r| r.contains(" list ")).count();
        if seen.len() == 2 * lists || std::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn secrets_are_watched_only_in_the_granted_namespaces() {
    let expected = |namespaces: &[&str]| -> std::collections::BTreeSet<String> {
        namespaces
            .iter()
            .flat_map(|ns| {
                ["list", "watch"].map(|kind| format!("GET {kind} /api/v1/namespaces/{ns}/secrets"))
            })
            .collect()
    };
    let flags = secret_requests(&["--secret-namespace", "apps", "--secret-namespace", "billing"], &[]).await;
    assert_eq!(flags, expected(&["apps", "billing"]));
    let variable = secret_requests(&[], &[("RELAY_SECRET_NAMESPACES", "apps,billing")]).await;
    assert_eq!(variable, expected(&["apps", "billing"]));
    // Watching namespaces: their own Secrets, unless the grants leave them out.
    let watched = secret_requests(&["--namespaces", "apps,web"], &[]).await;
    assert_eq!(watched, expected(&["apps", "web"]));
    let narrowed = secret_requests(&["--namespaces", "apps,web", "--secret-namespace", "apps"], &[]).await;
    assert_eq!(narrowed, expected(&["apps"]));
}

#[test]
fn a_fatal_start_up_error_is_json_under_log_format_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .args(["run", "--log-format", "json", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(line["level"], "ERROR");
    assert!(line["message"].as_str().unwrap().contains("Kubernetes client"), "{line}");
}

/// The allocator hands freed pages back (BENCHMARKS.md, memory at 10,000): the binary runs
/// jemalloc with its background thread and a 1 s decay, as jemalloc's own report of its
/// options at exit shows.
#[test]
#[cfg(not(target_env = "msvc"))]
fn the_binary_allocates_with_jemalloc_returning_freed_pages_after_a_second() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .arg("version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for option in ["opt.background_thread: true", "opt.dirty_decay_ms: 1000", "opt.muzzy_decay_ms: 0"] {
        assert!(report.contains(option), "{option} missing from jemalloc's report:\n{report}");
    }
}
