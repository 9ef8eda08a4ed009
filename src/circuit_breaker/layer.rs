//! The layer, its builder, and how requests map to breakers.

use std::{fmt, hash::Hash, sync::Arc, time::Duration};

use tower_layer::{Layer, Stack};

use super::{
    CircuitBreaker, CircuitBreakerHandle, ConfigError, Http503Layer, OnEvent, State, Window,
    config::Config,
    service::Local,
    shared::{Breakers, Registry, Shared},
    state::{Breaker, Core},
};
use crate::classify::HttpClassifier;

/// Picks the breaker for a request: the key of a per-key breaker.
///
/// Implemented by `()` (one breaker for every request) and by [`PerKey`], which wraps the
/// closure given to [`CircuitBreakerBuilder::per_key`].
pub trait KeyFn<Req, K> {
    /// The key of `req`'s breaker.
    fn key(&self, req: &Req) -> K;
}

impl<Req> KeyFn<Req, ()> for () {
    fn key(&self, _req: &Req) {}
}

/// A `Fn(&Req) -> K` closure choosing per-key breakers; made by
/// [`CircuitBreakerBuilder::per_key`].
#[derive(Clone, Copy)]
pub struct PerKey<F>(F);

impl<F> fmt::Debug for PerKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PerKey(..)")
    }
}

impl<Req, K, F> KeyFn<Req, K> for PerKey<F>
where
    F: Fn(&Req) -> K,
{
    fn key(&self, req: &Req) -> K {
        (self.0)(req)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<F> Sealed for super::PerKey<F> {}
}

/// Whether a layer has one breaker (`()`) or one per key ([`PerKey`]). Sealed.
pub trait KeyMode<K>: sealed::Sealed {
    /// The key of the one breaker, or `None` for per-key breakers.
    fn single_key() -> Option<K>;
}

impl KeyMode<()> for () {
    fn single_key() -> Option<()> {
        Some(())
    }
}

impl<K, F> KeyMode<K> for PerKey<F> {
    fn single_key() -> Option<K> {
        None
    }
}

fn breakers<K: Clone + Hash + Eq + 'static>(single_key: Option<K>, core: &Core<K>) -> Breakers<K> {
    match single_key {
        Some(key) => Breakers::Single(Breaker::new(key, core)),
        None => Breakers::Keyed(Registry::new()),
    }
}

/// Applies a [`CircuitBreaker`] to services. See the [module docs](super).
///
/// Every service made by one layer (and every clone of them) shares the layer's breakers:
/// clone the layer to guard the same backend from several places; build another layer for
/// another backend.
///
/// `C` classifies results ([`Classify`](crate::classify::Classify)), `K` is the key type
/// (`()` unless per-key) and `F` picks the key ([`KeyFn`]).
#[must_use]
pub struct CircuitBreakerLayer<C = HttpClassifier, K = (), F = ()> {
    shared: Arc<Shared<K>>,
    classifier: C,
    key_fn: F,
}

impl<C: Clone, K, F: Clone> Clone for CircuitBreakerLayer<C, K, F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<C: fmt::Debug, K, F> fmt::Debug for CircuitBreakerLayer<C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.core.config.name)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// One breaker with the default settings (see [`CircuitBreakerBuilder`]) and the
    /// [`HttpClassifier`].
    pub fn new() -> Self {
        let core = Core::new(Config::default(), None);
        let breakers = breakers(Some(()), &core);
        Self {
            shared: Arc::new(Shared { core, breakers }),
            classifier: HttpClassifier::new(),
            key_fn: (),
        }
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            config: Config::default(),
            classifier: HttpClassifier::new(),
            key_fn: (),
            hook: None,
            _key: std::marker::PhantomData,
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, K, F> CircuitBreakerLayer<C, K, F> {
    /// The handle to read and steer this layer's breakers.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle<K> {
        CircuitBreakerHandle::new(self.shared.clone())
    }

    /// This layer, with rejections answered as `503 Service Unavailable` responses (with
    /// `Retry-After`) instead of errors: the service's error type stays the inner service's.
    /// See [`Http503Layer`].
    pub fn http_503(self) -> Stack<Self, Http503Layer> {
        Stack::new(self, Http503Layer::new())
    }
}

impl<S, C: Clone, K, F: Clone> Layer<S> for CircuitBreakerLayer<C, K, F> {
    type Service = CircuitBreaker<S, C, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            Arc::new(Local {
                shared: self.shared.clone(),
                classifier: self.classifier.clone(),
            }),
            self.key_fn.clone(),
        )
    }
}

/// Builds a [`CircuitBreakerLayer`], checking every setting; from
/// [`CircuitBreakerLayer::builder`].
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`name`](Self::name) | `"default"` | the `breaker` label of the metrics, the `breaker` field of the logs |
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 50 % | opens when failures / recorded calls in the window `>=` this |
/// | [`minimum_calls`](Self::minimum_calls) | 20 | no rate counts before this many calls are in the window |
/// | [`window`](Self::window) | last 100 calls | [`Window::Count`] or [`Window::Time`] |
/// | [`slow_call_duration`](Self::slow_call_duration) | none (off) | a call taking strictly longer is slow |
/// | [`slow_call_rate_threshold`](Self::slow_call_rate_threshold) | 100 % | opens when slow calls / recorded calls `>=` this |
/// | [`open_duration`](Self::open_duration) | 30 s | how long it stays open the first time |
/// | [`backoff_multiplier`](Self::backoff_multiplier) | 1 (off) | each reopen without a close in between multiplies the open duration |
/// | [`max_open_duration`](Self::max_open_duration) | 5 min (or `open_duration` if longer) | caps backoff, jitter and `Retry-After` |
/// | [`jitter`](Self::jitter) | 0 | spreads the open duration by ± this fraction |
/// | [`half_open_permits`](Self::half_open_permits) | 3 | probes let through when half-open; all must report before it decides |
/// | [`max_half_open_wait`](Self::max_half_open_wait) | 60 s | a half-open state whose probes have not all reported by then ends |
/// | [`after_max_half_open_wait`](Self::after_max_half_open_wait) | `Open` | where it goes then: `Open` or `Closed` |
/// | [`initial_state`](Self::initial_state) | `Closed` | any state but `HalfOpen` |
/// | [`honor_retry_after`](Self::honor_retry_after) | on | stay open at least as long as a failure's `Retry-After` asked |
/// | [`max_keys`](Self::max_keys) | 1024 | per-key breakers kept at most |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min | a per-key breaker unused this long may be dropped |
/// | [`event_capacity`](Self::event_capacity) | 64 | events buffered per [subscriber](CircuitBreakerHandle::subscribe) |
///
/// The issue's environment settings map as: `CIRCUIT_BREAKER_ERROR_THRESHOLD` →
/// `failure_rate_threshold`, `CIRCUIT_BREAKER_VOLUME_THRESHOLD` → `minimum_calls`,
/// `CIRCUIT_BREAKER_RESET_TIMEOUT_MS` → `open_duration`. Unlike opossum, whose threshold is a
/// strict `>`, reaching the threshold is enough.
///
/// [`build`](Self::build) rejects invalid values and contradictions (e.g. `minimum_calls`
/// larger than a count window) with a [`ConfigError`] naming the setting, rather than
/// clamping them.
#[must_use]
pub struct CircuitBreakerBuilder<C = HttpClassifier, K = (), F = (), H = ()> {
    config: Config,
    classifier: C,
    key_fn: F,
    hook: Option<H>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<C: fmt::Debug, K, F, H> fmt::Debug for CircuitBreakerBuilder<C, K, F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl<C, K, F, H> CircuitBreakerBuilder<C, K, F, H> {
    /// Names the breaker: the `breaker` label of its metrics and the `breaker` field of its
    /// logs. Give every layer in one process its own name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    setter! {
        /// Opens when failures / recorded calls in the window reach this many percent
        /// (`>=`), in (0, 100].
        failure_rate_threshold: f64
    }

    setter! {
        /// No rate counts until the window holds this many recorded calls (at least 1, and no
        /// more than a count window's size).
        minimum_calls: u32
    }

    setter! {
        /// The window the rates are computed over.
        window: Window
    }

    /// Counts a call taking strictly longer than `duration` as slow (a slow success is
    /// still a success, a slow failure still a failure). Off by default; when off the
    /// closed path does not read the clock.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    setter! {
        /// Opens when slow calls / recorded calls reach this many percent (`>=`), in
        /// (0, 100]. Only with [`slow_call_duration`](Self::slow_call_duration).
        slow_call_rate_threshold: f64
    }

    setter! {
        /// How long the breaker stays open the first time (at least 1 ms).
        open_duration: Duration
    }

    setter! {
        /// Multiplies the open duration by this for each reopen without a close in between
        /// (exponential backoff); at least 1 (1 = off).
        backoff_multiplier: f64
    }

    /// Caps the open duration after backoff and jitter, and how long a `Retry-After` can
    /// hold the breaker open. Must not be shorter than `open_duration`.
    pub fn max_open_duration(mut self, duration: Duration) -> Self {
        self.config.max_open_duration = duration;
        self.config.max_open_is_default = false;
        self
    }

    setter! {
        /// Spreads each open duration uniformly over ± this fraction of it (0 to 1), so that
        /// many clients do not probe at the same instant.
        jitter: f64
    }

    setter! {
        /// How many probes pass when half-open (1 to 1024). They all must report before the
        /// breaker decides, by the same thresholds over the probes alone; `minimum_calls`
        /// does not apply. A probe that is ignored or dropped gives its permit back.
        half_open_permits: u32
    }

    setter! {
        /// Ends a half-open state whose probes have not all reported after this long (at
        /// least 1 ms), going to [`after_max_half_open_wait`](Self::after_max_half_open_wait);
        /// `None` waits for the probes forever (not recommended: a hung probe would hold the
        /// breaker half-open).
        max_half_open_wait: Option<Duration>
    }

    setter! {
        /// Where a half-open state ended by `max_half_open_wait` goes: `State::Open` (with
        /// the next backoff step) or `State::Closed`.
        after_max_half_open_wait: State
    }

    setter! {
        /// The state a breaker starts in (not `HalfOpen`); `Open` starts open for the open
        /// duration. Per-key breakers each start in it.
        initial_state: State
    }

    setter! {
        /// Whether a failure's `Retry-After` (see
        /// [`Classify::retry_after`](crate::classify::Classify::retry_after)) keeps the
        /// breaker open at least that long when it opens, up to `max_open_duration`.
        honor_retry_after: bool
    }

    setter! {
        /// Per-key breakers kept at most (at least 1).
        max_keys: usize
    }

    setter! {
        /// A per-key breaker unused for this long may be dropped (at least 1 ms).
        idle_timeout: Duration
    }

    setter! {
        /// Events buffered for each [subscriber](CircuitBreakerHandle::subscribe) (1 to
        /// 65536).
        event_capacity: usize
    }

    /// Sets the classifier: an [`HttpClassifier`] by default, or any
    /// [`Classify`](crate::classify::Classify) such as an annotated closure.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2, K, F, H> {
        CircuitBreakerBuilder {
            config: self.config,
            classifier,
            key_fn: self.key_fn,
            hook: self.hook,
            _key: std::marker::PhantomData,
        }
    }

    /// Sets the hook that receives every [`Event`](super::Event): a closure
    /// `Fn(&Event<K>)` or any [`OnEvent`]. Set it after [`per_key`](Self::per_key), which
    /// fixes `K`.
    pub fn on_event<H2>(self, hook: H2) -> CircuitBreakerBuilder<C, K, F, H2>
    where
        H2: OnEvent<K>,
    {
        CircuitBreakerBuilder {
            config: self.config,
            classifier: self.classifier,
            key_fn: self.key_fn,
            hook: Some(hook),
            _key: std::marker::PhantomData,
        }
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build(self) -> Result<CircuitBreakerLayer<C, K, F>, ConfigError>
    where
        F: KeyMode<K>,
        H: OnEvent<K>,
        K: Clone + Hash + Eq + Send + Sync + 'static,
    {
        let config = self.config.validate()?;
        let hook = self.hook.map(|h| Box::new(h) as Box<dyn OnEvent<K>>);
        let core = Core::new(config, hook);
        let breakers = breakers(F::single_key(), &core);
        Ok(CircuitBreakerLayer {
            shared: Arc::new(Shared { core, breakers }),
            classifier: self.classifier,
            key_fn: self.key_fn,
        })
    }
}

impl<C, H> CircuitBreakerBuilder<C, (), (), H> {
    /// One breaker per key, `key_fn(&request)`: e.g. per host or per route, so that one
    /// failing backend does not open the breaker for the others.
    ///
    /// Keys live in a bounded registry (see [`max_keys`](Self::max_keys) and
    /// [`idle_timeout`](Self::idle_timeout)). Choose a key with few values (an authority, a
    /// route template, not a raw path) that is cheap to clone: it is cloned into each
    /// rejection and event.
    ///
    /// ```
    /// use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .per_key(|req: &http::Request<String>| req.uri().authority().cloned())
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn per_key<Req, K2, F2>(self, key_fn: F2) -> CircuitBreakerBuilder<C, K2, PerKey<F2>, H>
    where
        F2: Fn(&Req) -> K2,
        K2: Clone + Hash + Eq + Send + Sync + 'static,
    {
        CircuitBreakerBuilder {
            config: self.config,
            classifier: self.classifier,
            key_fn: PerKey(key_fn),
            hook: self.hook,
            _key: std::marker::PhantomData,
        }
    }
}
