//! [`BodyLimitLayer`]: a bound on the request body, refused at once when declared too long.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::Limited;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    ConfigError, DefaultRejection, MakeRejection, Rejection, ResponseBody, rejection::Refusal,
};

/// Holds request bodies to a number of bytes. See the [module docs](super).
///
/// - A request that *declares* a longer body (`Content-Length`, or a body whose size hint says
///   so) is answered at once with a [`Rejection::BodyTooLarge`] (413 by default), without
///   calling the inner service or reading a byte of the body.
/// - Any other body reaches the inner service as an [`http_body_util::Limited`], whose read
///   past the limit fails with `http_body_util::LengthLimitError` (axum's extractors answer
///   that with 413 too).
///
/// The inner service sees `Request<Limited<B>>` even when [`unlimited`](Self::unlimited), so
/// that its type does not depend on a setting read at run time.
#[derive(Clone, Debug)]
#[must_use]
pub struct BodyLimitLayer<R = DefaultRejection> {
    /// `None`: unlimited.
    limit: Option<usize>,
    rejection: R,
}

impl BodyLimitLayer {
    /// A layer holding request bodies to `limit` bytes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` when it is zero.
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new(
                "limit",
                "limit",
                "must be at least 1 byte",
            ));
        }
        Ok(Self {
            limit: Some(limit),
            rejection: DefaultRejection,
        })
    }

    /// A layer that limits nothing, but still hands the inner service a `Limited` body: the
    /// off position of a limit switched at run time.
    pub fn unlimited() -> Self {
        Self {
            limit: None,
            rejection: DefaultRejection,
        }
    }
}

impl<R> BodyLimitLayer<R> {
    /// Sets the hook that makes the 413 (or whatever it answers instead).
    pub fn rejection<R2>(self, rejection: R2) -> BodyLimitLayer<R2> {
        BodyLimitLayer {
            limit: self.limit,
            rejection,
        }
    }

    /// The limit in bytes; `None` when [`unlimited`](BodyLimitLayer::unlimited).
    #[must_use]
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl<S, R: Clone> Layer<S> for BodyLimitLayer<R> {
    type Service = BodyLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
            rejection: self.rejection.clone(),
        }
    }
}

/// Service made by [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S, R = DefaultRejection> {
    inner: S,
    limit: Option<usize>,
    rejection: R,
}

impl<S, R> BodyLimit<S, R> {
    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S, R>
where
    S: Service<Request<Limited<ReqBody>>, Response = Response<ResBody>>,
    R: MakeRejection,
    ReqBody: Body,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BodyLimitFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(limit) = self.limit else {
            return BodyLimitFuture::called(self.inner.call(req.map(unlimited)));
        };
        if declared_length(&req).is_some_and(|length| length > limit as u64) {
            let (parts, body) = req.into_parts();
            // Unread: the connection's owner decides whether to drain it or close.
            drop(body);
            let rejection = Rejection::BodyTooLarge { limit };
            let response = self.rejection.make_rejection(rejection, &parts);
            return BodyLimitFuture::refused(response);
        }
        BodyLimitFuture::called(self.inner.call(req.map(|body| Limited::new(body, limit))))
    }
}

fn unlimited<B>(body: B) -> Limited<B> {
    Limited::new(body, usize::MAX)
}

/// The length the request announces: its `Content-Length`, or what its body knows of its own
/// size (the lower bound: a body that will be at least this long).
fn declared_length<B: Body>(req: &Request<B>) -> Option<u64> {
    let from_header = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let lower = req.body().size_hint().lower();
    match from_header {
        Some(length) => Some(length.max(lower)),
        None => (lower > 0).then_some(lower),
    }
}

pin_project! {
    /// Response future of [`BodyLimit`].
    #[derive(Debug)]
    pub struct BodyLimitFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] inner: F },
        Refused { refusal: Refusal },
    }
}

impl<F> BodyLimitFuture<F> {
    #[inline]
    fn called(inner: F) -> Self {
        Self {
            kind: Kind::Called { inner },
        }
    }

    fn refused(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Refused {
                refusal: Refusal::new(response),
            },
        }
    }
}

impl<F, B, E> Future for BodyLimitFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { inner } => inner
                .poll(cx)
                .map_ok(|response| response.map(ResponseBody::inner)),
            KindProj::Refused { refusal } => Poll::Ready(Ok(refusal.take())),
        }
    }
}
