//! The inbound and outbound layers and their builders.

use http::HeaderName;
use tower_layer::Layer;

use super::{DefaultMakeSpan, MakeRequestUuid, PropagateRequestId, RequestIdService};

/// `x-request-id`, the default header of both layers.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-correlation-id`, the other common spelling.
const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Inbound layer for servers: keeps a valid inbound request ID or makes a fresh one, and
/// scopes the request to it. See the [module docs](super) for what it does, in order.
///
/// `M` makes fresh IDs ([`MakeRequestId`](super::MakeRequestId)); `MS` makes the optional
/// per-request span ([`MakeSpan`](super::MakeSpan), `()` for none).
///
/// ```
/// use tower_bulwark::request_id::{MakeRequestUuid, RequestIdLayer};
///
/// let layer = RequestIdLayer::new()
///     .header_name(http::HeaderName::from_static("x-correlation-id"))
///     .make_request_id_with(MakeRequestUuid::v7())
///     .with_span();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RequestIdLayer<M = MakeRequestUuid, MS = ()> {
    header_name: HeaderName,
    make_request_id: M,
    make_span: MS,
}

impl RequestIdLayer {
    /// The default: header `x-request-id`, random UUIDs (version 4), no span of its own.
    pub const fn new() -> Self {
        Self {
            header_name: X_REQUEST_ID,
            make_request_id: MakeRequestUuid::new(),
            make_span: (),
        }
    }

    /// Header `x-request-id`; same as [`RequestIdLayer::new`].
    pub const fn x_request_id() -> Self {
        Self::new()
    }

    /// Header `x-correlation-id`.
    pub const fn x_correlation_id() -> Self {
        Self {
            header_name: X_CORRELATION_ID,
            make_request_id: MakeRequestUuid::new(),
            make_span: (),
        }
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M, MS> RequestIdLayer<M, MS> {
    /// Sets the header the ID is read from and written to (on the request and the response).
    pub fn header_name(mut self, header_name: HeaderName) -> Self {
        self.header_name = header_name;
        self
    }

    /// Sets how fresh IDs are made: a [`MakeRequestUuid`] variant or any
    /// `FnMut(&Request<B>) -> RequestId` closure.
    pub fn make_request_id_with<M2>(self, make_request_id: M2) -> RequestIdLayer<M2, MS> {
        RequestIdLayer {
            header_name: self.header_name,
            make_request_id,
            make_span: self.make_span,
        }
    }

    /// Wraps each request in its own span carrying the `request_id` field (a
    /// [`DefaultMakeSpan`]), so every log line written while serving it carries the ID, with
    /// no other trace layer. See [`DefaultMakeSpan`] for how its level meets your filter.
    pub fn with_span(self) -> RequestIdLayer<M, DefaultMakeSpan> {
        self.make_span_with(DefaultMakeSpan::new())
    }

    /// Sets how the per-request span is made: a [`DefaultMakeSpan`], `()` for none, or any
    /// `FnMut(&Request<B>, &RequestId) -> Span` closure.
    pub fn make_span_with<MS2>(self, make_span: MS2) -> RequestIdLayer<M, MS2> {
        RequestIdLayer {
            header_name: self.header_name,
            make_request_id: self.make_request_id,
            make_span,
        }
    }
}

impl<S, M: Clone, MS: Clone> Layer<S> for RequestIdLayer<M, MS> {
    type Service = RequestIdService<S, M, MS>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService::new(
            inner,
            self.header_name.clone(),
            self.make_request_id.clone(),
            self.make_span.clone(),
        )
    }
}

/// Outbound layer for clients: sets the ID header on outgoing requests that lack it. See the
/// [module docs](super).
///
/// ```
/// use tower_bulwark::request_id::PropagateRequestIdLayer;
///
/// let layer = PropagateRequestIdLayer::new();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct PropagateRequestIdLayer {
    header_name: HeaderName,
}

impl PropagateRequestIdLayer {
    /// The default: header `x-request-id`.
    pub const fn new() -> Self {
        Self {
            header_name: X_REQUEST_ID,
        }
    }

    /// Header `x-request-id`; same as [`PropagateRequestIdLayer::new`].
    pub const fn x_request_id() -> Self {
        Self::new()
    }

    /// Header `x-correlation-id`.
    pub const fn x_correlation_id() -> Self {
        Self {
            header_name: X_CORRELATION_ID,
        }
    }

    /// Sets the header the ID is written to.
    pub fn header_name(mut self, header_name: HeaderName) -> Self {
        self.header_name = header_name;
        self
    }
}

impl Default for PropagateRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for PropagateRequestIdLayer {
    type Service = PropagateRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateRequestId::new(inner, self.header_name.clone())
    }
}
