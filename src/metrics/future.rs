//! The response future shared by the server and client services.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{ClassifyError, ResponseBody, series::Recorder};

pin_project! {
    /// Response future of [`ServerMetricsService`](super::ServerMetricsService) and
    /// [`ClientMetricsService`](super::ClientMetricsService).
    ///
    /// On a response, hands the request's measurement to the [`ResponseBody`], which records
    /// it when the body ends; on an error, records the failure at once. Dropped before either,
    /// the request counts as `cancelled`. Errors pass through unchanged.
    #[derive(Debug)]
    pub struct ResponseFuture<F, E> {
        #[pin]
        inner: F,
        recorder: Option<Recorder>,
        classify_error: E,
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(super) fn new(inner: F, recorder: Recorder, classify_error: E) -> Self {
        Self {
            inner,
            recorder: Some(recorder),
            classify_error,
        }
    }
}

impl<F, B, Er, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<B>, Er>>,
    B: http_body::Body,
    E: ClassifyError<Er>,
{
    type Output = Result<Response<ResponseBody<B>>, Er>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(response) => {
                let mut recorder = this.recorder.take();
                if let Some(recorder) = &mut recorder {
                    recorder.on_response(response.status());
                }
                Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, recorder))))
            }
            Err(error) => {
                if let Some(mut recorder) = this.recorder.take() {
                    recorder.fail(this.classify_error.classify_error(&error));
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
