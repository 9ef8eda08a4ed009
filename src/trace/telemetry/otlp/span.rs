//! Spans that write themselves in OTLP protobuf as they are filled in.
//!
//! With the SDK, a span's attributes are `KeyValue`s (a `String` per value) kept in the span
//! until it ends; then the span's data crosses to the export thread, is encoded there and
//! freed there, far from the thread that allocated it. An [`EncodedSpan`] appends each
//! attribute, event and link to one buffer as protobuf the moment it is set, and when it
//! ends adds its identity, name, times and status and queues that one buffer: the export
//! thread only copies finished spans into a request. Made only for this crate's OTLP
//! exporter (see `TelemetryBuilder::otlp_endpoint`); any other exporter gets the SDK's spans.
//!
//! It keeps the SDK's semantics: the same sampler decides, with the same parent; attributes,
//! events and links are capped by the SDK's default [`SpanLimits`], with what is over the
//! cap counted as dropped; the status goes only up (unset, error, ok); the span ends, and is
//! exported, when dropped if not before. Protobuf lets a message's fields come in any order,
//! so the decoded span is the SDK path's span (the tests compare them).

use std::{borrow::Cow, sync::Arc, time::SystemTime};

use opentelemetry::{
    Context, KeyValue,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt as _},
};
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _, SpanLimits,
};

use super::encode::{Writer, flags, kind, nanos};
use crate::trace::telemetry::export::{Enqueue, Queued};

/// Span field numbers (`opentelemetry.proto.trace.v1.Span`).
mod field {
    pub(super) const ATTRIBUTE: u32 = 9;
    pub(super) const EVENT: u32 = 11;
    pub(super) const LINK: u32 = 13;
}

/// Starts [`EncodedSpan`]s: the SDK tracer's job, for spans that skip the SDK.
pub(crate) struct EncodingTracer {
    sampler: Sampler,
    ids: RandomIdGenerator,
    limits: SpanLimits,
    enqueue: Arc<Enqueue>,
}

/// What [`EncodingTracer::start`] made.
pub(crate) enum Started {
    /// Sampled (or recorded only): fill it in, then end it.
    Recording(EncodedSpan),
    /// Dropped by the sampler, or inside the exporter's own work: only its identity, for
    /// children and log lines.
    NotRecording(SpanContext),
}

impl EncodingTracer {
    pub(crate) fn new(sampler: Sampler, enqueue: Arc<Enqueue>) -> Self {
        Self {
            sampler,
            ids: RandomIdGenerator::default(),
            limits: SpanLimits::default(),
            enqueue,
        }
    }

    /// The span `fields` describe, child of the span in `parent` if it has a valid one, as
    /// the SDK's tracer would start it.
    pub(crate) fn start(&self, fields: SpanStart, start: SystemTime, parent: &Context) -> Started {
        if parent.is_telemetry_suppressed() {
            return Started::NotRecording(SpanContext::empty_context());
        }
        let span_id = self.ids.new_span_id();
        let parent_span = parent.span();
        let parent_context = Some(parent_span.span_context()).filter(|sc| sc.is_valid());
        let trace_id = parent_context.map_or_else(|| self.ids.new_trace_id(), |p| p.trace_id());
        let sampling = self.sampler.should_sample(
            Some(parent),
            trace_id,
            &fields.name,
            &fields.kind,
            &[],
            &[],
        );
        let trace_flags = parent_context
            .map(SpanContext::trace_flags)
            .unwrap_or_default();
        let sampled = match sampling.decision {
            SamplingDecision::Drop => {
                return Started::NotRecording(SpanContext::new(
                    trace_id,
                    span_id,
                    trace_flags.with_sampled(false),
                    false,
                    sampling.trace_state,
                ));
            }
            SamplingDecision::RecordOnly => false,
            SamplingDecision::RecordAndSample => true,
        };
        let mut span = EncodedSpan::new(
            SpanContext::new(
                trace_id,
                span_id,
                trace_flags.with_sampled(sampled),
                false,
                sampling.trace_state,
            ),
            (
                parent_context.map_or(SpanId::INVALID, SpanContext::span_id),
                parent_context.is_some_and(SpanContext::is_remote),
            ),
            (fields.name, fields.kind),
            start,
            self.limits,
            if sampled {
                State::Recording(self.enqueue.clone())
            } else {
                State::RecordingOnly
            },
        );
        span.append(fields.attributes);
        for attribute in sampling.attributes {
            opentelemetry::trace::Span::set_attribute(&mut span, attribute);
        }
        Started::Recording(span)
    }
}

/// What a span starts with: its name, kind and first attributes, gathered from its fields
/// in one pass before the sampler decides (the attributes already written as they will be
/// sent, into the buffer the span keeps if it is sampled).
#[derive(Debug)]
pub(crate) struct SpanStart {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    attributes: AttributeBatch,
}

impl SpanStart {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            kind: SpanKind::Internal,
            // Room for a typical HTTP span's attributes, events and identity.
            attributes: AttributeBatch::with_capacity(512),
        }
    }

    pub(crate) fn attribute(&mut self, attribute: &KeyValue) {
        self.attributes.attribute(attribute);
    }

    pub(crate) fn str_attribute(&mut self, key: &str, value: &str) {
        self.attributes.str(key, value);
    }
}

/// What [`EncodedSpan::admit`] admits.
enum Item {
    Event,
    Link,
}

/// Counts of what went over the limits.
#[derive(Debug, Default)]
struct Dropped {
    attributes: u32,
    events: u32,
    links: u32,
}

/// Where an [`EncodedSpan`] is in its life.
#[derive(Debug)]
enum State {
    /// Sampled: queued for export when it ends.
    Recording(Arc<Enqueue>),
    /// Recorded but not sampled: not exported, as the SDK's processors do not export it.
    RecordingOnly,
    Ended,
}

/// A span kept as the protobuf of its `Span` message; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct EncodedSpan {
    span_context: SpanContext,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    status: Status,
    /// Attributes, events and links, in the order they were set.
    body: Writer,
    attributes: u32,
    events: u32,
    links: u32,
    dropped: Dropped,
    limits: SpanLimits,
    state: State,
}

impl EncodedSpan {
    /// A span with nothing set yet; `parent` is the parent's span ID (invalid for a root)
    /// and whether it is remote.
    fn new(
        span_context: SpanContext,
        (parent_span_id, parent_is_remote): (SpanId, bool),
        (name, kind): (Cow<'static, str>, SpanKind),
        start: SystemTime,
        limits: SpanLimits,
        state: State,
    ) -> Self {
        Self {
            span_context,
            parent_span_id,
            parent_is_remote,
            name,
            kind,
            start,
            status: Status::Unset,
            body: Writer::default(),
            attributes: 0,
            events: 0,
            links: 0,
            dropped: Dropped::default(),
            limits,
            state,
        }
    }

    /// Adds the fields known only at the end, and returns the whole message.
    fn finish(&mut self, end: SystemTime) -> Vec<u8> {
        let mut w = std::mem::replace(&mut self.body, Writer(Vec::new()));
        let sc = &self.span_context;
        w.bytes(1, &sc.trace_id().to_bytes());
        w.bytes(2, &sc.span_id().to_bytes());
        w.opt_bytes(3, sc.trace_state().header().as_bytes());
        if self.parent_span_id != SpanId::INVALID {
            w.bytes(4, &self.parent_span_id.to_bytes());
        }
        w.opt_bytes(5, self.name.as_bytes());
        w.opt_varint(6, kind(&self.kind));
        w.opt_fixed64(7, nanos(self.start));
        w.opt_fixed64(8, nanos(end));
        w.opt_varint(10, u64::from(self.dropped.attributes));
        w.opt_varint(12, u64::from(self.dropped.events));
        w.opt_varint(14, u64::from(self.dropped.links));
        w.status(&self.status);
        w.opt_fixed32(16, flags(sc.trace_flags().to_u8(), self.parent_is_remote));
        w.0
    }
}

/// Attributes (and maybe a new name or a status) written for a span elsewhere, then added to
/// it at once with [`EncodedSpan::append`]: the span lives in a registry's extensions, which
/// are looked up once per batch rather than once per attribute.
#[derive(Debug, Default)]
pub(crate) struct AttributeBatch {
    attributes: Writer,
    count: u32,
    name: Option<Cow<'static, str>>,
    status: Option<Status>,
}

impl AttributeBatch {
    /// Room for a request's or a response's attributes.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            attributes: Writer(Vec::with_capacity(bytes)),
            ..Self::default()
        }
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.count += 1;
        self.attributes.str_key_value(field::ATTRIBUTE, key, value);
    }

    pub(crate) fn i64(&mut self, key: &str, value: i64) {
        self.count += 1;
        self.attributes.i64_key_value(field::ATTRIBUTE, key, value);
    }

    pub(crate) fn attribute(&mut self, attribute: &KeyValue) {
        self.count += 1;
        self.attributes
            .key_value(field::ATTRIBUTE, attribute.key.as_str(), &attribute.value);
    }

    pub(crate) fn name(&mut self, name: impl Into<Cow<'static, str>>) {
        self.name = Some(name.into());
    }

    pub(crate) fn status(&mut self, status: Status) {
        self.status = Some(status);
    }
}

/// The length-delimited entries of `bytes` (each a one-byte key, a length and the bytes).
fn entries(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (mut len, mut shift, mut at) = (0_usize, 0, 1);
        loop {
            let byte = *bytes.get(at)?;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            at += 1;
            if byte < 0x80 {
                break;
            }
        }
        let end = at.checked_add(len)?.min(bytes.len());
        let (entry, rest) = bytes.split_at(end);
        bytes = rest;
        Some(entry)
    })
}

impl EncodedSpan {
    /// Adds `batch`: as [`set_attribute`](opentelemetry::trace::Span::set_attribute) for each
    /// of its attributes in turn, then its name and status.
    pub(crate) fn append(&mut self, batch: AttributeBatch) {
        use opentelemetry::trace::Span as _;
        if !self.is_recording() {
            return;
        }
        let room = self.limits.max_attributes_per_span - self.attributes;
        if batch.count <= room {
            self.attributes += batch.count;
            if self.body.0.is_empty() {
                // A new span's first attributes: keep their buffer.
                self.body = batch.attributes;
            } else {
                self.body.0.extend_from_slice(&batch.attributes.0);
            }
        } else {
            for entry in entries(&batch.attributes.0).take(room as usize) {
                self.body.0.extend_from_slice(entry);
            }
            self.attributes += room;
            self.dropped.attributes += batch.count - room;
        }
        if let Some(name) = batch.name {
            self.name = name;
        }
        if let Some(status) = batch.status {
            self.set_status(status);
        }
    }

    /// [`set_attribute`](opentelemetry::trace::Span::set_attribute) for a string value,
    /// without making a `KeyValue` first.
    pub(crate) fn set_str_attribute(&mut self, key: &str, value: &str) {
        if self.admit_attribute() {
            self.body.str_key_value(field::ATTRIBUTE, key, value);
        }
    }

    /// Counts one more event or link if the span records and has room for it, else counts it
    /// as dropped and returns `None`; cuts its `attributes` to the limit per item and returns
    /// how many were cut.
    fn admit(&mut self, item: Item, attributes: &mut Vec<KeyValue>) -> Option<u64> {
        if !opentelemetry::trace::Span::is_recording(self) {
            return None;
        }
        let limits = &self.limits;
        let (count, dropped, limit, per_item) = match item {
            Item::Event => (
                &mut self.events,
                &mut self.dropped.events,
                limits.max_events_per_span,
                limits.max_attributes_per_event,
            ),
            Item::Link => (
                &mut self.links,
                &mut self.dropped.links,
                limits.max_links_per_span,
                limits.max_attributes_per_link,
            ),
        };
        if *count >= limit {
            *dropped += 1;
            return None;
        }
        *count += 1;
        let cut = attributes.len().saturating_sub(per_item as usize);
        attributes.truncate(per_item as usize);
        Some(cut as u64)
    }

    /// Counts one more attribute if the span records and has room, else counts it as dropped.
    fn admit_attribute(&mut self) -> bool {
        if !opentelemetry::trace::Span::is_recording(self) {
            return false;
        }
        if self.attributes < self.limits.max_attributes_per_span {
            self.attributes += 1;
            true
        } else {
            self.dropped.attributes += 1;
            false
        }
    }
}

impl opentelemetry::trace::Span for EncodedSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        mut attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        let Some(dropped) = self.admit(Item::Event, &mut attributes) else {
            return;
        };
        self.body.event(
            field::EVENT,
            nanos(timestamp),
            &name.into(),
            &attributes,
            dropped,
        );
    }

    fn span_context(&self) -> &SpanContext {
        &self.span_context
    }

    fn is_recording(&self) -> bool {
        !matches!(self.state, State::Ended)
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if self.admit_attribute() {
            self.body
                .key_value(field::ATTRIBUTE, attribute.key.as_str(), &attribute.value);
        }
    }

    fn set_status(&mut self, status: Status) {
        // The SDK's order: ok > error > unset.
        if self.is_recording() && status > self.status {
            self.status = status;
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if self.is_recording() {
            self.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: SpanContext, mut attributes: Vec<KeyValue>) {
        let Some(dropped) = self.admit(Item::Link, &mut attributes) else {
            return;
        };
        self.body
            .link(field::LINK, &span_context, &attributes, dropped);
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Recording(enqueue) => enqueue.push(Queued::Encoded(self.finish(timestamp))),
            State::RecordingOnly | State::Ended => {}
        }
    }
}

impl Drop for EncodedSpan {
    /// A span dropped without an end ends now, as the SDK's does.
    fn drop(&mut self) {
        opentelemetry::trace::Span::end(self);
    }
}

#[cfg(test)]
impl EncodedSpan {
    /// A recording span that is not queued, with the given identity.
    pub(super) fn unqueued(
        span_context: SpanContext,
        parent_span_id: SpanId,
        parent_is_remote: bool,
        name: Cow<'static, str>,
        kind: SpanKind,
        start: SystemTime,
    ) -> Self {
        Self::new(
            span_context,
            (parent_span_id, parent_is_remote),
            (name, kind),
            start,
            SpanLimits::default(),
            State::RecordingOnly,
        )
    }

    /// The finished `Span` message.
    pub(super) fn into_message(mut self, end: SystemTime) -> Vec<u8> {
        self.state = State::Ended;
        self.finish(end)
    }
}
