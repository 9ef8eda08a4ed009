//! The server and client layers and their type-changing builders.

use tower_layer::Layer;

use super::{ClientMetrics, ClientMetricsService, ServerMetrics, ServerMetricsService};

/// Server layer: records `http_requests_total`, `http_request_duration_seconds`,
/// `http_requests_in_flight` and `http_errors_total` for every request. See the
/// [module docs](super).
///
/// `C` names the route ([`ClassifyRequest`](super::ClassifyRequest), `()`: every request is
/// `unmatched`), `T` finds the trace for exemplars ([`TraceIdSource`](super::TraceIdSource),
/// `()`: none), `E` classifies the inner service's errors
/// ([`ClassifyError`](super::ClassifyError), `()`: all are `error`).
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerMetricsLayer<C = (), T = (), E = ()> {
    metrics: ServerMetrics,
    classify_route: C,
    trace_id: T,
    classify_error: E,
}

impl ServerMetricsLayer {
    /// A layer recording into `metrics`, with the default hooks.
    pub fn new(metrics: ServerMetrics) -> Self {
        Self {
            metrics,
            classify_route: (),
            trace_id: (),
            classify_error: (),
        }
    }
}

impl<C, T, E> ServerMetricsLayer<C, T, E> {
    /// Sets how a request's `route` label is found: a closure
    /// `FnMut(&Request<B>) -> Option<LabelValue>` returning the route template.
    pub fn classify_route<C2>(self, classify_route: C2) -> ServerMetricsLayer<C2, T, E> {
        ServerMetricsLayer {
            metrics: self.metrics,
            classify_route,
            trace_id: self.trace_id,
            classify_error: self.classify_error,
        }
    }

    /// Sets where the trace ID of exemplars comes from.
    pub fn trace_id_source<T2>(self, trace_id: T2) -> ServerMetricsLayer<C, T2, E> {
        ServerMetricsLayer {
            metrics: self.metrics,
            classify_route: self.classify_route,
            trace_id,
            classify_error: self.classify_error,
        }
    }

    /// Sets how the inner service's errors are classified.
    pub fn classify_error<E2>(self, classify_error: E2) -> ServerMetricsLayer<C, T, E2> {
        ServerMetricsLayer {
            metrics: self.metrics,
            classify_route: self.classify_route,
            trace_id: self.trace_id,
            classify_error,
        }
    }
}

impl<S, C: Clone, T: Clone, E: Clone> Layer<S> for ServerMetricsLayer<C, T, E> {
    type Service = ServerMetricsService<S, C, T, E>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerMetricsService::new(
            inner,
            self.metrics.clone(),
            self.classify_route.clone(),
            self.trace_id.clone(),
            self.classify_error.clone(),
        )
    }
}

/// Client layer: records `backend_api_calls_total`, `backend_api_duration_seconds` and
/// `backend_api_retries_total` for every outbound request. See the [module docs](super).
///
/// `C` names the operation ([`ClassifyRequest`](super::ClassifyRequest), `()`: every call
/// is `other`); `T` and `E` as for [`ServerMetricsLayer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientMetricsLayer<C = (), T = (), E = ()> {
    metrics: ClientMetrics,
    classify_operation: C,
    trace_id: T,
    classify_error: E,
}

impl ClientMetricsLayer {
    /// A layer recording into `metrics`, with the default hooks.
    pub fn new(metrics: ClientMetrics) -> Self {
        Self {
            metrics,
            classify_operation: (),
            trace_id: (),
            classify_error: (),
        }
    }
}

impl<C, T, E> ClientMetricsLayer<C, T, E> {
    /// Sets how a request's `operation` label is found: a closure
    /// `FnMut(&Request<B>) -> Option<LabelValue>`, e.g. matching method and path against the
    /// backend's API.
    pub fn classify_operation<C2>(self, classify_operation: C2) -> ClientMetricsLayer<C2, T, E> {
        ClientMetricsLayer {
            metrics: self.metrics,
            classify_operation,
            trace_id: self.trace_id,
            classify_error: self.classify_error,
        }
    }

    /// Sets where the trace ID of exemplars comes from.
    pub fn trace_id_source<T2>(self, trace_id: T2) -> ClientMetricsLayer<C, T2, E> {
        ClientMetricsLayer {
            metrics: self.metrics,
            classify_operation: self.classify_operation,
            trace_id,
            classify_error: self.classify_error,
        }
    }

    /// Sets how the inner service's errors are classified (timeouts, connection failures).
    pub fn classify_error<E2>(self, classify_error: E2) -> ClientMetricsLayer<C, T, E2> {
        ClientMetricsLayer {
            metrics: self.metrics,
            classify_operation: self.classify_operation,
            trace_id: self.trace_id,
            classify_error,
        }
    }
}

impl<S, C: Clone, T: Clone, E: Clone> Layer<S> for ClientMetricsLayer<C, T, E> {
    type Service = ClientMetricsService<S, C, T, E>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientMetricsService::new(
            inner,
            self.metrics.clone(),
            self.classify_operation.clone(),
            self.trace_id.clone(),
            self.classify_error.clone(),
        )
    }
}
