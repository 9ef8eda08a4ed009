//! What ties a log line to its request: the trace and span IDs, and the request ID.
//!
//! With OpenTelemetry installed, the IDs are those of the OpenTelemetry span that
//! tracing-opentelemetry starts for each `tracing` span; it makes them even when the sampler
//! drops the span (a non-recording span keeps a valid context). Without OpenTelemetry,
//! [`CorrelationLayer::generate_ids`] makes W3C-compatible IDs itself, so log lines keep the
//! same fields and `traceparent` still flows.

use std::{fmt, sync::Arc};

use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::telemetry::OtelSpan;
use tracing_subscriber::{
    Registry,
    layer::{Context as LayerContext, Layer},
    registry::{LookupSpan, SpanRef},
};

/// The field name the request ID is read from, on any span.
pub(crate) const REQUEST_ID_FIELD: &str = "request_id";

/// Keeps, per span, what a log line needs to name its request: the span's `request_id`
/// field, if it has one (a log line takes the nearest in its scope), and, in
/// [`generate_ids`](Self::generate_ids) mode, the span's own trace and span IDs.
///
/// [`TelemetryBuilder`](super::TelemetryBuilder) installs it. Add it yourself when you
/// assemble a subscriber around [`JsonFormat`](super::JsonFormat) or
/// [`TextFormat`](super::TextFormat):
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use tower_bulwark::trace::{CorrelationLayer, JsonFormat};
///
/// let subscriber = tracing_subscriber::registry()
///     .with(CorrelationLayer::new())
///     .with(tracing_subscriber::fmt::layer().event_format(JsonFormat::new()));
/// # drop(subscriber);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CorrelationLayer {
    ids: Option<RandomIdGenerator>,
}

impl CorrelationLayer {
    /// A layer that records request IDs only; trace and span IDs come from OpenTelemetry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also makes trace and span IDs for every span, for a subscriber **without**
    /// OpenTelemetry: a span continues the trace of its parent span, or of the remote parent
    /// a server layer extracted from `traceparent`, or starts a new one.
    ///
    /// Do not combine with tracing-opentelemetry's layer: its IDs would differ from these.
    #[must_use]
    pub fn generate_ids(mut self) -> Self {
        self.ids = Some(RandomIdGenerator::default());
        self
    }
}

/// Per-span data in the registry's extensions.
#[derive(Clone, Debug, Default)]
struct Correlation {
    request_id: Option<Arc<str>>,
    ids: Option<SpanContext>,
}

impl<S> Layer<S> for CorrelationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        // Only the span's own `request_id`: a log line looks up the scope for the nearest
        // one, so children need no copy (and most spans cost no extension at all).
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        let request_id = visitor.0;

        let ids = self
            .ids
            .as_ref()
            .map(|generator| generated_ids(generator, attrs, &ctx));

        if (request_id.is_some() || ids.is_some())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut()
                .insert(Correlation { request_id, ids });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        values.record(&mut visitor);
        let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<Correlation>() {
            Some(c) => c.request_id = Some(request_id),
            None => extensions.insert(Correlation {
                request_id: Some(request_id),
                ids: None,
            }),
        }
    }
}

/// A span's IDs and OpenTelemetry context: those of the span the telemetry's span recorder
/// made for it, else those [`CorrelationLayer::generate_ids`] made (without a context).
fn ids_in(
    extensions: &tracing_subscriber::registry::Extensions<'_>,
) -> Option<(SpanContext, Option<Context>)> {
    if let Some(OtelSpan { cx, .. }) = extensions.get::<OtelSpan>() {
        let sc = cx.span().span_context().clone();
        return sc.is_valid().then(|| (sc, Some(cx.clone())));
    }
    let ids = extensions.get::<Correlation>()?.ids.clone()?;
    Some((ids, None))
}

/// New IDs for a span: its own span ID in its parent's trace, or in a new trace.
fn generated_ids<S>(
    generator: &RandomIdGenerator,
    attrs: &Attributes<'_>,
    ctx: &LayerContext<'_, S>,
) -> SpanContext
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // A remote parent attached by a server layer while it made this span wins over
    // the local one: it is the parent the caller named.
    let remote = (attrs.is_contextual())
        .then(|| {
            Context::map_current(|cx| {
                let span = cx.span();
                let sc = span.span_context();
                sc.is_valid().then(|| sc.clone())
            })
        })
        .flatten();
    let parent_sc = remote.or_else(|| {
        let parent = if attrs.is_root() {
            None
        } else if let Some(parent) = attrs.parent() {
            ctx.span(parent)
        } else {
            ctx.lookup_current()
        }?;
        let extensions = parent.extensions();
        extensions.get::<Correlation>()?.ids.clone()
    });
    match parent_sc {
        Some(p) => SpanContext::new(
            p.trace_id(),
            generator.new_span_id(),
            p.trace_flags(),
            false,
            p.trace_state().clone(),
        ),
        None => SpanContext::new(
            generator.new_trace_id(),
            generator.new_span_id(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        ),
    }
}

struct RequestIdVisitor(Option<Arc<str>>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == REQUEST_ID_FIELD {
            self.0 = Some(value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == REQUEST_ID_FIELD {
            self.0 = Some(format!("{value:?}").into());
        }
    }
}

/// The trace and span ID of a span, and whether its trace is sampled.
///
/// Read from OpenTelemetry when tracing-opentelemetry's layer is installed, else from
/// [`CorrelationLayer::generate_ids`]. Useful to put the trace ID where this crate does not,
/// e.g. as a metrics exemplar or in an error response.
///
/// ```
/// use tower_bulwark::trace::SpanIds;
///
/// // No subscriber, no IDs.
/// assert_eq!(SpanIds::current(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanIds {
    /// The trace ID.
    pub trace_id: TraceId,
    /// The span ID.
    pub span_id: SpanId,
    /// Whether the trace is sampled, i.e. its spans are exported.
    pub sampled: bool,
}

impl SpanIds {
    /// The IDs of the current span.
    #[must_use]
    pub fn current() -> Option<Self> {
        Self::of(&tracing::Span::current()).or_else(current_otel_ids)
    }

    /// The IDs of `span`.
    #[must_use]
    pub fn of(span: &tracing::Span) -> Option<Self> {
        span_context(span).map(|(sc, _)| Self::from(&sc))
    }
}

impl From<&SpanContext> for SpanIds {
    fn from(sc: &SpanContext) -> Self {
        Self {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        }
    }
}

/// The IDs of the OpenTelemetry context attached to this thread, which tracing-opentelemetry
/// keeps in step with the entered span when its context activation is on (its default; a
/// subscriber assembled by hand with [`CorrelationLayer::new`] relies on it).
fn current_otel_ids() -> Option<SpanIds> {
    Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| SpanIds::from(sc))
    })
}

/// `f` of `span`'s data, when the current subscriber is built on a `Registry`.
pub(crate) fn in_registry<T>(
    span: &tracing::Span,
    f: impl FnOnce(SpanRef<'_, Registry>) -> Option<T>,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| f(dispatch.downcast_ref::<Registry>()?.span(id)?))
        .flatten()
}

/// The span context of `span`, with its OpenTelemetry context when there is one (it carries
/// the baggage): the span recorder's, else the generated IDs, else tracing-opentelemetry's.
pub(crate) fn span_context(span: &tracing::Span) -> Option<(SpanContext, Option<Context>)> {
    if span.is_disabled() {
        return None;
    }
    let ours = in_registry(span, |span| ids_in(&span.extensions()));
    if ours.is_some() {
        return ours;
    }
    // A subscriber assembled by hand with tracing-opentelemetry's layer.
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some((sc, Some(cx)))
}

/// What a log line written in a span scope carries.
pub(crate) struct EventContext {
    pub(crate) ids: Option<SpanIds>,
    pub(crate) request_id: Option<Arc<str>>,
    /// The innermost span's name.
    pub(crate) span_name: Option<&'static str>,
}

/// The IDs, request ID and span name for a log line written in `scope` (innermost span
/// first).
pub(crate) fn for_event<'a, R>(scope: Option<impl Iterator<Item = SpanRef<'a, R>>>) -> EventContext
where
    R: LookupSpan<'a> + 'a,
{
    let mut ids = None;
    let mut request_id = None;
    let mut span_name = None;
    for span in scope.into_iter().flatten() {
        span_name.get_or_insert(span.name());
        let extensions = span.extensions();
        if ids.is_none() {
            ids = ids_in(&extensions).map(|(sc, _)| SpanIds::from(&sc));
        }
        if request_id.is_none()
            && let Some(c) = extensions.get::<Correlation>()
        {
            request_id.clone_from(&c.request_id);
        }
        if ids.is_some() && request_id.is_some() {
            break;
        }
    }
    if ids.is_none() {
        ids = current_otel_ids();
    }
    #[cfg(feature = "request-id")]
    if request_id.is_none() {
        request_id = crate::request_id::RequestId::current().map(|id| Arc::from(id.as_str()));
    }
    EventContext {
        ids,
        request_id,
        span_name,
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn generated_ids_follow_the_span_tree() {
        let subscriber =
            tracing_subscriber::registry().with(CorrelationLayer::new().generate_ids());
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", request_id = "r-1");
            let outer_ids = SpanIds::of(&outer).unwrap();
            let inner = outer.in_scope(|| tracing::info_span!("inner"));
            let inner_ids = SpanIds::of(&inner).unwrap();
            assert_eq!(outer_ids.trace_id, inner_ids.trace_id);
            assert_ne!(outer_ids.span_id, inner_ids.span_id);
            assert!(!outer_ids.sampled);
            let other = tracing::info_span!("other");
            assert_ne!(SpanIds::of(&other).unwrap().trace_id, outer_ids.trace_id);
            inner.in_scope(|| assert_eq!(SpanIds::current(), Some(inner_ids)));
        });
    }

    #[test]
    fn a_remote_parent_attached_at_creation_is_continued() {
        let subscriber =
            tracing_subscriber::registry().with(CorrelationLayer::new().generate_ids());
        tracing::subscriber::with_default(subscriber, || {
            let remote = SpanContext::new(
                TraceId::from(42u128),
                SpanId::from(7u64),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            );
            let span = {
                let _g = Context::new().with_remote_span_context(remote).attach();
                tracing::info_span!("server")
            };
            let ids = SpanIds::of(&span).unwrap();
            assert_eq!(ids.trace_id, TraceId::from(42u128));
            assert!(ids.sampled);
        });
    }

    #[test]
    fn request_ids_recorded_late_are_kept() {
        let subscriber = tracing_subscriber::registry().with(CorrelationLayer::new());
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("s", request_id = tracing::field::Empty);
            span.record("request_id", "abc");
            let registry = dispatch.downcast_ref::<Registry>().unwrap();
            let id = span.id().unwrap();
            let data = registry.span(&id).unwrap();
            let cx = for_event(Some(data.scope()));
            assert_eq!(cx.request_id.as_deref(), Some("abc"));
            assert_eq!(cx.span_name, Some("s"));
        });
    }
}
