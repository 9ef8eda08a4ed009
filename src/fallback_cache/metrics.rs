//! Prometheus metrics of fallback caches, read from the stores at scrape time.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{FallbackCacheHandle, Stats, layer::Shared};
use crate::metrics::tracked::Tracked;

/// The metrics of any number of fallback caches, as one collector in a prometheus-client
/// [`Registry`], each series labelled `cache` (the builder's [`name`](super::FallbackCacheBuilder::name)):
///
/// | metric | type |
/// |---|---|
/// | `fallback_cache_stale_served_total` | counter: failed calls answered from the store |
/// | `fallback_cache_fresh_hits_total` | counter: fresh-mode hits |
/// | `fallback_cache_misses_total` | counter: failed calls with nothing usable stored |
/// | `fallback_cache_stores_total` | counter: answers stored (an identical answer renewing its entry counts too) |
/// | `fallback_cache_evictions_total` | counter: entries evicted for room (LRU) |
/// | `fallback_cache_expirations_total` | counter: entries dropped past the TTL |
/// | `fallback_cache_invalidations_total` | counter: entries invalidated |
/// | `fallback_cache_entries` | gauge |
/// | `fallback_cache_bytes` | gauge: bytes charged (see [`Stats::bytes`]) |
///
/// Read from the stores when scraped: calls pay nothing for metrics. Stores are held weakly:
/// a dropped layer's series disappear.
///
/// ```
/// use prometheus_client::{encoding::text::encode, registry::Registry};
/// use tower_bulwark::fallback_cache::FallbackCacheLayer;
///
/// let layer = FallbackCacheLayer::builder().name("tasks").build().unwrap();
/// let mut registry = Registry::default();
/// layer.handle().register(&mut registry);
///
/// let mut text = String::new();
/// encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"fallback_cache_entries{cache="tasks"} 0"#));
/// assert!(text.contains(r#"fallback_cache_stale_served_total{cache="tasks"} 0"#));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FallbackCacheMetrics {
    sources: Tracked<Shared>,
}

impl FallbackCacheMetrics {
    /// Registers the collector in `registry`; then [`track`](Self::track) caches.
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Adds the cache of `handle`'s layer.
    pub fn track(&self, handle: &FallbackCacheHandle) {
        self.sources.track(&handle.shared);
    }
}

impl FallbackCacheHandle {
    /// Registers this cache's metrics in `registry` (see [`FallbackCacheMetrics`]). For several
    /// caches in one registry, register one [`FallbackCacheMetrics`] and
    /// [`track`](FallbackCacheMetrics::track) each: metric names must be registered once.
    pub fn register(&self, registry: &mut Registry) -> FallbackCacheMetrics {
        let metrics = FallbackCacheMetrics::register(registry);
        metrics.track(self);
        metrics
    }
}

type Family = (&'static str, &'static str, fn(&Stats) -> u64);

impl Collector for FallbackCacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let rows: Vec<(String, Stats)> = self
            .sources
            .read(|s| (s.config.name.clone(), s.store().stats));
        let counters: [Family; 7] = [
            (
                "fallback_cache_stale_served",
                "Failed calls answered from the fallback cache",
                |s| s.stale_served,
            ),
            (
                "fallback_cache_fresh_hits",
                "Calls answered from the fallback cache without asking (fresh mode)",
                |s| s.fresh_hits,
            ),
            (
                "fallback_cache_misses",
                "Failed calls with no usable answer in the fallback cache",
                |s| s.misses,
            ),
            (
                "fallback_cache_stores",
                "Answers stored in the fallback cache",
                |s| s.stores,
            ),
            (
                "fallback_cache_evictions",
                "Fallback cache entries evicted to make room",
                |s| s.evictions,
            ),
            (
                "fallback_cache_expirations",
                "Fallback cache entries dropped past their TTL",
                |s| s.expirations,
            ),
            (
                "fallback_cache_invalidations",
                "Fallback cache entries invalidated",
                |s| s.invalidations,
            ),
        ];
        for (name, help, value) in counters {
            let mut m = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (cache, stats) in &rows {
                ConstCounter::new(value(stats))
                    .encode(m.encode_family(&[("cache", cache.as_str())])?)?;
            }
        }
        let gauges: [Family; 2] = [
            (
                "fallback_cache_entries",
                "Entries in the fallback cache",
                |s| s.entries,
            ),
            (
                "fallback_cache_bytes",
                "Bytes charged by the fallback cache's entries",
                |s| s.bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let mut m =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (cache, stats) in &rows {
                let v = i64::try_from(value(stats)).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(m.encode_family(&[("cache", cache.as_str())])?)?;
            }
        }
        Ok(())
    }
}
