//! [`Optional`]: a layer switched on or off at run time, without boxing.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// A layer that is there or not, decided at run time (e.g. from an environment variable).
///
/// Its service is an [`OptionalService`], the layer's service or the inner service itself;
/// its response body an [`Either`] of both bodies. Nothing is boxed or allocated. A slot that
/// is off still has the on branch's size, though: its future and response body are as large
/// as the layer's would be, and moving them from layer to layer is most of what an off slot
/// costs (the branch itself is a few nanoseconds; `benches/stack.rs` measures both).
///
/// The two services must agree on the error type, up to `Into`: the layer's own error is the
/// slot's, and the inner service's is converted into it (identity when they are the same, as
/// for every server layer of this crate, which keep the inner error).
///
/// ```
/// use tower::{Layer as _, ServiceExt as _, service_fn};
/// use tower_bulwark::{request_id::RequestIdLayer, stack::{Optional, OptionalService}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let enabled = std::env::var("REQUEST_ID").is_ok_and(|v| v == "on");
/// let layer = Optional::new(enabled.then(RequestIdLayer::new));
/// let svc = layer.layer(service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// assert_eq!(matches!(svc, OptionalService::On(_)), enabled);
/// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.headers().contains_key("x-request-id"), enabled);
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Optional<L> {
    layer: Option<L>,
}

impl<L> Optional<L> {
    /// On with `Some(layer)`, off with `None`.
    pub fn new(layer: Option<L>) -> Self {
        Self { layer }
    }

    /// On: services go through `layer`.
    pub fn on(layer: L) -> Self {
        Self { layer: Some(layer) }
    }

    /// Off: services are left as they are.
    pub fn off() -> Self {
        Self { layer: None }
    }

    /// Whether the layer is on.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.layer.is_some()
    }

    /// The layer, when on.
    #[must_use]
    pub fn get(&self) -> Option<&L> {
        self.layer.as_ref()
    }

    /// The layer, when on.
    #[must_use]
    pub fn into_inner(self) -> Option<L> {
        self.layer
    }

    /// The same switch around `f(layer)`.
    pub fn map<L2>(self, f: impl FnOnce(L) -> L2) -> Optional<L2> {
        Optional {
            layer: self.layer.map(f),
        }
    }
}

impl<L> Default for Optional<L> {
    fn default() -> Self {
        Self::off()
    }
}

impl<L> From<Option<L>> for Optional<L> {
    fn from(layer: Option<L>) -> Self {
        Self::new(layer)
    }
}

impl<S, L: Layer<S>> Layer<S> for Optional<L> {
    type Service = OptionalService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.layer {
            Some(layer) => OptionalService::On(layer.layer(inner)),
            None => OptionalService::Off(inner),
        }
    }
}

/// Service made by [`Optional`]: the layer's service when on, the inner service when off.
#[derive(Clone, Debug)]
pub enum OptionalService<On, Off> {
    /// The layer is on: its service, around the inner one.
    On(On),
    /// The layer is off: the inner service itself.
    Off(Off),
}

impl<On, Off, Req, OnBody, OffBody> Service<Req> for OptionalService<On, Off>
where
    On: Service<Req, Response = Response<OnBody>>,
    Off: Service<Req, Response = Response<OffBody>>,
    Off::Error: Into<On::Error>,
{
    type Response = Response<Either<OnBody, OffBody>>;
    type Error = On::Error;
    type Future = OptionalFuture<On::Future, Off::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(on) => on.poll_ready(cx),
            Self::Off(off) => off.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let kind = match self {
            Self::On(on) => Kind::On {
                future: on.call(req),
            },
            Self::Off(off) => Kind::Off {
                future: off.call(req),
            },
        };
        OptionalFuture { kind }
    }
}

pin_project! {
    /// Response future of [`OptionalService`].
    #[derive(Debug)]
    pub struct OptionalFuture<On, Off> {
        #[pin]
        kind: Kind<On, Off>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<On, Off> {
        On { #[pin] future: On },
        Off { #[pin] future: Off },
    }
}

impl<On, Off, OnBody, OffBody, OnError, OffError> Future for OptionalFuture<On, Off>
where
    On: Future<Output = Result<Response<OnBody>, OnError>>,
    Off: Future<Output = Result<Response<OffBody>, OffError>>,
    OffError: Into<OnError>,
{
    type Output = Result<Response<Either<OnBody, OffBody>>, OnError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future
                .poll(cx)
                .map_ok(|response| response.map(Either::Left)),
            KindProj::Off { future } => future.poll(cx).map(|result| {
                result
                    .map(|response| response.map(Either::Right))
                    .map_err(Into::into)
            }),
        }
    }
}
