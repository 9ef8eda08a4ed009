//! Rejections as `503 Service Unavailable` responses, for HTTP services.

use std::task::{Context, Poll};

use http::Response;
use tower_layer::Layer;
use tower_service::Service;

use super::{CircuitBreakerError, future::Http503Future};

/// Answers a circuit breaker's rejections with `503 Service Unavailable` and `Retry-After`
/// (whole seconds, rounded up, when the time left is known), and passes the inner service's
/// errors through unchanged: the error type is the inner service's again.
///
/// Put it right outside a [`CircuitBreakerLayer`](super::CircuitBreakerLayer), most simply
/// with [`CircuitBreakerLayer::http_503`](super::CircuitBreakerLayer::http_503). Useful on a
/// server (an axum `Router` needs `Error = Infallible`) or when a client's callers already
/// handle 503.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt as _, service_fn};
/// use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = CircuitBreakerLayer::new();
/// let handle = breaker.handle();
/// let svc = ServiceBuilder::new()
///     .layer(breaker.http_503())
///     .service(service_fn(|_req: Request<String>| async {
///         Ok::<_, Infallible>(Response::new("hello".to_owned()))
///     }));
///
/// handle.open_for(Duration::from_secs(30));
/// let res = svc.oneshot(Request::new(String::new())).await.unwrap(); // Error = Infallible
/// assert_eq!(res.status(), 503);
/// assert_eq!(res.headers()["retry-after"], "30");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct Http503Layer {
    _p: (),
}

impl Http503Layer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _p: () }
    }
}

impl<S> Layer<S> for Http503Layer {
    type Service = Http503<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Http503 { inner }
    }
}

/// The service made by [`Http503Layer`].
#[derive(Clone, Debug)]
pub struct Http503<S> {
    inner: S,
}

impl<S> Http503<S> {
    inner_service_accessors!();
}

impl<S, Req, B, E, K> Service<Req> for Http503<S>
where
    S: Service<Req, Response = Response<B>, Error = CircuitBreakerError<E, K>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = E;
    type Future = Http503Future<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(CircuitBreakerError::Inner(e))) => Poll::Ready(Err(e)),
            // The breaker never refuses in `poll_ready`; if something below did, report
            // ready and let `call` answer 503.
            Poll::Ready(Err(CircuitBreakerError::Open(_))) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        Http503Future::new(self.inner.call(req))
    }
}
