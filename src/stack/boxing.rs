//! The client stack's errors as one `BoxError`: the transport's at the bottom, and a circuit
//! breaker's through `CircuitBreakerError::into_box_error`.

use std::{
    error::Error,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

pub(super) type BoxError = Box<dyn Error + Send + Sync>;

/// Turns the errors of the service it wraps into `Box<dyn Error + Send + Sync>` (tower's
/// `BoxError`), the error of every [`ClientStack`](super::ClientStack): the bottom of the
/// stack, so that its type does not depend on which layers are compiled in.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxErrorLayer;

impl<S> Layer<S> for BoxErrorLayer {
    type Service = BoxErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxErrors { inner }
    }
}

/// Service made by [`BoxErrorLayer`].
#[derive(Clone, Debug)]
pub struct BoxErrors<S> {
    inner: S,
}

impl<S> BoxErrors<S> {
    /// The wrapped service.
    #[must_use]
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for BoxErrors<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrorsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        BoxErrorsFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`BoxErrors`].
    #[derive(Debug)]
    pub struct BoxErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for BoxErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

#[cfg(feature = "circuit-breaker")]
pub use self::breaker::{BreakerBoxError, BreakerBoxErrorFuture, BreakerSlot};

#[cfg(feature = "circuit-breaker")]
mod breaker {
    use std::{
        fmt,
        future::Future,
        pin::Pin,
        task::{Context, Poll},
    };

    use pin_project_lite::pin_project;
    use tower_layer::Layer;
    use tower_service::Service;

    use super::BoxError;
    use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerError, CircuitBreakerLayer};

    /// The circuit-breaker slot of a [`ClientStack`](crate::stack::ClientStack): the
    /// [`CircuitBreakerLayer`] given to it, with its errors boxed by
    /// [`CircuitBreakerError::into_box_error`], so that the rejection is a boxed
    /// [`CircuitOpen`](crate::circuit_breaker::CircuitOpen) (`err.is::<CircuitOpen<K>>()`) and
    /// the inner errors are themselves, not wrapped.
    #[derive(Clone, Debug)]
    pub struct BreakerSlot<C, K, F> {
        layer: CircuitBreakerLayer<C, K, F>,
    }

    impl<C, K, F> BreakerSlot<C, K, F> {
        pub(in crate::stack) fn new(layer: CircuitBreakerLayer<C, K, F>) -> Self {
            Self { layer }
        }

        /// The breaker layer.
        pub fn get_ref(&self) -> &CircuitBreakerLayer<C, K, F> {
            &self.layer
        }
    }

    impl<S, C: Clone, K, F: Clone> Layer<S> for BreakerSlot<C, K, F> {
        type Service = BreakerBoxError<CircuitBreaker<S, C, K, F>>;

        fn layer(&self, inner: S) -> Self::Service {
            BreakerBoxError {
                inner: self.layer.layer(inner),
            }
        }
    }

    /// Service made by [`BreakerSlot`]: a circuit breaker whose errors are boxed.
    #[derive(Clone, Debug)]
    pub struct BreakerBoxError<S> {
        inner: S,
    }

    impl<S> BreakerBoxError<S> {
        /// The breaker service.
        #[must_use]
        pub fn get_ref(&self) -> &S {
            &self.inner
        }
    }

    impl<S, Req, E, K> Service<Req> for BreakerBoxError<S>
    where
        S: Service<Req, Error = CircuitBreakerError<E, K>>,
        E: Into<BoxError>,
        K: fmt::Debug + Send + Sync + 'static,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = BreakerBoxErrorFuture<S::Future>;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner
                .poll_ready(cx)
                .map_err(CircuitBreakerError::into_box_error)
        }

        #[inline]
        fn call(&mut self, req: Req) -> Self::Future {
            BreakerBoxErrorFuture {
                inner: self.inner.call(req),
            }
        }
    }

    pin_project! {
        /// Response future of [`BreakerBoxError`].
        #[derive(Debug)]
        pub struct BreakerBoxErrorFuture<F> {
            #[pin]
            inner: F,
        }
    }

    impl<F, T, E, K> Future for BreakerBoxErrorFuture<F>
    where
        F: Future<Output = Result<T, CircuitBreakerError<E, K>>>,
        E: Into<BoxError>,
        K: fmt::Debug + Send + Sync + 'static,
    {
        type Output = Result<T, BoxError>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project()
                .inner
                .poll(cx)
                .map_err(CircuitBreakerError::into_box_error)
        }
    }
}
