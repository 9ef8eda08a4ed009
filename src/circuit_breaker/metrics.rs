//! Prometheus metrics of circuit breakers, read from the breakers at scrape time.

use std::{
    borrow::Cow,
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{
    CircuitBreakerHandle, State,
    shared::{Breakers, Shared},
    state::View,
};

/// The metrics of any number of circuit breakers, as one collector in a prometheus-client
/// [`Registry`]:
///
/// | metric | type | labels |
/// |---|---|---|
/// | `circuit_breaker_state` | gauge, 1 for the current state and 0 for the five others | `breaker`, `key`, `state` |
/// | `circuit_breaker_transitions_total` | counter | `breaker`, `key`, `from`, `to` |
/// | `circuit_breaker_calls_total` | counter | `breaker`, `key`, `outcome` = `success`, `failure`, `ignored`, `cancelled` |
/// | `circuit_breaker_slow_calls_total` | counter | `breaker`, `key` |
/// | `circuit_breaker_rejections_total` | counter | `breaker`, `key` |
/// | `circuit_breaker_failure_rate` | gauge, 0 to 1, over the current window | `breaker`, `key` |
/// | `circuit_breaker_slow_call_rate` | gauge, 0 to 1, over the current window | `breaker`, `key` |
///
/// `breaker` is the [name](super::CircuitBreakerBuilder::name), `key` the per-key breaker's
/// key as its [`KeyLabel`], empty for an unkeyed breaker. Everything is read from the breakers when
/// scraped, so the calls pay nothing for metrics, the state gauge always has exactly one state
/// at 1, and an evicted key's series go away with it. The transitions counter shows openings
/// shorter than the scrape interval, which the state gauge cannot.
///
/// Breakers are held weakly: a dropped layer's series disappear.
///
/// ```
/// use prometheus_client::{encoding::text::encode, registry::Registry};
/// use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, CircuitBreakerMetrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let users = CircuitBreakerLayer::builder().name("users").build().unwrap();
/// let orders = CircuitBreakerLayer::builder().name("orders").build().unwrap();
///
/// let mut registry = Registry::default();
/// let metrics = CircuitBreakerMetrics::register(&mut registry);
/// metrics.track(&users.handle());
/// metrics.track(&orders.handle());
/// // Or, for a single breaker: `users.handle().register(&mut registry);`
///
/// orders.handle().force_open();
/// let mut text = String::new();
/// encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"circuit_breaker_state{breaker="orders",key="",state="forced_open"} 1"#));
/// assert!(text.contains(r#"circuit_breaker_state{breaker="users",key="",state="closed"} 1"#));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CircuitBreakerMetrics {
    sources: Arc<Mutex<Vec<Box<dyn Source>>>>,
}

impl CircuitBreakerMetrics {
    /// Registers the collector in `registry`; then [`track`](Self::track) breakers.
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Adds the breakers of `handle`'s layer (all keys, present and future).
    pub fn track<K>(&self, handle: &CircuitBreakerHandle<K>)
    where
        K: KeyLabel + Clone + Hash + Eq + Send + Sync + 'static,
    {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|s| s.alive());
        sources.push(Box::new(Arc::downgrade(handle.shared())));
    }
}

impl<K> CircuitBreakerHandle<K>
where
    K: KeyLabel + Clone + Hash + Eq + Send + Sync + 'static,
{
    /// Registers this layer's metrics in `registry` (see [`CircuitBreakerMetrics`]). For
    /// several layers in one registry, register one [`CircuitBreakerMetrics`] and
    /// [`track`](CircuitBreakerMetrics::track) each: metric names must be registered once.
    pub fn register(&self, registry: &mut Registry) -> CircuitBreakerMetrics {
        let metrics = CircuitBreakerMetrics::register(registry);
        metrics.track(self);
        metrics
    }
}

/// How a breaker's key is written in the `key` label of its metrics.
///
/// Implemented for `()` (empty: an unkeyed breaker), strings, integers, `bool`,
/// [`http::uri::Authority`], [`http::Method`], [`http::uri::Scheme`], and `Option` of any of
/// them (`None` is empty). Implement it for your own key type; keep the label short and of
/// low cardinality.
pub trait KeyLabel {
    /// Appends the label to `out`.
    fn write_label(&self, out: &mut String);
}

impl KeyLabel for () {
    fn write_label(&self, _out: &mut String) {}
}

impl<T: KeyLabel> KeyLabel for Option<T> {
    fn write_label(&self, out: &mut String) {
        if let Some(v) = self {
            v.write_label(out);
        }
    }
}

impl<T: KeyLabel + ?Sized> KeyLabel for &T {
    fn write_label(&self, out: &mut String) {
        (**self).write_label(out);
    }
}

impl<T: KeyLabel + ?Sized> KeyLabel for Arc<T> {
    fn write_label(&self, out: &mut String) {
        (**self).write_label(out);
    }
}

impl<T: KeyLabel + ?Sized> KeyLabel for Box<T> {
    fn write_label(&self, out: &mut String) {
        (**self).write_label(out);
    }
}

macro_rules! label_as_str {
    ($($t:ty),*) => {$(
        impl KeyLabel for $t {
            fn write_label(&self, out: &mut String) {
                out.push_str(self.as_ref());
            }
        }
    )*};
}
label_as_str!(
    str,
    String,
    Cow<'_, str>,
    http::uri::Authority,
    http::Method
);

impl KeyLabel for http::uri::Scheme {
    fn write_label(&self, out: &mut String) {
        out.push_str(self.as_str());
    }
}

macro_rules! label_display {
    ($($t:ty),*) => {$(
        impl KeyLabel for $t {
            fn write_label(&self, out: &mut String) {
                use fmt::Write as _;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
label_display!(
    bool, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// A metric family read from each row: name, help, value.
type Family<T> = (&'static str, &'static str, fn(&Row) -> T);

/// One breaker's numbers, labelled.
struct Row {
    breaker: String,
    key: String,
    view: View,
    transitions: Vec<(State, State, u64)>,
}

trait Source: Send + Sync + 'static {
    fn alive(&self) -> bool;
    fn rows(&self, out: &mut Vec<Row>);
}

impl<K> Source for Weak<Shared<K>>
where
    K: KeyLabel + Clone + Hash + Eq + Send + Sync + 'static,
{
    fn alive(&self) -> bool {
        self.strong_count() > 0
    }

    fn rows(&self, out: &mut Vec<Row>) {
        let Some(shared) = self.upgrade() else { return };
        let core = &shared.core;
        let mut push = |b: &super::state::Breaker<K>, key: String| {
            out.push(Row {
                breaker: core.config.name.clone(),
                key,
                view: b.view(core),
                transitions: b.transitions(),
            });
        };
        match &shared.breakers {
            Breakers::Single(b) => push(b, String::new()),
            Breakers::Keyed(reg) => {
                for b in reg.all() {
                    let mut key = String::new();
                    b.key.write_label(&mut key);
                    push(&b, key);
                }
            }
        }
    }
}

impl fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Source")
    }
}

impl Collector for CircuitBreakerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut rows = Vec::new();
        {
            let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            for s in sources.iter() {
                s.rows(&mut rows);
            }
        }

        let gauge = |v: f64| ConstGauge::new(v);
        let counter = |v: u64| ConstCounter::new(v);

        let mut m = encoder.encode_descriptor(
            "circuit_breaker_state",
            "Circuit breaker state: 1 for the current state, 0 for the others",
            None,
            gauge(0.0).metric_type(),
        )?;
        for r in &rows {
            for s in State::ALL {
                let labels = [
                    ("breaker", r.breaker.as_str()),
                    ("key", r.key.as_str()),
                    ("state", s.as_str()),
                ];
                ConstGauge::new(i64::from(r.view.state == s)).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "circuit_breaker_transitions",
            "Circuit breaker state transitions",
            None,
            counter(0).metric_type(),
        )?;
        for r in &rows {
            for (from, to, n) in &r.transitions {
                let labels = [
                    ("breaker", r.breaker.as_str()),
                    ("key", r.key.as_str()),
                    ("from", from.as_str()),
                    ("to", to.as_str()),
                ];
                counter(*n).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "circuit_breaker_calls",
            "Calls through the circuit breaker, by outcome",
            None,
            counter(0).metric_type(),
        )?;
        for r in &rows {
            for (i, outcome) in ["success", "failure", "ignored", "cancelled"]
                .into_iter()
                .enumerate()
            {
                let labels = [
                    ("breaker", r.breaker.as_str()),
                    ("key", r.key.as_str()),
                    ("outcome", outcome),
                ];
                counter(r.view.totals[i]).encode(m.encode_family(&labels)?)?;
            }
        }

        let simple: [Family<u64>; 2] = [
            (
                "circuit_breaker_slow_calls",
                "Calls slower than the slow-call duration",
                |r| r.view.totals[4],
            ),
            (
                "circuit_breaker_rejections",
                "Calls rejected by the circuit breaker",
                |r| r.view.totals[5],
            ),
        ];
        for (name, help, value) in simple {
            let mut m = encoder.encode_descriptor(name, help, None, counter(0).metric_type())?;
            for r in &rows {
                let labels = [("breaker", r.breaker.as_str()), ("key", r.key.as_str())];
                counter(value(r)).encode(m.encode_family(&labels)?)?;
            }
        }

        let rates: [Family<f64>; 2] = [
            (
                "circuit_breaker_failure_rate",
                "Failures over recorded calls in the circuit breaker's current window (0 to 1)",
                |r| r.view.tally.failure_rate(),
            ),
            (
                "circuit_breaker_slow_call_rate",
                "Slow calls over recorded calls in the circuit breaker's current window (0 to 1)",
                |r| r.view.tally.slow_call_rate(),
            ),
        ];
        for (name, help, value) in rates {
            let mut m = encoder.encode_descriptor(name, help, None, gauge(0.0).metric_type())?;
            for r in &rows {
                let labels = [("breaker", r.breaker.as_str()), ("key", r.key.as_str())];
                gauge(value(r)).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
