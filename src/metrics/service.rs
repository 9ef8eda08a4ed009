//! The server and client services.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{
    ClassifyError, ClassifyRequest, ClientMetrics, ResponseBody, ResponseFuture, RetryAttempt,
    ServerMetrics, TraceIdSource,
    labels::{MethodLabel, OTHER, UNMATCHED},
    series::Recorder,
};

/// Service made by [`ServerMetricsLayer`](super::ServerMetricsLayer).
#[derive(Clone, Debug)]
pub struct ServerMetricsService<S, C = (), T = (), E = ()> {
    inner: S,
    metrics: ServerMetrics,
    classify_route: C,
    trace_id: T,
    classify_error: E,
}

impl<S, C, T, E> ServerMetricsService<S, C, T, E> {
    pub(super) fn new(
        inner: S,
        metrics: ServerMetrics,
        classify_route: C,
        trace_id: T,
        classify_error: E,
    ) -> Self {
        Self {
            inner,
            metrics,
            classify_route,
            trace_id,
            classify_error,
        }
    }

    inner_service_accessors!();
}

impl<S, C, T, E, ReqBody, ResBody> Service<Request<ReqBody>> for ServerMetricsService<S, C, T, E>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyRequest<ReqBody>,
    T: TraceIdSource<ReqBody>,
    E: ClassifyError<S::Error> + Clone,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = MethodLabel::of(req.method());
        let series = self.classify_route.with_label(&req, |route| {
            let route = route.unwrap_or(UNMATCHED);
            self.metrics.series.get(Some(method), route)
        });
        let trace_id = self.trace_id.trace_id(&req);
        // Started before the inner call, so the inner service's own time is measured.
        let recorder = Recorder::start(series, trace_id);
        ResponseFuture::new(self.inner.call(req), recorder, self.classify_error.clone())
    }
}

/// Service made by [`ClientMetricsLayer`](super::ClientMetricsLayer).
#[derive(Clone, Debug)]
pub struct ClientMetricsService<S, C = (), T = (), E = ()> {
    inner: S,
    metrics: ClientMetrics,
    classify_operation: C,
    trace_id: T,
    classify_error: E,
}

impl<S, C, T, E> ClientMetricsService<S, C, T, E> {
    pub(super) fn new(
        inner: S,
        metrics: ClientMetrics,
        classify_operation: C,
        trace_id: T,
        classify_error: E,
    ) -> Self {
        Self {
            inner,
            metrics,
            classify_operation,
            trace_id,
            classify_error,
        }
    }

    inner_service_accessors!();
}

impl<S, C, T, E, ReqBody, ResBody> Service<Request<ReqBody>> for ClientMetricsService<S, C, T, E>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyRequest<ReqBody>,
    T: TraceIdSource<ReqBody>,
    E: ClassifyError<S::Error> + Clone,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let series = self.classify_operation.with_label(&req, |operation| {
            let operation = operation.unwrap_or(OTHER);
            self.metrics.series.get(None, operation)
        });
        let trace_id = self.trace_id.trace_id(&req);
        if req
            .extensions()
            .get::<RetryAttempt>()
            .is_some_and(|a| a.is_retry())
        {
            series.count_retry();
        }
        let recorder = Recorder::start(series, trace_id);
        ResponseFuture::new(self.inner.call(req), recorder, self.classify_error.clone())
    }
}
