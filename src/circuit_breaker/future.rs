//! The response futures.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{CircuitBreakerError, CircuitOpen, service::Permit};
use crate::classify::Classify;

pin_project! {
    #[project = KindProj]
    enum Kind<F, K> {
        Called { #[pin] future: F },
        Rejected { open: Option<CircuitOpen<K>> },
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): the inner service's
    /// future, whose result is classified and recorded once when it completes, or a
    /// rejection, ready at once.
    ///
    /// Dropping it before it completes records a cancellation, not a failure, and gives a
    /// half-open permit back.
    pub struct ResponseFuture<F, C, K> {
        #[pin]
        kind: Kind<F, K>,
        permit: Option<Permit<C, K>>,
    }
}

impl<F, C, K> ResponseFuture<F, C, K> {
    pub(crate) fn called(future: F, permit: Option<Permit<C, K>>) -> Self {
        Self {
            kind: Kind::Called { future },
            permit,
        }
    }

    pub(crate) fn rejected(open: CircuitOpen<K>) -> Self {
        Self {
            kind: Kind::Rejected { open: Some(open) },
            permit: None,
        }
    }
}

impl<F, C, K> fmt::Debug for ResponseFuture<F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<F, C, K, T, E> Future for ResponseFuture<F, C, K>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    K: Clone + 'static,
{
    type Output = Result<T, CircuitBreakerError<E, K>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = this.permit.take() {
                    permit.complete(&result);
                }
                Poll::Ready(result.map_err(CircuitBreakerError::Inner))
            }
            KindProj::Rejected { open } => match open.take() {
                Some(open) => Poll::Ready(Err(CircuitBreakerError::Open(open))),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}

pin_project! {
    /// Response future of [`Http503`](super::Http503).
    #[derive(Debug)]
    pub struct Http503Future<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Http503Future<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F, B, E, K> Future for Http503Future<F>
where
    F: Future<Output = Result<Response<B>, CircuitBreakerError<E, K>>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok(res) => Ok(res),
            Err(CircuitBreakerError::Open(open)) => Ok(open.to_http_response()),
            Err(CircuitBreakerError::Inner(e)) => Err(e),
        })
    }
}
