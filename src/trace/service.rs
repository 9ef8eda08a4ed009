//! The server and client services.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{
    ClassifyRoute, ResponseFuture, Route, TraceBody, correlation, propagation,
    span::{self, Config, Details, Kind},
};

/// Server service made by [`ServerTraceLayer`](super::ServerTraceLayer): one server span per
/// request, continuing the caller's trace. See the [module docs](super) for the details.
#[derive(Clone, Debug)]
pub struct ServerTraceService<S, R = ()> {
    inner: S,
    config: Arc<Config>,
    classify_route: R,
}

impl<S, R> ServerTraceService<S, R> {
    pub(super) fn new(inner: S, config: Arc<Config>, classify_route: R) -> Self {
        Self {
            inner,
            config,
            classify_route,
        }
    }

    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ServerTraceService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    R: ClassifyRoute<ReqBody>,
{
    type Response = Response<TraceBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let route = self.classify_route.route(&req);
        let remote = propagation::extract(req.headers(), self.config.baggage);
        let span = {
            // Attached while the span is made, the caller's context is its parent, for
            // tracing-opentelemetry (context activation) and for `CorrelationLayer` alike.
            let _attached = remote.clone().map(opentelemetry::Context::attach);
            span::server_span(&self.config, &req)
        };
        if let Some(remote) = remote {
            // Also right when tracing-opentelemetry does not read the attached context (with
            // context activation off it prefers an enclosing `tracing` span). An error only
            // means there is no OpenTelemetry layer, which `CorrelationLayer` covers.
            let _ = span.set_parent(remote);
        }
        let details = Details::new(&span, correlation::span_context(&span).as_ref());
        details.record_server(&span, &self.config, &req, route.as_ref().map(Route::as_str));
        let future = span.in_scope(|| self.inner.call(req));
        ResponseFuture::new(future, span, details, self.config.clone(), Kind::Server)
    }
}

/// Client service made by [`ClientTraceLayer`](super::ClientTraceLayer): one client span per
/// request, whose context is sent on in `traceparent`. See the [module docs](super) for the
/// details.
#[derive(Clone, Debug)]
pub struct ClientTraceService<S, R = ()> {
    inner: S,
    config: Arc<Config>,
    classify_route: R,
}

impl<S, R> ClientTraceService<S, R> {
    pub(super) fn new(inner: S, config: Arc<Config>, classify_route: R) -> Self {
        Self {
            inner,
            config,
            classify_route,
        }
    }

    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ClientTraceService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    R: ClassifyRoute<ReqBody>,
{
    type Response = Response<TraceBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let template = self.classify_route.route(&req);
        let span = span::client_span(&self.config, &req);
        let found = correlation::span_context(&span);
        let details = Details::new(&span, found.as_ref());
        details.record_client(
            &span,
            &self.config,
            &req,
            template.as_ref().map(Route::as_str),
        );
        if self.config.inject {
            // If a filter disabled our span, pass the enclosing span's context on instead, so
            // the callee still joins the trace.
            let context = found.or_else(|| correlation::span_context(&Span::current()));
            if let Some((sc, cx)) = context {
                propagation::inject(&sc, cx.as_ref(), self.config.baggage, req.headers_mut());
            }
        }
        let future = span.in_scope(|| self.inner.call(req));
        ResponseFuture::new(future, span, details, self.config.clone(), Kind::Client)
    }
}
