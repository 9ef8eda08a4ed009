//! The service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    ResponseFuture, RetryHandle, RetryableRequest, SafeOrIdempotent, config::Config,
    future::Retrying, handle::Shared,
};
use crate::classify::{Classify, HttpClassifier};

/// What one service (one clone) holds: the settings, its classifier and the shared state.
///
/// Each clone of the service gets its own `Local`, and each retryable call's future holds an
/// `Arc` of it: the reference count a future bumps is the clone's, not one shared by every
/// thread. Aligned to two cache lines so that two clones' counts never share one.
#[repr(align(128))]
pub(crate) struct Local<C> {
    pub(crate) config: Config,
    pub(crate) classifier: C,
    pub(crate) shared: Arc<Shared>,
}

/// Retries failed requests to `S`; made by a [`RetryLayer`](super::RetryLayer). See the
/// [module docs](super).
///
/// `poll_ready` is the inner service's. Each retry is sent through a clone of the inner
/// service, made when the request arrives and polled ready before each retry. Clones share
/// the budget and the counters.
pub struct Retry<S, C = HttpClassifier, P = SafeOrIdempotent> {
    inner: S,
    local: Arc<Local<C>>,
    retryable: P,
}

impl<S, C, P> Retry<S, C, P> {
    pub(crate) fn new(inner: S, local: Arc<Local<C>>, retryable: P) -> Self {
        Self {
            inner,
            local,
            retryable,
        }
    }

    /// The handle to read the counters and the budget.
    #[must_use]
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(self.local.shared.clone())
    }

    inner_service_accessors!();
}

impl<S: Clone, C: Clone, P: Clone> Clone for Retry<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            // A fresh `Local` per clone; see `Local`.
            local: Arc::new(Local {
                config: self.local.config,
                classifier: self.local.classifier.clone(),
                shared: self.local.shared.clone(),
            }),
            retryable: self.retryable.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.local.shared.name)
            .field("config", &self.local.config)
            .field("classifier", &self.local.classifier)
            .field("retryable", &self.retryable)
            .finish_non_exhaustive()
    }
}

/// Requests must be replayable: `B: Clone` (e.g. `http_body_util::Full<Bytes>`, `String`),
/// and the inner service `Clone`. Extensions are cloned with the request, so request IDs,
/// route or operation markers reach every attempt. The error must be `Debug + 'static`, to
/// recognise a circuit breaker's rejection in it (see the [module docs](super)).
impl<S, B, RB, C, P> Service<Request<B>> for Retry<S, C, P>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: fmt::Debug + 'static,
    B: Clone,
    C: Classify<Response<RB>, S::Error>,
    P: RetryableRequest<B> + Clone,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, C, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.local.config.max_attempts <= 1 || !self.retryable.is_retryable(&req) {
            // Nothing to keep: no copy, no clone, no deposit.
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        self.local.shared.budget.deposit();
        let copy = req.clone();
        // The first attempt goes through the service that was polled ready; the clone, which
        // is not, is polled ready in the future before each retry.
        let future = self.inner.call(req);
        let retrying = Retrying::new(
            self.inner.clone(),
            copy,
            self.local.clone(),
            self.retryable.clone(),
        );
        ResponseFuture::retrying(future, retrying)
    }
}
