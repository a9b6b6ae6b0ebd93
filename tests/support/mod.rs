//! Test support: the stateful fake API server ([`fake_api`]), fixture builders of the three
//! kinds ([`fixtures`]), real hook servers ([`hook_servers`]), the operator binary as a
//! process ([`process`]), and the [`Harness`] of the reconciler tests: a Context with a
//! settable clock over a fake API whose writes reach the caches when the test syncs.

#![allow(dead_code)]

pub mod fake_api;
pub mod fixtures;
pub mod hook_servers;
pub mod process;

// Each test binary uses a subset.
#[allow(unused_imports)]
pub use fake_api::{Call, FakeApi, LOG, running};
#[allow(unused_imports)]
pub use fixtures::{HealthPolicyFixture, RelayServiceFixture, TestDeploymentFixture};

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use relay_operator::api::RelayService;
use relay_operator::controller::context::Context;
use relay_operator::controller::relay_service::reconcile;
use relay_operator::hook::ReloadOptions;

/// A Context with a settable clock over a fake API fed into the caches by
/// [`FakeApi::sync`]; derefs to the fake API.
pub struct Harness {
    pub api: FakeApi,
    pub ctx: Arc<Context>,
    /// The time `ctx.now()` reports; see [`Harness::set_time`].
    clock: Arc<Mutex<Timestamp>>,
}

impl Deref for Harness {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.api
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut FakeApi {
        &mut self.api
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_policy(false)
    }

    /// A harness whose operator runs with `--require-pinned-images` when `require_pinned`.
    pub fn with_policy(require_pinned: bool) -> Self {
        let api = FakeApi::with_manual_sync();
        let ctx = api.context();
        Self::over(api, ctx, require_pinned)
    }

    /// A harness whose operator uses the reload options `reload` builds on the fake
    /// client (e.g. `--hook-via proxy`: `Transport::api_proxy(client.clone())`).
    pub fn with_reload(reload: impl FnOnce(&kube::Client) -> ReloadOptions) -> Self {
        let api = FakeApi::with_manual_sync();
        let ctx = api.context_with(reload(&api.client));
        Self::over(api, ctx, false)
    }

    fn over(api: FakeApi, ctx: Context, require_pinned: bool) -> Self {
        let clock = Arc::new(Mutex::new(Timestamp::now()));
        let ctx = clocked(ctx, &clock, require_pinned);
        Self { api, ctx, clock }
    }

    /// A restarted operator: a fresh Context over the same cluster and caches, whose
    /// writes succeed again.
    pub fn restart(&mut self) {
        self.api.fail_after(usize::MAX);
        let ctx = self.api.context_with(self.ctx.reload.clone());
        self.ctx = clocked(ctx, &self.clock, self.ctx.require_pinned_images);
    }

    /// Set the time the operator sees.
    pub fn set_time(&self, t: Timestamp) {
        *self.clock.lock().unwrap() = t;
    }
}

fn clocked(ctx: Context, clock: &Arc<Mutex<Timestamp>>, require_pinned: bool) -> Arc<Context> {
    let clock = clock.clone();
    let mut ctx = ctx.with_clock(Arc::new(move || *clock.lock().unwrap()));
    ctx.require_pinned_images = require_pinned;
    Arc::new(ctx)
}

/// One RelayService under test: our copy of the object, changed as a user would change it
/// and reconciled with the patched status applied back, as the API server would.
pub struct Svc {
    pub rs: RelayService,
}

impl Svc {
    pub fn new(service: RelayServiceFixture) -> Self {
        Self { rs: service.build() }
    }

    /// A spec change: new generation.
    pub fn change(&mut self, api: &mut FakeApi, service: &RelayServiceFixture) {
        self.rs.spec = service.build().spec;
        self.rs.metadata.generation = self.rs.metadata.generation.map(|g| g + 1);
        api.put(&self.rs);
    }

    /// One reconcile: the action and the requests.
    pub async fn reconcile_with_action(
        &mut self,
        api: &mut FakeApi,
        ctx: &Arc<Context>,
    ) -> (Action, Vec<Call>) {
        api.put(&self.rs);
        let action = reconcile(Arc::new(self.rs.clone()), ctx.clone()).await.unwrap();
        let calls = api.take_calls();
        if let Some(call) = calls.iter().rev().find(|c| c.path.contains("/status")) {
            self.rs.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
            api.put(&self.rs);
        }
        (action, calls)
    }

    /// One reconcile: the requests.
    pub async fn reconcile(&mut self, api: &mut FakeApi, ctx: &Arc<Context>) -> Vec<Call> {
        self.reconcile_with_action(api, ctx).await.1
    }

    /// The status as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.rs.status.clone().unwrap_or_default()).unwrap()
    }
}

/// Apply the status the operator patched onto our copy, as the API server would.
pub fn with_patched_status(mut rs: RelayService, calls: &[Call]) -> RelayService {
    if let Some(call) =
        calls.iter().rev().find(|c| c.path.ends_with("/status") || c.path.contains("/status?"))
    {
        rs.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
    }
    rs
}

/// `METHOD path` per call, without the query; a create shows the created object's name as
/// the last segment.
pub fn summary(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            let path = c.path.split('?').next().unwrap();
            match c.body["metadata"]["name"].as_str().filter(|_| c.method == "POST") {
                Some(name) => format!("POST {path}/{name}"),
                None => format!("{} {path}", c.method),
            }
        })
        .collect()
}

/// The reasons of the Events published by `calls`, in order.
pub fn event_reasons(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.path.contains("/events"))
        .filter_map(|c| c.body["reason"].as_str().map(String::from))
        .collect()
}

/// The value of one exposed series (`name` or `name{labels}` exactly as in the exposition).
pub fn sample(metrics: &relay_operator::ops::metrics::Metrics, series: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}
