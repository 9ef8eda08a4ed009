//! The response future of the inbound service.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, Response};
use pin_project_lite::pin_project;
use tracing::Span;

use super::{RequestId, RequestIdBody, scope};

/// What is left of the header name in a completed future (moved into the response, not cloned).
const TAKEN: HeaderName = HeaderName::from_static("x-request-id");

pin_project! {
    /// Response future of [`RequestIdService`](super::RequestIdService).
    ///
    /// Polls the inner future inside the request's scope and span, then sets the ID on the
    /// response header and wraps the body in [`RequestIdBody`]. Errors pass through unchanged.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        request_id: RequestId,
        span: Span,
        header_name: HeaderName,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn new(
        inner: F,
        request_id: RequestId,
        span: Span,
        header_name: HeaderName,
    ) -> Self {
        Self {
            inner,
            request_id,
            span,
            header_name,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<RequestIdBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            let _scope = scope::enter(this.request_id);
            ready!(this.inner.poll(cx))
        };
        Poll::Ready(result.map(|mut response| {
            // The body owns the ID from now on; what is left here is never read (a future is
            // not polled again once it has returned `Ready`).
            let request_id = std::mem::replace(this.request_id, RequestId::from_static(""));
            // Our ID wins over one the inner service set: the response must name the ID this
            // request was logged under, and must never echo a rejected inbound value. A
            // validated ID is a valid header value: no re-validation, just a reference count.
            let header_name = std::mem::replace(this.header_name, TAKEN);
            response
                .headers_mut()
                .insert(header_name, request_id.as_header_value().clone());
            let span = std::mem::replace(this.span, Span::none());
            response.map(|body| RequestIdBody::new(body, request_id, span))
        }))
    }
}
