//! [`LoadShedLayer`]: at most N requests in flight; the next is refused at once, not queued.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    ConfigError, DefaultRejection, MakeRejection, Rejection, ResponseBody, rejection::Refusal,
};

/// Which requests do not count towards the limit, e.g. long-lived, idle event streams that
/// would otherwise hold slots that requests doing work need.
///
/// `()` exempts nothing; closures `Fn(&Request<B>) -> bool` work too.
pub trait Exempt<B> {
    /// Whether `request` passes without taking a slot.
    fn is_exempt(&self, request: &Request<B>) -> bool;
}

impl<B> Exempt<B> for () {
    #[inline]
    fn is_exempt(&self, _: &Request<B>) -> bool {
        false
    }
}

impl<B, F> Exempt<B> for F
where
    F: Fn(&Request<B>) -> bool,
{
    #[inline]
    fn is_exempt(&self, request: &Request<B>) -> bool {
        self(request)
    }
}

/// Lets at most `max_in_flight` requests be answered at once; the next one is answered at once
/// with a [`Rejection::Overloaded`] (503 by default) and `Retry-After: 1`, rather than queued
/// behind work the server may not finish in time. See the [module docs](super).
///
/// A request holds its slot until its response body has ended or been dropped, so that a
/// long download or event stream counts for as long as it lasts; a request whose response
/// future is dropped (the client went away, a timeout fired) gives its slot back at once.
///
/// The slots are shared by every clone of the layer and every service it makes (for axum,
/// every route of a `Router::layer`): make one layer per limit.
#[must_use]
pub struct LoadShedLayer<R = DefaultRejection, P = ()> {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    rejection: R,
    exempt: P,
}

impl LoadShedLayer {
    /// A layer letting at most `max_in_flight` requests through at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_in_flight` when it is zero or more than Tokio's semaphore
    /// holds ([`Semaphore::MAX_PERMITS`]).
    pub fn new(max_in_flight: usize) -> Result<Self, ConfigError> {
        if max_in_flight == 0 {
            return Err(ConfigError::new(
                "limit",
                "max_in_flight",
                "must be at least 1",
            ));
        }
        if max_in_flight > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "limit",
                "max_in_flight",
                "must be at most tokio's Semaphore::MAX_PERMITS",
            ));
        }
        Ok(Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            rejection: DefaultRejection,
            exempt: (),
        })
    }
}

impl<R, P> LoadShedLayer<R, P> {
    /// Sets the hook that makes the 503 (or whatever it answers instead). The layer adds
    /// `Retry-After: 1` unless the hook set a `Retry-After` itself.
    pub fn rejection<R2>(self, rejection: R2) -> LoadShedLayer<R2, P> {
        LoadShedLayer {
            slots: self.slots,
            max_in_flight: self.max_in_flight,
            rejection,
            exempt: self.exempt,
        }
    }

    /// Sets which requests pass without taking a slot (see [`Exempt`]).
    pub fn exempt<P2>(self, exempt: P2) -> LoadShedLayer<R, P2> {
        LoadShedLayer {
            slots: self.slots,
            max_in_flight: self.max_in_flight,
            rejection: self.rejection,
            exempt,
        }
    }

    /// The limit.
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// How many slots are taken now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.slots.available_permits())
    }
}

impl<R: Clone, P: Clone> Clone for LoadShedLayer<R, P> {
    fn clone(&self) -> Self {
        Self {
            slots: Arc::clone(&self.slots),
            max_in_flight: self.max_in_flight,
            rejection: self.rejection.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

impl<R: fmt::Debug, P> fmt::Debug for LoadShedLayer<R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedLayer")
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight())
            .field("rejection", &self.rejection)
            .finish_non_exhaustive()
    }
}

impl<S, R: Clone, P: Clone> Layer<S> for LoadShedLayer<R, P> {
    type Service = LoadShed<S, R, P>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            slots: Arc::clone(&self.slots),
            max_in_flight: self.max_in_flight,
            rejection: self.rejection.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

/// Service made by [`LoadShedLayer`].
#[derive(Clone)]
pub struct LoadShed<S, R = DefaultRejection, P = ()> {
    inner: S,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    rejection: R,
    exempt: P,
}

impl<S, R, P> LoadShed<S, R, P> {
    inner_service_accessors!();
}

impl<S: fmt::Debug, R: fmt::Debug, P> fmt::Debug for LoadShed<S, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed")
            .field("inner", &self.inner)
            .field("max_in_flight", &self.max_in_flight)
            .field("rejection", &self.rejection)
            .finish_non_exhaustive()
    }
}

impl<S, R, P, ReqBody, ResBody> Service<Request<ReqBody>> for LoadShed<S, R, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: MakeRejection,
    P: Exempt<ReqBody>,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<ShedBody<ResBody>>;
    type Error = S::Error;
    type Future = LoadShedFuture<S::Future>;

    /// The inner service's readiness: slots are taken in `call`, where a full house is
    /// answered at once instead of waited for.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.exempt.is_exempt(&req) {
            return LoadShedFuture::called(self.inner.call(req), None);
        }
        // Never closed, so an error means no permit is left.
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            let (parts, _body) = req.into_parts();
            let rejection = Rejection::Overloaded {
                max_in_flight: self.max_in_flight,
            };
            let mut response = self.rejection.make_rejection(rejection, &parts);
            response
                .headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert(HeaderValue::from_static("1"));
            return LoadShedFuture::refused(response);
        };
        LoadShedFuture::called(self.inner.call(req), Some(permit))
    }
}

pin_project! {
    /// Response future of [`LoadShed`]: holds the request's slot until the response head,
    /// then hands it to the body.
    #[derive(Debug)]
    pub struct LoadShedFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            inner: F,
            // `None` for an exempt request, and once handed to the body.
            permit: Option<OwnedSemaphorePermit>,
        },
        Refused { refusal: Refusal },
    }
}

impl<F> LoadShedFuture<F> {
    #[inline]
    fn called(inner: F, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            kind: Kind::Called { inner, permit },
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

impl<F, B, E> Future for LoadShedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ShedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { inner, permit } => {
                let result = std::task::ready!(inner.poll(cx));
                // An error gives the slot back now: there is no body to hold it.
                let permit = permit.take();
                Poll::Ready(result.map(|response| {
                    response.map(|body| ShedBody {
                        body: ResponseBody::inner(body),
                        permit,
                    })
                }))
            }
            KindProj::Refused { refusal } => Poll::Ready(Ok(refusal
                .take()
                .map(|body| ShedBody { body, permit: None }))),
        }
    }
}

pin_project! {
    /// Response body of [`LoadShed`]: holds the request's slot until the body ends, fails or
    /// is dropped.
    #[derive(Debug)]
    pub struct ShedBody<B> {
        #[pin]
        body: ResponseBody<B>,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B> ShedBody<B> {
    /// Whether this is a rejection's body rather than the inner service's.
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        self.body.is_rejection()
    }
}

impl<B> Body for ShedBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            // Done: the slot goes back now, not when the server gets round to dropping us.
            this.permit.take();
        }
        frame
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
