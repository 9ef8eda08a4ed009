//! Prometheus metrics of retry layers, read from the layers at scrape time.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{
    RetryHandle, RetryStats,
    handle::{GiveUp, Shared},
};
use crate::metrics::tracked::Tracked;

/// The metrics of any number of retry layers, as one collector in a prometheus-client
/// [`Registry`], each series labelled `retry` (the builder's [`name`](super::RetryBuilder::name)):
///
/// | metric | type | labels |
/// |---|---|---|
/// | `retry_retries_total` | counter: retries sent | `retry`, `reason` = `response` (a failed response) or `error` (no response) |
/// | `retry_given_up_total` | counter: failed requests answered without a further retry | `retry`, `reason` = `attempts_exhausted`, `budget_exhausted`, `retry_after_too_long`, `circuit_open` |
/// | `retry_budget_available` | gauge: retries the budget allows now | `retry` |
///
/// `rate(retry_given_up_total{reason="budget_exhausted"}[5m]) > 0` says the budget is holding
/// retries back: the backend is failing more than the budget's ratio.
///
/// Read from the layers when scraped: requests pay nothing for metrics. Layers are held
/// weakly: a dropped layer's series disappear.
///
/// ```
/// use prometheus_client::{encoding::text::encode, registry::Registry};
/// use tower_bulwark::retry::{RetryLayer, RetryMetrics};
///
/// let users = RetryLayer::builder().name("users").build().unwrap();
/// let orders = RetryLayer::builder().name("orders").build().unwrap();
///
/// let mut registry = Registry::default();
/// let metrics = RetryMetrics::register(&mut registry);
/// metrics.track(&users.handle());
/// metrics.track(&orders.handle());
/// // Or, for a single layer: `users.handle().register(&mut registry);`
///
/// let mut text = String::new();
/// encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"retry_retries_total{retry="users",reason="error"} 0"#));
/// assert!(text.contains(r#"retry_given_up_total{retry="orders",reason="budget_exhausted"} 0"#));
/// assert!(text.contains(r#"retry_budget_available{retry="orders"} 100"#));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RetryMetrics {
    sources: Tracked<Shared>,
}

impl RetryMetrics {
    /// Registers the collector in `registry`; then [`track`](Self::track) layers.
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Adds the layer of `handle`.
    pub fn track(&self, handle: &RetryHandle) {
        self.sources.track(&handle.shared);
    }
}

impl RetryHandle {
    /// Registers this layer's metrics in `registry` (see [`RetryMetrics`]). For several
    /// layers in one registry, register one [`RetryMetrics`] and
    /// [`track`](RetryMetrics::track) each: metric names must be registered once.
    pub fn register(&self, registry: &mut Registry) -> RetryMetrics {
        let metrics = RetryMetrics::register(registry);
        metrics.track(self);
        metrics
    }
}

impl Collector for RetryMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let rows: Vec<(String, RetryStats)> = self.sources.read(|s| (s.name.clone(), s.stats()));

        let mut m = encoder.encode_descriptor(
            "retry_retries",
            "Retries sent, by what the failed attempt got",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, stats) in &rows {
            for (reason, n) in [
                ("response", stats.retries_after_response),
                ("error", stats.retries_after_error),
            ] {
                let labels = [("retry", name.as_str()), ("reason", reason)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "retry_given_up",
            "Failed requests answered without a further retry, by why",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, stats) in &rows {
            for reason in GiveUp::ALL {
                let n = match reason {
                    GiveUp::Attempts => stats.attempts_exhausted,
                    GiveUp::Budget => stats.budget_exhausted,
                    GiveUp::RetryAfter => stats.retry_after_too_long,
                    GiveUp::CircuitOpen => stats.circuit_open,
                };
                let labels = [("retry", name.as_str()), ("reason", reason.as_str())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "retry_budget_available",
            "Retries the retry budget allows now",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (name, stats) in &rows {
            let labels = [("retry", name.as_str())];
            let n = i64::try_from(stats.budget_available).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
