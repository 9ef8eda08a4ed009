//! One request ID from the edge through handlers, logs, spawned tasks and outbound calls.
//!
//! - [`RequestIdLayer`] (servers) reads the ID from the `x-request-id` header, keeps it only if
//!   it is safe (see [Validation](#validation)) and otherwise makes a fresh UUID; it puts the
//!   [`RequestId`] in the request's extensions and in a task-local scope that lasts as long as
//!   the request's future **and** its response body, sets it on the response, and records it as
//!   `request_id` on the current span.
//! - [`PropagateRequestIdLayer`] (clients) sets the header on outgoing requests, taken from the
//!   request's extensions or else from that ambient scope, unless the request already has one.
//! - [`RequestId::current`] reads the ID anywhere inside a request; [`in_current_scope`]
//!   carries it into spawned tasks.
//!
//! Both are plain tower layers over `http::Request<B>` / `http::Response<B>` for any body
//! type. Neither ever fails a request, and both keep the inner service's error type, so they
//! fit services whose `Error` is [`Infallible`](std::convert::Infallible) (an axum `Router`,
//! rmcp's `StreamableHttpService`) with no `HandleErrorLayer`.
//!
//! # Example
//!
//! An axum server:
//!
//! ```
//! use axum::{Extension, Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt as _;
//! use tower_bulwark::request_id::{RequestId, RequestIdLayer};
//!
//! async fn handler(Extension(id): Extension<RequestId>) -> String {
//!     // The same ID, from anywhere in the request, without passing it around:
//!     assert_eq!(RequestId::current().as_ref(), Some(&id));
//!     tracing::info!("serving"); // logged inside a span carrying `request_id`
//!     format!("hello, {id}")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/", get(handler))
//!     .layer(RequestIdLayer::new().with_span());
//!
//! // A safe inbound ID is kept and echoed on the response…
//! let req = Request::get("/").header("x-request-id", "abc-123").body(Body::empty()).unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "abc-123");
//!
//! // …an unsafe one is replaced by a fresh UUID, and never reflected.
//! let req = Request::get("/").header("x-request-id", "<script>").body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! let id = res.headers()["x-request-id"].to_str().unwrap();
//! assert_eq!(id.len(), 36);
//! # }
//! ```
//!
//! An outbound [hyper-util] client, used inside a handler, forwards the ID it is serving:
//!
//! ```
//! use http::Request;
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_bulwark::request_id::{PropagateRequestIdLayer, RequestId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # // A loopback backend that answers with the ID it received.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! # let backend = axum::Router::new().route("/", axum::routing::get(|h: http::HeaderMap| async move {
//! #     h.get("x-request-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
//! # }));
//! # tokio::spawn(async move { axum::serve(listener, backend).await });
//! let client = ServiceBuilder::new()
//!     .layer(PropagateRequestIdLayer::new())
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//!
//! // `scope` stands in for being inside a request served by `RequestIdLayer`.
//! let id = RequestId::try_from("abc-123").unwrap();
//! let res = id
//!     .scope(async {
//!         let req = Request::get(format!("http://{addr}/")).body(Empty::new()).unwrap();
//!         client.oneshot(req).await.unwrap()
//!     })
//!     .await;
//! # use http_body_util::BodyExt as _;
//! # let seen = res.into_body().collect().await.unwrap().to_bytes();
//! # assert_eq!(seen, "abc-123");
//! # }
//! ```
//!
//! # What the inbound layer does, in order
//!
//! 1. Reads the header (`x-request-id` unless set with [`RequestIdLayer::header_name`]). It
//!    keeps the value only if the request carries the header exactly once and the value is
//!    [valid](#validation). Otherwise it makes a fresh ID with its [`MakeRequestId`] (random
//!    UUID v4 by default; [`MakeRequestUuid::v7`] for time-ordered ones). If the request
//!    carried the header (a rejected or repeated value), every value is replaced with the
//!    fresh ID, so the inner service never sees the rejected input; if it carried none, none
//!    is added: the inner service reads the ID from the extensions or [`RequestId::current`].
//! 2. Inserts the [`RequestId`] into the request's extensions (axum: `Extension<RequestId>`).
//! 3. Records it as `request_id` on [`tracing::Span::current()`]. This fills the field of an
//!    outer span that declared it (e.g. `request_id = tracing::field::Empty` in a trace layer's
//!    span), and does nothing if there is no such field.
//! 4. If configured ([`RequestIdLayer::with_span`] / [`RequestIdLayer::make_span_with`]),
//!    makes the request's own span.
//! 5. Calls the inner service, and polls its future, inside the ID's task-local scope
//!    ([`RequestId::current`]) and that span.
//! 6. Sets the header on the response (replacing any value the inner service set) and wraps the
//!    body in [`RequestIdBody`], which polls the inner body inside the same scope and span.
//!
//! The scope is per poll, not per thread or task: concurrent requests on one task or thread
//! never see each other's ID. A task spawned while serving a request starts with no ID; wrap
//! its future in [`in_current_scope`]. Code that runs in another task on the request's behalf
//! (e.g. a stream producer feeding the response body through a channel) needs the same.
//!
//! # Validation
//!
//! An inbound ID is kept only if it is 1 to 128 characters long and each is an ASCII letter,
//! an ASCII digit or one of `-_.:/+=@`. That admits UUIDs, ULIDs, base64, W3C trace IDs and
//! most vendors' IDs, and refuses anything that could break a log line or a header: spaces,
//! quotes, control characters, CR/LF, non-ASCII. A rejected value is dropped, never logged or
//! echoed. [`RequestId::try_from`] applies the same rule, and its error,
//! [`InvalidRequestId`], says what is allowed.
//!
//! # Logs
//!
//! Every log line written while serving a request carries `request_id` if it is written inside
//! a span that has the field. Either let this layer make one with
//! [`RequestIdLayer::with_span`] (a span `request{request_id=…}`, see [`DefaultMakeSpan`] for
//! how its level meets your filter), or, if you already have a per-request span, declare
//! `request_id = tracing::field::Empty` on it and put this layer inside it, where step 3 fills
//! it. With `tracing_subscriber::fmt().json()`, the field shows in each line's `span` and
//! `spans`.
//!
//! # Layer order
//!
//! On a server, put [`RequestIdLayer`] outside everything that should see the ID, and inside a
//! trace layer whose span declares `request_id`. On a client, [`PropagateRequestIdLayer`] can
//! sit anywhere in the stack; it only adds a header. A server that forwards requests can use
//! both: the outbound request inherits the ID through the scope.
//!
//! # A hyper server
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper_util::{rt::TokioIo, service::TowerToHyperService};
//! use tower::{ServiceBuilder, service_fn};
//! use tower_bulwark::request_id::{RequestId, RequestIdLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|_req: Request<Incoming>| async {
//!         let id = RequestId::current().map(|id| id.to_string()).unwrap_or_default();
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(id))))
//!     }));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap();
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         let service = TowerToHyperService::new(service.clone());
//!         tokio::spawn(
//!             hyper::server::conn::http1::Builder::new()
//!                 .serve_connection(TokioIo::new(stream), service),
//!         );
//!     }
//! });
//! # let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//! #     .build_http::<http_body_util::Empty<Bytes>>();
//! # let res = client.get(format!("http://{addr}/").parse().unwrap()).await.unwrap();
//! # let id = res.headers()["x-request-id"].clone();
//! # use http_body_util::BodyExt as _;
//! # assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), id.as_bytes());
//! # }
//! ```
//!
//! # rmcp's `StreamableHttpService`
//!
//! Its `Error` is `Infallible`, and stays so under the layer:
//!
//! ```
//! use std::convert::Infallible;
//!
//! use rmcp::{
//!     ServerHandler,
//!     transport::streamable_http_server::{
//!         StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
//!     },
//! };
//! use tower::Layer as _;
//! use tower_bulwark::request_id::RequestIdLayer;
//!
//! #[derive(Clone)]
//! struct Mcp;
//! impl ServerHandler for Mcp {}
//!
//! let mcp = RequestIdLayer::new().with_span().layer(StreamableHttpService::new(
//!     || Ok(Mcp),
//!     LocalSessionManager::default().into(),
//!     StreamableHttpServerConfig::default(),
//! ));
//! # fn infallible<S: tower::Service<http::Request<axum::body::Body>, Error = Infallible>>(_: &S) {}
//! # infallible(&mcp);
//! let app: axum::Router = axum::Router::new().nest_service("/mcp", mcp);
//! # let _ = app;
//! ```
//!
//! [hyper-util]: https://docs.rs/hyper-util

mod body;
mod future;
mod id;
mod layer;
mod make;
mod make_span;
mod scope;
mod service;

pub use self::{
    body::RequestIdBody,
    future::ResponseFuture,
    id::{InvalidRequestId, RequestId},
    layer::{PropagateRequestIdLayer, RequestIdLayer},
    make::{MakeRequestId, MakeRequestUuid},
    make_span::{DefaultMakeSpan, MakeSpan},
    scope::{WithRequestId, in_current_scope},
    service::{PropagateRequestId, RequestIdService},
};

#[cfg(test)]
mod tests;
