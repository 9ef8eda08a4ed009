//! [`CallTimeoutLayer`]: a deadline for an outbound call, failing with [`Elapsed`].

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::ConfigError;

type BoxError = Box<dyn Error + Send + Sync>;

/// The error of a call that outlived its [`CallTimeoutLayer`].
///
/// Its `Debug` output is `Elapsed(())`, like tower's and Tokio's, so `classify::is_timeout`
/// recognises it too (the `classify` module comes with the `circuit-breaker`,
/// `fallback-cache` and `retry` features).
#[derive(Debug)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request timed out")
    }
}

impl Error for Elapsed {}

/// Bounds an outbound call (any `Service`, usually an HTTP client) to a duration; past it the
/// call fails with a boxed [`Elapsed`] and the inner future is dropped with it.
///
/// The client-side counterpart of [`ResponseTimeoutLayer`](super::ResponseTimeoutLayer): a
/// client wants an error it can classify, count and retry, not a made-up response. Errors
/// become `Box<dyn Error + Send + Sync>` (tower's `BoxError`), the inner ones unchanged
/// inside. Below a retry layer it bounds each attempt; inside a circuit breaker a timeout
/// counts as a failure.
///
/// ```
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt as _, service_fn};
/// use tower_bulwark::limit::{CallTimeoutLayer, Elapsed};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = service_fn(|()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::io::Error>("late")
/// });
/// let client = ServiceBuilder::new()
///     .layer(CallTimeoutLayer::new(Duration::from_secs(1)).unwrap())
///     .service(slow);
/// let err = client.oneshot(()).await.unwrap_err();
/// assert!(err.is::<Elapsed>());
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct CallTimeoutLayer {
    timeout: Duration,
}

impl CallTimeoutLayer {
    /// A layer failing calls that take longer than `timeout`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `timeout` when it is zero.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        let timeout = super::error::nonzero_timeout(timeout)?;
        Ok(Self { timeout })
    }

    /// The time allowed to a call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for CallTimeoutLayer {
    type Service = CallTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Service made by [`CallTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct CallTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> CallTimeout<S> {
    inner_service_accessors!();
}

impl<S, Req> Service<Req> for CallTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CallTimeoutFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        CallTimeoutFuture {
            inner: self.inner.call(req),
            sleep: sleep(self.timeout),
        }
    }
}

pin_project! {
    /// Response future of [`CallTimeout`].
    #[derive(Debug)]
    pub struct CallTimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F, T, E> Future for CallTimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner call first: an answer and the deadline in the same poll is an answer.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        ready!(this.sleep.poll(cx));
        Poll::Ready(Err(Box::new(Elapsed(()))))
    }
}
