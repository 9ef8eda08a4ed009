//! Which requests may be sent more than once.

use http::{HeaderName, Method, Request};

/// The `Idempotency-Key` request header (IETF draft `draft-ietf-httpapi-idempotency-key-header`):
/// a server that honours it applies a repeated request with the same key only once.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Decides whether a request may be retried, before it is first sent.
///
/// Implemented by [`SafeOrIdempotent`] (the default) and by every `Fn(&Request<B>) -> bool`
/// closure. A request it refuses goes through the layer untouched: not copied, not counted
/// in the [budget](super::RetryBudget), never retried.
///
/// ```
/// use http::{Method, Request};
/// use tower_bulwark::retry::{RetryLayer, RetryableRequest, SafeOrIdempotent};
///
/// // Also retry PUT and DELETE, which RFC 9110 defines as idempotent.
/// let idempotent = |req: &Request<String>| {
///     SafeOrIdempotent::new().is_retryable(req)
///         || matches!(*req.method(), Method::PUT | Method::DELETE)
/// };
/// let layer = RetryLayer::builder().retryable(idempotent).build().unwrap();
/// # let _ = layer;
/// ```
pub trait RetryableRequest<B> {
    /// Whether `request` may be sent again after a failure.
    fn is_retryable(&self, request: &Request<B>) -> bool;

    /// Told of each retry just before it is sent: `retry` is 1 for the first retry, 2 for the
    /// second, and so on. Does nothing by default; a policy can count retries per operation
    /// here (e.g. with [`ClientMetrics::record_retry`](crate::metrics::ClientMetrics::record_retry)
    /// under the `metrics` feature), which a metrics layer above the retry layer cannot see.
    fn on_retry(&self, request: &Request<B>, retry: u32) {
        let _ = (request, retry);
    }
}

impl<B, F> RetryableRequest<B> for F
where
    F: Fn(&Request<B>) -> bool,
{
    fn is_retryable(&self, request: &Request<B>) -> bool {
        self(request)
    }
}

/// The default [`RetryableRequest`]: reads, and writes that carry their own idempotency key.
///
/// | request | retried |
/// |---|---|
/// | `GET`, `HEAD`, `OPTIONS`, `TRACE` (RFC 9110's safe methods) | yes |
/// | any method with a non-empty [`Idempotency-Key`](IDEMPOTENCY_KEY) header | yes |
/// | `POST`, `PUT`, `PATCH`, `DELETE`, … without one | no |
///
/// `PUT` and `DELETE` are idempotent by definition, but many APIs do not implement them so
/// (a `DELETE` answering `404` the second time, a `PUT` bumping a version): they are left to
/// the caller, or to a closure.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SafeOrIdempotent;

impl SafeOrIdempotent {
    /// The default predicate.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl<B> RetryableRequest<B> for SafeOrIdempotent {
    fn is_retryable(&self, request: &Request<B>) -> bool {
        is_safe(request.method())
            || request
                .headers()
                .get(IDEMPOTENCY_KEY)
                .is_some_and(|key| !key.is_empty())
    }
}

/// RFC 9110 §9.2.1: the methods that ask for no change on the server.
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}
