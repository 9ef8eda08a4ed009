//! Preset stacks: the recommended inbound and outbound layer orders, assembled from one
//! settings value, each layer switchable at run time and tunable through its own builder.
//!
//! - [`ServerStack`], around a server (an axum `Router`, a hyper service, any
//!   `Service<http::Request<B>>`), outermost first:
//!   request ID → trace → metrics → timeout → body limit → load shedding → service.
//! - [`ClientStack`], around a client (hyper-util's, any `Service<http::Request<B>>`):
//!   request ID → trace → metrics → retry → fallback cache → circuit breaker → timeout →
//!   client.
//!
//! Both start from [`new`](ServerStack::new) (every slot off) or from a plain settings value
//! ([`ServerSettings`], [`ClientSettings`]: booleans, durations, limits; `Default` is the
//! recommended stack), and take each layer's own value in its slot for anything the settings
//! do not say (`.metrics(metrics.layer().classify_route(...))`, a breaker per operation).
//! [`into_layer`](ServerStack::into_layer) gives a `tower_layer::Layer` for axum's
//! `Router::layer`, tower's `ServiceBuilder::layer`, or to call `.layer(service)` with.
//!
//! Each slot is there only with its layer's cargo feature (`request-id`, `trace`, `metrics`,
//! `retry`, `fallback-cache`, `circuit-breaker`, `limit`); the stacks work with any subset.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use axum::{Router, body::Body, routing::get};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt as _, Full};
//! use prometheus_client::registry::Registry;
//! use tower::{BoxError, Layer as _, ServiceExt as _, service_fn, util::BoxCloneSyncService};
//! use tower_bulwark::{
//!     circuit_breaker::{CircuitBreakerLayer, CircuitOpen, Window},
//!     metrics::Metrics,
//!     stack::{ClientSettings, ClientStack, ServerSettings, ServerStack},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let mut registry = Registry::default();
//! let metrics = Metrics::builder().prefix("app").register(&mut registry);
//!
//! // Inbound: the recommended settings, plus metrics; switch any of them off at run time.
//! let settings = ServerSettings {
//!     metrics: Some(metrics.server().clone()),
//!     max_in_flight: Some(512),
//!     ..ServerSettings::default()
//! };
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServerStack::from_settings(&settings)?.into_layer());
//!
//! let res = app.oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert!(res.headers().contains_key("x-request-id"));
//!
//! // Outbound: around any client; here a stand-in that always answers 503.
//! let backend = service_fn(|_: Request<Full<Bytes>>| async {
//!     let res = Response::builder().status(503).body(Full::new(Bytes::new())).unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//! let stack = ClientStack::from_settings(&ClientSettings {
//!     metrics: Some(metrics.client().clone()),
//!     timeout: Some(Duration::from_secs(2)),
//!     retry: None,
//!     ..ClientSettings::default()
//! })?
//! // Tuned through the layer's own builder: opens after two failures.
//! .circuit_breaker(
//!     CircuitBreakerLayer::builder().name("backend").minimum_calls(2).window(Window::Count(2)).build()?,
//! );
//! let breakers = stack.circuit_breaker_handle();
//! // Boxing is yours to choose; one `BoxCloneSyncService` for the whole stack is cheap.
//! let client: BoxCloneSyncService<Request<Full<Bytes>>, Response<_>, BoxError> =
//!     BoxCloneSyncService::new(stack.into_layer().layer(backend));
//!
//! for _ in 0..2 {
//!     let res = client.clone().oneshot(Request::new(Full::new(Bytes::new()))).await?;
//!     assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! }
//! let err = client.oneshot(Request::new(Full::new(Bytes::new()))).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! assert!(breakers.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Why this order
//!
//! Inbound, outermost first:
//!
//! - **request ID** first, so that everything below logs it and every response carries it,
//!   refusals included;
//! - **trace** inside it, so that the span records the ID; **metrics** inside the span, so
//!   that exemplars find its trace;
//! - the **limits** inside the observability layers, so that a request refused for time,
//!   size or load is still counted, traced and answered with its ID; the **timeout** outside
//!   the other two so that it bounds everything the request waits for (a timed-out request
//!   gives its load-shedding slot back at once); the **body limit** before **load
//!   shedding**, so that a request refused for its size never takes a slot.
//!
//! Outbound, outermost first:
//!
//! - **request ID**, **trace** and **metrics** see one call as the caller sees it, however
//!   many attempts it took and whether the answer was stale;
//! - **retry** above the cache and the breaker: a stale answer is a success and is not
//!   retried, failed attempts count towards opening the breaker, and an open breaker ends the
//!   retries at once;
//! - the **fallback cache** above the **circuit breaker**, so that a read the breaker refuses
//!   is still answered from the store;
//! - the **timeout** innermost, per attempt, so that a timeout counts as a failure for the
//!   breaker and can be retried.
//!
//! # Optional slots, without boxing
//!
//! A slot switched at run time is an [`Optional`] layer: its service is an
//! [`OptionalService`] (the layer's service, or the inner one) and its response body an
//! `http_body_util::Either` of both bodies. Nothing is boxed or allocated per slot. A slot
//! that is off costs a branch per call and per body frame, plus moving a future and a body
//! sized for the layer that could be there: with every slot off, about 100 ns per request for
//! either stack on a 2-core development machine, against about 20 ns for one boxed stage
//! (`benches/stack.rs`). The body
//! limit is the one slot never removed: its off position is
//! `limit::BodyLimitLayer::unlimited`, so that the
//! request body type the service sees (`Limited<B>`) does not depend on a setting.
//!
//! Errors: the server layers keep the service's error type (`Infallible` for axum, which
//! `Router::layer` requires). Every client slot's error is `Box<dyn Error + Send + Sync>`: the
//! client's errors are boxed at the bottom, and the breaker's with
//! `CircuitBreakerError::into_box_error`,
//! so `err.is::<CircuitOpen<K>>()`, `err.is::<limit::Elapsed>()` and downcasts to the client's
//! own error type work.
//!
//! The whole stack's type is long; name it once with `tower::util::BoxCloneSyncService` (one
//! allocation per call for the whole stack), as above, or keep it generic.

/// The slots' types as a stack's `new` makes them: `$on` (a layer, off) with the slot's cargo
/// feature, and no layer at all (`Identity`) without it.
macro_rules! slot_types {
    ($($name:ident = $on:ty, with $feature:literal;)*) => {$(
        #[cfg(feature = $feature)]
        type $name = $on;
        #[cfg(not(feature = $feature))]
        type $name = tower_layer::Identity;
    )*};
}

mod boxing;
mod client;
mod error;
mod optional;
mod server;

#[cfg(feature = "circuit-breaker")]
pub use self::boxing::{BreakerBoxError, BreakerBoxErrorFuture, BreakerSlot};
#[cfg(feature = "circuit-breaker")]
pub use self::client::CircuitBreakerSettings;
#[cfg(feature = "fallback-cache")]
pub use self::client::FallbackCacheSettings;
#[cfg(feature = "retry")]
pub use self::client::RetrySettings;
pub use self::{
    boxing::{BoxErrorLayer, BoxErrors, BoxErrorsFuture},
    client::{ClientLayer, ClientSettings, ClientStack},
    error::SettingsError,
    optional::{Optional, OptionalFuture, OptionalService},
    server::{ServerLayer, ServerSettings, ServerStack},
};

#[cfg(all(
    test,
    feature = "request-id",
    feature = "trace",
    feature = "metrics",
    feature = "retry",
    feature = "fallback-cache",
    feature = "circuit-breaker",
    feature = "limit"
))]
mod tests;
