//! Which log lines become OpenTelemetry span events.
//!
//! tracing-opentelemetry records every log line written inside a span as an event of that
//! span, with each field formatted to a string: per request that is most of what its layer
//! allocates, for lines the logs already have. [`SpanEventLevel`], a per-layer filter on
//! its layer, lets only the lines at or above a level through; every span passes.

use tracing::{Metadata, level_filters::LevelFilter, subscriber::Interest};
use tracing_subscriber::layer::{Context, Filter};

/// Passes every span, and the log lines at `level` or more severe.
#[derive(Clone, Copy, Debug)]
pub(super) struct SpanEventLevel(pub(super) LevelFilter);

impl SpanEventLevel {
    fn passes(self, metadata: &Metadata<'_>) -> bool {
        metadata.is_span() || self.0 >= *metadata.level()
    }
}

impl<S> Filter<S> for SpanEventLevel {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.passes(metadata)
    }

    // Decided once per call site, so the filter costs nothing per line.
    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.passes(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Spans of any level pass.
        None
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::{
        error::OTelSdkResult,
        trace::{SdkTracerProvider, SpanData, SpanProcessor},
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Debug, Default)]
    struct Ended(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Ended {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn only_lines_at_the_level_become_span_events_and_the_context_is_still_found() {
        let ended = Ended::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(ended.clone())
            .build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("t"));
        let subscriber = tracing_subscriber::registry()
            .with(otel.with_filter(SpanEventLevel(LevelFilter::WARN)));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            assert!(span.context().span().span_context().is_valid());
            span.in_scope(|| {
                tracing::info!("routine");
                tracing::warn!("odd");
                tracing::error!("broken");
                tracing::debug!("noise");
            });
        });
        let spans = ended.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let names: Vec<_> = spans[0]
            .events
            .iter()
            .map(|event| event.name.to_string())
            .collect();
        assert_eq!(names, ["odd", "broken"]);
    }
}
