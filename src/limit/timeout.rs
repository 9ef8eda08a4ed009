//! [`ResponseTimeoutLayer`]: a deadline for the response head, answered with a response.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, Uri, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::{ConfigError, DefaultRejection, MakeRejection, Rejection, ResponseBody};

/// Bounds the time from the call to the response head; past it, the request is answered with
/// a [`Rejection::Timeout`] (504 by default) and the inner future is dropped, which cancels
/// the work it was doing. See the [module docs](super).
///
/// Only the head is bounded: once the inner service has answered, its body (a download, an
/// event stream) flows for as long as it lasts.
#[derive(Clone, Debug)]
#[must_use]
pub struct ResponseTimeoutLayer<R = DefaultRejection> {
    timeout: Duration,
    rejection: R,
}

impl ResponseTimeoutLayer {
    /// A layer answering [`Rejection::Timeout`] after `timeout` without a response head.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `timeout` when it is zero.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        let timeout = super::error::nonzero_timeout(timeout)?;
        Ok(Self {
            timeout,
            rejection: DefaultRejection,
        })
    }
}

impl<R> ResponseTimeoutLayer<R> {
    /// Sets the hook that makes the 504 (or whatever it answers instead).
    pub fn rejection<R2>(self, rejection: R2) -> ResponseTimeoutLayer<R2> {
        ResponseTimeoutLayer {
            timeout: self.timeout,
            rejection,
        }
    }

    /// The time allowed to the response head.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, R: Clone> Layer<S> for ResponseTimeoutLayer<R> {
    type Service = ResponseTimeout<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseTimeout {
            inner,
            timeout: self.timeout,
            rejection: self.rejection.clone(),
        }
    }
}

/// Service made by [`ResponseTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct ResponseTimeout<S, R = DefaultRejection> {
    inner: S,
    timeout: Duration,
    rejection: R,
}

impl<S, R> ResponseTimeout<S, R> {
    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseTimeout<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: MakeRejection + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseTimeoutFuture<S::Future, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Kept for the hook: the request itself is the inner service's from here on.
        let head = Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
        };
        ResponseTimeoutFuture {
            state: State::Waiting {
                inner: self.inner.call(req),
                sleep: sleep(self.timeout),
                head,
                rejection: self.rejection.clone(),
                timeout: self.timeout,
            },
        }
    }
}

/// What the hook gets of a timed-out request.
#[derive(Debug)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
}

pin_project! {
    /// Response future of [`ResponseTimeout`].
    #[derive(Debug)]
    pub struct ResponseTimeoutFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    #[derive(Debug)]
    enum State<F, R> {
        Waiting {
            #[pin]
            inner: F,
            #[pin]
            sleep: Sleep,
            head: Head,
            rejection: R,
            timeout: Duration,
        },
        Done,
    }
}

impl<F, R, B, E> Future for ResponseTimeoutFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: MakeRejection,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let StateProj::Waiting { inner, sleep, .. } = state.as_mut().project() else {
            panic!("ResponseTimeoutFuture polled after completion");
        };
        // The inner service first: an answer and the deadline in the same poll is an answer.
        if let Poll::Ready(result) = inner.poll(cx) {
            // ## Waiting => Done
            state.project_replace(State::Done);
            return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
        }
        ready!(sleep.poll(cx));
        // ## Waiting => Done: the inner future is dropped here, not when the caller drops us.
        let StateReplace::Waiting {
            head,
            rejection,
            timeout,
            ..
        } = state.project_replace(State::Done)
        else {
            unreachable!("the state was Waiting above");
        };
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = head.method;
        parts.uri = head.uri;
        parts.version = head.version;
        let response = rejection.make_rejection(Rejection::Timeout { after: timeout }, &parts);
        Poll::Ready(Ok(response.map(ResponseBody::rejection)))
    }
}
