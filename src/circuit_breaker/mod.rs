//! Circuit breaking: stop calling a backend that is failing, give it time, probe it, resume.
//!
//! [`CircuitBreakerLayer`] wraps any `tower::Service` (an HTTP client such as hyper-util's, or
//! anything else, with a suitable [classifier](crate::classify)). Each completed call is
//! classified as a success, a failure or ignored, and recorded in a sliding window. When the
//! window's failure rate or slow-call rate reaches its threshold, the breaker opens: calls
//! are rejected at once, without reaching the backend, with a [`CircuitOpen`] that says how
//! long is left. After the open duration the next call half-opens it: a few probes pass, and
//! their results close it again or reopen it for longer.
//!
//! ```text
//!            rate >= threshold              open duration passed,
//!   Closed ─────────────────────► Open ───────────────────────────► HalfOpen
//!     ▲                            ▲      on the next call             │
//!     │                            └───────── probes fail ─────────────┤
//!     └─────────────────────────── probes pass ────────────────────────┘
//! ```
//!
//! # Example
//!
//! A hyper-util client that stops calling a backend answering 5xx:
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, StatusCode};
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{Service as _, ServiceBuilder, ServiceExt as _};
//! use tower_bulwark::circuit_breaker::{CircuitBreakerError, CircuitBreakerLayer, State, Window};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # // A loopback backend that always fails.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! # let backend = axum::Router::new().route("/", axum::routing::get(|| async { StatusCode::BAD_GATEWAY }));
//! # tokio::spawn(async move { axum::serve(listener, backend).await });
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("backend")
//!     .failure_rate_threshold(50.0) // percent; reaching it is enough
//!     .minimum_calls(4)
//!     .window(Window::Count(10))
//!     .open_duration(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! let mut client = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//!
//! for _ in 0..4 {
//!     let req = Request::get(format!("http://{addr}/")).body(Empty::new()).unwrap();
//!     let res = client.ready().await.unwrap().call(req).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // Rejected at once, without a connection to the backend.
//! let req = Request::get(format!("http://{addr}/")).body(Empty::new()).unwrap();
//! match client.ready().await.unwrap().call(req).await {
//!     Err(CircuitBreakerError::Open(open)) => assert!(open.retry_after().unwrap() <= Duration::from_secs(5)),
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```
//!
//! # Errors or `503`
//!
//! The service's error is [`CircuitBreakerError`]: `Open(CircuitOpen)` for a rejection, or
//! `Inner(e)` with the inner service's own error, still typed. For HTTP,
//! [`CircuitBreakerLayer::http_503`] answers rejections with `503 Service Unavailable` and
//! `Retry-After` instead, keeping the inner error type (an axum `Router`'s `Infallible`, say):
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt as _, service_fn};
//! use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::new();
//! let handle = breaker.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(breaker.http_503())
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! handle.open_for(Duration::from_secs(30));
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # }
//! ```
//!
//! A layer that wants a `BoxError` (`HandleErrorLayer`, `tower::timeout` outside) can use
//! [`CircuitBreakerError::into_box_error`], which keeps `err.is::<CircuitOpen>()` working.
//!
//! # Per-key breakers
//!
//! [`CircuitBreakerBuilder::per_key`] keeps one breaker per key (host, route, tenant, …), so
//! that one failing backend does not cut off the others. Keys live in a bounded registry
//! ([`max_keys`](CircuitBreakerBuilder::max_keys), evicting idle keys first):
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode, uri::Authority};
//! use tower::{ServiceBuilder, ServiceExt as _, service_fn};
//! use tower_bulwark::circuit_breaker::{CircuitBreakerError, CircuitBreakerLayer, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::builder()
//!     .per_key(|req: &Request<()>| req.uri().authority().cloned())
//!     .minimum_calls(2)
//!     .max_keys(100)
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! // "down.example" always fails, everything else works.
//! let svc = ServiceBuilder::new().layer(breaker).service(service_fn(|req: Request<()>| async move {
//!     let status = match req.uri().host() {
//!         Some("down.example") => StatusCode::SERVICE_UNAVAILABLE,
//!         _ => StatusCode::OK,
//!     };
//!     Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
//! }));
//! let get = |uri: &str| Request::get(uri).body(()).unwrap();
//!
//! for _ in 0..2 {
//!     svc.clone().oneshot(get("http://down.example/")).await.unwrap();
//! }
//! let down = Some(Authority::from_static("down.example"));
//! assert_eq!(handle.get(&down).unwrap().state(), State::Open);
//!
//! let err = svc.clone().oneshot(get("http://down.example/")).await.unwrap_err();
//! let CircuitBreakerError::Open(open) = err else { panic!() };
//! assert_eq!(open.key(), &down); // the rejection names the key
//! // Another host is unaffected.
//! let res = svc.clone().oneshot(get("http://up.example/")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```
//!
//! # The handle
//!
//! [`CircuitBreakerHandle`] reads and steers the breakers: [`state`](BreakerHandle::state),
//! [`stats`](BreakerHandle::stats), [`force_open`](BreakerHandle::force_open),
//! [`force_closed`](BreakerHandle::force_closed), [`disable`](BreakerHandle::disable),
//! [`reset`](BreakerHandle::reset), [`open_for`](BreakerHandle::open_for), and
//! [`subscribe`](CircuitBreakerHandle::subscribe) to [`Event`]s. A hook set with
//! [`on_event`](CircuitBreakerBuilder::on_event) sees the same events in order:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, EventKind, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let layer = CircuitBreakerLayer::builder()
//!     .on_event(move |e: &tower_bulwark::circuit_breaker::Event| {
//!         if let EventKind::Transition { from, to, .. } = e.kind {
//!             log.lock().unwrap().push((from, to));
//!         }
//!     })
//!     .build()
//!     .unwrap();
//! let handle = layer.handle();
//! let mut events = handle.subscribe();
//!
//! handle.force_open();
//! handle.force_open(); // same state: no event
//! handle.reset();
//! assert_eq!(
//!     *seen.lock().unwrap(),
//!     [(State::Closed, State::ForcedOpen), (State::ForcedOpen, State::Closed)],
//! );
//! assert!(matches!(events.recv().await.unwrap().kind, EventKind::Transition { to: State::ForcedOpen, .. }));
//! let stats = handle.stats();
//! assert_eq!((stats.state, stats.failure_rate), (State::Closed, None));
//! # }
//! ```
//!
//! # Behaviour in detail
//!
//! - **Rates.** Failure rate = failures / recorded calls in the window; slow-call rate = slow
//!   calls / recorded calls (a slow failure counts in both). Neither counts below
//!   `minimum_calls`. The breaker opens when either *reaches* its threshold (`>=`), checked
//!   after each recorded call; ignored calls are not recorded.
//! - **Windows.** [`Window::Count`] (the last N calls) or [`Window::Time`] (buckets; the
//!   oldest bucket is dropped whole). Entering `Closed` starts a fresh window, so the failures
//!   that opened the breaker cannot reopen it.
//! - **Half-open.** `half_open_permits` probes pass, the rest are rejected; once all have
//!   reported, the same thresholds over the probes alone decide (no `minimum_calls`). A permit
//!   is a guard: a probe that is ignored, or whose future is dropped, gives it back, and
//!   `max_half_open_wait` ends a half-open state whose probes hang.
//! - **Open duration.** `open_duration`, times `backoff_multiplier` for each reopen without a
//!   close in between, spread by `jitter`, capped by `max_open_duration`, and never shorter
//!   than a failure's `Retry-After` (429/503 with the [`HttpClassifier`](crate::classify)).
//! - **Late results.** A call admitted before a transition and finishing after it is counted
//!   in the lifetime counters only: it never re-opens, extends or closes anything.
//! - **No timers.** Nothing runs in the background; transitions happen on the next call
//!   (so [`state`](BreakerHandle::state) reads `Open` until then). Idle breakers cost nothing.
//! - **Cost.** Closed, the call path takes no lock: one atomic load to admit, and recording a
//!   success in a healthy count window only reads shared memory. The clock is read only for
//!   slow-call detection and time windows (and per-key idle tracking). Per-key breakers add a
//!   read-locked hash lookup. Rejections take no lock either.
//! - **Cancellation.** A call whose future is dropped is counted as cancelled, never as a
//!   failure. `poll_ready` is the inner service's, so place concurrency limits and load
//!   shedding outside the breaker (their rejections are not the backend's failures) and a
//!   `tower::timeout` inside it (its timeouts are).
//! - **Node-local.** State is per process, on purpose: this node's view of the backend is the
//!   right signal, and sharing it would cost a network round trip per call.
//!
//! # Metrics
//!
//! With the `metrics` feature, `CircuitBreakerHandle::register` (or `CircuitBreakerMetrics`
//! for several layers) exports every breaker's state, transitions, calls, rejections and
//! rates to a prometheus-client registry, read at scrape time.
#![cfg_attr(
    feature = "metrics",
    doc = "See [`CircuitBreakerMetrics`] for the series and their labels."
)]

mod config;
mod error;
mod event;
mod future;
mod handle;
mod http503;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod service;
mod shared;
mod state;
mod window;

#[cfg(test)]
mod tests;

pub use self::{
    config::{
        ConfigError, MAX_BUCKETS, MAX_COUNT_WINDOW, MAX_EVENT_CAPACITY, MAX_HALF_OPEN_PERMITS,
        Window,
    },
    error::{CircuitBreakerError, CircuitOpen, IllegalTransition},
    event::{Event, EventKind, OnEvent, Reason, State},
    future::{Http503Future, ResponseFuture},
    handle::{BreakerHandle, CircuitBreakerHandle, Stats},
    http503::{Http503, Http503Layer},
    layer::{CircuitBreakerBuilder, CircuitBreakerLayer, KeyFn, KeyMode, PerKey},
    service::CircuitBreaker,
};

#[cfg(feature = "metrics")]
pub use self::metrics::{CircuitBreakerMetrics, KeyLabel};
