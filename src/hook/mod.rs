//! The reload hook client: the step of the reload protocol that tells running pods to
//! pick up a new configuration.
//!
//! When a service's configuration changes, the operator writes the ConfigMap whose
//! content hash is the desired `configHash`, then calls each ready pod's hook
//! ([`HookCall`]): `POST|PUT <path>` with `X-Config-Hash: <hash>`, through one
//! [`Transport`] chosen from `--hook-via`:
//!
//! - [`Transport::PodIp`]: `http://<podIP>:<port><path>`, with `Authorization: Bearer
//!   <token>` when configured;
//! - [`Transport::ApiProxy`]: the API server's pod proxy
//!   `/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`, authenticated as the operator
//!   (the API server consumes `Authorization`, so the bearer token is never sent).
//!
//! The answer is interpreted by [`classify`]:
//!
//! - 2xx echoing the hash as JSON `configHash` → [`HookOutcome::Applied`];
//! - 2xx with another `configHash` → [`HookOutcome::Stale`] (the kubelet has not
//!   refreshed the mounted file yet), retried;
//! - 2xx without `configHash` (the legacy relay's `{"status":"success",…}`, non-JSON)
//!   → [`HookOutcome::AppliedUnverified`];
//! - non-2xx (redirects are never followed), timeout or transport error → retried with
//!   exponential backoff ([`RetryPolicy`]) until the retry deadline; a report whose
//!   final outcome is not a success is a failure, and the caller applies `onFailure`.
//!
//! One retry loop serves both transports ([`Transport::call_with_retry`]). Every attempt
//! is bounded in time (connect, headers and body) and reads at most [`MAX_BODY_BYTES`] of
//! the answer; calls share a bound on attempts in flight (`--hook-concurrency`), so a slow
//! or hostile pod never stalls the others. Outcomes are counted under the labels of
//! [`crate::ops::ReloadHookResult`] (`From<&HookOutcome>`). The bearer token is wrapped
//! in [`BearerToken`] and never logged.

mod backoff;
mod call;
mod options;
mod outcome;
mod retry;
mod token;
mod transport;

pub use backoff::RetryPolicy;
pub use call::{HookCall, HookReport, HookUrlError, hook_url};
pub use options::{HookVia, ReloadOptions};
pub use outcome::{HookOutcome, MAX_REPORTED_HASH_LEN, classify};
pub use retry::{DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_PER_SERVICE, HookSlots};
pub use token::BearerToken;
pub use transport::{CONFIG_HASH_HEADER, MAX_BODY_BYTES, PodIpOptions, Transport, TransportError};
