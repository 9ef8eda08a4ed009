//! Export counters: what the guard reports, what the log reports once a minute, and what the
//! Prometheus collector exposes.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "otlp")]
use std::time::{Duration, Instant};

/// Counters shared by the export thread, the span processor and the guard.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) exported: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) export_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.export_failed.load(Ordering::Relaxed),
        }
    }
}

/// What became of the sampled spans so far; see [`TelemetryGuard::export_stats`].
///
/// [`TelemetryGuard::export_stats`]: super::TelemetryGuard::export_stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the export queue was full: the collector was slow or down for
    /// longer than the queue could absorb.
    pub dropped_queue_full: u64,
    /// Spans dropped because their export failed or timed out.
    pub dropped_export_failed: u64,
}

impl ExportStats {
    /// All dropped spans.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed
    }
}

/// How often dropped spans are reported in the log, at most.
#[cfg(feature = "otlp")]
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Decides when to log dropped spans: the first drop at once, then at most once per
/// [`REPORT_INTERVAL`], each report covering the drops since the previous one.
#[cfg(feature = "otlp")]
#[derive(Debug, Default)]
pub(crate) struct DropReporter {
    last_report: Option<Instant>,
    reported: u64,
}

#[cfg(feature = "otlp")]
impl DropReporter {
    /// The drops to report now, if it is time (or `force`d); `dropped` is the running total.
    pub(crate) fn due(&mut self, now: Instant, dropped: u64, force: bool) -> Option<u64> {
        if dropped <= self.reported {
            return None;
        }
        if !force
            && self
                .last_report
                .is_some_and(|last| now.saturating_duration_since(last) < REPORT_INTERVAL)
        {
            return None;
        }
        let new = dropped - self.reported;
        self.reported = dropped;
        self.last_report = Some(now);
        Some(new)
    }
}

#[cfg(feature = "metrics")]
pub(crate) mod prometheus {
    use std::sync::Arc;

    use prometheus_client::{
        collector::Collector,
        encoding::{DescriptorEncoder, EncodeMetric as _},
        metrics::{MetricType, counter::ConstCounter},
    };

    use super::Counters;

    /// Reads the counters at scrape time, so the hot path touches one atomic only.
    #[derive(Debug)]
    pub(crate) struct ExportCollector(pub(crate) Arc<Counters>);

    impl Collector for ExportCollector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let stats = self.0.snapshot();
            let mut family = encoder.encode_descriptor(
                "otel_spans_dropped",
                "Sampled spans dropped before reaching the trace collector, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, value) in [
                ("queue_full", stats.dropped_queue_full),
                ("export_failed", stats.dropped_export_failed),
            ] {
                ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
            }
            let exported = ConstCounter::new(stats.exported);
            exported.encode(encoder.encode_descriptor(
                "otel_spans_exported",
                "Sampled spans the trace collector accepted.",
                None,
                MetricType::Counter,
            )?)
        }
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;

    #[test]
    fn reports_at_once_then_at_most_once_a_minute() {
        let t0 = Instant::now();
        let mut r = DropReporter::default();
        assert_eq!(r.due(t0, 0, false), None);
        assert_eq!(r.due(t0, 3, false), Some(3));
        assert_eq!(r.due(t0 + Duration::from_secs(1), 10, false), None);
        assert_eq!(r.due(t0 + Duration::from_secs(59), 20, false), None);
        assert_eq!(r.due(t0 + Duration::from_secs(60), 25, false), Some(22));
        assert_eq!(r.due(t0 + Duration::from_secs(200), 25, false), None);
        assert_eq!(r.due(t0 + Duration::from_secs(201), 26, false), Some(1));
        assert_eq!(r.due(t0 + Duration::from_secs(202), 30, true), Some(4));
    }
}
