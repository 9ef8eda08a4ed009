//! The OpenTelemetry span of each `tracing` span, made straight from the SDK's tracer.
//!
//! tracing-opentelemetry does the same job more generally: it collects every field into a
//! span builder before the sampler has decided, keeps the span behind a lock, and stamps the
//! time on every exit (every poll of an instrumented future), so a span it drops costs nearly
//! as much as one it exports. [`SpanRecorder`] asks the sampler first, with only the name and
//! kind, records fields only on spans that are sampled, and does nothing on enter and exit:
//! the span's start and end are when the `tracing` span is made and closed.
//!
//! What it records, as tracing-opentelemetry does: `otel.name`, `otel.kind`,
//! `otel.status_code` and `otel.status_description` set the span's name, kind and status; every
//! other field is an attribute; log lines at or above the configured level are span events
//! (`message` is the event's name; `level` and `target` are added) and one at `ERROR` sets an
//! error status if none was set. The parent is the caller's context attached while the span is
//! made (see `ServerTraceService`), else the `tracing` parent.
//!
//! The spans are the SDK tracer's, or, for the built-in OTLP exporter, `otlp::EncodedSpan`s,
//! which write themselves in protobuf as they go (see [`Tracer`]).

use std::{borrow::Cow, fmt, time::SystemTime};

use opentelemetry::{
    Context, KeyValue, Value,
    baggage::BaggageExt as _,
    trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _},
};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    level_filters::LevelFilter,
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    layer::{Context as LayerContext, Layer},
    registry::LookupSpan,
};

/// The OpenTelemetry context of a `tracing` span (its span, and the baggage it inherited),
/// kept in the span's extensions while the span lives.
#[derive(Debug)]
pub(crate) struct OtelSpan {
    pub(crate) cx: Context,
    /// A span written as it goes is kept here, not in `cx` (which then has only its
    /// identity): its writers reach it without a lock and without making `KeyValue`s.
    #[cfg(feature = "otlp")]
    pub(crate) encoded: Option<super::otlp::EncodedSpan>,
}

impl OtelSpan {
    fn new(cx: Context) -> Self {
        Self {
            cx,
            #[cfg(feature = "otlp")]
            encoded: None,
        }
    }
}

/// Where a recording span's writes go.
enum Recording<'a> {
    Sdk(opentelemetry::trace::SpanRef<'a>),
    #[cfg(feature = "otlp")]
    Encoded(&'a mut super::otlp::EncodedSpan),
}

impl Recording<'_> {
    fn set_status(&mut self, status: Status) {
        match self {
            Self::Sdk(span) => span.set_status(status),
            #[cfg(feature = "otlp")]
            Self::Encoded(span) => opentelemetry::trace::Span::set_status(*span, status),
        }
    }

    fn add_event(&mut self, name: Cow<'static, str>, attributes: Vec<KeyValue>) {
        match self {
            Self::Sdk(span) => span.add_event(name, attributes),
            #[cfg(feature = "otlp")]
            Self::Encoded(span) => opentelemetry::trace::Span::add_event(*span, name, attributes),
        }
    }

    fn end(&mut self) {
        match self {
            Self::Sdk(span) => span.end(),
            #[cfg(feature = "otlp")]
            Self::Encoded(span) => opentelemetry::trace::Span::end(*span),
        }
    }
}

impl OtelSpan {
    /// The span, if it records.
    fn recording(&mut self) -> Option<Recording<'_>> {
        #[cfg(feature = "otlp")]
        if let Some(encoded) = self.encoded.as_mut() {
            return Some(Recording::Encoded(encoded));
        }
        let span = self.cx.span();
        span.is_recording().then_some(Recording::Sdk(span))
    }
}

/// Makes an OpenTelemetry span for every `tracing` span; see the [module docs](self).
pub(super) struct SpanRecorder {
    tracer: Tracer,
    span_events: LevelFilter,
}

/// What makes the spans.
pub(super) enum Tracer {
    /// The SDK's tracer: its spans go to the provider's processors.
    Sdk(SdkTracer),
    /// Spans written in OTLP as they are filled in, for this crate's OTLP exporter (which the
    /// provider's only processor feeds): the same spans for less work.
    #[cfg(feature = "otlp")]
    Encoding(super::otlp::EncodingTracer),
}

impl SpanRecorder {
    pub(super) fn new(tracer: Tracer, span_events: LevelFilter) -> Self {
        Self {
            tracer,
            span_events,
        }
    }

    /// The context a new span continues.
    fn parent_context<S>(&self, attrs: &Attributes<'_>, ctx: &LayerContext<'_, S>) -> Context
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if attrs.is_root() {
            return Context::new();
        }
        if let Some(parent) = attrs.parent() {
            return ctx
                .span(parent)
                .and_then(|span| span.extensions().get::<OtelSpan>().map(|o| o.cx.clone()))
                .unwrap_or_default();
        }
        // A caller's context attached by a server layer while it made this span wins over an
        // enclosing span: it is the parent the caller named.
        let attached = Context::map_current(|cx| {
            (cx.has_active_span() || !cx.baggage().is_empty()).then(|| cx.clone())
        });
        attached
            .or_else(|| {
                let current = ctx.lookup_current()?;
                let extensions = current.extensions();
                extensions.get::<OtelSpan>().map(|o| o.cx.clone())
            })
            .unwrap_or_default()
    }
}

impl fmt::Debug for SpanRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRecorder")
            .field("span_events", &self.span_events)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = self.parent_context(attrs, &ctx);
        let mut status = StatusFields::default();
        let otel = match &self.tracer {
            Tracer::Sdk(tracer) => {
                // Name and kind first: all the sampler sees.
                let mut head = Head {
                    name: Cow::Borrowed(attrs.metadata().name()),
                    kind: SpanKind::Internal,
                };
                attrs.record(&mut head);
                let builder = SpanBuilder::from_name(head.name)
                    .with_kind(head.kind)
                    .with_start_time(SystemTime::now());
                let mut otel_span = tracer.build_with_context(builder, &parent);
                if opentelemetry::trace::Span::is_recording(&otel_span) {
                    attrs.record(&mut Visitor(&mut Fields {
                        target: &mut otel_span,
                        status: &mut status,
                    }));
                }
                OtelSpan::new(parent.with_span(otel_span))
            }
            #[cfg(feature = "otlp")]
            Tracer::Encoding(tracer) => {
                // One pass over the fields, before the sampler decides: writing a few
                // attributes that may be dropped costs less than a second pass.
                let mut start = super::otlp::SpanStart::new(attrs.metadata().name());
                attrs.record(&mut Visitor(&mut Fields {
                    target: &mut start,
                    status: &mut status,
                }));
                match tracer.start(start, SystemTime::now(), &parent) {
                    super::otlp::Started::Recording(otel_span) => OtelSpan {
                        cx: parent.with_remote_span_context(
                            opentelemetry::trace::Span::span_context(&otel_span).clone(),
                        ),
                        encoded: Some(otel_span),
                    },
                    super::otlp::Started::NotRecording(sc) => {
                        status = StatusFields::default();
                        OtelSpan::new(parent.with_remote_span_context(sc))
                    }
                }
            }
        };
        let mut extensions = span.extensions_mut();
        extensions.insert(otel);
        if status.is_set() {
            extensions.insert(status);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let mut status = StatusFields::default();
        match extensions
            .get_mut::<OtelSpan>()
            .and_then(OtelSpan::recording)
        {
            Some(Recording::Sdk(otel_span)) => values.record(&mut Visitor(&mut Fields {
                target: &mut SpanRefFields(&otel_span),
                status: &mut status,
            })),
            #[cfg(feature = "otlp")]
            Some(Recording::Encoded(otel_span)) => values.record(&mut Visitor(&mut Fields {
                target: otel_span,
                status: &mut status,
            })),
            None => return,
        }
        if status.is_set() {
            match extensions.get_mut::<StatusFields>() {
                Some(earlier) => earlier.merge(status),
                None => extensions.insert(status),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let metadata = event.metadata();
        if self.span_events < *metadata.level() {
            return;
        }
        let span = match event.parent() {
            Some(parent) => ctx.span(parent),
            None if event.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let Some(span) = span else { return };
        let mut extensions = span.extensions_mut();
        let Some(mut otel_span) = extensions
            .get_mut::<OtelSpan>()
            .and_then(OtelSpan::recording)
        else {
            return;
        };
        let mut fields = EventFields {
            name: None,
            attributes: vec![
                KeyValue::new("level", metadata.level().as_str()),
                KeyValue::new("target", metadata.target()),
            ],
        };
        event.record(&mut Visitor(&mut fields));
        let name = fields
            .name
            .map_or(Cow::Borrowed(metadata.name()), Cow::Owned);
        // The SDK keeps an error status already set (with its description).
        let error =
            (*metadata.level() == tracing::Level::ERROR).then(|| Status::error(name.clone()));
        if let Some(error) = error {
            otel_span.set_status(error);
        }
        otel_span.add_event(name, fields.attributes);
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let (removed, status) = {
            let mut extensions = span.extensions_mut();
            (
                extensions.remove::<OtelSpan>(),
                extensions.remove::<StatusFields>(),
            )
        };
        let Some(mut otel) = removed else { return };
        let status = status.and_then(StatusFields::into_status);
        if let Some(mut otel_span) = otel.recording() {
            if let Some(status) = status {
                otel_span.set_status(status);
            }
            otel_span.end();
        }
    }
}

/// Adds `batch` to `span`'s encoded OpenTelemetry span, if it has one (made by
/// [`SpanRecorder`] under a `Registry`-based subscriber).
#[cfg(feature = "otlp")]
pub(crate) fn append_encoded(span: &tracing::Span, batch: super::otlp::AttributeBatch) {
    crate::trace::correlation::in_registry(span, |data| {
        data.extensions_mut()
            .get_mut::<OtelSpan>()?
            .encoded
            .as_mut()?
            .append(batch);
        Some(())
    });
}

/// The fields that decide a span's name and kind.
struct Head {
    name: Cow<'static, str>,
    kind: SpanKind,
}

impl Visit for Head {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if !name.starts_with("otel.") {
            return;
        }
        match name {
            "otel.name" => self.name = Cow::Owned(value.to_owned()),
            "otel.kind" => self.kind = span_kind(value).unwrap_or(SpanKind::Internal),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "otel.name" => self.name = Cow::Owned(format!("{value:?}")),
            "otel.kind" => {
                if let Some(kind) = span_kind(&format!("{value:?}")) {
                    self.kind = kind;
                }
            }
            _ => {}
        }
    }
}

fn span_kind(text: &str) -> Option<SpanKind> {
    // As the layers spell them, then in any case.
    match text {
        "server" => return Some(SpanKind::Server),
        "client" => return Some(SpanKind::Client),
        "internal" => return Some(SpanKind::Internal),
        _ => {}
    }
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find_map(|(name, kind)| text.eq_ignore_ascii_case(name).then_some(kind))
}

/// Where [`Fields`] writes: the span being made, or one already in a context.
trait Target {
    fn attribute(&mut self, attribute: KeyValue);
    fn name(&mut self, name: String);
    /// `otel.kind`: only a span not made yet takes it.
    fn kind(&mut self, _kind: SpanKind) {}
    fn str_attribute(&mut self, key: &'static str, value: &str) {
        self.attribute(KeyValue::new(key, value.to_owned()));
    }
}

/// `otel.status_code` and `otel.status_description`, which may come in separate records: the
/// SDK keeps the first error status set, so the status is set once, when the span ends.
#[derive(Debug, Default)]
struct StatusFields {
    code: Option<bool>,
    description: Option<String>,
}

impl StatusFields {
    fn is_set(&self) -> bool {
        self.code.is_some() || self.description.is_some()
    }

    fn merge(&mut self, later: Self) {
        if later.code.is_some() {
            self.code = later.code;
        }
        if later.description.is_some() {
            self.description = later.description;
        }
    }

    /// `Some(true)` in `code` is an error, `Some(false)` ok; a description alone is an error.
    fn into_status(self) -> Option<Status> {
        match (self.code, self.description) {
            (Some(false), _) => Some(Status::Ok),
            (Some(true), description) | (None, description @ Some(_)) => {
                Some(Status::error(description.unwrap_or_default()))
            }
            (None, None) => None,
        }
    }
}

impl Target for opentelemetry_sdk::trace::Span {
    fn attribute(&mut self, attribute: KeyValue) {
        opentelemetry::trace::Span::set_attribute(self, attribute);
    }
    fn name(&mut self, name: String) {
        opentelemetry::trace::Span::update_name(self, name);
    }
}

#[cfg(feature = "otlp")]
impl Target for super::otlp::SpanStart {
    fn attribute(&mut self, attribute: KeyValue) {
        super::otlp::SpanStart::attribute(self, &attribute);
    }
    fn name(&mut self, name: String) {
        self.name = Cow::Owned(name);
    }
    fn kind(&mut self, kind: SpanKind) {
        self.kind = kind;
    }
    fn str_attribute(&mut self, key: &'static str, value: &str) {
        super::otlp::SpanStart::str_attribute(self, key, value);
    }
}

#[cfg(feature = "otlp")]
impl Target for super::otlp::EncodedSpan {
    fn attribute(&mut self, attribute: KeyValue) {
        opentelemetry::trace::Span::set_attribute(self, attribute);
    }
    fn name(&mut self, name: String) {
        opentelemetry::trace::Span::update_name(self, name);
    }
    // Written as it comes, without a `String` in between.
    fn str_attribute(&mut self, key: &'static str, value: &str) {
        self.set_str_attribute(key, value);
    }
}

struct SpanRefFields<'a, 'b>(&'a opentelemetry::trace::SpanRef<'b>);

impl Target for SpanRefFields<'_, '_> {
    fn attribute(&mut self, attribute: KeyValue) {
        self.0.set_attribute(attribute);
    }
    fn name(&mut self, name: String) {
        self.0.update_name(name);
    }
}

/// A span's fields: `otel.*` set its name and status, the rest are attributes.
struct Fields<'a, T> {
    target: &'a mut T,
    status: &'a mut StatusFields,
}

impl<T: Target> Fields<'_, T> {
    fn text(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if !name.starts_with("otel.") {
            return self.target.str_attribute(name, value);
        }
        match name {
            "otel.kind" => {
                if let Some(kind) = span_kind(value) {
                    self.target.kind(kind);
                }
            }
            "otel.name" => self.target.name(value.to_owned()),
            "otel.status_code" => {
                if value.eq_ignore_ascii_case("error") {
                    self.status.code = Some(true);
                } else if value.eq_ignore_ascii_case("ok") {
                    self.status.code = Some(false);
                }
            }
            "otel.status_description" => self.status.description = Some(value.to_owned()),
            name => self.target.str_attribute(name, value),
        }
    }
}

/// A log line's fields: `message` names the event, the rest are its attributes.
struct EventFields {
    name: Option<String>,
    attributes: Vec<KeyValue>,
}

impl EventFields {
    fn text(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(value.to_owned());
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_owned()));
        }
    }
}

/// What the visitor below feeds: typed values as attributes, text to be looked at first.
trait FieldSink {
    fn attribute(&mut self, attribute: KeyValue);
    fn text(&mut self, field: &Field, value: &str);
}

impl<T: Target> FieldSink for Fields<'_, T> {
    fn attribute(&mut self, attribute: KeyValue) {
        self.target.attribute(attribute);
    }

    fn text(&mut self, field: &Field, value: &str) {
        Fields::text(self, field, value);
    }
}

impl FieldSink for EventFields {
    fn attribute(&mut self, attribute: KeyValue) {
        self.attributes.push(attribute);
    }

    fn text(&mut self, field: &Field, value: &str) {
        EventFields::text(self, field, value);
    }
}

/// Turns `tracing` field values into OpenTelemetry values, as tracing-opentelemetry does: a
/// `u64` too large for an `i64` becomes its decimal text, a `Debug` value its debug text.
struct Visitor<'a, T>(&'a mut T);

impl<T: FieldSink> Visit for Visitor<'_, T> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::I64);
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.text(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.text(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::{
        error::OTelSdkResult,
        trace::{Sampler, SdkTracerProvider, SpanData, SpanProcessor},
    };
    use tracing_subscriber::prelude::*;

    use super::*;
    use crate::trace::{CorrelationLayer, SpanIds};

    #[derive(Clone, Debug, Default)]
    struct Ended(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Ended {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
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

    fn recorded(sampler: Sampler, run: impl FnOnce()) -> Vec<SpanData> {
        let ended = Ended::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_span_processor(ended.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(SpanRecorder::new(
                Tracer::Sdk(provider.tracer("t")),
                LevelFilter::WARN,
            ))
            .with(CorrelationLayer::new());
        tracing::subscriber::with_default(subscriber, run);
        ended.0.lock().unwrap().clone()
    }

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    /// A caller's sampled span context, as a server layer would attach it.
    fn remote_parent(trace_state: TraceState) -> SpanContext {
        SpanContext::new(
            TraceId::from(42_u128),
            SpanId::from(7_u64),
            TraceFlags::SAMPLED,
            true,
            trace_state,
        )
    }

    /// A span with fields of every kind, some recorded late, and an error status.
    fn request_span(kind: &str) -> tracing::Span {
        let span = tracing::info_span!(
            "request",
            otel.name = "GET /tasks",
            otel.kind = kind,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            count = 3_i64,
            big = u64::MAX,
            ok = true,
            ratio = 0.5,
            text = "a",
            debug = ?[1, 2],
            late = tracing::field::Empty,
            unset = tracing::field::Empty,
        );
        span.record("late", "b");
        span.record("otel.status_code", "error");
        span.record("otel.status_description", "it broke");
        span
    }

    #[test]
    fn fields_become_name_kind_status_and_attributes() {
        let mut ids = None;
        let spans = recorded(Sampler::AlwaysOn, || {
            let span = request_span("server");
            ids = SpanIds::of(&span);
        });
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "GET /tasks");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(span.status, Status::error("it broke"));
        assert_eq!(attribute(span, "count"), Some(&Value::I64(3)));
        assert_eq!(
            attribute(span, "big"),
            Some(&Value::from(u64::MAX.to_string()))
        );
        assert_eq!(attribute(span, "ok"), Some(&Value::Bool(true)));
        assert_eq!(attribute(span, "ratio"), Some(&Value::F64(0.5)));
        assert_eq!(attribute(span, "text"), Some(&Value::from("a")));
        assert_eq!(attribute(span, "debug"), Some(&Value::from("[1, 2]")));
        assert_eq!(attribute(span, "late"), Some(&Value::from("b")));
        assert!(attribute(span, "otel.kind").is_none());
        let ids = ids.unwrap();
        assert_eq!(ids.trace_id, span.span_context.trace_id());
        assert_eq!(ids.span_id, span.span_context.span_id());
        assert!(ids.sampled);
        assert!(span.end_time >= span.start_time);
    }

    #[test]
    fn only_lines_at_the_level_become_span_events_and_an_error_sets_the_status() {
        let spans = recorded(Sampler::AlwaysOn, || {
            tracing::info_span!("request").in_scope(|| {
                tracing::info!("routine");
                tracing::warn!(attempt = 2, "odd");
                tracing::debug!("noise");
                tracing::error!("broken");
            });
        });
        let span = &spans[0];
        let names: Vec<_> = span.events.iter().map(|e| e.name.to_string()).collect();
        assert_eq!(names, ["odd", "broken"]);
        let odd = &span.events[0];
        let has = |key: &str, value: Value| {
            odd.attributes
                .iter()
                .any(|kv| kv.key.as_str() == key && kv.value == value)
        };
        assert!(has("level", Value::from("WARN")));
        assert!(has("attempt", Value::I64(2)));
        assert!(has("target", Value::from(module_path!())));
        assert_eq!(span.status, Status::error("broken"));
    }

    #[test]
    fn children_follow_their_parents_and_an_attached_caller_wins() {
        let remote = remote_parent(TraceState::default());
        let spans = recorded(Sampler::AlwaysOn, || {
            let outer = tracing::info_span!("outer");
            let inner = outer.in_scope(|| tracing::info_span!("inner"));
            let explicit = tracing::info_span!(parent: &inner, "explicit");
            let server = outer.in_scope(|| {
                let _attached = Context::new()
                    .with_remote_span_context(remote.clone())
                    .attach();
                tracing::info_span!("server")
            });
            drop((explicit, inner, server, outer));
        });
        let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let (outer, inner, explicit, server) = (
            by_name("outer"),
            by_name("inner"),
            by_name("explicit"),
            by_name("server"),
        );
        assert_eq!(outer.parent_span_id, SpanId::INVALID);
        assert_eq!(inner.parent_span_id, outer.span_context.span_id());
        assert_eq!(inner.span_context.trace_id(), outer.span_context.trace_id());
        assert_eq!(explicit.parent_span_id, inner.span_context.span_id());
        assert_eq!(server.span_context.trace_id(), TraceId::from(42_u128));
        assert_eq!(server.parent_span_id, SpanId::from(7_u64));
        assert!(server.parent_span_is_remote);
    }

    #[test]
    fn unsampled_spans_keep_ids_for_the_logs_and_are_not_exported() {
        let mut ids = None;
        let spans = recorded(Sampler::AlwaysOff, || {
            let span = tracing::info_span!("request", text = "a");
            span.in_scope(|| tracing::error!("broken"));
            ids = SpanIds::of(&span);
        });
        assert!(spans.is_empty());
        let ids = ids.unwrap();
        assert!(!ids.sampled);
        assert_ne!(ids.trace_id, TraceId::INVALID);
    }

    /// The encoding tracer makes the spans the SDK's tracer makes, field for field.
    #[cfg(feature = "otlp")]
    mod encoded {
        use std::{collections::HashMap, sync::OnceLock};

        use opentelemetry::trace::TraceState;
        use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
        use prost::Message as _;

        use super::*;
        use crate::trace::telemetry::{
            export::{BoundedBatchProcessor, Export, Queued, Settings},
            otlp::EncodingTracer,
            stats::Counters,
        };

        #[derive(Clone, Debug, Default)]
        struct Captured(Arc<Mutex<Vec<Vec<u8>>>>);

        impl Export for Captured {
            async fn export(&self, batch: Vec<Queued>) -> OTelSdkResult {
                let mut spans = self.0.lock().unwrap();
                for queued in batch {
                    if let Queued::Encoded(bytes) = queued {
                        spans.push(bytes);
                    }
                }
                Ok(())
            }

            fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
                Ok(())
            }
        }

        fn encoded(sampler: Sampler, run: impl FnOnce()) -> Vec<ProtoSpan> {
            let captured = Captured::default();
            let processor = BoundedBatchProcessor::spawn(
                captured.clone(),
                Settings::default(),
                Arc::new(Counters::default()),
                Arc::new(OnceLock::new()),
            )
            .unwrap();
            let tracer = EncodingTracer::new(sampler, processor.enqueue());
            let subscriber = tracing_subscriber::registry()
                .with(SpanRecorder::new(
                    Tracer::Encoding(tracer),
                    LevelFilter::WARN,
                ))
                .with(CorrelationLayer::new());
            tracing::subscriber::with_default(subscriber, run);
            processor.force_flush().unwrap();
            let spans = captured.0.lock().unwrap();
            spans
                .iter()
                .map(|bytes| ProtoSpan::decode(bytes.as_slice()).unwrap())
                .collect()
        }

        /// IDs replaced by their order of appearance and times by zero: the two runs share
        /// neither.
        fn comparable(mut spans: Vec<ProtoSpan>) -> Vec<ProtoSpan> {
            let mut ids: HashMap<Vec<u8>, u8> = HashMap::new();
            let mut map = |id: &mut Vec<u8>| {
                if !id.is_empty() {
                    let next = u8::try_from(ids.len()).unwrap();
                    *id = vec![*ids.entry(id.clone()).or_insert(next)];
                }
            };
            for span in &mut spans {
                map(&mut span.trace_id);
                map(&mut span.span_id);
                map(&mut span.parent_span_id);
                span.start_time_unix_nano = 0;
                span.end_time_unix_nano = 0;
                for event in &mut span.events {
                    event.time_unix_nano = 0;
                }
            }
            spans
        }

        fn scenario() {
            let remote = remote_parent(TraceState::from_key_value([("vendor", "v")]).unwrap());
            let outer = request_span("SERVER");
            outer.in_scope(|| {
                tracing::info!("routine");
                tracing::warn!(attempt = 2, "odd");
                let inner = tracing::info_span!("inner", otel.kind = "client");
                inner.in_scope(|| tracing::error!(code = 503_u64, "broken"));
                let explicit = tracing::info_span!(parent: &inner, "explicit", x = "y");
                let server = {
                    let _attached = Context::new()
                        .with_remote_span_context(remote.clone())
                        .attach();
                    tracing::info_span!("server", otel.name = ?"debug name")
                };
                drop((explicit, server, inner));
            });
        }

        #[test]
        fn the_same_spans_as_the_sdk_tracer() {
            let sdk: Vec<ProtoSpan> = recorded(Sampler::AlwaysOn, scenario)
                .into_iter()
                .map(ProtoSpan::from)
                .collect();
            let ours = encoded(Sampler::AlwaysOn, scenario);
            assert_eq!(ours.len(), 4);
            assert_eq!(comparable(ours), comparable(sdk));
        }

        #[test]
        fn unsampled_spans_are_not_exported_and_a_ratio_sampler_is_followed() {
            assert!(encoded(Sampler::AlwaysOff, scenario).is_empty());
            let half = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)));
            let roots = encoded(half, || {
                for _ in 0..200 {
                    drop(tracing::info_span!("root"));
                }
            });
            assert!((60..140).contains(&roots.len()), "{} of 200", roots.len());
        }
    }
}
