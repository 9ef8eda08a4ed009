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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(scope::enter(Some(this.request_id), || this.inner.poll(cx)))
        };
        Poll::Ready(result.map(|response| {
            let (mut parts, body) = response.into_parts();
            // Our ID wins over one the inner service set: the response must name the ID this
            // request was logged under, and must never echo a rejected inbound value.
            parts.headers.insert(
                this.header_name.clone(),
                this.request_id.as_header_value().clone(),
            );
            let span = std::mem::replace(this.span, Span::none());
            Response::from_parts(
                parts,
                RequestIdBody::new(body, this.request_id.clone(), span),
            )
        }))
    }
}
