//! Stale-if-error: answer a failed read with the last good answer, marked as stale.
//!
//! [`FallbackCacheLayer`] wraps an HTTP client (hyper-util's, or any
//! `tower::Service<http::Request<_>>` answering `http::Response<_>`). It remembers the last
//! successful (2xx) answer of each safe request and, by default, **always asks the inner
//! service**: the store answers only when the inner call fails, with an error (transport
//! error, timeout, a circuit breaker's rejection) or with 500, 502, 503 or 504 (RFC 5861
//! `stale-if-error`). "Failed" is decided by the shared [classifier](crate::classify)
//! (default [`HttpClassifier`](crate::classify::HttpClassifier)), narrowed to the
//! [statuses](FallbackCacheBuilder::stale_on_statuses) worth a stale answer. A
//! [fresh mode](FallbackCacheBuilder::fresh_ttl) also answers young entries without asking.
//!
//! A stale answer carries:
//!
//! - `Age`: seconds since it was stored, plus any `Age` it arrived with;
//! - `Cache-Status: tower-bulwark; hit; detail=stale-if-error` (RFC 9211; the member is the
//!   builder's [`name`](FallbackCacheBuilder::name)), appended after any the backend sent;
//! - a [`StaleAnswer`] extension with the age and the [`StaleReason`].
//!
//! When nothing usable is stored, the caller gets the original error or response untouched.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt as _, Full};
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt as _, service_fn};
//! use tower_bulwark::fallback_cache::{FallbackCacheLayer, StaleAnswer, StaleReason};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let down = Arc::new(AtomicBool::new(false));
//! let backend = {
//!     let down = down.clone();
//!     service_fn(move |_req: Request<()>| {
//!         let down = down.load(Ordering::Relaxed);
//!         async move {
//!             if down {
//!                 Err(std::io::Error::other("connection refused"))
//!             } else {
//!                 Ok(Response::new(Full::new(Bytes::from_static(b"[\"write docs\"]"))))
//!             }
//!         }
//!     })
//! };
//! let cache = FallbackCacheLayer::builder()
//!     .max_entries(1000)
//!     // taskman: any write under /tasks invalidates every GET /tasks…
//!     .invalidate_on_write("/tasks", "/tasks")
//!     .build()
//!     .unwrap();
//! let handle = cache.handle();
//! let client = ServiceBuilder::new().layer(cache).service(backend);
//!
//! // Up: answered by the backend; the body is stored as the caller reads it.
//! let res = client.clone().oneshot(Request::get("/tasks").body(()).unwrap()).await.unwrap();
//! assert!(res.extensions().get::<StaleAnswer>().is_none());
//! res.into_body().collect().await.unwrap();
//! assert_eq!(handle.len(), 1);
//!
//! // Down: answered from the store, marked stale.
//! down.store(true, Ordering::Relaxed);
//! let res = client.clone().oneshot(Request::get("/tasks").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["age"], "0");
//! assert_eq!(res.headers()["cache-status"], "tower-bulwark; hit; detail=stale-if-error");
//! let stale = res.extensions().get::<StaleAnswer>().unwrap();
//! assert_eq!(stale.reason, StaleReason::Error);
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "[\"write docs\"]");
//!
//! // Nothing stored for this one: the original error.
//! let err = client.clone().oneshot(Request::get("/users").body(()).unwrap()).await.unwrap_err();
//! assert_eq!(err.to_string(), "connection refused");
//!
//! // Invalidation by prefix (a failed write under /tasks would do the same).
//! assert_eq!(handle.invalidate_prefix("/tasks"), 1);
//! assert!(client.oneshot(Request::get("/tasks").body(()).unwrap()).await.is_err());
//! # }
//! ```
//!
//! # What is stored
//!
//! The answer to a request is stored when all of these hold:
//!
//! - the method is safe and the [`MakeCacheKey`] hook gives a key: by default ([`DefaultMakeKey`])
//!   `GET` and `HEAD`, keyed by method, URI and the [configured headers](FallbackCacheBuilder::key_headers);
//!   requests with `Authorization` are left alone unless `authorization` is a key header;
//! - the request does not say `Cache-Control: no-store`;
//! - the status is 2xx and the classifier does not call it a failure;
//! - the response's `Cache-Control` has none of `no-store`, `private`, `no-cache`,
//!   `must-revalidate`, `proxy-revalidate` (the last three forbid serving it stale without
//!   revalidation, RFC 9111 §4.2.4);
//! - the body ends, without error, within [`max_body_bytes`](FallbackCacheBuilder::max_body_bytes).
//!
//! The body is **passed through while it is copied**: the caller reads it as it arrives and
//! the copy is stored when it ends (so an answer whose body the caller never finishes reading
//! is not stored). Trailers and hop-by-hop headers (`Transfer-Encoding`, `Connection`) are
//! not stored.
//!
//! An entry always holds the *latest* answer to its key: an answer that may not be stored
//! (`no-store`, too long, a 404, …) removes the older entry rather than leave it to be served
//! later; a body that fails midway leaves it in place. Between concurrent requests for one key,
//! the answer to the one that started last wins. An answer identical to the stored one (same
//! status, body and headers, `Age` and hop-by-hop fields aside: the common case of a key read
//! again and again) renews the entry in place, its age restarting from zero, rather than
//! being copied again.
//!
//! The store is bounded by [entries](FallbackCacheBuilder::max_entries) and
//! [bytes](FallbackCacheBuilder::max_bytes) (body, headers, key and a fixed per-entry
//! overhead), evicting the least recently used entry; entries older than the
//! [TTL](FallbackCacheBuilder::ttl) are never served and are dropped when met. Time is Tokio's
//! clock, so tests can use `tokio::time::pause()`.
//!
//! # Writes and invalidation
//!
//! Requests with an unsafe method (`POST`, `PUT`, `PATCH`, `DELETE`, unknown) are never
//! stored nor answered from the store: a write is never faked. When a write succeeds (2xx or
//! 3xx), or its outcome is unknown (an error, e.g. a timeout, or a 504), it invalidates every
//! entry, whatever its method, authority, query or key parts, whose path is:
//!
//! - the write's path, or below it segment by segment (`DELETE /tasks/7` covers `/tasks/7`
//!   and `/tasks/7/notes`, not `/tasks/70`; `POST /tasks` covers all of `/tasks/…`);
//! - exactly the write's parent collection (`PUT /tasks/7` covers `GET /tasks` and
//!   `GET /tasks?status=open`, not `/tasks/8`);
//! - below the read prefix of any [rule](FallbackCacheBuilder::invalidate_on_write) whose
//!   write prefix covers the write's path.
//!
//! A trailing `/` is ignored. An error counts as "unknown outcome" even when it is a circuit
//! breaker's rejection (the error type is opaque here), so place the breaker inside this layer
//! knowing that a rejected write also invalidates. Any invalidation also keeps answers to
//! reads in flight from being stored, since they may predate the write.
//!
//! [`FallbackCacheHandle`] invalidates by exact key, by path prefix or by predicate.
//!
//! # Placement
//!
//! Put the layer *outside* a circuit breaker and a timeout, so their errors reach it:
//! `ServiceBuilder::new().layer(fallback).layer(breaker).layer(timeout).service(client)`.
//! The response body becomes [`FallbackBody`], whose data type is the inner body's (it must
//! be buildable from [`Bytes`](bytes::Bytes), as hyper's and axum's are).
//!
//! # Metrics
//!
//! With the `metrics` feature, `FallbackCacheHandle::register` puts stale answers, misses,
//! stores, evictions, invalidations, entries and bytes in a prometheus-client registry (see
//! `FallbackCacheMetrics`).

mod body;
mod error;
mod future;
mod handle;
mod key;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod service;
mod store;
#[cfg(test)]
mod tests;

pub use self::{
    body::FallbackBody,
    error::ConfigError,
    future::{FreshAnswer, ResponseFuture, StaleAnswer, StaleReason},
    handle::FallbackCacheHandle,
    key::{CacheKey, DefaultMakeKey, MakeCacheKey},
    layer::{FallbackCacheBuilder, FallbackCacheLayer},
    service::FallbackCache,
    store::Stats,
};

#[cfg(feature = "metrics")]
pub use self::metrics::FallbackCacheMetrics;
