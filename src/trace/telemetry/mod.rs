//! Sets up logging and tracing for a service in one call: a fmt layer (JSON or text) whose
//! lines carry `trace_id`, `span_id` and `request_id`, and the OpenTelemetry layer with a
//! parent-based ratio sampler, exporting over OTLP/HTTP (feature `otlp`).

use std::{
    env, fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use opentelemetry::{InstrumentationScope, KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    resource::TelemetryResourceDetector,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::{Dispatch, dispatcher::WeakDispatch, level_filters::LevelFilter};
use tracing_subscriber::{
    filter::Targets,
    fmt::{MakeWriter, writer::BoxMakeWriter},
    prelude::*,
};

use super::{CorrelationLayer, JsonFormat, SkipFields, TextFormat};

#[cfg(feature = "otlp")]
mod export;
#[cfg(feature = "otlp")]
mod otlp;
mod record;
mod stats;

pub(crate) use record::OtelSpan;
use record::{SpanRecorder, Tracer};
use stats::Counters;
pub use stats::ExportStats;
#[cfg(feature = "otlp")]
pub(crate) use {otlp::AttributeBatch, record::append_encoded};

/// The log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line; see [`JsonFormat`].
    #[default]
    Json,
    /// tracing-subscriber's single-line text format; see [`TextFormat`].
    Text,
    /// tracing-subscriber's multi-line `Pretty` format; see [`TextFormat::pretty`].
    Pretty,
}

/// Why telemetry could not be set up.
#[derive(Debug)]
pub struct TelemetryError {
    message: String,
}

impl TelemetryError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TelemetryError {}

/// Starts the export thread once the resource and the subscriber are known.
#[cfg(feature = "otlp")]
type SpawnExporter = Box<
    dyn FnOnce(
            &Resource,
            export::Settings,
            Arc<Counters>,
            Arc<OnceLock<WeakDispatch>>,
        ) -> Result<export::BoundedBatchProcessor, TelemetryError>
        + Send,
>;

/// Builds the process's `tracing` subscriber and OpenTelemetry pipeline; see the
/// [module docs](super).
///
/// Every value is a builder argument; [`from_env`](Self::from_env) reads the usual
/// environment variables for services that want them.
///
/// ```
/// use tower_bulwark::trace::TelemetryBuilder;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (dispatch, guard) = TelemetryBuilder::new("taskman")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .sample_rate(0.1)
///     // .otlp_endpoint("http://localhost:4318") // with the `otlp` feature
///     .build()?;
/// tracing::dispatcher::with_default(&dispatch, || tracing::info!("ready"));
/// guard.shutdown()?; // flushes what is queued
/// # Ok(())
/// # }
/// ```
///
/// In a binary, [`init`](Self::init) installs the subscriber globally instead.
pub struct TelemetryBuilder {
    service_name: String,
    service_version: Option<String>,
    resource_attributes: Vec<KeyValue>,
    filter: String,
    format: LogFormat,
    writer: BoxMakeWriter,
    opentelemetry: bool,
    sample_rate: f64,
    span_events: LevelFilter,
    debug: bool,
    #[cfg(feature = "otlp")]
    otlp_endpoint: Option<String>,
    #[cfg(feature = "otlp")]
    settings: export::Settings,
    #[cfg(feature = "otlp")]
    exporter: Option<SpawnExporter>,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TelemetryBuilder");
        d.field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("resource_attributes", &self.resource_attributes)
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("opentelemetry", &self.opentelemetry)
            .field("sample_rate", &self.sample_rate)
            .field("span_events", &self.span_events)
            .field("debug", &self.debug);
        #[cfg(feature = "otlp")]
        d.field("otlp_endpoint", &self.otlp_endpoint)
            .field("settings", &self.settings)
            .field("custom_exporter", &self.exporter.is_some());
        d.finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// Defaults: JSON lines on stderr, filter `info`, OpenTelemetry on with every trace
    /// sampled, no export (set [`otlp_endpoint`](Self::otlp_endpoint)), no debug output.
    #[must_use]
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            service_version: None,
            resource_attributes: Vec::new(),
            filter: "info".into(),
            format: LogFormat::Json,
            writer: BoxMakeWriter::new(std::io::stderr),
            opentelemetry: true,
            sample_rate: 1.0,
            span_events: LevelFilter::WARN,
            debug: false,
            #[cfg(feature = "otlp")]
            otlp_endpoint: None,
            #[cfg(feature = "otlp")]
            settings: export::Settings::default(),
            #[cfg(feature = "otlp")]
            exporter: None,
        }
    }

    /// A builder configured from the environment:
    ///
    /// | variable | sets |
    /// |---|---|
    /// | `OTEL_SERVICE_NAME` | the service name (else `service.name` from the next, else `unknown_service`) |
    /// | `OTEL_RESOURCE_ATTRIBUTES` | [`resource_attributes`](Self::resource_attributes) |
    /// | `OTEL_EXPORTER_OTLP_ENDPOINT` | [`otlp_endpoint`](Self::otlp_endpoint) (feature `otlp`) |
    /// | `OTEL_SAMPLE_RATE`, else `OTEL_TRACES_SAMPLER_ARG` | [`sample_rate`](Self::sample_rate) |
    /// | `OTEL_DEBUG` (`true`/`1`) | [`debug`](Self::debug) |
    /// | `TRACING_ENABLED` (`false`/`0`) | [`opentelemetry(false)`](Self::opentelemetry) |
    /// | `RUST_LOG` | [`filter`](Self::filter) |
    ///
    /// Unset or empty variables keep the defaults; malformed ones are an error.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any variable lookup (a config file, a test's map).
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let attributes = var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        let attributes = parse_resource_attributes(&attributes);
        let name = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "service.name")
                    .map(|kv| kv.value.to_string())
            })
            .unwrap_or_else(|| "unknown_service".into());
        let mut builder = Self::new(name).resource_attributes(attributes);
        if let Some(rate) = var("OTEL_SAMPLE_RATE").or_else(|| var("OTEL_TRACES_SAMPLER_ARG")) {
            let rate = rate
                .trim()
                .parse::<f64>()
                .map_err(|_| TelemetryError::new(format!("invalid sample rate {rate:?}")))?;
            builder = builder.sample_rate(rate);
        }
        if let Some(debug) = var("OTEL_DEBUG") {
            builder = builder.debug(parse_bool("OTEL_DEBUG", &debug)?);
        }
        if let Some(enabled) = var("TRACING_ENABLED") {
            builder = builder.opentelemetry(parse_bool("TRACING_ENABLED", &enabled)?);
        }
        if let Some(filter) = var("RUST_LOG") {
            builder = builder.filter(filter);
        }
        #[cfg(feature = "otlp")]
        if let Some(endpoint) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            builder = builder.otlp_endpoint(endpoint);
        }
        Ok(builder)
    }

    /// The service's version, as the `service.version` resource attribute; pass your crate's
    /// `env!("CARGO_PKG_VERSION")`.
    #[must_use]
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// More resource attributes (`deployment.environment.name`, …), e.g. from
    /// [`parse_resource_attributes`]. The service name and version set on the builder win
    /// over `service.name` / `service.version` given here.
    #[must_use]
    pub fn resource_attributes(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> Self {
        self.resource_attributes.extend(attributes);
        self
    }

    /// Which events and spans are kept, as comma-separated `target=level` directives with an
    /// optional bare default level (`info,taskman=debug`): tracing-subscriber's
    /// [`Targets`] syntax, a subset of `RUST_LOG`'s without span-field filters. Default `info`.
    ///
    /// Unless the directives name them, `tower_bulwark::trace` is kept at `info` (its spans
    /// carry the IDs every log line needs) and the export diagnostics at `warn` (`debug` with
    /// [`debug`](Self::debug)).
    #[must_use]
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = directives.into();
        self
    }

    /// The log line format (default [`LogFormat::Json`]).
    #[must_use]
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Where log lines go (default stderr, which keeps stdout free for protocols such as an
    /// MCP server's stdio transport).
    #[must_use]
    pub fn writer<W>(mut self, writer: W) -> Self
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.writer = BoxMakeWriter::new(writer);
        self
    }

    /// Whether OpenTelemetry is installed at all (default: yes).
    ///
    /// With `false` there is no OpenTelemetry layer, tracer, exporter or export thread: only
    /// the fmt layer. Log lines keep the same fields: [`CorrelationLayer::generate_ids`]
    /// makes trace and span IDs, continuing an inbound `traceparent`, and the client layer
    /// still sends `traceparent`, so other services' traces stay joined.
    #[must_use]
    pub fn opentelemetry(mut self, enabled: bool) -> Self {
        self.opentelemetry = enabled;
        self
    }

    /// The share of new traces to sample, `0.0..=1.0` (default `1.0`); a trace continued from
    /// a caller follows the caller's decision: `ParentBased(TraceIdRatioBased(rate))`.
    /// Unsampled spans are never exported but still have IDs, which log lines carry.
    #[must_use]
    pub fn sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }

    /// The log lines that are also recorded on their span as OpenTelemetry span events: those
    /// at `level` or more severe (default `WARN`, so a trace shows its warnings and errors
    /// where they happened). `LevelFilter::OFF` records none; `INFO` adds the routine lines,
    /// which the logs already have and which cost an allocation per field per line. Every
    /// line the filter lets through is logged whatever this says.
    #[must_use]
    pub fn span_events(mut self, level: LevelFilter) -> Self {
        self.span_events = level;
        self
    }

    /// Turns on export diagnostics: one `debug` line per export (spans, duration, error)
    /// from `tower_bulwark::trace::export`, and OpenTelemetry's own internal logs if some
    /// crate enables them (feature `internal-logs`). Default: off, dropped spans are still
    /// reported at `warn` at most once a minute.
    #[must_use]
    pub fn debug(mut self, enabled: bool) -> Self {
        self.debug = enabled;
        self
    }

    /// Exports spans over OTLP/HTTP with protobuf to `base_url` + `/v1/traces`, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` means (e.g. `http://localhost:4318`). Plain `http` only
    /// (another scheme is an error of [`build`](Self::build)): for TLS, gRPC or compression,
    /// build an exporter yourself and pass it to [`span_exporter`](Self::span_exporter).
    ///
    /// The exporter writes the protobuf straight from the span data, at a fraction of the CPU
    /// opentelemetry-otlp's needs, sends the headers of `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
    /// (else `OTEL_EXPORTER_OTLP_HEADERS`), keeps its connection alive and retries network
    /// errors and 429, 502, 503 and 504 answers with backoff, within
    /// [`export_timeout`](Self::export_timeout).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn otlp_endpoint(mut self, base_url: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(base_url.into());
        self
    }

    /// Exports spans with `exporter` instead (any `opentelemetry_sdk` [`SpanExporter`], e.g.
    /// opentelemetry-otlp's with a TLS-capable HTTP client), through the same bounded queue.
    /// Its futures run on the export thread's own current-thread tokio runtime.
    ///
    /// [`SpanExporter`]: opentelemetry_sdk::trace::SpanExporter
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn span_exporter<E>(mut self, mut exporter: E) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        self.exporter = Some(Box::new(move |resource, settings, counters, dispatch| {
            exporter.set_resource(resource);
            spawn_processor(export::SdkExporter(exporter), settings, counters, dispatch)
        }));
        self
    }

    /// How many sampled spans may wait for export (default 2048). Beyond that, spans are
    /// dropped and counted: a slow collector never slows a request, and memory stays bounded.
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn export_queue_size(mut self, spans: usize) -> Self {
        self.settings.max_queue_size = spans.max(1);
        self
    }

    /// How many spans one export request carries at most (default 512).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn export_batch_size(mut self, spans: usize) -> Self {
        self.settings.max_batch_size = spans.max(1);
        self
    }

    /// How long spans wait for a fuller batch before they are exported (default 5 s).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.settings.interval = interval;
        self
    }

    /// How long one export may take before its spans are dropped (default 10 s).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[must_use]
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Builds the subscriber and the pipeline without installing them: use the
    /// [`Dispatch`] with [`tracing::dispatcher::set_global_default`] or, in tests,
    /// [`tracing::dispatcher::set_default`].
    pub fn build(mut self) -> Result<(Dispatch, TelemetryGuard), TelemetryError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(TelemetryError::new(format!(
                "sample rate must be within 0.0..=1.0, got {}",
                self.sample_rate
            )));
        }
        let targets = self.targets()?;
        let counters = Arc::new(Counters::default());
        let dispatch_cell = Arc::new(OnceLock::new());
        let (provider, encoding) = if self.opentelemetry {
            let (provider, encoding) = self.provider(&counters, &dispatch_cell)?;
            (Some(provider), encoding)
        } else {
            (None, None)
        };
        let otel = provider.as_ref().map(|provider| {
            let tracer = encoding
                .unwrap_or_else(|| Tracer::Sdk(provider.tracer_with_scope(recorder_scope())));
            SpanRecorder::new(tracer, self.span_events)
        });
        let correlation = if self.opentelemetry {
            CorrelationLayer::new()
        } else {
            CorrelationLayer::new().generate_ids()
        };

        let writer = self.writer;
        let (json, text, pretty) = match self.format {
            LogFormat::Json => (
                Some(
                    tracing_subscriber::fmt::layer()
                        .event_format(JsonFormat::new())
                        .fmt_fields(SkipFields)
                        .with_writer(writer),
                ),
                None,
                None,
            ),
            LogFormat::Text => (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .event_format(TextFormat::new())
                        .with_writer(writer),
                ),
                None,
            ),
            LogFormat::Pretty => (
                None,
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .event_format(TextFormat::pretty())
                        .with_writer(writer),
                ),
            ),
        };

        let subscriber = tracing_subscriber::registry()
            .with(targets)
            .with(otel)
            .with(correlation)
            .with(json)
            .with(text)
            .with(pretty);
        let dispatch = Dispatch::new(subscriber);
        let _ = dispatch_cell.set(dispatch.downgrade());
        Ok((
            dispatch,
            TelemetryGuard {
                provider,
                counters,
                is_shutdown: false,
            },
        ))
    }

    /// Builds and installs the subscriber globally, and makes the tracer provider and the
    /// W3C trace-context and baggage propagators OpenTelemetry's globals, for libraries that
    /// use those. Fails if a global subscriber is already set.
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        let (dispatch, guard) = self.build()?;
        tracing::dispatcher::set_global_default(dispatch)
            .map_err(|e| TelemetryError::new(format!("cannot install the subscriber: {e}")))?;
        if let Some(provider) = &guard.provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(
                opentelemetry::propagation::TextMapCompositePropagator::new(vec![
                    Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
                    Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
                ]),
            );
        }
        Ok(guard)
    }

    fn targets(&self) -> Result<Targets, TelemetryError> {
        let user = self.filter.trim();
        let mut directives = Vec::new();
        if !user.contains("tower_bulwark::trace") {
            directives.push("tower_bulwark::trace=info".to_owned());
        }
        if !user.contains("tower_bulwark::trace::export") {
            let level = if self.debug { "debug" } else { "warn" };
            directives.push(format!("tower_bulwark::trace::export={level}"));
        }
        if !user.contains("opentelemetry") {
            let level = if self.debug { "debug" } else { "off" };
            directives.push(format!("opentelemetry={level}"));
        }
        if !user.is_empty() {
            directives.push(user.to_owned());
        }
        directives
            .join(",")
            .parse()
            .map_err(|e| TelemetryError::new(format!("invalid filter {user:?}: {e}")))
    }

    fn resource(&mut self) -> Resource {
        let mut builder = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(std::mem::take(&mut self.resource_attributes));
        if let Some(version) = self.service_version.take() {
            builder = builder.with_attribute(KeyValue::new("service.version", version));
        }
        builder.with_service_name(self.service_name.clone()).build()
    }

    /// The tracer provider, and for this crate's own OTLP exporter the tracer that writes the
    /// span recorder's spans in OTLP directly (the provider's tracer otherwise).
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables, unused_mut))]
    fn provider(
        &mut self,
        counters: &Arc<Counters>,
        dispatch: &Arc<OnceLock<WeakDispatch>>,
    ) -> Result<(SdkTracerProvider, Option<Tracer>), TelemetryError> {
        let resource = self.resource();
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(self.sample_rate)));
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_resource(resource.clone());
        let mut encoding = None;
        #[cfg(feature = "otlp")]
        {
            let (exporter, own) = match (self.exporter.take(), self.otlp_endpoint.take()) {
                (Some(custom), _) => (Some(custom), false),
                (None, Some(endpoint)) => (Some(otlp_http(&endpoint)?), true),
                (None, None) => (None, false),
            };
            if let Some(spawn) = exporter {
                let processor =
                    spawn(&resource, self.settings, counters.clone(), dispatch.clone())?;
                if own {
                    encoding = Some(Tracer::Encoding(otlp::EncodingTracer::new(
                        sampler,
                        processor.enqueue(),
                    )));
                }
                builder = builder.with_span_processor(processor);
            }
        }
        Ok((builder.build(), encoding))
    }
}

#[cfg(feature = "otlp")]
fn spawn_processor<E: export::Export>(
    exporter: E,
    settings: export::Settings,
    counters: Arc<Counters>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
) -> Result<export::BoundedBatchProcessor, TelemetryError> {
    export::BoundedBatchProcessor::spawn(exporter, settings, counters, dispatch)
        .map_err(|e| TelemetryError::new(format!("cannot start the export thread: {e}")))
}

/// The OTLP/HTTP protobuf exporter for `base_url` + `/v1/traces`.
#[cfg(feature = "otlp")]
fn otlp_http(base_url: &str) -> Result<SpawnExporter, TelemetryError> {
    let endpoint = format!("{}/v1/traces", base_url.trim_end_matches('/'));
    let mut exporter = otlp::OtlpHttpExporter::new(&endpoint).map_err(TelemetryError::new)?;
    exporter.set_encoded_scope(&recorder_scope());
    Ok(Box::new(move |resource, settings, counters, dispatch| {
        exporter.set_resource(resource);
        spawn_processor(exporter, settings, counters, dispatch)
    }))
}

/// The instrumentation scope of the span recorder's spans.
fn recorder_scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-bulwark")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn parse_bool(name: &str, value: &str) -> Result<bool, TelemetryError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(TelemetryError::new(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: comma-separated `key=value` pairs, values
/// percent-encoded (W3C Baggage syntax). Pairs without `=` or with an empty key are skipped;
/// so is the rest after 128 pairs or 4 KiB, to stay bounded.
///
/// ```
/// use tower_bulwark::trace::parse_resource_attributes;
///
/// let attrs = parse_resource_attributes("deployment.environment.name=prod, team=a%20b,junk");
/// assert_eq!(attrs.len(), 2);
/// assert_eq!(attrs[1].value.as_str(), "a b");
/// ```
#[must_use]
pub fn parse_resource_attributes(s: &str) -> Vec<KeyValue> {
    const MAX_PAIRS: usize = 128;
    const MAX_LEN: usize = 4096;
    let mut end = s.len().min(MAX_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end]
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| KeyValue::new(key.to_owned(), percent_decode(value.trim())))
        })
        .take(MAX_PAIRS)
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|_| bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keeps the pipeline alive; [`shutdown`](Self::shutdown) (or dropping it) flushes what is
/// queued and stops the export thread.
#[must_use = "dropping the guard shuts telemetry down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    counters: Arc<Counters>,
    is_shutdown: bool,
}

impl TelemetryGuard {
    /// Sampled spans dropped so far (queue full, or export failed or timed out).
    #[must_use]
    pub fn dropped_spans(&self) -> u64 {
        self.counters.snapshot().dropped()
    }

    /// Exported and dropped span counts.
    #[must_use]
    pub fn export_stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// The tracer provider, if OpenTelemetry is on.
    #[must_use]
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Exports what is queued now, waiting at most twice the export timeout.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(provider) => provider
                .force_flush()
                .map_err(|e| TelemetryError::new(format!("flushing spans failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Exports what is queued and stops the export thread, waiting at most 5 s. Spans that
    /// end afterwards are not exported.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner(Duration::from_secs(5))
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> Result<(), TelemetryError> {
        if std::mem::replace(&mut self.is_shutdown, true) {
            return Ok(());
        }
        match &self.provider {
            Some(provider) => provider
                .shutdown_with_timeout(timeout)
                .map_err(|e| TelemetryError::new(format!("telemetry shutdown failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Registers the export counters in `registry`: `otel_spans_dropped_total{reason}`
    /// (`queue_full`, `export_failed`) and `otel_spans_exported_total`, read at scrape time.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(stats::prometheus::ExportCollector(
            self.counters.clone(),
        )));
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_attributes_are_parsed_leniently_and_bounded() {
        let attrs = parse_resource_attributes("a=1,b=x%2Cy,=nokey,novalue, c = %zz%4");
        let pairs: Vec<(String, String)> = attrs
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".into(), "1".into()),
                ("b".into(), "x,y".into()),
                ("c".into(), "%zz%4".into())
            ]
        );
        let many = "k=v,".repeat(10_000);
        assert!(parse_resource_attributes(&many).len() <= 128);
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(percent_decode("%+1"), "%+1");
    }

    #[test]
    fn the_environment_is_read_as_documented() {
        let vars = std::collections::HashMap::from([
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=core",
            ),
            ("OTEL_SAMPLE_RATE", "0.25"),
            ("OTEL_DEBUG", "true"),
            ("TRACING_ENABLED", "false"),
            ("RUST_LOG", "warn,app=debug"),
            #[cfg(feature = "otlp")]
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        let b = TelemetryBuilder::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(b.service_name, "from-attrs");
        assert_eq!(b.sample_rate, 0.25);
        assert!(b.debug && !b.opentelemetry);
        assert_eq!(b.filter, "warn,app=debug");
        assert_eq!(b.resource_attributes.len(), 2);
        #[cfg(feature = "otlp")]
        assert_eq!(b.otlp_endpoint.as_deref(), Some("http://collector:4318"));

        let named = TelemetryBuilder::from_lookup(|k| {
            (k == "OTEL_SERVICE_NAME").then(|| "explicit".to_owned())
        })
        .unwrap();
        assert_eq!(named.service_name, "explicit");
        assert!(named.opentelemetry);
        let nothing = TelemetryBuilder::from_lookup(|_| None).unwrap();
        assert_eq!(nothing.service_name, "unknown_service");
        assert!(
            TelemetryBuilder::from_lookup(|k| (k == "OTEL_SAMPLE_RATE").then(|| "lots".into()))
                .is_err()
        );
        assert!(
            TelemetryBuilder::from_lookup(|k| (k == "OTEL_DEBUG").then(|| "maybe".into())).is_err()
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(TelemetryBuilder::new("s").sample_rate(1.5).build().is_err());
        assert!(
            TelemetryBuilder::new("s")
                .sample_rate(f64::NAN)
                .build()
                .is_err()
        );
        assert!(TelemetryBuilder::new("s").filter("=[").build().is_err());
        assert!(parse_bool("X", "maybe").is_err());
    }

    #[test]
    fn the_filter_keeps_the_request_spans() {
        let targets = TelemetryBuilder::new("s").filter("warn").targets().unwrap();
        assert!(targets.would_enable("tower_bulwark::trace", &tracing::Level::INFO));
        assert!(!targets.would_enable("tower_bulwark::trace::export", &tracing::Level::INFO));
        assert!(!targets.would_enable("opentelemetry_sdk", &tracing::Level::ERROR));
        assert!(!targets.would_enable("app", &tracing::Level::INFO));
        let debug = TelemetryBuilder::new("s").debug(true).targets().unwrap();
        assert!(debug.would_enable("tower_bulwark::trace::export", &tracing::Level::DEBUG));
    }
}
