//! Retries: send a failed read again, after a jittered backoff, within a budget.
//!
//! [`RetryLayer`] wraps an HTTP client (hyper-util's, or any
//! `tower::Service<http::Request<B>>`). A request that may be repeated safely (by default
//! `GET`, `HEAD`, `OPTIONS`, `TRACE`, and any request carrying an `Idempotency-Key`) is sent
//! again when an attempt fails (a `5xx`, a `429`, or an error such as a reset connection or a
//! timeout, as the [classifier](crate::classify) says), up to `max_attempts` in all, waiting a
//! jittered, growing backoff in between. A [`RetryBudget`] shared by every clone caps retries
//! to a share of recent requests, so that an outage does not triple the load on a backend
//! that is already failing.
//!
//! # Example
//!
//! ```
//! use std::{
//!     convert::Infallible,
//!     sync::{Arc, atomic::{AtomicUsize, Ordering::SeqCst}},
//!     time::Duration,
//! };
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt as _, service_fn};
//! use tower_bulwark::retry::RetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A backend whose first two answers are 503, and whose `/down` is always 503.
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = calls.clone();
//! let backend = service_fn(move |req: Request<String>| {
//!     let n = seen.fetch_add(1, SeqCst);
//!     let status = if n < 2 || req.uri().path() == "/down" {
//!         StatusCode::SERVICE_UNAVAILABLE
//!     } else {
//!         StatusCode::OK
//!     };
//!     async move { Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap()) }
//! });
//!
//! let retry = RetryLayer::builder()
//!     .name("tasks-api")
//!     .max_attempts(3)
//!     .backoff(Duration::from_millis(50), Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let handle = retry.handle();
//! let client = ServiceBuilder::new().layer(retry).service(backend);
//!
//! // A read: retried until it succeeds.
//! let get = Request::get("http://api.example/tasks").body(String::new()).unwrap();
//! let res = client.clone().oneshot(get).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(calls.swap(0, SeqCst), 3);
//!
//! // A create without an `Idempotency-Key`: sent once, since a retry might create twice.
//! let post = Request::post("http://api.example/down").body(String::from("{}")).unwrap();
//! let res = client.clone().oneshot(post).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(calls.swap(0, SeqCst), 1);
//!
//! // With one, the server applies it once however often it arrives: retried, up to 3 attempts.
//! let post = Request::post("http://api.example/down")
//!     .header("idempotency-key", "3f1c9a")
//!     .body(String::from("{}"))
//!     .unwrap();
//! let res = client.clone().oneshot(post).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE); // the last attempt's answer
//! assert_eq!(calls.swap(0, SeqCst), 3);
//! assert_eq!(handle.stats().retries(), 4);
//! assert_eq!(handle.stats().attempts_exhausted, 1);
//! # }
//! ```
//!
//! # Where it goes
//!
//! In an outbound stack, outermost first:
//!
//! ```text
//! request ID → trace → metrics → retry → fallback cache → circuit breaker → timeout → client
//! ```
//!
//! - Metrics and the trace span above it see one request, however many attempts it took
//!   (the layer's own [counters](#metrics) and debug logs tell the attempts).
//! - The circuit breaker below it sees every attempt: failed attempts count towards opening
//!   it, and once it is open its rejections end the retries at once (see below).
//! - The timeout below it bounds each attempt, not the whole request; put another one above
//!   the retry layer to bound that.
//! - A fallback cache below it answers a failed read from its store when it has an answer:
//!   that is a success, and is not retried.
//!
//! With a hyper-util client, a breaker and a timeout (their errors boxed, as the timeout
//! layer needs):
//!
//! ```
//! # #[cfg(feature = "circuit-breaker")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{BoxError, ServiceBuilder, ServiceExt as _, timeout::TimeoutLayer};
//! use tower_bulwark::{
//!     circuit_breaker::{CircuitBreakerError, CircuitBreakerLayer},
//!     retry::RetryLayer,
//! };
//!
//! # // A loopback backend whose first answer is 502.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! # let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
//! # let backend = axum::Router::new().route("/", axum::routing::get(move || async move {
//! #     if first.swap(false, std::sync::atomic::Ordering::SeqCst) { StatusCode::BAD_GATEWAY } else { StatusCode::OK }
//! # }));
//! # tokio::spawn(async move { axum::serve(listener, backend).await });
//! // `Full<Bytes>` bodies can be sent again: the layer needs `B: Clone`.
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new())
//!     .map_err(CircuitBreakerError::<BoxError>::into_box_error)
//!     .layer(CircuitBreakerLayer::new())
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
//!
//! let req = Request::get(format!("http://{addr}/")).body(Full::new(Bytes::new())).unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! # #[cfg(not(feature = "circuit-breaker"))]
//! # fn main() {}
//! ```
//!
//! # Behaviour in detail
//!
//! - **What is retried.** A request the [`RetryableRequest`] predicate accepts
//!   ([`SafeOrIdempotent`] by default), whose attempt the classifier calls
//!   [`Failure`](crate::classify::Outcome::Failure). A success, or a result it calls
//!   [`Ignore`](crate::classify::Outcome::Ignore), is the answer at once. To keep some failure
//!   from being retried, classify it `Ignore` in the retry layer's own classifier.
//! - **Replay.** Each retry sends a clone of the original request: method, URI, headers
//!   (the same `Idempotency-Key` every time) and extensions (request IDs, route or operation
//!   markers), with a clone of the body, which must be `Clone`: a complete buffer such as
//!   `http_body_util::Full<Bytes>`, not a stream.
//! - **Backoff.** Exponential with full jitter: before retry *n*, a wait drawn uniformly
//!   from `[0, min(initial × 2^(n−1), max)]`, so that clients that failed together do not
//!   come back together.
//! - **`Retry-After`.** When the classifier reads one from a failure (the
//!   [`HttpClassifier`](crate::classify::HttpClassifier) does on a `429` or `503`), the layer waits exactly that long instead of the backoff, if
//!   it is no longer than the maximum backoff; a longer one is answered at once: the backend
//!   asked for more patience than the caller has.
//! - **Budget.** Every request the layer may retry deposits into the [`RetryBudget`]; every
//!   retry withdraws. An empty budget answers the failure at once. The defaults allow 20 % of
//!   recent requests as retries, plus 10 per second whatever the traffic.
//! - **Circuit breakers.** An attempt rejected by a circuit breaker (a
//!   `circuit_breaker::CircuitOpen`, as `CircuitBreakerError::Open` or in a `BoxError`) is
//!   never retried: the breaker said no, and asking again before it closes is pointless. It
//!   is recognised whatever the breaker's key type, without configuration. A breaker wrapped
//!   with `http_503` answers `503` with `Retry-After` instead, which the rule above handles.
//! - **The conservative answer.** For a request that is not safe (a write, retried because it
//!   carries an `Idempotency-Key` or because a custom predicate allowed it), the layer keeps
//!   the latest failure that [may have reached the backend](crate::classify::Classify::may_have_reached_backend)
//!   (a `5xx`, a reset connection, a timeout). If a later attempt then fails *without*
//!   reaching it (a breaker's rejection, or what the classifier says never left the process,
//!   such as a refused connection), that earlier failure is the answer, not the later one: a
//!   caller told "refused, nothing was sent" would conclude that nothing happened, when the
//!   earlier attempt may have written. The kept failure's response is held unread until then,
//!   and its connection is not reused. For safe requests nothing is kept: the answer is the
//!   last attempt's.
//! - **Bodies.** Otherwise, a failed response is dropped before the wait, body unread, so
//!   that its connection and buffers are released at once.
//! - **Cancellation.** Dropping the [`ResponseFuture`] stops everything: the attempt in
//!   flight, or the wait (no retry is sent after it). Waits use Tokio's timer, so the layer
//!   must run on a Tokio runtime with time enabled.
//! - **Cost.** A request that is not retryable passes through untouched. A retryable one
//!   that succeeds costs a clone of the request and of the inner service, and one deposit (a
//!   clock read and one atomic compare-and-swap).
//!
//! # Metrics
//!
//! [`RetryHandle::stats`] reads the counters. With the `metrics` feature, `RetryMetrics`
//! exports them to a prometheus-client registry, read at scrape time. Each retry and each
//! give-up is also a `DEBUG` event with the layer's name, the method, host and path (never the
//! query, the headers or the error's text), the attempt, the status or `"error"`, and the
//! wait.
#![cfg_attr(feature = "metrics", doc = "See [`RetryMetrics`] for the series.")]

mod backoff;
mod budget;
mod config;
mod future;
mod handle;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod rejection;
mod retryable;
mod service;

#[cfg(test)]
mod tests;

pub use self::{
    budget::RetryBudget,
    config::{ConfigError, MAX_ATTEMPTS, MAX_BACKOFF},
    future::ResponseFuture,
    handle::{RetryHandle, RetryStats},
    layer::{RetryBuilder, RetryLayer},
    retryable::{IDEMPOTENCY_KEY, RetryableRequest, SafeOrIdempotent},
    service::Retry,
};

#[cfg(feature = "metrics")]
pub use self::metrics::RetryMetrics;
