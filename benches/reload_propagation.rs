//! Reload propagation benchmark: time from a config change (reconcile start) until every
//! pod has acknowledged the new hash (annotation `relayops.io/config-hash` written), with
//! the in-process fake API and one real hook server per pod on 127.0.0.x.
//!
//! For comparison, the restart strategy (no `reload`: every change replaces the pods,
//! `maxUnavailable` at a time): the time the control loop needs to replace every pod when
//! replacements are Ready instantly — a lower bound; on a cluster each wave also waits for
//! pod start-up and readiness.
//!
//! `cargo bench --bench reload_propagation` (`-- --quick` runs N = 10 and 100 only).

#[path = "../tests/support/fake_api.rs"]
mod fake_api;
#[path = "../tests/support/fixtures.rs"]
mod fixtures;
#[path = "../tests/support/hook_servers.rs"]
mod hook_servers;

use relay_operator::controller::cached::CachedPod;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use fixtures::RelayServiceFixture;
use hook_servers::{Behavior, HookServers};
use relay_operator::api::RelayService;
use relay_operator::controller::context::Context;
use relay_operator::controller::relay_service::reconcile;
use relay_operator::hook::{
    DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_PER_SERVICE, PodIpOptions, ReloadOptions, Transport,
};
use serde_json::json;

const RUNS: usize = 7;

/// `web` at `generation`: `n` replicas, configuration `A=value`, hooks on `port` if `reload`.
fn service(
    n: usize,
    port: u16,
    value: usize,
    reload: bool,
    max_unavailable: usize,
    generation: i64,
) -> RelayService {
    let mut service = RelayServiceFixture::new("web")
        .generation(generation)
        .image("ghcr.io/example/relay:1.4.2")
        .replicas(n as i32)
        .config([("A", value.to_string().as_str())])
        .spec(json!({"updateStrategy": {"maxUnavailable": max_unavailable}}));
    if reload {
        service = service
            .reload(json!({"port": port, "settleDelay": "0s", "retryDeadline": "30s", "debounce": "0s"}));
    }
    service.build()
}

/// Reconcile (feeding status back) until `done`; returns the number of reconciles.
async fn drive(
    api: &mut FakeApi,
    ctx: &Arc<Context>,
    rs: &mut RelayService,
    done: impl Fn(&FakeApi) -> bool,
) -> Drive {
    let mut reconciling = Duration::ZERO;
    for round in 1..=100_000 {
        api.put(rs);
        let service = Arc::new(rs.clone());
        api.take_serving_time();
        let started = Instant::now();
        if let Err(e) = reconcile(service, ctx.clone()).await {
            eprintln!("reconcile failed: {e}");
        }
        // The operator's share: what the fake API server spent answering is not its cost.
        reconciling += started.elapsed().saturating_sub(api.take_serving_time());
        let calls = api.take_calls();
        if let Some(call) = calls.iter().rev().find(|c| c.path.contains("/status")) {
            rs.status = serde_json::from_value(call.body["status"].clone()).ok();
        }
        if done(api) {
            return Drive { rounds: round, reconciling };
        }
    }
    Drive { rounds: usize::MAX, reconciling }
}

/// What [`drive`] took: reconciles, and the operator's time inside them (the control loop:
/// reconcile minus the fake API server's time answering its requests).
struct Drive {
    rounds: usize,
    reconciling: Duration,
}

fn all_pods(api: &FakeApi, n: usize, check: impl Fn(&CachedPod) -> bool) -> bool {
    (0..n).all(|i| api.pod(&format!("web-{i}")).is_some_and(|p| check(&p)))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Propagation of `RUNS` changes to `n` pods whose hooks take `hook_delay`, with at most
/// `per_service` hook calls in flight.
async fn reload_case(n: usize, hook_delay: Duration, per_service: usize) {
    let mut api = FakeApi::new();
    let mounted = api.mounted.clone();
    let servers = HookServers::start(n, hook_delay, move |_| Behavior::Echo(mounted.clone())).await;
    let transport = match Transport::pod_ip(PodIpOptions::default()) {
        Ok(transport) => transport,
        Err(e) => {
            eprintln!("cannot build the hook client: {e}");
            std::process::exit(1);
        }
    };
    let ctx = Arc::new(api.context_with(ReloadOptions::new(DEFAULT_CONCURRENCY, per_service, transport)));
    let mut generation = 1;
    let mut rs = service(n, servers.port, 0, true, 1, generation);
    drive(&mut api, &ctx, &mut rs, |api| all_pods(api, n, |_| true)).await;

    let mut times = Vec::new();
    let mut reconciles = Vec::new();
    let mut calls_per_pod = (usize::MAX, 0usize);
    for run in 1..=RUNS {
        generation += 1;
        let status = rs.status.clone();
        rs = service(n, servers.port, run, true, 1, generation);
        rs.status = status;
        let started = Instant::now();
        let Drive { rounds, .. } = drive(&mut api, &ctx, &mut rs, |api| {
            let hash = api.mounted.lock().map(|h| h.clone()).unwrap_or_default();
            all_pods(api, n, |p| p.annotation("relayops.io/config-hash") == Some(hash.as_str()))
        })
        .await;
        times.push(started.elapsed());
        reconciles.push(rounds);
        let hash = api.mounted.lock().map(|h| h.clone()).unwrap_or_default();
        let counts = servers.calls_for(&hash);
        let min = (0..n).map(|i| counts.get(&i).copied().unwrap_or(0)).min().unwrap_or(0);
        let max = counts.values().copied().max().unwrap_or(0);
        calls_per_pod = (calls_per_pod.0.min(min), calls_per_pod.1.max(max));
    }
    times.sort();
    println!(
        "reload   N={n:<5} hook={:>3} ms  per-service={per_service:<5} p50={:>8.1} ms  p99={:>8.1} ms  reconciles/change={:?}  hook calls/pod min={} max={}",
        hook_delay.as_millis(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        reconciles.iter().max().copied().unwrap_or(0),
        calls_per_pod.0,
        calls_per_pod.1,
    );
    if calls_per_pod != (1, 1) {
        eprintln!("expected exactly one hook call per pod and change, got {calls_per_pod:?}");
        std::process::exit(1);
    }
}

async fn restart_case(n: usize, max_unavailable: usize, runs: usize) {
    let mut api = FakeApi::new();
    let ctx = Arc::new(api.context());
    let mut generation = 1;
    let mut rs = service(n, 0, 0, false, max_unavailable, generation);
    drive(&mut api, &ctx, &mut rs, |api| all_pods(api, n, |_| true)).await;
    let mut times = Vec::new();
    let mut loop_times = Vec::new();
    let mut reconciles = 0;
    for run in 1..=runs {
        generation += 1;
        let status = rs.status.clone();
        rs = service(n, 0, run, false, max_unavailable, generation);
        rs.status = status;
        let started = Instant::now();
        let drove = drive(&mut api, &ctx, &mut rs, |api| {
            let hash = api.mounted.lock().map(|h| h.clone()).unwrap_or_default();
            all_pods(api, n, |p| p.annotation("relayops.io/config-hash") == Some(hash.as_str()))
        })
        .await;
        times.push(started.elapsed());
        loop_times.push(drove.reconciling);
        reconciles = drove.rounds;
    }
    times.sort();
    loop_times.sort();
    println!(
        "restart  N={n:<5} maxUnavailable={max_unavailable:<4} control loop p50={:>8.1} ms  wall p50={:>8.1} ms  reconciles/change={reconciles}  per reconcile={:.2} ms  (pods Ready instantly)",
        ms(percentile(&loop_times, 0.5)),
        ms(percentile(&times, 0.5)),
        ms(percentile(&loop_times, 0.5)) / reconciles.max(1) as f64,
    );
}

/// Time of one reconcile of a converged `n`-pod service (nothing to write): the cost the
/// control loop pays per pass — render, hash, plan, status.
async fn converged_case(n: usize) {
    let mut api = FakeApi::new();
    let ctx = Arc::new(api.context());
    let mut rs = service(n, 0, 0, false, 1, 1);
    drive(&mut api, &ctx, &mut rs, |api| all_pods(api, n, |_| true)).await;
    // Settle: the status of the last round is in `rs`.
    drive(&mut api, &ctx, &mut rs, |_| true).await;
    let mut times = Vec::new();
    let runs = std::env::var("CONVERGED_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(RUNS * 3);
    for _ in 0..runs {
        // The controller hands reconcile the cached object; the copy is not its cost.
        let service = Arc::new(rs.clone());
        let started = Instant::now();
        if let Err(e) = reconcile(service, ctx.clone()).await {
            eprintln!("reconcile failed: {e}");
        }
        times.push(started.elapsed());
        let writes = api.take_calls().iter().filter(|c| c.method != "GET").count();
        if writes != 0 {
            eprintln!("a converged service made {writes} writes");
            std::process::exit(1);
        }
    }
    times.sort();
    println!(
        "converged N={n:<5} one reconcile p50={:>7.2} ms  p99={:>7.2} ms  (0 writes)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then a smoke run of the smallest size keeps the test suite fast.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench --bench reload_propagation -- converged` runs only the named groups
    // (reload, converged, restart).
    let groups: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |group: &str| groups.is_empty() || groups.iter().any(|g| g == group);
    let sizes: &[usize] = match (benchmarking, quick) {
        (false, _) => &[10],
        (true, true) => &[10, 100],
        (true, false) => &[10, 100, 1000],
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        println!(
            "# reload propagation: change → all pods acknowledged ({RUNS} runs, \
             --hook-concurrency {DEFAULT_CONCURRENCY}, --hook-concurrency-per-service as shown)"
        );
        for &n in sizes.iter().filter(|_| wanted("reload")) {
            for delay in [Duration::from_millis(1), Duration::from_millis(50)] {
                reload_case(n, delay, DEFAULT_CONCURRENCY_PER_SERVICE).await;
            }
        }
        if sizes.contains(&1000) && wanted("reload") {
            println!("# the per-service bound at N=1000, 50 ms hooks (the default is {DEFAULT_CONCURRENCY_PER_SERVICE})");
            for per_service in [32, 128, 256, 512] {
                reload_case(1000, Duration::from_millis(50), per_service).await;
            }
        }
        println!("# one reconcile of a converged service");
        for &n in sizes.iter().filter(|_| wanted("converged")) {
            converged_case(n).await;
        }
        println!("# restart strategy for comparison");
        for &n in sizes.iter().filter(|_| wanted("restart")) {
            let runs = if n >= 1000 { 1 } else { 3 };
            restart_case(n, 1, runs).await;
            if n >= 20 {
                restart_case(n, n / 10, runs).await;
            }
        }
    });
}
