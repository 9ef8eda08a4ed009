//! The response body wrapper that finishes the request's measurement.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::series::Recorder;

pin_project! {
    /// Response body of [`ServerMetricsService`](super::ServerMetricsService) and
    /// [`ClientMetricsService`](super::ClientMetricsService).
    ///
    /// The request is recorded when the body ends: its last frame (as reported by
    /// [`Body::is_end_stream`], which is how hyper knows to stop polling a body of known
    /// length), `None`, or at once for a body that is empty from the start. An error frame
    /// records the request as failed (`status="error"`, `kind="body_error"`). Dropped before
    /// its end, the request counts as `cancelled`. Frames, size hints and end-of-stream pass
    /// through unchanged.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> ResponseBody<B> {
    pub(super) fn new(inner: B, mut recorder: Option<Recorder>) -> Self {
        if inner.is_end_stream() {
            // A body with nothing to send (204, HEAD, empty): a server may never poll it.
            if let Some(mut r) = recorder.take() {
                r.complete();
            }
        }
        Self { inner, recorder }
    }
}

impl<B> ResponseBody<B> {
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

    /// Consumes `self`, returning the inner body. If the body had not ended, the request is
    /// recorded as `cancelled` now.
    #[must_use]
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(recorder) = this.recorder {
            match &frame {
                Some(Ok(_)) if this.inner.is_end_stream() => recorder.complete(),
                Some(Ok(_)) => return Poll::Ready(frame),
                Some(Err(_)) => recorder.body_failed(),
                None => recorder.complete(),
            }
            // Dropped now, not with the body: the in-flight gauge comes down as soon as the
            // request is done.
            *this.recorder = None;
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
