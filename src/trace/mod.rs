//! Spans for HTTP servers and clients after the OpenTelemetry semantic conventions, W3C Trace
//! Context in and out, and log lines that always name their trace and request.
//!
//! - [`ServerTraceLayer`] (servers) makes one span per request, named `{method} {route}`,
//!   as a child of the caller's span when the request carries a valid `traceparent`; the span
//!   lasts until the response body ends.
//! - [`ClientTraceLayer`] (clients) makes one span per outgoing request and writes its
//!   context into `traceparent` / `tracestate` / `baggage`, so the callee's spans join the
//!   trace.
//! - [`TelemetryBuilder`] sets up the rest: a fmt layer whose every line carries `trace_id`,
//!   `span_id` and `request_id`, and OpenTelemetry with a parent-based ratio sampler and
//!   (feature `otlp`) a bounded OTLP/HTTP export that a slow or dead collector cannot turn
//!   into slow requests.
//!
//! The spans are ordinary `tracing` spans; [`TelemetryBuilder`]'s span recorder turns them
//! into OpenTelemetry spans (asking the sampler first, recording fields only on sampled
//! spans, nothing on enter or exit), so fmt logs and exported traces share one span tree, and
//! spans your handlers make (`#[tracing::instrument]`, `info_span!`) nest under the request's.
//! The layers also work under a subscriber you assemble with tracing-opentelemetry's layer. Both
//! layers work on any `tower::Service<http::Request<B>, Response = http::Response<B2>>`,
//! keep the inner service's error type and never fail a request.
//!
//! # Example
//!
//! An axum server whose routes are named by their `MatchedPath` (through a closure, so this
//! crate does not depend on axum):
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use axum::{Router, body::Body, extract::MatchedPath, routing::get};
//! use http::Request;
//! use http_body_util::BodyExt as _;
//! use tower::ServiceExt as _;
//! use tower_bulwark::trace::{Route, ServerTraceLayer, TelemetryBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # #[derive(Clone, Default)]
//! # struct Logs(Arc<Mutex<Vec<u8>>>);
//! # impl std::io::Write for Logs {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
//! #         self.0.lock().unwrap().extend_from_slice(b);
//! #         Ok(b.len())
//! #     }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! let logs = Logs::default();
//! let writer = logs.clone();
//! let (dispatch, guard) = TelemetryBuilder::new("taskman")
//!     .writer(move || writer.clone()) // stderr by default
//!     .build()?;
//! let _default = tracing::dispatcher::set_default(&dispatch); // `.init()` in a binary
//!
//! let app = Router::new()
//!     .route("/tasks/{id}", get(|| async {
//!         tracing::info!("loading the task");
//!         "a task"
//!     }))
//!     // `Router::layer` runs the layer after routing, when `MatchedPath` is set.
//!     .layer(ServerTraceLayer::new().classify_route(|req: &Request<Body>| {
//!         req.extensions().get::<MatchedPath>().map(|p| Route::new(p.as_str()))
//!     }));
//!
//! let req = Request::get("/tasks/42")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! res.into_body().collect().await?; // the span ends with the body
//!
//! // The handler's log line names the caller's trace: the request continued it.
//! let logs = String::from_utf8(logs.0.lock().unwrap().clone())?;
//! assert!(logs.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#), "{logs}");
//! assert!(logs.contains(r#""message":"loading the task""#));
//! guard.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! A [hyper-util] client that sends the context on:
//!
//! ```
//! use http::Request;
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_bulwark::trace::{ClientTraceLayer, Route};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! # let backend = axum::Router::new().route("/tasks", axum::routing::get(|| async { "[]" }));
//! # tokio::spawn(async move { axum::serve(listener, backend).await });
//! let client = ServiceBuilder::new()
//!     .layer(ClientTraceLayer::new().classify_route(|_: &Request<_>| Some(Route::from_static("/tasks"))))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//!
//! let req = Request::get(format!("http://{addr}/tasks?token=s3cret")).body(Empty::new()).unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! // Span `GET /tasks`, `url.full` = `http://127.0.0.1:…/tasks?token=REDACTED`; the request
//! // carried `traceparent` if a subscriber with OpenTelemetry (or `CorrelationLayer`
//! // making IDs) was installed.
//! assert!(res.status().is_success());
//! # }
//! ```
//!
//! # The spans
//!
//! | field | server | client |
//! |---|---|---|
//! | name (`otel.name`) | `{method} {http.route}` or `{method}` | `{method} {url.template}` or `{method}` |
//! | `otel.kind` | `server` | `client` |
//! | `http.request.method` | known methods, else `_OTHER` (+ `http.request.method_original`, name `HTTP`) | same |
//! | `http.route` / `url.template` | from [`ClassifyRoute`] | from [`ClassifyRoute`] |
//! | `url.path` / `url.full` | the path, never the query | the URL, user info and query values `REDACTED` |
//! | `server.address`, `server.port` | from the URI authority or `Host` | from the URI |
//! | `network.protocol.version` | `1.1`, `2`, … | same |
//! | `http.response.status_code` | on response | on response |
//! | `error.type` | the status code for 5xx; the error's type name for a service or body error | the status code for 4xx and 5xx; the error's type name |
//! | `otel.status_code` | `error` when `error.type` is set | same |
//! | `request_id` | when the request has one (see below) | same |
//!
//! Headers are recorded only from an allow-list ([`ServerTraceLayer::record_request_headers`],
//! default none), never `Authorization`, `Proxy-Authorization`, cookies, `Idempotency-Key`
//! or `X-Api-Key`.
//!
//! Spans are at `INFO` by default (tower-http's are at `DEBUG`), under the target
//! `tower_bulwark::trace`: the span carries the trace context and the IDs of every log line
//! in the request, so a filter that drops it silently cuts both.
//!
//! Only what will be seen is recorded. A span is made with its kind and `request_id`,
//! the sampler decides at once, and the name and attributes above are added only to a
//! sampled span (straight onto the OpenTelemetry span) or, without OpenTelemetry, to the
//! `tracing` fields (which text logs show). An unsampled request so skips the string
//! formatting and allocations spent on attributes that would then be dropped. A custom sampler therefore sees the kind and the names `http.server.request` /
//! `http.client.request`, not the attributes; a ratio or parent-based sampler needs neither.
//!
//! # Trace context
//!
//! Inbound, the server layer reads `traceparent` with [`parse_traceparent`], which accepts
//! only what the W3C specification allows (exactly one header, lower-case hex, non-zero
//! IDs, version `ff` refused); `tracestate` and `baggage` go through opentelemetry's
//! size-capped parsers. Anything malformed is ignored and the request starts a new trace.
//! Outbound, the client layer writes the client span's context, replacing any the request
//! carried.
//!
//! # Logs
//!
//! Every line written inside a request carries `trace_id`, `span_id` (of the innermost span)
//! and `request_id` at the top level, **whether or not the trace is sampled**: an unsampled
//! OpenTelemetry span still has a valid context, and with OpenTelemetry off
//! [`CorrelationLayer::generate_ids`] makes the IDs. [`JsonFormat`] and [`TextFormat`] write
//! them; [`CorrelationLayer`] finds the request ID in the nearest span with a `request_id`
//! field (the layers declare one) or, with the `request-id` feature, in
//! `request_id::RequestId::current()`.
//!
//! With the `request-id` feature, the span's `request_id` is the
//! `request_id::RequestId` in the request's extensions (put
//! `RequestIdLayer` outside this layer), or the one `RequestIdLayer` records on the current
//! span when it runs inside it; on a client, also the request being served.
//!
//! # Export
//!
//! With the `otlp` feature, sampled spans go to a bounded queue drained by a thread of its
//! own, in batches, each export bounded by a timeout. A request only ever tries to enqueue:
//! when the collector is down or slow the queue fills and spans are dropped and counted
//! ([`TelemetryGuard::dropped_spans`], a Prometheus counter with the `metrics` feature), and
//! a `warn` line reports the drops at most once a minute.
//!
//! [hyper-util]: https://docs.rs/hyper-util

mod body;
mod classify;
mod correlation;
mod format;
mod future;
mod layer;
mod propagation;
mod service;
mod span;
mod telemetry;

pub use self::{
    body::TraceBody,
    classify::{ClassifyRoute, Route},
    correlation::{CorrelationLayer, SpanIds},
    format::{JsonFormat, SkipFields, TextFormat},
    future::ResponseFuture,
    layer::{ClientTraceLayer, ServerTraceLayer},
    propagation::{TraceParent, parse_traceparent},
    service::{ClientTraceService, ServerTraceService},
    telemetry::{
        ExportStats, LogFormat, TelemetryBuilder, TelemetryError, TelemetryGuard,
        parse_resource_attributes,
    },
};

/// The OpenTelemetry crates this module is built on, so your code uses the same versions.
pub mod otel {
    pub use opentelemetry;
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub use opentelemetry_otlp;
    pub use opentelemetry_sdk;
    pub use tracing_opentelemetry;
}

#[cfg(test)]
mod tests;
