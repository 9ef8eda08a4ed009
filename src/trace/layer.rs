//! The server and client layers and their builders.

use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;
use tracing::Level;

use super::{
    ClientTraceService, ServerTraceService,
    span::{Config, recorded_headers},
};

/// Builder methods shared by both layers.
macro_rules! common_builders {
    () => {
        /// The level of the span (default `INFO`).
        ///
        /// The span carries the trace context and the IDs every log line inside the request
        /// shows, so a filter that disables it loses both: keep it at or above your
        /// subscriber's level for the `tower_bulwark::trace` target.
        #[must_use]
        pub fn level(mut self, level: Level) -> Self {
            Arc::make_mut(&mut self.config).level = level;
            self
        }

        /// Records these request headers as `http.request.header.<name>` attributes (default:
        /// none). `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
        /// `Idempotency-Key` and `X-Api-Key` are never recorded, even if listed. Values are cut
        /// at 256 bytes. The attributes go to OpenTelemetry only, not to the fmt log.
        #[must_use]
        pub fn record_request_headers(
            mut self,
            names: impl IntoIterator<Item = HeaderName>,
        ) -> Self {
            Arc::make_mut(&mut self.config).request_headers =
                recorded_headers(names, "http.request.header");
            self
        }

        /// Records these response headers as `http.response.header.<name>` attributes, under
        /// the same rules as [`record_request_headers`](Self::record_request_headers).
        #[must_use]
        pub fn record_response_headers(
            mut self,
            names: impl IntoIterator<Item = HeaderName>,
        ) -> Self {
            Arc::make_mut(&mut self.config).response_headers =
                recorded_headers(names, "http.response.header");
            self
        }

        /// Whether W3C `baggage` is read (server) or sent (client) along with the trace
        /// context (default: yes).
        #[must_use]
        pub fn baggage(mut self, enabled: bool) -> Self {
            Arc::make_mut(&mut self.config).baggage = enabled;
            self
        }

        /// Also writes one log event per request at `level`, inside the span, when the
        /// response head arrives (`response`, with `http.response.status_code`) or the inner
        /// service fails (`failed`, with `error`). Default: no events, the span is enough.
        #[must_use]
        pub fn log_responses(mut self, level: Level) -> Self {
            Arc::make_mut(&mut self.config).response_event = Some(level);
            self
        }
    };
}

/// Makes a server span per request and continues the caller's trace; see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct ServerTraceLayer<R = ()> {
    config: Arc<Config>,
    classify_route: R,
}

impl ServerTraceLayer {
    /// A layer with the defaults: `INFO` spans without route, no headers recorded, baggage
    /// read, no log events.
    #[must_use]
    pub fn new() -> Self {
        Self {
            config: Arc::default(),
            classify_route: (),
        }
    }
}

impl Default for ServerTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> ServerTraceLayer<R> {
    /// Names each request's route (`http.route`, and the span name `{method} {route}`) with
    /// `classify_route`; see [`ClassifyRoute`](super::ClassifyRoute).
    #[must_use]
    pub fn classify_route<R2>(self, classify_route: R2) -> ServerTraceLayer<R2> {
        ServerTraceLayer {
            config: self.config,
            classify_route,
        }
    }

    common_builders!();
}

impl<S, R: Clone> Layer<S> for ServerTraceLayer<R> {
    type Service = ServerTraceService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTraceService::new(inner, self.config.clone(), self.classify_route.clone())
    }
}

/// Makes a client span per request and sends its context on in `traceparent`; see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct ClientTraceLayer<R = ()> {
    config: Arc<Config>,
    classify_route: R,
}

impl ClientTraceLayer {
    /// A layer with the defaults: `INFO` spans, query values redacted in `url.full`, no
    /// headers recorded, trace context and baggage sent, no log events.
    #[must_use]
    pub fn new() -> Self {
        Self {
            config: Arc::default(),
            classify_route: (),
        }
    }
}

impl Default for ClientTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> ClientTraceLayer<R> {
    /// Names each request's operation (`url.template`, and the span name
    /// `{method} {template}`) with `classify_route`; see
    /// [`ClassifyRoute`](super::ClassifyRoute).
    #[must_use]
    pub fn classify_route<R2>(self, classify_route: R2) -> ClientTraceLayer<R2> {
        ClientTraceLayer {
            config: self.config,
            classify_route,
        }
    }

    /// Whether `url.full` keeps query values (default: no, each value is `REDACTED`; user
    /// info is always redacted). Query strings carry tokens and personal data more often than
    /// not.
    #[must_use]
    pub fn redact_query(mut self, redact: bool) -> Self {
        Arc::make_mut(&mut self.config).full_query = !redact;
        self
    }

    /// Whether `traceparent`, `tracestate` and `baggage` are written on outgoing requests
    /// (default: yes). Turn it off for third parties that should not learn your trace IDs.
    #[must_use]
    pub fn propagate_context(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).inject = enabled;
        self
    }

    common_builders!();
}

impl<S, R: Clone> Layer<S> for ClientTraceLayer<R> {
    type Service = ClientTraceService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTraceService::new(inner, self.config.clone(), self.classify_route.clone())
    }
}
