//! Counting open connections by wrapping a make-service.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use prometheus_client::metrics::gauge::Gauge;
use tower_service::Service;

use super::ConnectionGuard;

/// A make-service that counts each connection it makes a service for in
/// `http_active_connections`. Made by
/// [`ServerMetrics::track_connections`](super::ServerMetrics::track_connections).
///
/// A server (`axum::serve`, a hyper accept loop using a make-service) calls it once per
/// accepted connection and keeps the service it returns, a [`TrackedConnection`], for as long
/// as the connection lives; the count comes down when that service and all its clones are
/// dropped.
#[derive(Clone, Debug)]
pub struct TrackConnections<M> {
    inner: M,
    gauge: Gauge,
}

impl<M> TrackConnections<M> {
    pub(super) fn new(inner: M, gauge: Gauge) -> Self {
        Self { inner, gauge }
    }

    /// Consumes `self`, returning the inner make-service.
    #[must_use]
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M, Target> Service<Target> for TrackConnections<M>
where
    M: Service<Target>,
{
    type Response = TrackedConnection<M::Response>;
    type Error = M::Error;
    type Future = TrackConnectionFuture<M::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: Target) -> Self::Future {
        // Counted from the accept, so a connection whose service is still being made counts.
        let guard = ConnectionGuard::new(self.gauge.clone());
        TrackConnectionFuture {
            inner: self.inner.call(target),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// Future of [`TrackConnections`]: the connection's service, wrapped.
    #[derive(Debug)]
    pub struct TrackConnectionFuture<F> {
        #[pin]
        inner: F,
        guard: Option<ConnectionGuard>,
    }
}

impl<F, S, E> Future for TrackConnectionFuture<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Result<TrackedConnection<S>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let service = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(TrackedConnection {
            inner: service,
            _guard: this.guard.take().map(Arc::new),
        }))
    }
}

/// One connection's service, counted in `http_active_connections` until it and all its
/// clones are dropped. Calls pass through unchanged.
#[derive(Clone, Debug)]
pub struct TrackedConnection<S> {
    inner: S,
    // Shared by clones: hyper-util clones the service for every request.
    _guard: Option<Arc<ConnectionGuard>>,
}

impl<S> TrackedConnection<S> {
    /// Gets a reference to the inner service.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, R> Service<R> for TrackedConnection<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}
