//! The response body wrapper that keeps the request's span open until the body ends.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

use super::span::{Config, Details};

pin_project! {
    /// The response body of [`ServerTraceService`](super::ServerTraceService) and
    /// [`ClientTraceService`](super::ClientTraceService).
    ///
    /// The request's span lasts until the body has been read to its end (or dropped), so its
    /// duration is the whole exchange, and every poll of the inner body runs inside it, so logs
    /// written while the body is produced (streams, server-sent events) carry its IDs. A body
    /// error is recorded on the span. Size hints and end-of-stream pass through unchanged.
    #[derive(Debug)]
    pub struct TraceBody<B> {
        #[pin]
        inner: B,
        span: Span,
        details: Details,
        config: Arc<Config>,
    }
}

impl<B> TraceBody<B> {
    pub(super) fn new(inner: B, span: Span, details: Details, config: Arc<Config>) -> Self {
        Self {
            inner,
            span,
            details,
            config,
        }
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

    /// Consumes `self`, returning the inner body (and ending the span).
    #[must_use]
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for TraceBody<B>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let inner = this.inner;
        // A body already at its end only reports so: entering the span (a few hundred
        // nanoseconds with OpenTelemetry's context switching) would buy nothing.
        let frame = if inner.is_end_stream() {
            ready!(inner.poll_frame(cx))
        } else {
            ready!(this.span.in_scope(|| inner.poll_frame(cx)))
        };
        match &frame {
            // The exchange is over: end the span now rather than when the body is dropped.
            None => {
                *this.span = Span::none();
                *this.details = Details::Skip;
            }
            Some(Err(error)) => this.details.record_error(this.span, this.config, error),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
