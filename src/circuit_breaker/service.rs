//! The service.

use std::{
    fmt,
    hash::Hash,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::time::Instant;
use tower_service::Service;

use super::{
    CircuitBreakerError, CircuitBreakerHandle, CircuitOpen, KeyFn, ResponseFuture,
    shared::{Breakers, Shared},
    state::{Admit, Breaker},
};
use crate::classify::{Classify, HttpClassifier};

/// What one service (one clone) holds: the shared breakers and its own classifier.
///
/// Each clone of the service gets its own `Local`, and each call's future holds an `Arc` of
/// it: the reference count a future bumps is the clone's, not one shared by every thread.
/// Aligned to two cache lines so that two clones' counts never share one.
#[repr(align(128))]
pub(crate) struct Local<C, K> {
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) classifier: C,
}

/// Which breaker a call went through.
pub(crate) enum Target<K> {
    Single,
    Keyed(Arc<Breaker<K>>),
}

/// A call that was let through: records its result, or its cancellation when dropped
/// unfinished (a probe's permit goes back then, so a dropped probe cannot wedge the breaker).
pub(crate) struct Permit<C, K> {
    local: Arc<Local<C, K>>,
    target: Target<K>,
    admit: Admit,
    start: Option<Instant>,
    armed: bool,
}

impl<C, K> Permit<C, K> {
    fn breaker(&self) -> Option<&Breaker<K>> {
        match (&self.target, &self.local.shared.breakers) {
            (Target::Keyed(b), _) => Some(b),
            (Target::Single, Breakers::Single(b)) => Some(b),
            (Target::Single, Breakers::Keyed(_)) => None,
        }
    }
}

impl<C, K: Clone + 'static> Permit<C, K> {
    /// Classifies and records the result, once.
    pub(crate) fn complete<Res, E>(mut self, result: &Result<Res, E>)
    where
        C: Classify<Res, E>,
    {
        self.armed = false;
        let Some(b) = self.breaker() else { return };
        let core = &self.local.shared.core;
        let classifier = &self.local.classifier;
        let outcome = classifier.classify(result.as_ref());
        let retry_after = if outcome == crate::classify::Outcome::Failure {
            classifier.retry_after(result.as_ref())
        } else {
            None
        };
        let slow = match (core.config.slow_call_duration, self.start) {
            (Some(limit), Some(start)) => start.elapsed() > limit,
            _ => false,
        };
        b.record(core, self.admit, outcome, slow, retry_after);
    }
}

impl<C, K> Drop for Permit<C, K> {
    fn drop(&mut self) {
        if self.armed
            && let Some(b) = self.breaker()
        {
            b.cancel(self.admit);
        }
    }
}

/// A circuit breaker around `S`; made by a [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
/// See the [module docs](super).
///
/// `poll_ready` is the inner service's: an open breaker rejects in `call`, at once, with
/// [`CircuitBreakerError::Open`], without calling the inner service. Clones share the
/// breakers.
pub struct CircuitBreaker<S, C = HttpClassifier, K = (), F = ()> {
    inner: S,
    local: Arc<Local<C, K>>,
    key_fn: F,
}

impl<S, C, K, F> CircuitBreaker<S, C, K, F> {
    pub(crate) fn new(inner: S, local: Arc<Local<C, K>>, key_fn: F) -> Self {
        Self {
            inner,
            local,
            key_fn,
        }
    }

    /// The handle to read and steer the breakers.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle<K> {
        CircuitBreakerHandle::new(self.local.shared.clone())
    }

    inner_service_accessors!();
}

impl<S: Clone, C: Clone, K, F: Clone> Clone for CircuitBreaker<S, C, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            // A fresh `Local` per clone; see `Local`.
            local: Arc::new(Local {
                shared: self.local.shared.clone(),
                classifier: self.local.classifier.clone(),
            }),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, K, F> fmt::Debug for CircuitBreaker<S, C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("name", &self.local.shared.core.config.name)
            .field("classifier", &self.local.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, K, F> Service<Req> for CircuitBreaker<S, C, K, F>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
    K: Clone + Hash + Eq + 'static,
    F: KeyFn<Req, K>,
{
    type Response = S::Response;
    type Error = CircuitBreakerError<S::Error, K>;
    type Future = ResponseFuture<S::Future, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(CircuitBreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.local.shared;
        let core = &shared.core;
        let (target, admitted) = match &shared.breakers {
            Breakers::Single(b) => (Target::Single, admit(b, core)),
            Breakers::Keyed(registry) => {
                let b = registry.get_or_insert(self.key_fn.key(&req), core);
                let admitted = admit(&b, core);
                (Target::Keyed(b), admitted)
            }
        };
        match admitted {
            Ok(Admit::Bypass) => ResponseFuture::called(self.inner.call(req), None),
            Ok(admit) => {
                let start = core.config.slow_call_duration.map(|_| Instant::now());
                let permit = Permit {
                    local: self.local.clone(),
                    target,
                    admit,
                    start,
                    armed: true,
                };
                ResponseFuture::called(self.inner.call(req), Some(permit))
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

fn admit<K: Clone + 'static>(
    b: &Breaker<K>,
    core: &super::state::Core<K>,
) -> Result<Admit, CircuitOpen<K>> {
    b.acquire(core)
        .map_err(|r| CircuitOpen::new(b.key.clone(), r.state, r.retry_after))
}
