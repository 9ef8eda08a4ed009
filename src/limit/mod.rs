//! Limits a server holds every request to, answered with a response; and a deadline for
//! outbound calls.
//!
//! - [`ResponseTimeoutLayer`]: no response head within the timeout → [`Rejection::Timeout`]
//!   (504), and the inner future is dropped. A streaming body (an event stream, a download)
//!   is not cut once the head is out.
//! - [`BodyLimitLayer`]: a request declaring a longer body (`Content-Length`) →
//!   [`Rejection::BodyTooLarge`] (413) at once, without calling the inner service; any other
//!   body is wrapped so that reading past the limit fails.
//! - [`LoadShedLayer`]: at most N requests in flight; the next → [`Rejection::Overloaded`]
//!   (503, `Retry-After: 1`) at once rather than queued. A request holds its slot until its
//!   response body has ended or been dropped, so streams count.
//! - [`CallTimeoutLayer`] (clients): a call taking too long fails with [`Elapsed`].
//!
//! The three server layers keep the inner service's error type (an axum `Router` needs
//! `Infallible`, and gets it, with no `HandleErrorLayer`) and answer refusals themselves. What
//! the answer looks like is a [`MakeRejection`] hook: [`DefaultRejection`] says why in one
//! line of plain text; an API plugs in its own error format. The client layer, by contrast,
//! fails with an error: a caller wants something to classify, count and retry, not a made-up
//! response.
//!
//! All four need a Tokio runtime (the timers and the semaphore).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, body::Body, routing::post};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header, request::Parts};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_bulwark::limit::{BodyLimitLayer, LoadShedLayer, Rejection, ResponseTimeoutLayer};
//!
//! /// Refusals in the API's own error format.
//! fn json_error(rejection: Rejection, _: &Parts) -> Response<Bytes> {
//!     let body = format!(r#"{{"error":"{rejection}"}}"#);
//!     Response::builder()
//!         .status(rejection.status())
//!         .header(header::CONTENT_TYPE, "application/json")
//!         .body(Bytes::from(body))
//!         .unwrap()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/tasks", post(|body: String| async move { body }))
//!     // Outermost first: the timeout covers everything below it.
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(ResponseTimeoutLayer::new(Duration::from_secs(30))?.rejection(json_error))
//!             .layer(BodyLimitLayer::new(1 << 20)?.rejection(json_error))
//!             .layer(LoadShedLayer::new(256)?.rejection(json_error)),
//!     );
//!
//! let big = Request::post("/tasks")
//!     .header(header::CONTENT_LENGTH, 2 << 20)
//!     .body(Body::empty())?;
//! let res = app.clone().oneshot(big).await?;
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//!
//! let ok = Request::post("/tasks").body(Body::from("write the docs"))?;
//! assert_eq!(app.oneshot(ok).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Order
//!
//! Outermost first: request ID → trace → metrics → **timeout → body limit → load shedding** →
//! service (`stack::ServerStack`, with the `stack` feature, builds exactly this):
//!
//! - observability outside, so that every refusal has a request ID and a span and is counted;
//! - the timeout outside the other two, so that it bounds everything the request waits for,
//!   and so that a timed-out request's slot is given back when its inner future is dropped;
//! - the body limit before load shedding: a request refused for its size never takes a slot.
//!
//! # Status codes
//!
//! A timeout answers `504 Gateway Timeout` (see [`Rejection::status`] for why not 408 or
//! 503); a body too large `413`; an overloaded server `503` with `Retry-After: 1`. A hook
//! may answer anything else.

mod body_limit;
mod call_timeout;
mod error;
mod load_shed;
mod rejection;
mod timeout;

pub use self::{
    body_limit::{BodyLimit, BodyLimitFuture, BodyLimitLayer},
    call_timeout::{CallTimeout, CallTimeoutFuture, CallTimeoutLayer, Elapsed},
    error::ConfigError,
    load_shed::{Exempt, LoadShed, LoadShedFuture, LoadShedLayer, ShedBody},
    rejection::{DefaultRejection, MakeRejection, Rejection, ResponseBody},
    timeout::{ResponseTimeout, ResponseTimeoutFuture, ResponseTimeoutLayer},
};

#[cfg(test)]
mod tests;
