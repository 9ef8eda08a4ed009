//! [`ServerStack`]: the inbound layers in their recommended order.
// One type parameter per slot is the API: a setter returns the stack with its slot's type
// replaced, and spelling that out is clearer than an alias per setter.
#![allow(clippy::type_complexity)]

#[cfg(feature = "limit")]
use std::time::Duration;

#[cfg(not(feature = "limit"))]
use tower_layer::Identity;
use tower_layer::Layer;

#[cfg(feature = "limit")]
use crate::limit::{BodyLimitLayer, LoadShedLayer, ResponseTimeoutLayer};
#[cfg(feature = "metrics")]
use crate::metrics::{ServerMetrics, ServerMetricsLayer};
#[cfg(feature = "request-id")]
use crate::request_id::RequestIdLayer;
#[cfg(feature = "trace")]
use crate::trace::ServerTraceLayer;

#[allow(unused_imports)] // unused when no layer feature is on
use super::{Optional, SettingsError};

// The slots' types as `ServerStack::new` makes them: off, or absent without their feature.
slot_types! {
    RequestIdSlot = Optional<RequestIdLayer>, with "request-id";
    TraceSlot = Optional<ServerTraceLayer>, with "trace";
    MetricsSlot = Optional<ServerMetricsLayer>, with "metrics";
    TimeoutSlot = Optional<ResponseTimeoutLayer>, with "limit";
    BodyLimitSlot = BodyLimitLayer, with "limit";
    LoadShedSlot = Optional<LoadShedLayer>, with "limit";
}

/// The inbound stack, outermost first:
///
/// ```text
/// request ID → trace → metrics → timeout → body limit → load shedding → your service
/// ```
///
/// Each slot holds the layer's own value, built and tuned with that layer's API, and is on or
/// off at run time ([`Optional`], or for the body limit `BodyLimitLayer::unlimited`); a slot
/// whose cargo feature is off is not there at all. [`new`](Self::new) starts with every slot off,
/// [`from_settings`](Self::from_settings) from a [`ServerSettings`]. See the
/// [module docs](super) for why this order and for an example.
///
/// | slot | setter | feature |
/// |---|---|---|
/// | request ID | `request_id` (`RequestIdLayer`) | `request-id` |
/// | trace | `trace` (`ServerTraceLayer`) | `trace` |
/// | metrics | `metrics` (`ServerMetricsLayer`) | `metrics` |
/// | timeout | `timeout` (`ResponseTimeoutLayer`) | `limit` |
/// | body limit | `body_limit` (`BodyLimitLayer`) | `limit` |
/// | load shedding | `load_shed` (`LoadShedLayer`) | `limit` |
///
/// Each `foo` setter has a `maybe_foo` taking an `Option`. With `limit`, the service inside
/// gets `Request<http_body_util::Limited<B>>` (axum's `Router` takes any body).
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerStack<
    Rid = RequestIdSlot,
    Tr = TraceSlot,
    Me = MetricsSlot,
    To = TimeoutSlot,
    Bl = BodyLimitSlot,
    Ls = LoadShedSlot,
> {
    request_id: Rid,
    trace: Tr,
    metrics: Me,
    timeout: To,
    body_limit: Bl,
    load_shed: Ls,
}

impl ServerStack {
    /// Every slot off.
    pub fn new() -> Self {
        Self {
            request_id: Default::default(),
            trace: Default::default(),
            metrics: Default::default(),
            timeout: Default::default(),
            body_limit: body_limit_off(),
            load_shed: Default::default(),
        }
    }

    /// The stack `settings` describe, each layer with its defaults otherwise. Change a slot
    /// afterwards with its setter, e.g. to give the metrics layer a route classifier.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the first invalid setting (a zero limit or timeout).
    pub fn from_settings(settings: &ServerSettings) -> Result<Self, SettingsError> {
        #[allow(unused_mut)] // with no layer feature on
        let mut stack = Self::new();
        #[cfg(feature = "request-id")]
        {
            stack.request_id = Optional::new(settings.request_id.then(RequestIdLayer::new));
        }
        #[cfg(feature = "trace")]
        {
            stack.trace = Optional::new(settings.trace.then(ServerTraceLayer::new));
        }
        #[cfg(feature = "metrics")]
        {
            stack.metrics = Optional::new(settings.metrics.as_ref().map(ServerMetrics::layer));
        }
        #[cfg(feature = "limit")]
        {
            let limit = |field: &'static str| {
                move |err: crate::limit::ConfigError| {
                    SettingsError::new(field, err.reason(), Some(Box::new(err)))
                }
            };
            let timeout = settings.timeout.map(ResponseTimeoutLayer::new).transpose();
            stack.timeout = Optional::new(timeout.map_err(limit("timeout"))?);
            if let Some(max) = settings.max_body_bytes {
                stack.body_limit = BodyLimitLayer::new(max).map_err(limit("max_body_bytes"))?;
            }
            let shed = settings.max_in_flight.map(LoadShedLayer::new).transpose();
            stack.load_shed = Optional::new(shed.map_err(limit("max_in_flight"))?);
        }
        #[cfg(not(any(
            feature = "request-id",
            feature = "trace",
            feature = "metrics",
            feature = "limit"
        )))]
        let _ = settings;
        Ok(stack)
    }
}

#[cfg(feature = "limit")]
fn body_limit_off() -> BodyLimitSlot {
    BodyLimitLayer::unlimited()
}

#[cfg(not(feature = "limit"))]
fn body_limit_off() -> BodyLimitSlot {
    Identity::new()
}

impl Default for ServerStack {
    fn default() -> Self {
        Self::new()
    }
}

impl<Rid, Tr, Me, To, Bl, Ls> ServerStack<Rid, Tr, Me, To, Bl, Ls> {
    /// The layer to hand to `Router::layer`, `ServiceBuilder::layer` or to call
    /// [`Layer::layer`] with.
    pub fn into_layer(self) -> ServerLayer<Rid, Tr, Me, To, Bl, Ls> {
        ServerLayer { stack: self }
    }
}

impl<Rid, Tr, Me, To, Bl, Ls> ServerStack<Rid, Tr, Me, To, Bl, Ls> {
    /// Sets the request ID slot, outermost: every response, refusals included, carries the ID.
    #[cfg(feature = "request-id")]
    pub fn request_id<M, MS>(
        self,
        layer: RequestIdLayer<M, MS>,
    ) -> ServerStack<Optional<RequestIdLayer<M, MS>>, Tr, Me, To, Bl, Ls> {
        self.maybe_request_id(Some(layer))
    }

    /// [`request_id`](Self::request_id) if `Some`; the slot off if `None`.
    #[cfg(feature = "request-id")]
    pub fn maybe_request_id<M, MS>(
        self,
        layer: Option<RequestIdLayer<M, MS>>,
    ) -> ServerStack<Optional<RequestIdLayer<M, MS>>, Tr, Me, To, Bl, Ls> {
        ServerStack {
            request_id: Optional::new(layer),
            trace: self.trace,
            metrics: self.metrics,
            timeout: self.timeout,
            body_limit: self.body_limit,
            load_shed: self.load_shed,
        }
    }

    /// Sets the trace slot: inside the request ID, so that the span records it.
    #[cfg(feature = "trace")]
    pub fn trace<R>(
        self,
        layer: ServerTraceLayer<R>,
    ) -> ServerStack<Rid, Optional<ServerTraceLayer<R>>, Me, To, Bl, Ls> {
        self.maybe_trace(Some(layer))
    }

    /// [`trace`](Self::trace) if `Some`; the slot off if `None`.
    #[cfg(feature = "trace")]
    pub fn maybe_trace<R>(
        self,
        layer: Option<ServerTraceLayer<R>>,
    ) -> ServerStack<Rid, Optional<ServerTraceLayer<R>>, Me, To, Bl, Ls> {
        ServerStack {
            request_id: self.request_id,
            trace: Optional::new(layer),
            metrics: self.metrics,
            timeout: self.timeout,
            body_limit: self.body_limit,
            load_shed: self.load_shed,
        }
    }

    /// Sets the metrics slot: inside the span (exemplars find its trace), outside the limits
    /// (refusals are counted).
    #[cfg(feature = "metrics")]
    pub fn metrics<C, T, E>(
        self,
        layer: ServerMetricsLayer<C, T, E>,
    ) -> ServerStack<Rid, Tr, Optional<ServerMetricsLayer<C, T, E>>, To, Bl, Ls> {
        self.maybe_metrics(Some(layer))
    }

    /// [`metrics`](Self::metrics) if `Some`; the slot off if `None`.
    #[cfg(feature = "metrics")]
    pub fn maybe_metrics<C, T, E>(
        self,
        layer: Option<ServerMetricsLayer<C, T, E>>,
    ) -> ServerStack<Rid, Tr, Optional<ServerMetricsLayer<C, T, E>>, To, Bl, Ls> {
        ServerStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: Optional::new(layer),
            timeout: self.timeout,
            body_limit: self.body_limit,
            load_shed: self.load_shed,
        }
    }

    /// Sets the timeout slot: it bounds everything below it, and a timed-out request gives its
    /// load-shedding slot back at once.
    #[cfg(feature = "limit")]
    pub fn timeout<R>(
        self,
        layer: ResponseTimeoutLayer<R>,
    ) -> ServerStack<Rid, Tr, Me, Optional<ResponseTimeoutLayer<R>>, Bl, Ls> {
        self.maybe_timeout(Some(layer))
    }

    /// [`timeout`](Self::timeout) if `Some`; the slot off if `None`.
    #[cfg(feature = "limit")]
    pub fn maybe_timeout<R>(
        self,
        layer: Option<ResponseTimeoutLayer<R>>,
    ) -> ServerStack<Rid, Tr, Me, Optional<ResponseTimeoutLayer<R>>, Bl, Ls> {
        ServerStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            timeout: Optional::new(layer),
            body_limit: self.body_limit,
            load_shed: self.load_shed,
        }
    }

    /// Sets the body-limit slot, whose off position is [`BodyLimitLayer::unlimited`]: the slot
    /// is never removed, so that the request body type stays `Limited<B>` whatever the
    /// settings.
    #[cfg(feature = "limit")]
    pub fn body_limit<R>(
        self,
        layer: BodyLimitLayer<R>,
    ) -> ServerStack<Rid, Tr, Me, To, BodyLimitLayer<R>, Ls> {
        ServerStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            timeout: self.timeout,
            body_limit: layer,
            load_shed: self.load_shed,
        }
    }

    /// Sets the load-shedding slot, innermost: a request refused for its size never takes a
    /// slot.
    #[cfg(feature = "limit")]
    pub fn load_shed<R, P>(
        self,
        layer: LoadShedLayer<R, P>,
    ) -> ServerStack<Rid, Tr, Me, To, Bl, Optional<LoadShedLayer<R, P>>> {
        self.maybe_load_shed(Some(layer))
    }

    /// [`load_shed`](Self::load_shed) if `Some`; the slot off if `None`.
    #[cfg(feature = "limit")]
    pub fn maybe_load_shed<R, P>(
        self,
        layer: Option<LoadShedLayer<R, P>>,
    ) -> ServerStack<Rid, Tr, Me, To, Bl, Optional<LoadShedLayer<R, P>>> {
        ServerStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            timeout: self.timeout,
            body_limit: self.body_limit,
            load_shed: Optional::new(layer),
        }
    }
}

#[cfg(feature = "limit")]
impl<Rid, Tr, Me, R, P>
    ServerStack<
        Rid,
        Tr,
        Me,
        Optional<ResponseTimeoutLayer<R>>,
        BodyLimitLayer<R>,
        Optional<LoadShedLayer<R, P>>,
    >
{
    /// Sets the [`MakeRejection`](crate::limit::MakeRejection) hook of all three limits at once,
    /// e.g. after [`from_settings`](ServerStack::from_settings), to answer refusals in the API's
    /// own error format.
    pub fn rejection<R2: Clone>(
        self,
        rejection: R2,
    ) -> ServerStack<
        Rid,
        Tr,
        Me,
        Optional<ResponseTimeoutLayer<R2>>,
        BodyLimitLayer<R2>,
        Optional<LoadShedLayer<R2, P>>,
    > {
        let Self {
            request_id,
            trace,
            metrics,
            timeout,
            body_limit,
            load_shed,
        } = self;
        let hook = rejection.clone();
        let timeout = timeout.map(|layer| layer.rejection(hook));
        let hook = rejection.clone();
        let load_shed = load_shed.map(|layer| layer.rejection(hook));
        let body_limit = body_limit.rejection(rejection);
        ServerStack {
            request_id,
            trace,
            metrics,
            timeout,
            body_limit,
            load_shed,
        }
    }
}

/// The built [`ServerStack`]: a [`Layer`] for `Router::layer`, `ServiceBuilder::layer`, or to
/// call [`Layer::layer`] on a service directly.
#[derive(Clone, Debug)]
pub struct ServerLayer<Rid, Tr, Me, To, Bl, Ls> {
    stack: ServerStack<Rid, Tr, Me, To, Bl, Ls>,
}

impl<S, Rid, Tr, Me, To, Bl, Ls> Layer<S> for ServerLayer<Rid, Tr, Me, To, Bl, Ls>
where
    Ls: Layer<S>,
    Bl: Layer<Ls::Service>,
    To: Layer<Bl::Service>,
    Me: Layer<To::Service>,
    Tr: Layer<Me::Service>,
    Rid: Layer<Tr::Service>,
{
    type Service = Rid::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let s = &self.stack;
        let service = s.load_shed.layer(inner);
        let service = s.body_limit.layer(service);
        let service = s.timeout.layer(service);
        let service = s.metrics.layer(service);
        let service = s.trace.layer(service);
        s.request_id.layer(service)
    }
}

/// What [`ServerStack::from_settings`] builds: one plain value, e.g. read from the
/// environment. Each field is there with its layer's cargo feature.
///
/// [`Default`] is the recommended stack (metrics aside, which need your registry):
///
/// | field | default | `None` / `false` |
/// |---|---|---|
/// | `request_id` | `true`: keep a safe inbound `x-request-id` or make a UUID | no ID |
/// | `trace` | `true`: a server span per request | no span |
/// | `metrics` | `None` | no metrics; `Some(handle)` records into its registry |
/// | `timeout` | 30 s to the response head | no timeout |
/// | `max_body_bytes` | 2 MiB | no limit |
/// | `max_in_flight` | 1024 | no load shedding |
///
/// [`ServerSettings::off`] turns everything off.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Whether the request ID slot is on.
    #[cfg(feature = "request-id")]
    pub request_id: bool,
    /// Whether the trace slot is on.
    #[cfg(feature = "trace")]
    pub trace: bool,
    /// The metrics to record into, if any.
    #[cfg(feature = "metrics")]
    pub metrics: Option<ServerMetrics>,
    /// The time allowed to the response head.
    #[cfg(feature = "limit")]
    pub timeout: Option<Duration>,
    /// The longest request body, in bytes.
    #[cfg(feature = "limit")]
    pub max_body_bytes: Option<usize>,
    /// The most requests in flight before new ones are refused with 503.
    #[cfg(feature = "limit")]
    pub max_in_flight: Option<usize>,
}

// Derivable only when no field's feature is on.
#[allow(clippy::derivable_impls)]
impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            #[cfg(feature = "request-id")]
            request_id: true,
            #[cfg(feature = "trace")]
            trace: true,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "limit")]
            timeout: Some(Duration::from_secs(30)),
            #[cfg(feature = "limit")]
            max_body_bytes: Some(2 << 20),
            #[cfg(feature = "limit")]
            max_in_flight: Some(1024),
        }
    }
}

impl ServerSettings {
    /// Every slot off.
    #[must_use]
    pub fn off() -> Self {
        Self {
            #[cfg(feature = "request-id")]
            request_id: false,
            #[cfg(feature = "trace")]
            trace: false,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "limit")]
            timeout: None,
            #[cfg(feature = "limit")]
            max_body_bytes: None,
            #[cfg(feature = "limit")]
            max_in_flight: None,
        }
    }
}
