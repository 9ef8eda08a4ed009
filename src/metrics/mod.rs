//! Prometheus metrics for HTTP servers and clients, with bounded label sets and exemplars,
//! recorded into the caller's own prometheus-client [`Registry`].
//!
//! - [`ServerMetricsLayer`] (servers) counts requests by method, **route template** and
//!   status, times them to the end of the response body, and tracks requests in flight and
//!   errors. Open connections are counted by
//!   [`ServerMetrics::track_connections`] / [`ServerMetrics::connection_guard`].
//! - [`ClientMetricsLayer`] (clients) counts and times calls to a backend by **operation**,
//!   and counts retries.
//! - Latency observations carry the request's `trace_id` as an OpenMetrics exemplar when a
//!   [`TraceIdSource`] finds a sampled trace, so a slow bucket links to a trace.
//! - [`ProcessCollector`] reports process and Tokio runtime metrics and measures scheduling
//!   lag; [`HealthMetrics`] is the `health_check_status` gauge.
//!
//! Nothing is global: each handle is registered into a [`Registry`] you own (under a prefix
//! if you like) and cloned into the layers. Both layers work on any
//! `tower::Service<http::Request<B>, Response = http::Response<B2>>`, keep the inner
//! service's error type and never fail a request.
//!
//! # Example: a server
//!
//! An axum `Router`, its routes labelled by their `MatchedPath`, the route template the
//! router leaves in the request's extensions (read through [`FromExtension`], so this crate
//! does not depend on axum; a closure works too, see [`ClassifyRequest`]):
//!
//! ```
//! use axum::{Router, body::Body, extract::MatchedPath, routing::get};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt as _;
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//! use tower::ServiceExt as _;
//! use tower_bulwark::metrics::{FromExtension, Metrics};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = Registry::default();
//! let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
//!
//! let app = Router::new()
//!     .route("/tasks/{id}", get(|| async { "a task" }))
//!     // `Router::layer` runs the layer after routing, when `MatchedPath` is set.
//!     .layer(metrics.server().layer().classify_route(FromExtension::new(MatchedPath::as_str)));
//!
//! for (path, status) in [("/tasks/42", StatusCode::OK), ("/.env", StatusCode::NOT_FOUND)] {
//!     let req = Request::get(path).body(Body::empty()).unwrap();
//!     let res = app.clone().oneshot(req).await.unwrap();
//!     assert_eq!(res.status(), status);
//!     // Recorded when the body ends, as when a server has sent it.
//!     res.into_body().collect().await.unwrap();
//! }
//!
//! let mut text = String::new();
//! encode(&mut text, &registry).unwrap();
//! assert!(text.contains(
//!     r#"taskman_http_requests_total{method="GET",route="/tasks/{id}",status="200"} 1"#
//! ));
//! // Never the raw path: a scanner's probes all land in one series.
//! assert!(text.contains(
//!     r#"taskman_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
//! ));
//! assert!(text.contains("taskman_http_requests_in_flight 0"));
//! # }
//! ```
//!
//! Serve the [`Registry`] on `/metrics` with [`encode`] in the [`ExpositionFormat`] the
//! scraper's `Accept` header asks for: OpenMetrics for Prometheus (the only format with
//! exemplars), the classic Prometheus text format for everything else (`curl`,
//! `promtool check metrics`). [`encode`] shows a handler.
//!
//! To count connections, hand `axum::serve` the router's make-service through
//! [`ServerMetrics::track_connections`]:
//! `axum::serve(listener, metrics.server().track_connections(app.into_make_service()))`.
//!
//! # Example: a client
//!
//! A [hyper-util] client (any `Service<Request<B>>` will do), its calls labelled by
//! operation:
//!
//! ```
//! use http::{Method, Request};
//! use http_body_util::{BodyExt as _, Empty};
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_bulwark::metrics::{ClientMetrics, ErrorClass, LabelValue};
//!
//! /// The backend's API, as a fixed set of operation names.
//! fn operation(req: &Request<Empty<Bytes>>) -> Option<LabelValue> {
//!     let path = req.uri().path();
//!     match (req.method(), path.strip_prefix("/tasks")) {
//!         (&Method::GET, Some("")) => Some("list_tasks".into()),
//!         (&Method::GET, Some(id)) if id.len() > 1 => Some("get_task".into()),
//!         (&Method::POST, Some("")) => Some("create_task".into()),
//!         _ => None, // counted as operation="other"
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! # let backend = axum::Router::new().route("/tasks", axum::routing::get(|| async { "[]" }));
//! # tokio::spawn(async move { axum::serve(listener, backend).await });
//! let mut registry = Registry::default();
//! let metrics = ClientMetrics::register(&mut registry);
//! let client = ServiceBuilder::new()
//!     .layer(
//!         metrics
//!             .layer()
//!             .classify_operation(operation)
//!             // hyper-util's errors wrap the I/O error of a refused connection.
//!             .classify_error(|e: &hyper_util::client::legacy::Error| ErrorClass::from_error(e)),
//!     )
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//!
//! let req = Request::get(format!("http://{addr}/tasks")).body(Empty::new()).unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! // Recorded when the body has been read to its end.
//! let _tasks = res.into_body().collect().await.unwrap();
//!
//! let mut text = String::new();
//! encode(&mut text, &registry).unwrap();
//! assert!(text.contains(r#"backend_api_calls_total{operation="list_tasks",status="200"} 1"#));
//! assert!(text.contains(r#"backend_api_retries_total{operation="list_tasks"} 0"#));
//! # }
//! ```
//!
//! [hyper-util]: https://docs.rs/hyper-util
//!
//! # Metrics
//!
//! Names as registered; a prefix (`taskman`) is put in front of each with `_`.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `http_requests_total` | counter | `method`, `route`, `status` | requests, counted once when they finish |
//! | `http_request_duration_seconds` | histogram, `trace_id` exemplars | `method`, `route` | from the call to the end of the response body |
//! | `http_requests_in_flight` | gauge | | requests whose response has not finished |
//! | `http_active_connections` | gauge | | open connections, where tracked |
//! | `http_errors_total` | counter | `method`, `route`, `kind` | failed requests |
//! | `backend_api_calls_total` | counter | `operation`, `status` | outbound calls, counted once when they finish |
//! | `backend_api_duration_seconds` | histogram, `trace_id` exemplars | `operation` | from the call to the end of the response body |
//! | `backend_api_retries_total` | counter | `operation` | calls that were retries |
//! | `health_check_status` | gauge | `check` | 1 if the check passes, 0 if not |
//!
//! [`ProcessCollector`] documents its own.
//!
//! # Labels, and why each is bounded
//!
//! - `method`: `GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `CONNECT`, `OPTIONS`, `TRACE`,
//!   `PATCH`, or `other` for any extension method.
//! - `route`: what the route [`ClassifyRequest`] returns, a route template, never the raw
//!   path. `unmatched` when it returns `None` (404s, scanners); `other` once
//!   [`max_routes`](ServerMetricsBuilder::max_routes) distinct routes have been seen, a safety
//!   net against a classifier that leaks raw paths. The default classifier, `()`, knows no
//!   routes: set one.
//! - `operation`: what the operation [`ClassifyRequest`] returns; `other` for `None` and past
//!   [`max_operations`](ClientMetricsBuilder::max_operations).
//! - `status`: the numeric status code of a response whose body was read to its end (100 to
//!   999: `http::StatusCode` admits no other), or the outcome of a request without one:
//!   `cancelled` (the response future or the body was dropped first), `timeout`,
//!   `connect_error` or `error` (the inner service failed, as [`ClassifyError`] says, or the
//!   body failed mid-stream: `error`).
//! - `kind` (`http_errors_total`): `server_error` (a 5xx response other than 504), `timeout`
//!   (a 408 or 504 response, or a timeout error), `connect_error`, `error` (another error from
//!   the inner service) or `body_error` (the body failed after the head was sent).
//!   Cancellations are not errors: see `status="cancelled"`.
//! - `check`: whatever names you pass to [`HealthMetrics::set`], a fixed set.
//!
//! # When a request is recorded
//!
//! The layer starts the clock and (server) raises the in-flight gauge when its service is
//! called. The request is recorded exactly once:
//!
//! 1. when the response body ends (its last frame, or at once for an empty body), under the
//!    response's status code, with its duration observed: for a streamed body that is the
//!    time to the last byte, not to the head;
//! 2. when the inner service returns an error, or the body yields one, under the error's
//!    class, with its duration observed;
//! 3. when the response future or the body is dropped before either, as `cancelled`, and
//!    its duration **not** observed: the histogram measures serving, not how long a client
//!    waited before giving up.
//!
//! In every case the in-flight gauge comes back down. On the client, reading the body is
//! part of the call: a response whose body is dropped unread counts as `cancelled`.
//!
//! # Where to put the layers
//!
//! - Server, axum: add it with `Router::layer` (after routing, so `MatchedPath` is set);
//!   `route_layer` would leave 404s uncounted. Put a timeout layer *inside* it (added
//!   before it) so a timed-out request is recorded as such, not as cancelled.
//! - Server, other: wrap the service that routes, or classify from whatever your router
//!   leaves in the request's extensions.
//! - Client: inside a retry layer (so each attempt is a call, and the policy can mark resends
//!   with [`RetryAttempt`]) and outside a timeout layer (so a timeout is an error it sees).
//! - Tracing: inside the layer that enters the request's span, so a [`TraceIdSource`] reading
//!   the current span sees it; [`TraceParent`] reads the `traceparent` header instead.
//!
//! # Registering other metrics in the same registry
//!
//! Every handle here is a plain struct made by `register(&mut Registry)`. Other layers (a
//! circuit breaker, a fallback cache) and the application do the same, into the same
//! registry or the same prefixed sub-registry, so one scrape returns everything:
//!
//! ```
//! use prometheus_client::{
//!     encoding::{EncodeLabelSet, text::encode},
//!     metrics::{counter::Counter, family::Family},
//!     registry::Registry,
//! };
//! use tower_bulwark::metrics::{LabelValue, Metrics, ProcessCollector};
//!
//! /// A circuit breaker's metrics: typed labels, registered by the breaker itself.
//! #[derive(Clone, Debug)]
//! struct BreakerMetrics {
//!     transitions: Family<TransitionLabels, Counter>,
//! }
//!
//! #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
//! struct TransitionLabels {
//!     breaker: LabelValue,
//!     to: LabelValue,
//! }
//!
//! impl BreakerMetrics {
//!     fn register(registry: &mut Registry) -> Self {
//!         let transitions = Family::default();
//!         registry.register(
//!             "circuit_breaker_transitions",
//!             "Circuit breaker state transitions",
//!             transitions.clone(),
//!         );
//!         Self { transitions }
//!     }
//! }
//!
//! let mut registry = Registry::default();
//! // The process metrics keep their conventional, unprefixed names…
//! ProcessCollector::new().register(&mut registry);
//! // …and the service's own go under its prefix.
//! let taskman = registry.sub_registry_with_prefix("taskman");
//! let metrics = Metrics::builder().register(taskman);
//! let breaker = BreakerMetrics::register(taskman);
//!
//! breaker
//!     .transitions
//!     .get_or_create(&TransitionLabels { breaker: "backend".into(), to: "open".into() })
//!     .inc();
//! let mut text = String::new();
//! encode(&mut text, &registry).unwrap();
//! assert!(text.contains(
//!     r#"taskman_circuit_breaker_transitions_total{breaker="backend",to="open"} 1"#
//! ));
//! # let _ = metrics;
//! ```
//!
//! # Cost
//!
//! A request costs one lookup of its `(method, route)` or `operation` in a small table (a
//! read lock and a fast hash of the label), two clock reads, one histogram observation and
//! one counter increment; the `benches/metrics.rs` bench measures it against a bare service.
//!
//! [`Registry`]: prometheus_client::registry::Registry

mod body;
mod connections;
mod exposition;
mod future;
mod handles;
mod hooks;
mod labels;
mod layer;
mod process;
mod series;
mod service;
#[cfg(any(feature = "fallback-cache", feature = "retry"))]
pub(crate) mod tracked;

pub use self::{
    body::ResponseBody,
    connections::{TrackConnectionFuture, TrackConnections, TrackedConnection},
    exposition::{ExpositionFormat, encode},
    future::ResponseFuture,
    handles::{
        ClientMetrics, ClientMetricsBuilder, ConnectionGuard, DEFAULT_MAX_LABELS, HealthMetrics,
        Metrics, MetricsBuilder, RetryAttempt, ServerMetrics, ServerMetricsBuilder,
    },
    hooks::{ClassifyError, ClassifyRequest, FromExtension, TraceIdSource, TraceParent},
    labels::{DEFAULT_LATENCY_BUCKETS, ErrorClass, LabelValue, TraceId},
    layer::{ClientMetricsLayer, ServerMetricsLayer},
    process::{CollectionTask, DEFAULT_LAG_BUCKETS, ProcessCollector},
    service::{ClientMetricsService, ServerMetricsService},
};

#[cfg(test)]
mod tests;
