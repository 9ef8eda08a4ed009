//! The response future shared by the server and client services.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;
use tracing::Span;

use super::{
    TraceBody,
    span::{Config, Details, Kind},
};

pin_project! {
    /// Response future of [`ServerTraceService`](super::ServerTraceService) and
    /// [`ClientTraceService`](super::ClientTraceService).
    ///
    /// Polls the inner future inside the request's span, records the response (or the error)
    /// on it and hands the span on to the [`TraceBody`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        details: Details,
        config: Arc<Config>,
        kind: Kind,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        span: Span,
        details: Details,
        config: Arc<Config>,
        kind: Kind,
    ) -> Self {
        Self {
            inner,
            span,
            details,
            config,
            kind,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = Result<Response<TraceBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let result = ready!(this.span.in_scope(|| inner.poll(cx)));
        // Ready is final: the span moves on to the body (or ends here on error).
        let span = std::mem::replace(this.span, Span::none());
        Poll::Ready(match result {
            Ok(response) => {
                this.details
                    .record_response(&span, *this.kind, this.config, &response);
                let details = std::mem::replace(this.details, Details::Skip);
                let config = this.config.clone();
                Ok(response.map(|body| TraceBody::new(body, span, details, config)))
            }
            Err(error) => {
                this.details.record_error(&span, this.config, &error);
                Err(error)
            }
        })
    }
}
