//! The inbound and outbound services.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request, Response};
use tower_service::Service;
use tracing::{field::Value, span::Record};

use super::{MakeRequestId, MakeRequestUuid, MakeSpan, RequestId, ResponseFuture, scope};

/// Inbound service made by [`RequestIdLayer`](super::RequestIdLayer): validates or makes the
/// request's ID and scopes the request to it. See the [module docs](super) for the details.
#[derive(Clone, Debug)]
pub struct RequestIdService<S, M = MakeRequestUuid, MS = ()> {
    inner: S,
    header_name: HeaderName,
    make_request_id: M,
    make_span: MS,
}

impl<S, M, MS> RequestIdService<S, M, MS> {
    pub(super) fn new(
        inner: S,
        header_name: HeaderName,
        make_request_id: M,
        make_span: MS,
    ) -> Self {
        Self {
            inner,
            header_name,
            make_request_id,
            make_span,
        }
    }

    /// The header the ID is read from and written to.
    #[must_use]
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    inner_service_accessors!();
}

/// What the request carries in the ID header.
enum Inbound {
    /// Exactly one value, and it is valid.
    Valid(RequestId),
    /// No value.
    Absent,
    /// An invalid value, or more than one value.
    Rejected,
}

/// Reads the inbound ID: kept only if the request carries exactly one value of `name` and it
/// is valid.
///
/// Repeated headers are refused: which copy a downstream reader sees would depend on how it
/// reads them.
#[inline]
fn inbound_id(headers: &HeaderMap, name: &HeaderName) -> Inbound {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Inbound::Absent;
    };
    if values.next().is_some() {
        return Inbound::Rejected;
    }
    match RequestId::try_from(first) {
        Ok(id) => Inbound::Valid(id),
        Err(_) => Inbound::Rejected,
    }
}

/// Records `id` as `request_id` on the current span, if it has that field.
///
/// What [`Span::record`](tracing::Span::record) on [`Span::current`](tracing::Span::current) does, without making a `Span` handle: that would
/// clone the span's ID and the dispatcher, and close both again, on every request.
#[inline]
fn record_on_current_span(id: &RequestId) {
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let (Some(span), Some(meta)) = (current.id(), current.metadata()) else {
            return;
        };
        let fields = meta.fields();
        if let Some(field) = fields.field("request_id") {
            let value = id.as_str();
            let values = [(&field, Some(&value as &dyn Value))];
            dispatch.record(span, &Record::new(&fields.value_set(&values)));
        }
    });
}

impl<S, M, MS, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S, M, MS>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: MakeRequestId<ReqBody>,
    MS: MakeSpan<ReqBody>,
{
    type Response = Response<super::RequestIdBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let mut request_id = match inbound_id(req.headers(), &self.header_name) {
            Inbound::Valid(id) => id,
            // No header is added: the ID is in the extensions and the scope.
            Inbound::Absent => self.make_request_id.make_request_id(&req),
            Inbound::Rejected => {
                let id = self.make_request_id.make_request_id(&req);
                // `insert` drops every inbound value, so nothing downstream sees a rejected one.
                req.headers_mut()
                    .insert(&self.header_name, id.as_header_value().clone());
                id
            }
        };
        req.extensions_mut().insert(request_id.clone());
        // Fills the field if an outer span (a trace layer's) declared it; a no-op otherwise.
        // Done before our own span exists, which would otherwise be "current".
        record_on_current_span(&request_id);

        let span = self.make_span.make_span(&req, &request_id);
        let inner = {
            let _entered = span.enter();
            let _scope = scope::enter(&mut request_id);
            self.inner.call(req)
        };
        ResponseFuture::new(inner, request_id, span, self.header_name.clone())
    }
}

/// Outbound service made by [`PropagateRequestIdLayer`](super::PropagateRequestIdLayer): sets
/// the ID header on requests that lack it. See the [module docs](super) for the details.
#[derive(Clone, Debug)]
pub struct PropagateRequestId<S> {
    inner: S,
    header_name: HeaderName,
}

impl<S> PropagateRequestId<S> {
    pub(super) fn new(inner: S, header_name: HeaderName) -> Self {
        Self { inner, header_name }
    }

    /// The header the ID is written to.
    #[must_use]
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // A header the caller set is a deliberate choice: leave it alone.
        if !req.headers().contains_key(&self.header_name) {
            // The request's own ID (e.g. forwarded from an inbound request) is more specific
            // than the ambient one.
            let request_id = match req.extensions().get::<RequestId>() {
                Some(id) => Some(id.clone()),
                None => RequestId::current(),
            };
            if let Some(id) = request_id {
                req.headers_mut()
                    .insert(self.header_name.clone(), id.into_header_value());
            }
        }
        self.inner.call(req)
    }
}
