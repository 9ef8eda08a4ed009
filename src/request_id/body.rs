//! The response body wrapper that keeps the request's scope while the body streams.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

use super::{RequestId, scope};

pin_project! {
    /// The response body of [`RequestIdService`](super::RequestIdService).
    ///
    /// Every poll of the inner body runs inside the request's scope ([`RequestId::current`])
    /// and its span, so code that produces the body lazily (streams, server-sent events) still
    /// sees the request's ID. Size hints and end-of-stream pass through unchanged.
    #[derive(Debug)]
    pub struct RequestIdBody<B> {
        #[pin]
        inner: B,
        request_id: RequestId,
        span: Span,
    }
}

impl<B> RequestIdBody<B> {
    #[inline]
    pub(super) fn new(inner: B, request_id: RequestId, span: Span) -> Self {
        Self {
            inner,
            request_id,
            span,
        }
    }

    /// The ID of the request this body answers.
    #[must_use]
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// Gets a reference to the inner body.
    #[must_use]
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Gets a mutable reference to the inner body.
    #[must_use]
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner body.
    #[must_use]
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestIdBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        let _scope = scope::enter(this.request_id);
        this.inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
