//! The rejection and the service's error type.

use std::{error::Error, fmt, time::Duration};

use http::{HeaderValue, Response, StatusCode, header::RETRY_AFTER};

use super::State;

/// A call rejected by an open breaker, without reaching the inner service.
///
/// Cheap to make: no allocation beyond cloning the key, no backtrace. Carries the breaker's
/// key (`()` for an unkeyed breaker), the state that refused, and how long until calls may
/// pass again when that is known:
///
/// | state | `retry_after` |
/// |---|---|
/// | `Open` | the time left open |
/// | `HalfOpen` (every permit taken) | the time left before `max_half_open_wait` ends the probing, or `None` if there is no such limit |
/// | `ForcedOpen` | `None` |
///
/// [`CircuitOpen::to_http_response`] turns it into `503 Service Unavailable` with
/// `Retry-After`.
pub struct CircuitOpen<K = ()> {
    key: K,
    state: State,
    retry_after: Option<Duration>,
}

impl<K> CircuitOpen<K> {
    pub(crate) fn new(key: K, state: State, retry_after: Option<Duration>) -> Self {
        Self {
            key,
            state,
            retry_after,
        }
    }

    /// The key of the breaker that refused.
    #[must_use]
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Consumes the error, returning the key.
    #[must_use]
    pub fn into_key(self) -> K {
        self.key
    }

    /// The state that refused: `Open`, `HalfOpen` or `ForcedOpen`.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// How long until calls may pass again, when known (see the type docs).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// `503 Service Unavailable` with `Retry-After` in whole seconds, rounded up, when the
    /// time left is known; the body is `B::default()`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_bulwark::circuit_breaker::{CircuitBreakerError, CircuitBreakerLayer};
    /// # use tower::{Service, ServiceExt as _, service_fn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let layer = CircuitBreakerLayer::new();
    /// # layer.handle().open_for(Duration::from_millis(1500));
    /// # let svc = tower::ServiceBuilder::new().layer(layer).service(service_fn(
    /// #     |_req: http::Request<String>| async { Ok::<_, std::io::Error>(http::Response::new(String::new())) },
    /// # ));
    /// let Err(CircuitBreakerError::Open(open)) = svc.oneshot(http::Request::new(String::new())).await
    /// else { unreachable!() };
    /// let res = open.to_http_response::<String>();
    /// assert_eq!(res.status(), 503);
    /// assert_eq!(res.headers()["retry-after"], "2");
    /// # }
    /// ```
    #[must_use]
    pub fn to_http_response<B: Default>(&self) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        if let Some(d) = self.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

impl<K: Clone> Clone for CircuitOpen<K> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            state: self.state,
            retry_after: self.retry_after,
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for CircuitOpen<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl<K> fmt::Display for CircuitOpen<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            State::HalfOpen => f.write_str("circuit breaker is half-open and probing")?,
            State::ForcedOpen => f.write_str("circuit breaker is forced open")?,
            _ => f.write_str("circuit breaker is open")?,
        }
        if let Some(d) = self.retry_after {
            write!(f, "; retry in {:.3}s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

impl<K: fmt::Debug> Error for CircuitOpen<K> {}

/// The error of a [`CircuitBreaker`](super::CircuitBreaker): either the breaker refused the
/// call, or the inner service failed.
///
/// Keeping the inner error typed (no `BoxError`) lets a caller match on it. With
/// `HandleErrorLayer` or anything else that wants a `BoxError`, use
/// [`into_box_error`](Self::into_box_error), which unwraps the inner error so that
/// downcasting it still works.
#[derive(Debug)]
pub enum CircuitBreakerError<E, K = ()> {
    /// Rejected by the breaker; the inner service was not called.
    Open(CircuitOpen<K>),
    /// The inner service's own error.
    Inner(E),
}

impl<E, K> CircuitBreakerError<E, K> {
    /// Whether the breaker rejected the call.
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open(_))
    }

    /// The rejection, if it was one.
    #[must_use]
    pub fn as_open(&self) -> Option<&CircuitOpen<K>> {
        match self {
            Self::Open(open) => Some(open),
            Self::Inner(_) => None,
        }
    }

    /// The inner service's error, if it was one.
    #[must_use]
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Open(_) => None,
            Self::Inner(e) => Some(e),
        }
    }

    /// A `BoxError` holding either the [`CircuitOpen`] or the inner error itself (not this
    /// wrapper), so `err.is::<CircuitOpen<K>>()` and downcasts to the inner type work.
    pub fn into_box_error(self) -> Box<dyn Error + Send + Sync>
    where
        E: Into<Box<dyn Error + Send + Sync>>,
        K: fmt::Debug + Send + Sync + 'static,
    {
        match self {
            Self::Open(open) => Box::new(open),
            Self::Inner(e) => e.into(),
        }
    }
}

impl<E: fmt::Display, K> fmt::Display for CircuitBreakerError<E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(open) => open.fmt(f),
            Self::Inner(e) => e.fmt(f),
        }
    }
}

impl<E, K> Error for CircuitBreakerError<E, K>
where
    E: Error + 'static,
    K: fmt::Debug + 'static,
{
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Open(_) => None,
            // Transparent: the wrapper adds nothing to the inner error's message.
            Self::Inner(e) => e.source(),
        }
    }
}

/// A transition the state machine does not allow (only `HalfOpen` is restricted: it can only
/// follow `Open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    pub(crate) from: State,
    pub(crate) to: State,
}

impl IllegalTransition {
    /// The state the breaker was in (and still is).
    #[must_use]
    pub fn from(&self) -> State {
        self.from
    }

    /// The state asked for.
    #[must_use]
    pub fn to(&self) -> State {
        self.to
    }
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a circuit breaker cannot move from {} to {}",
            self.from, self.to
        )
    }
}

impl Error for IllegalTransition {}
