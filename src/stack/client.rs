//! [`ClientStack`]: the outbound layers in their recommended order.
// One type parameter per slot is the API: a setter returns the stack with its slot's type
// replaced, and spelling that out is clearer than an alias per setter.
#![allow(clippy::type_complexity)]

#[cfg(any(
    feature = "limit",
    feature = "retry",
    feature = "circuit-breaker",
    feature = "fallback-cache"
))]
use std::time::Duration;

use tower_layer::Layer;

#[cfg(feature = "circuit-breaker")]
use super::BreakerSlot;
#[allow(unused_imports)] // unused when no layer feature is on
use super::{BoxErrorLayer, BoxErrors, Optional, SettingsError};
#[cfg(feature = "circuit-breaker")]
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, Window};
#[cfg(feature = "fallback-cache")]
use crate::fallback_cache::{FallbackCacheHandle, FallbackCacheLayer};
#[cfg(feature = "limit")]
use crate::limit::CallTimeoutLayer;
#[cfg(feature = "metrics")]
use crate::metrics::{ClientMetrics, ClientMetricsLayer};
#[cfg(feature = "request-id")]
use crate::request_id::PropagateRequestIdLayer;
#[cfg(feature = "retry")]
use crate::retry::{RetryBudget, RetryHandle, RetryLayer};
#[cfg(feature = "trace")]
use crate::trace::ClientTraceLayer;

// The slots' types as `ClientStack::new` makes them: off, or absent without their feature.
slot_types! {
    RequestIdSlot = Optional<PropagateRequestIdLayer>, with "request-id";
    TraceSlot = Optional<ClientTraceLayer>, with "trace";
    MetricsSlot = Optional<ClientMetricsLayer>, with "metrics";
    RetrySlot = Optional<RetryLayer>, with "retry";
    FallbackCacheSlot = Optional<FallbackCacheLayer>, with "fallback-cache";
    CircuitBreakerSlot = Optional<BreakerSlot<crate::classify::HttpClassifier, (), ()>>, with "circuit-breaker";
    TimeoutSlot = Optional<CallTimeoutLayer>, with "limit";
}

/// The outbound stack, outermost first:
///
/// ```text
/// request ID → trace → metrics → retry → fallback cache → circuit breaker → timeout → client
/// ```
///
/// Each slot holds the layer's own value, built and tuned with that layer's API, and is on or
/// off at run time ([`Optional`]); a slot whose cargo feature is off is not there at all.
/// [`new`](Self::new) starts with every slot off, [`from_settings`](Self::from_settings) from
/// a [`ClientSettings`]. See the [module docs](super) for why this order and for an example.
///
/// | slot | setter | feature |
/// |---|---|---|
/// | request ID | `request_id` (`PropagateRequestIdLayer`) | `request-id` |
/// | trace | `trace` (`ClientTraceLayer`) | `trace` |
/// | metrics | `metrics` (`ClientMetricsLayer`) | `metrics` |
/// | retry | `retry` (`RetryLayer`) | `retry` |
/// | fallback cache | `fallback_cache` (`FallbackCacheLayer`) | `fallback-cache` |
/// | circuit breaker | `circuit_breaker` (`CircuitBreakerLayer`) | `circuit-breaker` |
/// | timeout, per attempt | `timeout` (`CallTimeoutLayer`) | `limit` |
///
/// Each `foo` setter has a `maybe_foo` taking an `Option`.
///
/// The stack's error is always `Box<dyn Error + Send + Sync>` (tower's `BoxError`): the
/// client's own errors, unchanged inside; a circuit breaker's rejection as a
/// `circuit_breaker::CircuitOpen<K>`; a timeout as a `limit::Elapsed`. Find them with
/// `err.is::<…>()` / `downcast_ref`. With the `retry` feature the request body must be
/// `Clone` (`Full<Bytes>`), even with the slot off: the slot's type is there either way.
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientStack<
    Rid = RequestIdSlot,
    Tr = TraceSlot,
    Me = MetricsSlot,
    Re = RetrySlot,
    Fc = FallbackCacheSlot,
    Cb = CircuitBreakerSlot,
    To = TimeoutSlot,
> {
    request_id: Rid,
    trace: Tr,
    metrics: Me,
    retry: Re,
    fallback_cache: Fc,
    circuit_breaker: Cb,
    timeout: To,
}

impl ClientStack {
    /// Every slot off.
    pub fn new() -> Self {
        Self {
            request_id: Default::default(),
            trace: Default::default(),
            metrics: Default::default(),
            retry: Default::default(),
            fallback_cache: Default::default(),
            circuit_breaker: Default::default(),
            timeout: Default::default(),
        }
    }

    /// The stack `settings` describe, each layer with its defaults otherwise. Change a slot
    /// afterwards with its setter, e.g. for a breaker per operation.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the first invalid setting.
    pub fn from_settings(settings: &ClientSettings) -> Result<Self, SettingsError> {
        #[allow(unused_mut)] // with no layer feature on
        let mut stack = Self::new();
        #[cfg(feature = "request-id")]
        {
            let layer = settings
                .propagate_request_id
                .then(PropagateRequestIdLayer::new);
            stack.request_id = Optional::new(layer);
        }
        #[cfg(feature = "trace")]
        {
            stack.trace = Optional::new(settings.trace.then(ClientTraceLayer::new));
        }
        #[cfg(feature = "metrics")]
        {
            stack.metrics = Optional::new(settings.metrics.as_ref().map(ClientMetrics::layer));
        }
        #[cfg(feature = "retry")]
        if let Some(retry) = &settings.retry {
            stack.retry = Optional::on(retry.build(&settings.name)?);
        }
        #[cfg(feature = "fallback-cache")]
        if let Some(cache) = &settings.fallback_cache {
            stack.fallback_cache = Optional::on(cache.build(&settings.name)?);
        }
        #[cfg(feature = "circuit-breaker")]
        if let Some(breaker) = &settings.circuit_breaker {
            stack.circuit_breaker = Optional::on(BreakerSlot::new(breaker.build(&settings.name)?));
        }
        #[cfg(feature = "limit")]
        if let Some(timeout) = settings.timeout {
            let layer = CallTimeoutLayer::new(timeout)
                .map_err(|err| SettingsError::new("timeout", err.reason(), Some(Box::new(err))))?;
            stack.timeout = Optional::on(layer);
        }
        #[cfg(not(any(
            feature = "request-id",
            feature = "trace",
            feature = "metrics",
            feature = "retry",
            feature = "fallback-cache",
            feature = "circuit-breaker",
            feature = "limit"
        )))]
        let _ = settings;
        Ok(stack)
    }
}

impl Default for ClientStack {
    fn default() -> Self {
        Self::new()
    }
}

impl<Rid, Tr, Me, Re, Fc, Cb, To> ClientStack<Rid, Tr, Me, Re, Fc, Cb, To> {
    /// The layer to hand to `ServiceBuilder::layer`, or to call [`Layer::layer`] with.
    pub fn into_layer(self) -> ClientLayer<Rid, Tr, Me, Re, Fc, Cb, To> {
        ClientLayer { stack: self }
    }

    /// Sets the request ID slot, outermost: every attempt carries the ID of the request being
    /// served.
    #[cfg(feature = "request-id")]
    pub fn request_id(
        self,
        layer: PropagateRequestIdLayer,
    ) -> ClientStack<Optional<PropagateRequestIdLayer>, Tr, Me, Re, Fc, Cb, To> {
        self.maybe_request_id(Some(layer))
    }

    /// [`request_id`](Self::request_id) if `Some`; the slot off if `None`.
    #[cfg(feature = "request-id")]
    pub fn maybe_request_id(
        self,
        layer: Option<PropagateRequestIdLayer>,
    ) -> ClientStack<Optional<PropagateRequestIdLayer>, Tr, Me, Re, Fc, Cb, To> {
        ClientStack {
            request_id: Optional::new(layer),
            trace: self.trace,
            metrics: self.metrics,
            retry: self.retry,
            fallback_cache: self.fallback_cache,
            circuit_breaker: self.circuit_breaker,
            timeout: self.timeout,
        }
    }

    /// Sets the trace slot: one client span per call, however many attempts it takes.
    #[cfg(feature = "trace")]
    pub fn trace<R>(
        self,
        layer: ClientTraceLayer<R>,
    ) -> ClientStack<Rid, Optional<ClientTraceLayer<R>>, Me, Re, Fc, Cb, To> {
        self.maybe_trace(Some(layer))
    }

    /// [`trace`](Self::trace) if `Some`; the slot off if `None`.
    #[cfg(feature = "trace")]
    pub fn maybe_trace<R>(
        self,
        layer: Option<ClientTraceLayer<R>>,
    ) -> ClientStack<Rid, Optional<ClientTraceLayer<R>>, Me, Re, Fc, Cb, To> {
        ClientStack {
            request_id: self.request_id,
            trace: Optional::new(layer),
            metrics: self.metrics,
            retry: self.retry,
            fallback_cache: self.fallback_cache,
            circuit_breaker: self.circuit_breaker,
            timeout: self.timeout,
        }
    }

    /// Sets the metrics slot: one count and one duration per call, as the caller saw it
    /// (retries, stale answers and rejections included).
    #[cfg(feature = "metrics")]
    pub fn metrics<C, T, E>(
        self,
        layer: ClientMetricsLayer<C, T, E>,
    ) -> ClientStack<Rid, Tr, Optional<ClientMetricsLayer<C, T, E>>, Re, Fc, Cb, To> {
        self.maybe_metrics(Some(layer))
    }

    /// [`metrics`](Self::metrics) if `Some`; the slot off if `None`.
    #[cfg(feature = "metrics")]
    pub fn maybe_metrics<C, T, E>(
        self,
        layer: Option<ClientMetricsLayer<C, T, E>>,
    ) -> ClientStack<Rid, Tr, Optional<ClientMetricsLayer<C, T, E>>, Re, Fc, Cb, To> {
        ClientStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: Optional::new(layer),
            retry: self.retry,
            fallback_cache: self.fallback_cache,
            circuit_breaker: self.circuit_breaker,
            timeout: self.timeout,
        }
    }

    /// Sets the retry slot: above the cache (a stale answer is a success, not retried) and
    /// the breaker (failed attempts count towards opening it; its rejections end the retries).
    #[cfg(feature = "retry")]
    pub fn retry<C, P>(
        self,
        layer: RetryLayer<C, P>,
    ) -> ClientStack<Rid, Tr, Me, Optional<RetryLayer<C, P>>, Fc, Cb, To> {
        self.maybe_retry(Some(layer))
    }

    /// [`retry`](Self::retry) if `Some`; the slot off if `None`.
    #[cfg(feature = "retry")]
    pub fn maybe_retry<C, P>(
        self,
        layer: Option<RetryLayer<C, P>>,
    ) -> ClientStack<Rid, Tr, Me, Optional<RetryLayer<C, P>>, Fc, Cb, To> {
        ClientStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            retry: Optional::new(layer),
            fallback_cache: self.fallback_cache,
            circuit_breaker: self.circuit_breaker,
            timeout: self.timeout,
        }
    }

    /// Sets the fallback-cache slot: above the breaker, so that a read the breaker refuses is
    /// still answered from the store.
    #[cfg(feature = "fallback-cache")]
    pub fn fallback_cache<K, C>(
        self,
        layer: FallbackCacheLayer<K, C>,
    ) -> ClientStack<Rid, Tr, Me, Re, Optional<FallbackCacheLayer<K, C>>, Cb, To> {
        self.maybe_fallback_cache(Some(layer))
    }

    /// [`fallback_cache`](Self::fallback_cache) if `Some`; the slot off if `None`.
    #[cfg(feature = "fallback-cache")]
    pub fn maybe_fallback_cache<K, C>(
        self,
        layer: Option<FallbackCacheLayer<K, C>>,
    ) -> ClientStack<Rid, Tr, Me, Re, Optional<FallbackCacheLayer<K, C>>, Cb, To> {
        ClientStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            retry: self.retry,
            fallback_cache: Optional::new(layer),
            circuit_breaker: self.circuit_breaker,
            timeout: self.timeout,
        }
    }

    /// Sets the circuit-breaker slot (per key with the builder's `per_key`, e.g. one breaker
    /// per backend operation): above the timeout, so that a timeout counts as a failure. Its
    /// errors are boxed with [`into_box_error`](crate::circuit_breaker::CircuitBreakerError::into_box_error).
    #[cfg(feature = "circuit-breaker")]
    pub fn circuit_breaker<C, K, F>(
        self,
        layer: CircuitBreakerLayer<C, K, F>,
    ) -> ClientStack<Rid, Tr, Me, Re, Fc, Optional<BreakerSlot<C, K, F>>, To> {
        self.maybe_circuit_breaker(Some(layer))
    }

    /// [`circuit_breaker`](Self::circuit_breaker) if `Some`; the slot off if `None`.
    #[cfg(feature = "circuit-breaker")]
    pub fn maybe_circuit_breaker<C, K, F>(
        self,
        layer: Option<CircuitBreakerLayer<C, K, F>>,
    ) -> ClientStack<Rid, Tr, Me, Re, Fc, Optional<BreakerSlot<C, K, F>>, To> {
        ClientStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            retry: self.retry,
            fallback_cache: self.fallback_cache,
            circuit_breaker: Optional::new(layer.map(BreakerSlot::new)),
            timeout: self.timeout,
        }
    }

    /// Sets the timeout slot, innermost: it bounds each attempt (connecting, sending, the
    /// response head), and fails it with [`Elapsed`](crate::limit::Elapsed).
    #[cfg(feature = "limit")]
    pub fn timeout(
        self,
        layer: CallTimeoutLayer,
    ) -> ClientStack<Rid, Tr, Me, Re, Fc, Cb, Optional<CallTimeoutLayer>> {
        self.maybe_timeout(Some(layer))
    }

    /// [`timeout`](Self::timeout) if `Some`; the slot off if `None`.
    #[cfg(feature = "limit")]
    pub fn maybe_timeout(
        self,
        layer: Option<CallTimeoutLayer>,
    ) -> ClientStack<Rid, Tr, Me, Re, Fc, Cb, Optional<CallTimeoutLayer>> {
        ClientStack {
            request_id: self.request_id,
            trace: self.trace,
            metrics: self.metrics,
            retry: self.retry,
            fallback_cache: self.fallback_cache,
            circuit_breaker: self.circuit_breaker,
            timeout: Optional::new(layer),
        }
    }
}

#[cfg(feature = "retry")]
impl<Rid, Tr, Me, C, P, Fc, Cb, To>
    ClientStack<Rid, Tr, Me, Optional<RetryLayer<C, P>>, Fc, Cb, To>
{
    /// The retry layer's handle (its counters), when the slot is on.
    #[must_use]
    pub fn retry_handle(&self) -> Option<RetryHandle> {
        self.retry.get().map(RetryLayer::handle)
    }
}

#[cfg(feature = "fallback-cache")]
impl<Rid, Tr, Me, Re, K, C, Cb, To>
    ClientStack<Rid, Tr, Me, Re, Optional<FallbackCacheLayer<K, C>>, Cb, To>
{
    /// The fallback cache's handle (its store and counters), when the slot is on.
    #[must_use]
    pub fn fallback_cache_handle(&self) -> Option<FallbackCacheHandle> {
        self.fallback_cache.get().map(FallbackCacheLayer::handle)
    }
}

#[cfg(feature = "circuit-breaker")]
impl<Rid, Tr, Me, Re, Fc, C, K, F, To>
    ClientStack<Rid, Tr, Me, Re, Fc, Optional<BreakerSlot<C, K, F>>, To>
{
    /// The circuit breakers' handle (their states, e.g. for a readiness check), when the slot
    /// is on.
    #[must_use]
    pub fn circuit_breaker_handle(&self) -> Option<CircuitBreakerHandle<K>> {
        self.circuit_breaker
            .get()
            .map(|slot| slot.get_ref().handle())
    }
}

/// The built [`ClientStack`]: a [`Layer`] for `ServiceBuilder::layer`, or to call
/// [`Layer::layer`] on a client directly.
#[derive(Clone, Debug)]
pub struct ClientLayer<Rid, Tr, Me, Re, Fc, Cb, To> {
    stack: ClientStack<Rid, Tr, Me, Re, Fc, Cb, To>,
}

impl<S, Rid, Tr, Me, Re, Fc, Cb, To> Layer<S> for ClientLayer<Rid, Tr, Me, Re, Fc, Cb, To>
where
    To: Layer<BoxErrors<S>>,
    Cb: Layer<To::Service>,
    Fc: Layer<Cb::Service>,
    Re: Layer<Fc::Service>,
    Me: Layer<Re::Service>,
    Tr: Layer<Me::Service>,
    Rid: Layer<Tr::Service>,
{
    type Service = Rid::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let s = &self.stack;
        // Every slot above sees `BoxError`, whichever layers are on or compiled in.
        let service = BoxErrorLayer.layer(inner);
        let service = s.timeout.layer(service);
        let service = s.circuit_breaker.layer(service);
        let service = s.fallback_cache.layer(service);
        let service = s.retry.layer(service);
        let service = s.metrics.layer(service);
        let service = s.trace.layer(service);
        s.request_id.layer(service)
    }
}

/// What [`ClientStack::from_settings`] builds: one plain value, e.g. read from the
/// environment. Each field is there with its layer's cargo feature.
///
/// [`Default`] is the recommended stack (metrics aside, which need your registry):
///
/// | field | default | `None` / `false` |
/// |---|---|---|
/// | `propagate_request_id` | `true` | no `x-request-id` sent |
/// | `trace` | `true`: a client span per call, `traceparent` sent | no span |
/// | `metrics` | `None` | no metrics; `Some(handle)` records into its registry |
/// | `retry` | `RetrySettings::default()`: 3 attempts, 50 ms to 1 s backoff, 20 % budget | no retries |
/// | `fallback_cache` | `None`: stale answers are opt-in, the caller must expect them | no cache |
/// | `circuit_breaker` | `CircuitBreakerSettings::default()`: one breaker for the whole client | no breaker |
/// | `timeout` | 10 s per attempt | no timeout |
/// | `name` | `"backend"`: the retry layer's, cache's and breaker's name in metrics and logs | |
///
/// [`ClientSettings::off`] turns everything off.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Whether outbound requests carry the served request's ID.
    #[cfg(feature = "request-id")]
    pub propagate_request_id: bool,
    /// Whether the trace slot is on.
    #[cfg(feature = "trace")]
    pub trace: bool,
    /// The metrics to record into, if any.
    #[cfg(feature = "metrics")]
    pub metrics: Option<ClientMetrics>,
    /// Retries, if any.
    #[cfg(feature = "retry")]
    pub retry: Option<RetrySettings>,
    /// The fallback cache, if any.
    #[cfg(feature = "fallback-cache")]
    pub fallback_cache: Option<FallbackCacheSettings>,
    /// The circuit breaker, if any.
    #[cfg(feature = "circuit-breaker")]
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    /// The time allowed to each attempt.
    #[cfg(feature = "limit")]
    pub timeout: Option<Duration>,
    /// The name of the retry layer, cache and breaker (a structured-field token, as the cache
    /// puts it in `Cache-Status`).
    #[cfg(any(
        feature = "retry",
        feature = "fallback-cache",
        feature = "circuit-breaker"
    ))]
    pub name: String,
}

// Derivable only when no field's feature is on.
#[allow(clippy::derivable_impls)]
impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            #[cfg(feature = "request-id")]
            propagate_request_id: true,
            #[cfg(feature = "trace")]
            trace: true,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "retry")]
            retry: Some(RetrySettings::default()),
            #[cfg(feature = "fallback-cache")]
            fallback_cache: None,
            #[cfg(feature = "circuit-breaker")]
            circuit_breaker: Some(CircuitBreakerSettings::default()),
            #[cfg(feature = "limit")]
            timeout: Some(Duration::from_secs(10)),
            #[cfg(any(
                feature = "retry",
                feature = "fallback-cache",
                feature = "circuit-breaker"
            ))]
            name: "backend".to_owned(),
        }
    }
}

impl ClientSettings {
    /// Every slot off.
    #[must_use]
    pub fn off() -> Self {
        Self {
            #[cfg(feature = "request-id")]
            propagate_request_id: false,
            #[cfg(feature = "trace")]
            trace: false,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "retry")]
            retry: None,
            #[cfg(feature = "fallback-cache")]
            fallback_cache: None,
            #[cfg(feature = "circuit-breaker")]
            circuit_breaker: None,
            #[cfg(feature = "limit")]
            timeout: None,
            #[cfg(any(
                feature = "retry",
                feature = "fallback-cache",
                feature = "circuit-breaker"
            ))]
            name: "backend".to_owned(),
        }
    }
}

/// Retries in [`ClientSettings`]; the [`RetryLayer`] builder has the rest.
#[cfg(feature = "retry")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrySettings {
    /// Attempts per request, the first included (1 to 10). Default 3.
    pub max_attempts: u32,
    /// The ceiling of the first backoff. Default 50 ms.
    pub initial_backoff: Duration,
    /// The ceiling of any backoff. Default 1 s.
    pub max_backoff: Duration,
    /// Retries allowed per request, over the last 10 s (0 to 100). Default 0.2.
    pub retry_ratio: f64,
    /// Retries allowed per second whatever the traffic. Default 10.
    pub min_retries_per_sec: u32,
}

#[cfg(feature = "retry")]
impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            retry_ratio: 0.2,
            min_retries_per_sec: 10,
        }
    }
}

#[cfg(feature = "retry")]
impl RetrySettings {
    fn build(&self, name: &str) -> Result<RetryLayer, SettingsError> {
        let refused = |err: crate::retry::ConfigError| {
            let field = format!("retry.{}", err.field());
            SettingsError::new(field, err.reason(), Some(Box::new(err)))
        };
        // The budget's window: the retry layer's default.
        let budget = RetryBudget::new(
            Duration::from_secs(10),
            self.min_retries_per_sec,
            self.retry_ratio,
        )
        .map_err(refused)?;
        RetryLayer::builder()
            .name(name)
            .max_attempts(self.max_attempts)
            .backoff(self.initial_backoff, self.max_backoff)
            .budget(budget)
            .build()
            .map_err(refused)
    }
}

/// The fallback cache in [`ClientSettings`]; the [`FallbackCacheLayer`] builder has the rest.
#[cfg(feature = "fallback-cache")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackCacheSettings {
    /// The most answers stored. Default 1000.
    pub max_entries: usize,
    /// The oldest answer served when the backend fails. Default 5 minutes.
    pub ttl: Duration,
}

#[cfg(feature = "fallback-cache")]
impl Default for FallbackCacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 1000,
            ttl: Duration::from_secs(300),
        }
    }
}

#[cfg(feature = "fallback-cache")]
impl FallbackCacheSettings {
    fn build(&self, name: &str) -> Result<FallbackCacheLayer, SettingsError> {
        // Checked here too, for an error naming the field: the builder's says it in prose.
        if self.max_entries == 0 {
            let reason = "must be at least 1";
            return Err(SettingsError::new(
                "fallback_cache.max_entries",
                reason,
                None,
            ));
        }
        if self.ttl.is_zero() {
            let reason = "must be more than zero";
            return Err(SettingsError::new("fallback_cache.ttl", reason, None));
        }
        FallbackCacheLayer::builder()
            .name(name)
            .max_entries(self.max_entries)
            .ttl(self.ttl)
            .build()
            .map_err(|err| {
                // What is left to refuse is the name.
                SettingsError::new("name", err.to_string(), Some(Box::new(err)))
            })
    }
}

/// The circuit breaker in [`ClientSettings`]: one breaker for every call; the
/// [`CircuitBreakerLayer`] builder has the rest, a breaker per key among it.
#[cfg(feature = "circuit-breaker")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CircuitBreakerSettings {
    /// Opens when this many percent of the window's calls failed, in (0, 100]. Default 50.
    pub failure_rate_threshold: f64,
    /// No rate counts before the window holds this many calls. Default 20.
    pub minimum_calls: u32,
    /// The window: the last this many calls (1 to 1024). Default 100.
    pub window: u32,
    /// How long the breaker stays open before it lets a probe through. Default 30 s.
    pub open_duration: Duration,
}

#[cfg(feature = "circuit-breaker")]
impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        Self {
            failure_rate_threshold: 50.0,
            minimum_calls: 20,
            window: 100,
            open_duration: Duration::from_secs(30),
        }
    }
}

#[cfg(feature = "circuit-breaker")]
impl CircuitBreakerSettings {
    fn build(&self, name: &str) -> Result<CircuitBreakerLayer, SettingsError> {
        CircuitBreakerLayer::builder()
            .name(name)
            .failure_rate_threshold(self.failure_rate_threshold)
            .minimum_calls(self.minimum_calls)
            .window(Window::Count(self.window))
            .open_duration(self.open_duration)
            .build()
            .map_err(|err| {
                let field = format!("circuit_breaker.{}", err.field());
                SettingsError::new(field, err.reason(), Some(Box::new(err)))
            })
    }
}
