//! Composable [Tower] layers for resilient, observable HTTP services and clients.
//!
//! tower-bulwark wraps both sides of a service: the inbound server (an axum `Router`, a hyper
//! server, rmcp's `StreamableHttpService`) and the outbound client it calls (hyper-util's
//! client, or any `tower::Service<http::Request<_>>`). Each layer is usable alone, tuned
//! through a builder, and behind its own cargo feature:
//!
//! | feature | what it adds |
//! |---|---|
//! | `request-id` | one request ID from the edge through logs, spans and outbound calls |
//! | `metrics` | Prometheus metrics for servers and clients, with bounded label sets |
//! | `trace` | spans following the OpenTelemetry HTTP conventions, W3C `traceparent` in and out |
//! | `otlp` | OTLP export of those spans (implies `trace`) |
//! | `circuit-breaker` | per-key, failure-rate and slow-call based circuit breaking |
//! | `fallback-cache` | serves the last good read when the backend fails (stale-if-error) |
//! | `retry` | retries safe and idempotent requests with jittered backoff, within a retry budget |
//! | `limit` | server limits answered with a response: time to the response head, body size, requests in flight (load shedding); a per-call client timeout |
//! | `stack` | preset inbound and outbound stacks in the recommended order, each layer switchable at run time |
//! | `full` | all of the above |
//!
//! No feature is on by default: a service author pays, in build time and dependencies, only
//! for the layers they use.
//!
//! The `taskman` example (`cargo run --example taskman`) assembles a complete MCP server from
//! these layers in front of a Task Manager REST API.
//!
//! [Tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

// Before the modules, so that every layer's service can use it.
/// Generates `get_ref`, `get_mut` and `into_inner` for a service whose inner service is the
/// field `inner`.
#[allow(unused_macros)] // unused when no layer feature is on
macro_rules! inner_service_accessors {
    () => {
        /// Gets a reference to the inner service.
        #[must_use]
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the inner service.
        #[must_use]
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        #[must_use]
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(any(
    feature = "circuit-breaker",
    feature = "fallback-cache",
    feature = "retry"
))]
pub mod classify;
#[cfg(any(feature = "circuit-breaker", feature = "retry", feature = "limit"))]
mod config_error;
#[cfg(feature = "fallback-cache")]
pub mod fallback_cache;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "request-id")]
pub mod request_id;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "stack")]
pub mod stack;
#[cfg(feature = "trace")]
pub mod trace;
