//! The reload hook client against real HTTP servers on 127.0.0.1 (one per "pod").
//!
//! The servers are hand-written HTTP/1.1 over tokio sockets so they can misbehave:
//! hang, dribble, send huge bodies, redirect.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_operator::api::ReloadMethod;
use relay_operator::hook::{
    BearerToken, HookCall, HookOutcome, HookReport, HookSlots, PodIpOptions, RetryPolicy, Transport,
};
use relay_operator::ops::ReloadHookResult;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const HASH: &str = "sha256:new";
const OLD_HASH: &str = "sha256:old";

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Short retries so the suite is fast.
fn policy(deadline_ms: u64) -> RetryPolicy {
    RetryPolicy { initial: ms(20), max: ms(200), deadline: ms(deadline_ms) }
}

fn client() -> Transport {
    Transport::pod_ip(PodIpOptions::default()).unwrap()
}

/// A call of the hook at `addr` (a "pod" on 127.0.0.1).
fn call_at(addr: SocketAddr, pod: &str, timeout: Duration) -> HookCall {
    HookCall {
        pod: pod.into(),
        namespace: "demo".into(),
        pod_ip: addr.ip().to_string(),
        port: addr.port(),
        path: "/reload-config".into(),
        method: ReloadMethod::Post,
        config_hash: HASH.into(),
        bearer_token: None,
        timeout,
    }
}

/// How a fake pod answers one request.
#[derive(Clone)]
enum Reply {
    /// Wait `delay`, then answer `status` with `headers` and `body`, and close.
    Respond { status: u16, headers: Vec<(&'static str, String)>, body: Arc<Vec<u8>>, delay: Duration },
    /// Read the request, never answer, keep the connection open.
    Hang,
    /// Send the whole response (status line included) one byte per second.
    DribbleHead,
    /// Send the headers at once, then the body one byte per second.
    DribbleBody,
}

fn respond(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Respond { status, headers: Vec::new(), body: Arc::new(body.into()), delay: Duration::ZERO }
}

fn echo(hash: &str) -> Reply {
    respond(200, format!(r#"{{"configHash":"{hash}"}}"#))
}

fn slow(reply: Reply, delay: Duration) -> Reply {
    match reply {
        Reply::Respond { status, headers, body, .. } => Reply::Respond { status, headers, body, delay },
        other => other,
    }
}

/// A request as the fake pod saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// Lower-cased names, values as sent.
    headers: Vec<(String, String)>,
    /// When the request head was complete.
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A fake pod: answers its n-th request with `script[n]` (the last entry repeats).
struct Pod {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Pod {
    async fn spawn(script: Vec<Reply>) -> Pod {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (seen2, connections2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections2.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, script.clone(), seen2.clone()));
            }
        });
        Pod { addr, seen, connections }
    }

    fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{}", self.addr, path)).unwrap()
    }

    fn call(&self, pod: &str, timeout: Duration) -> HookCall {
        call_at(self.addr, pod, timeout)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Vec<Reply>>, seen: Arc<Mutex<Vec<Seen>>>) {
    let Some(request) = read_head(&mut stream).await else { return };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(request);
        seen.len() - 1
    };
    let Some(reply) = script.get(index).or(script.last()).cloned() else { return };
    // Write errors mean the client went away, which is what some tests expect.
    let _ = answer(&mut stream, reply).await;
}

async fn read_head(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(Seen { method, path, headers, at: Instant::now() })
}

async fn answer(stream: &mut TcpStream, reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Respond { status, headers, body, delay } => {
            tokio::time::sleep(delay).await;
            let mut head =
                format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            stream.shutdown().await
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Reply::DribbleHead => dribble(stream, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").await,
        Reply::DribbleBody => {
            let body = format!(r#"{{"configHash":"{HASH}"}}"#);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).await?;
            dribble(stream, body.as_bytes()).await
        }
    }
}

async fn dribble(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    for byte in bytes {
        stream.write_all(&[*byte]).await?;
        stream.flush().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

// 1. The seeds' relay as it is.
#[tokio::test]
async fn legacy_relay_answer_counts_as_applied_unverified() {
    let pod = Pod::spawn(vec![Reply::Respond {
        status: 200,
        headers: vec![("Content-Type", "application/json".into())],
        body: Arc::new(br#"{"status":"success","message":"Config reloaded"}"#.to_vec()),
        delay: Duration::ZERO,
    }])
    .await;
    let report = client().call_with_retry(&pod.call("relay-0", ms(1_000)), &policy(1_000), None).await;
    assert_eq!(report.outcome, HookOutcome::AppliedUnverified);
    assert!(report.succeeded());
    assert_eq!(report.attempts, 1);
    assert_eq!(report.pod, "relay-0");
    let seen = pod.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/reload-config");
    assert_eq!(seen[0].header("x-config-hash"), [HASH]);
    assert!(seen[0].header("authorization").is_empty());
}

#[tokio::test]
async fn put_method_is_used_when_configured() {
    let pod = Pod::spawn(vec![echo(HASH)]).await;
    let call = HookCall { method: ReloadMethod::Put, ..pod.call("relay-0", ms(1_000)) };
    assert_eq!(client().call_with_retry(&call, &once(), None).await.outcome, HookOutcome::Applied);
    assert_eq!(pod.seen()[0].method, "PUT");
}

// 2. Stale until the kubelet refreshes the file.
#[tokio::test]
async fn stale_hash_converges_to_applied() {
    let pod = Pod::spawn(vec![echo(OLD_HASH), echo(OLD_HASH), echo(HASH)]).await;
    let report = client().call_with_retry(&pod.call("relay-0", ms(1_000)), &policy(2_000), None).await;
    assert_eq!(report.outcome, HookOutcome::Applied);
    assert_eq!(report.attempts, 3);
    let seen = pod.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.header("x-config-hash") == [HASH]));
}

#[tokio::test]
async fn stale_forever_fails_at_the_deadline() {
    let pod = Pod::spawn(vec![echo(OLD_HASH)]).await;
    let report = client().call_with_retry(&pod.call("relay-0", ms(1_000)), &policy(500), None).await;
    assert_eq!(report.outcome, HookOutcome::Stale { reported: OLD_HASH.into() });
    assert!(!report.succeeded());
    assert_eq!(report.outcome.status_result().as_str(), "Failed");
    assert!(report.attempts > 2, "{report:?}");
    assert!(report.elapsed < ms(500 + 250), "{report:?}");
}

// 3. Server errors are retried.
#[tokio::test]
async fn server_error_then_ok_converges() {
    let pod = Pod::spawn(vec![respond(500, "boom"), respond(503, ""), echo(HASH)]).await;
    let report = client().call_with_retry(&pod.call("relay-0", ms(1_000)), &policy(2_000), None).await;
    assert_eq!(report.outcome, HookOutcome::Applied);
    assert_eq!(report.attempts, 3);
    assert_eq!(pod.seen().len(), 3);
}

#[tokio::test]
async fn single_call_reports_the_status() {
    let pod = Pod::spawn(vec![respond(500, "boom")]).await;
    assert_eq!(
        client().call_with_retry(&pod.call("relay-0", ms(1_000)), &once(), None).await.outcome,
        HookOutcome::HttpStatus(500)
    );
    assert_eq!(pod.seen().len(), 1);
}

// 4. A pod that never answers.
#[tokio::test]
async fn never_answering_pod_times_out_within_the_deadline() {
    let pod = Pod::spawn(vec![Reply::Hang]).await;
    let deadline = ms(1_000);
    let started = Instant::now();
    let report = client().call_with_retry(&pod.call("relay-0", ms(300)), &policy(1_000), None).await;
    assert_eq!(report.outcome, HookOutcome::Timeout);
    assert!(!report.succeeded());
    assert!(report.attempts >= 2, "{report:?}");
    assert!(report.elapsed >= ms(300), "{report:?}");
    assert!(report.elapsed < deadline + ms(250), "{report:?}");
    assert!(started.elapsed() < deadline + ms(300));
    assert_eq!(pod.seen().len() as u32, report.attempts);
}

// 5. Nothing listens on the port.
#[tokio::test]
async fn refused_connection_fails_after_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let call = call_at(addr, "relay-0", ms(500));
    let report = client().call_with_retry(&call, &policy(600), None).await;
    assert!(matches!(report.outcome, HookOutcome::Connect(_)), "{report:?}");
    assert!(!report.succeeded());
    assert_eq!(ReloadHookResult::from(&report.outcome).as_str(), "connect_error");
    assert!(report.attempts > 1, "{report:?}");
    assert!(report.elapsed < ms(600 + 250), "{report:?}");
}

// 6. Hostile pods do not stall the others, and bodies are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pods_do_not_stall_fast_ones_and_bodies_are_capped() {
    // 10 MiB of JSON whitespace, then an object echoing the hash: read entirely it would
    // be `Applied`; read up to the cap it is not JSON, so `AppliedUnverified`.
    let mut huge = vec![b' '; 10 * 1024 * 1024];
    huge.extend_from_slice(format!(r#"{{"configHash":"{HASH}"}}"#).as_bytes());
    let huge_pod = Pod::spawn(vec![respond(200, huge)]).await;
    let dribble_head = Pod::spawn(vec![Reply::DribbleHead]).await;
    let dribble_body = Pod::spawn(vec![Reply::DribbleBody]).await;
    let mut fast = Vec::new();
    for _ in 0..4 {
        fast.push(Pod::spawn(vec![echo(HASH)]).await);
    }

    let timeout = ms(500);
    let deadline = ms(1_200);
    let mut calls = vec![
        dribble_head.call("dribble-head", timeout),
        huge_pod.call("huge", timeout),
        dribble_body.call("dribble-body", timeout),
    ];
    calls.extend(fast.iter().enumerate().map(|(i, pod)| pod.call(&format!("fast-{i}"), timeout)));
    let names: Vec<_> = calls.iter().map(|c| c.pod.clone()).collect();

    let started = Instant::now();
    let reports = reload_all(&client(), calls, &policy(1_200), 32).await;
    let total = started.elapsed();

    assert_eq!(reports.iter().map(|r| r.pod.clone()).collect::<Vec<_>>(), names, "input order");
    let by_name = |name: &str| -> &HookReport { reports.iter().find(|r| r.pod == name).unwrap() };
    for i in 0..4 {
        let report = by_name(&format!("fast-{i}"));
        assert_eq!(report.outcome, HookOutcome::Applied, "{report:?}");
        assert_eq!(report.attempts, 1);
        assert!(report.elapsed < ms(1_000), "{report:?}");
    }
    let huge = by_name("huge");
    assert_eq!(huge.outcome, HookOutcome::AppliedUnverified, "{huge:?}");
    assert_eq!(huge.attempts, 1);
    assert!(huge.elapsed < timeout, "{huge:?}");
    for name in ["dribble-head", "dribble-body"] {
        let report = by_name(name);
        assert_eq!(report.outcome, HookOutcome::Timeout, "{report:?}");
        assert!(report.elapsed < deadline + ms(250), "{report:?}");
    }
    assert!(total < deadline + ms(400), "{total:?}");
}

#[tokio::test]
async fn body_cap_is_configurable() {
    let pod = Pod::spawn(vec![echo(HASH)]).await;
    let call = pod.call("relay-0", ms(1_000));
    let capped = Transport::pod_ip(PodIpOptions { max_body_bytes: 10, ..PodIpOptions::default() }).unwrap();
    assert_eq!(capped.call_with_retry(&call, &once(), None).await.outcome, HookOutcome::AppliedUnverified);
    assert_eq!(client().call_with_retry(&call, &once(), None).await.outcome, HookOutcome::Applied);
}

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// 7. The bearer token: sent only when configured, never printed.
#[tokio::test]
async fn bearer_token_is_sent_only_when_configured_and_never_printed() {
    const TOKEN: &str = "s3cr3t-t0ken";
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // tracing caches one interest per callsite for the whole process. While a single
    // dispatcher is registered, a sibling test thread without a subscriber that hits
    // the retry loop's `debug!` first would cache "never" and blind this capture. A second,
    // inert dispatcher kept alive makes the interest the union of both (so: evaluated per
    // event), and the rebuild repairs anything cached before.
    let _anchor = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let with_token = Pod::spawn(vec![respond(500, ""), echo(HASH)]).await;
    let without_token = Pod::spawn(vec![echo(HASH)]).await;
    let call =
        HookCall { bearer_token: Some(BearerToken::new(TOKEN)), ..with_token.call("relay-tok", ms(1_000)) };
    let client = client();
    let report = client.call_with_retry(&call, &policy(1_000), None).await;
    assert_eq!(report.outcome, HookOutcome::Applied);
    assert_eq!(report.attempts, 2);
    let report =
        client.call_with_retry(&without_token.call("relay-plain", ms(1_000)), &policy(1_000), None).await;
    assert_eq!(report.outcome, HookOutcome::Applied);

    for seen in with_token.seen() {
        assert_eq!(seen.header("authorization"), [format!("Bearer {TOKEN}").as_str()]);
    }
    assert!(without_token.seen()[0].header("authorization").is_empty());

    let debug = format!("{call:?} {call:#?} {report:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("***"), "{debug}");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("relay-tok"), "the capture works: {logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
}

// 8. Redirects are failures, never followed.
#[tokio::test]
async fn redirect_is_not_followed() {
    let target = Pod::spawn(vec![echo(HASH)]).await;
    let redirector = Pod::spawn(vec![Reply::Respond {
        status: 302,
        headers: vec![("Location", target.url("/reload-config").to_string())],
        body: Arc::new(Vec::new()),
        delay: Duration::ZERO,
    }])
    .await;
    let report = client().call_with_retry(&redirector.call("relay-0", ms(500)), &policy(300), None).await;
    assert_eq!(report.outcome, HookOutcome::HttpStatus(302));
    assert!(!report.succeeded());
    assert!(report.attempts > 1, "{report:?}");
    assert_eq!(redirector.seen().len() as u32, report.attempts);
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    assert!(target.seen().is_empty());
}

// 9. The concurrency bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let mut pods = Vec::new();
    for _ in 0..6 {
        pods.push(Pod::spawn(vec![slow(echo(HASH), ms(300))]).await);
    }
    let calls = || -> Vec<HookCall> {
        pods.iter().enumerate().map(|(i, pod)| pod.call(&format!("relay-{i}"), ms(2_000))).collect()
    };
    let client = client();

    let started = Instant::now();
    let reports = reload_all(&client, calls(), &policy(3_000), 2).await;
    let bounded = started.elapsed();
    assert!(reports.iter().all(|r| r.outcome == HookOutcome::Applied && r.attempts == 1), "{reports:?}");
    assert!(bounded >= ms(850), "{bounded:?}");

    let started = Instant::now();
    let reports = reload_all(&client, calls(), &policy(3_000), 6).await;
    let wide = started.elapsed();
    assert!(reports.iter().all(|r| r.outcome == HookOutcome::Applied && r.attempts == 1), "{reports:?}");
    assert!(wide < ms(600), "{wide:?}");
    assert_eq!(
        reports.iter().map(|r| r.pod.as_str()).collect::<Vec<_>>(),
        ["relay-0", "relay-1", "relay-2", "relay-3", "relay-4", "relay-5"]
    );
}

#[tokio::test]
async fn zero_concurrency_still_makes_progress() {
    let pod = Pod::spawn(vec![echo(HASH)]).await;
    let reports =
        reload_all(&client(), vec![pod.call("a", ms(1_000)), pod.call("b", ms(1_000))], &policy(1_000), 0)
            .await;
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(HookReport::succeeded));
    assert!(reload_all(&client(), Vec::new(), &policy(1_000), 32).await.is_empty());
}

#[tokio::test]
async fn a_pod_waiting_to_retry_does_not_hold_a_concurrency_slot() {
    // One slot. The first pod fails once and then waits 300 ms before retrying; the
    // second pod must be called during that wait, not after the first pod is done.
    let retrying = Pod::spawn(vec![respond(500, ""), echo(HASH)]).await;
    let other = Pod::spawn(vec![echo(HASH)]).await;
    let policy = RetryPolicy { initial: ms(300), max: ms(300), deadline: ms(2_000) };
    let calls = vec![retrying.call("retrying", ms(1_000)), other.call("other", ms(1_000))];
    let reports = reload_all(&client(), calls, &policy, 1).await;
    assert_eq!(reports[0].outcome, HookOutcome::Applied);
    assert_eq!(reports[0].attempts, 2);
    assert_eq!(reports[1].outcome, HookOutcome::Applied);
    let retrying_seen = retrying.seen();
    let other_seen = other.seen();
    assert!(retrying_seen[0].at <= other_seen[0].at, "the first pod went first");
    assert!(other_seen[0].at < retrying_seen[1].at, "the other pod was called during the backoff");
}

#[tokio::test]
async fn waiting_for_a_slot_past_the_deadline_keeps_the_real_outcome() {
    // One slot. The refused pod fails at once and, while it backs off, the hanging pod
    // takes the slot for 800 ms: the refused pod's deadline (300 ms) passes in the queue.
    // Its report keeps the connection error instead of a zero-budget attempt's timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused_addr = listener.local_addr().unwrap();
    drop(listener);
    let hanging = Pod::spawn(vec![Reply::Hang]).await;
    let refused = call_at(refused_addr, "refused", ms(800));
    let reports =
        reload_all(&client(), vec![refused, hanging.call("hanging", ms(800))], &policy(300), 1).await;
    assert!(matches!(reports[0].outcome, HookOutcome::Connect(_)), "{reports:?}");
    assert_eq!(reports[0].attempts, 1);
    assert_eq!(reports[1].outcome, HookOutcome::Timeout);
    assert_eq!(reports[1].attempts, 1);
}

/// One attempt, no retry.
fn once() -> RetryPolicy {
    RetryPolicy { deadline: Duration::ZERO, ..RetryPolicy::default() }
}

/// Every pod's hook at once, at most `concurrency` attempts in flight (as the controller
/// calls them), the reports in the order of `calls`.
async fn reload_all(
    transport: &Transport,
    calls: Vec<HookCall>,
    policy: &RetryPolicy,
    concurrency: usize,
) -> Vec<HookReport> {
    let all = tokio::sync::Semaphore::new(concurrency.max(1));
    let limit = HookSlots::new(concurrency, &all);
    futures::future::join_all(calls.iter().map(|call| transport.call_with_retry(call, policy, Some(&limit))))
        .await
}
