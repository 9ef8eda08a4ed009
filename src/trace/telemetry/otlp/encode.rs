//! `ExportTraceServiceRequest` in protobuf, written straight from the SDK's [`SpanData`].
//!
//! opentelemetry-otlp first converts every span into opentelemetry-proto's message structs
//! (two allocations per attribute, a hash of the instrumentation scope per span), then
//! prost computes each nested message's length once per level of nesting, then everything
//! is freed: about 22,000 instructions per span on a typical HTTP server span. Here the
//! lengths are computed in one pass and the bytes written in a second, into one buffer:
//! the same bytes (fields in tag order, proto3 defaults left out, as prost writes them) for
//! a fraction of the work.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::{
    Array, InstrumentationScope, KeyValue, StringValue, Value,
    trace::{SpanContext, SpanId, SpanKind, Status},
};
use opentelemetry_sdk::{Resource, trace::SpanData};

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the `is_remote` bits of the span's parent.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    ((64 - (value | 1).leading_zeros()) as usize).div_ceil(7)
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// A length-delimited field of `len` bytes, key and length included.
fn delimited_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// A string or bytes field, left out when empty (proto3).
fn opt_bytes_len(field: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        delimited_len(field, len)
    }
}

fn opt_varint_len(field: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(field) + varint_len(value)
    }
}

fn opt_fixed64_len(field: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(field) + 8 }
}

fn opt_fixed32_len(field: u32, value: u32) -> usize {
    if value == 0 { 0 } else { key_len(field) + 4 }
}

pub(super) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(super) fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

pub(super) fn flags(trace_flags: u8, parent_is_remote: bool) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if parent_is_remote { IS_REMOTE } else { 0 }
}

/// The status's code and message.
fn status_parts(status: &Status) -> (u64, &str) {
    match status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description),
    }
}

// ----- lengths ---------------------------------------------------------------------------

/// `AnyValue` (a oneof: written even when it holds a default value).
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(i) => key_len(3) + varint_len(*i as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::String(s) => delimited_len(1, s.as_str().len()),
        Value::Array(array) => delimited_len(5, array_len(array)),
        // Newer value types: sent as their text rather than dropped.
        other => delimited_len(1, other.as_str().len()),
    }
}

/// `ArrayValue`: each element an `AnyValue` in field 1.
fn array_len(array: &Array) -> usize {
    fn each<T>(values: &[T], len: impl Fn(&T) -> usize) -> usize {
        values.iter().map(|v| delimited_len(1, len(v))).sum()
    }
    match array {
        Array::Bool(values) => each(values, |_| key_len(2) + 1),
        Array::I64(values) => each(values, |i| key_len(3) + varint_len(*i as u64)),
        Array::F64(values) => each(values, |_| key_len(4) + 8),
        Array::String(values) => each(values, |s: &StringValue| delimited_len(1, s.as_str().len())),
        // Newer array types: one string element with the array's text.
        other => delimited_len(1, delimited_len(1, other.to_string().len())),
    }
}

fn key_value_len(key: &str, value: &Value) -> usize {
    opt_bytes_len(1, key.len()) + delimited_len(2, any_value_len(value))
}

fn attributes_len(field: u32, attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| delimited_len(field, key_value_len(kv.key.as_str(), &kv.value)))
        .sum()
}

fn scope_len(scope: &InstrumentationScope) -> usize {
    let attributes: usize = scope
        .attributes()
        .map(|kv| delimited_len(3, key_value_len(kv.key.as_str(), &kv.value)))
        .sum();
    opt_bytes_len(1, scope.name().len())
        + opt_bytes_len(2, scope.version().map_or(0, str::len))
        + attributes
}

fn span_len(span: &SpanData, trace_state: &str) -> usize {
    let sc = &span.span_context;
    let parent = if span.parent_span_id == SpanId::INVALID {
        0
    } else {
        delimited_len(4, 8)
    };
    let events: usize = span
        .events
        .iter()
        .map(|event| {
            delimited_len(
                11,
                opt_fixed64_len(1, nanos(event.timestamp))
                    + opt_bytes_len(2, event.name.len())
                    + attributes_len(3, &event.attributes)
                    + opt_varint_len(4, u64::from(event.dropped_attributes_count)),
            )
        })
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|link| {
            let lc = &link.span_context;
            delimited_len(
                13,
                delimited_len(1, 16)
                    + delimited_len(2, 8)
                    + opt_bytes_len(3, lc.trace_state().header().len())
                    + attributes_len(4, &link.attributes)
                    + opt_varint_len(5, u64::from(link.dropped_attributes_count))
                    + opt_fixed32_len(6, flags(lc.trace_flags().to_u8(), lc.is_remote())),
            )
        })
        .sum();
    let (code, message) = status_parts(&span.status);
    delimited_len(1, 16)
        + delimited_len(2, 8)
        + opt_bytes_len(3, trace_state.len())
        + parent
        + opt_bytes_len(5, span.name.len())
        + opt_varint_len(6, kind(&span.span_kind))
        + opt_fixed64_len(7, nanos(span.start_time))
        + opt_fixed64_len(8, nanos(span.end_time))
        + attributes_len(9, &span.attributes)
        + opt_varint_len(10, u64::from(span.dropped_attributes_count))
        + events
        + opt_varint_len(12, u64::from(span.events.dropped_count))
        + links
        + opt_varint_len(14, u64::from(span.links.dropped_count))
        + delimited_len(
            15,
            opt_bytes_len(2, message.len()) + opt_varint_len(3, code),
        )
        + opt_fixed32_len(
            16,
            flags(sc.trace_flags().to_u8(), span.parent_span_is_remote),
        )
}

// ----- writing ---------------------------------------------------------------------------

/// Protobuf written into a buffer.
#[derive(Debug, Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    #[inline]
    fn varint(&mut self, mut value: u64) {
        if value < 0x80 {
            // Tags, and the lengths of most strings and messages.
            self.0.push(value as u8);
            return;
        }
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from((field << 3) | wire_type));
    }

    /// The key and length of a length-delimited field; its `len` bytes follow.
    #[inline]
    fn open(&mut self, field: u32, len: usize) {
        self.key(field, LEN);
        self.varint(len as u64);
    }

    #[inline]
    pub(super) fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.open(field, bytes.len());
        self.0.extend_from_slice(bytes);
    }

    #[inline]
    pub(super) fn opt_bytes(&mut self, field: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.bytes(field, bytes);
        }
    }

    pub(super) fn opt_varint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value);
        }
    }

    pub(super) fn opt_fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub(super) fn opt_fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.key(field, FIXED32);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn any_value(&mut self, value: &Value) {
        match value {
            Value::Bool(b) => {
                self.key(2, VARINT);
                self.varint(u64::from(*b));
            }
            Value::I64(i) => {
                self.key(3, VARINT);
                self.varint(*i as u64);
            }
            Value::F64(f) => {
                self.key(4, FIXED64);
                self.0.extend_from_slice(&f.to_le_bytes());
            }
            Value::String(s) => self.bytes(1, s.as_str().as_bytes()),
            Value::Array(array) => {
                self.open(5, array_len(array));
                self.array(array);
            }
            other => self.bytes(1, other.as_str().as_bytes()),
        }
    }

    fn array(&mut self, array: &Array) {
        match array {
            Array::Bool(values) => {
                for b in values {
                    self.open(1, key_len(2) + 1);
                    self.any_value(&Value::Bool(*b));
                }
            }
            Array::I64(values) => {
                for i in values {
                    self.open(1, key_len(3) + varint_len(*i as u64));
                    self.any_value(&Value::I64(*i));
                }
            }
            Array::F64(values) => {
                for f in values {
                    self.open(1, key_len(4) + 8);
                    self.any_value(&Value::F64(*f));
                }
            }
            Array::String(values) => {
                for s in values {
                    let s = s.as_str().as_bytes();
                    self.open(1, delimited_len(1, s.len()));
                    self.bytes(1, s);
                }
            }
            other => {
                let text = other.to_string();
                self.open(1, delimited_len(1, text.len()));
                self.bytes(1, text.as_bytes());
            }
        }
    }

    pub(super) fn key_value(&mut self, field: u32, key: &str, value: &Value) {
        match value {
            // Most attributes: one size computation and one reservation.
            Value::String(s) => self.str_key_value(field, key, s.as_str()),
            Value::I64(i) => self.i64_key_value(field, key, *i),
            _ => {
                let value_len = any_value_len(value);
                self.open(
                    field,
                    opt_bytes_len(1, key.len()) + delimited_len(2, value_len),
                );
                self.opt_bytes(1, key.as_bytes());
                self.open(2, value_len);
                self.any_value(value);
            }
        }
    }

    /// The start of a short `KeyValue` in `field` (every tag and length one byte, as for
    /// nearly all attributes): its key, then the key and length of an `AnyValue` of
    /// `any_len` bytes, which the caller writes. `false`, with nothing written, if it is not
    /// short.
    fn short_key_value(&mut self, field: u32, key: &str, any_len: usize) -> bool {
        let len = key.len() + 4 + any_len;
        if field >= 16 || key.is_empty() || len >= 0x80 {
            return false;
        }
        self.0.reserve(len + 2);
        self.0
            .extend_from_slice(&[(field << 3 | LEN) as u8, len as u8, 0x0a, key.len() as u8]);
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(&[0x12, any_len as u8]);
        true
    }

    /// A `KeyValue` whose value is a string, in `field`: the same bytes as
    /// [`key_value`](Self::key_value) with a [`Value::String`].
    pub(super) fn str_key_value(&mut self, field: u32, key: &str, value: &str) {
        if value.len() < 0x80 && self.short_key_value(field, key, value.len() + 2) {
            self.0.extend_from_slice(&[0x0a, value.len() as u8]);
            self.0.extend_from_slice(value.as_bytes());
            return;
        }
        let any_len = delimited_len(1, value.len());
        let len = opt_bytes_len(1, key.len()) + delimited_len(2, any_len);
        self.0.reserve(delimited_len(field, len));
        self.open(field, len);
        self.opt_bytes(1, key.as_bytes());
        self.open(2, any_len);
        self.bytes(1, value.as_bytes());
    }

    /// A `KeyValue` whose value is an integer, in `field`.
    pub(super) fn i64_key_value(&mut self, field: u32, key: &str, value: i64) {
        let any_len = key_len(3) + varint_len(value as u64);
        if self.short_key_value(field, key, any_len) {
            self.key(3, VARINT);
            self.varint(value as u64);
            return;
        }
        let len = opt_bytes_len(1, key.len()) + delimited_len(2, any_len);
        self.0.reserve(delimited_len(field, len));
        self.open(field, len);
        self.opt_bytes(1, key.as_bytes());
        self.open(2, any_len);
        self.key(3, VARINT);
        self.varint(value as u64);
    }

    fn attributes(&mut self, field: u32, attributes: &[KeyValue]) {
        for kv in attributes {
            self.key_value(field, kv.key.as_str(), &kv.value);
        }
    }

    fn scope(&mut self, scope: &InstrumentationScope) {
        self.opt_bytes(1, scope.name().as_bytes());
        self.opt_bytes(2, scope.version().unwrap_or_default().as_bytes());
        for kv in scope.attributes() {
            self.key_value(3, kv.key.as_str(), &kv.value);
        }
    }

    /// An `Event` message in `field`.
    pub(super) fn event(
        &mut self,
        field: u32,
        time: u64,
        name: &str,
        attributes: &[KeyValue],
        dropped: u64,
    ) {
        self.open(
            field,
            opt_fixed64_len(1, time)
                + opt_bytes_len(2, name.len())
                + attributes_len(3, attributes)
                + opt_varint_len(4, dropped),
        );
        self.opt_fixed64(1, time);
        self.opt_bytes(2, name.as_bytes());
        self.attributes(3, attributes);
        self.opt_varint(4, dropped);
    }

    /// A `Link` message in `field`.
    pub(super) fn link(
        &mut self,
        field: u32,
        lc: &SpanContext,
        attributes: &[KeyValue],
        dropped: u64,
    ) {
        let state = lc.trace_state().header();
        let link_flags = flags(lc.trace_flags().to_u8(), lc.is_remote());
        self.open(
            field,
            delimited_len(1, 16)
                + delimited_len(2, 8)
                + opt_bytes_len(3, state.len())
                + attributes_len(4, attributes)
                + opt_varint_len(5, dropped)
                + opt_fixed32_len(6, link_flags),
        );
        self.bytes(1, &lc.trace_id().to_bytes());
        self.bytes(2, &lc.span_id().to_bytes());
        self.opt_bytes(3, state.as_bytes());
        self.attributes(4, attributes);
        self.opt_varint(5, dropped);
        self.opt_fixed32(6, link_flags);
    }

    /// The span's `Status` (field 15), always written, as opentelemetry-otlp does.
    pub(super) fn status(&mut self, status: &Status) {
        let (code, message) = status_parts(status);
        self.open(
            15,
            opt_bytes_len(2, message.len()) + opt_varint_len(3, code),
        );
        self.opt_bytes(2, message.as_bytes());
        self.opt_varint(3, code);
    }

    fn span(&mut self, span: &SpanData, trace_state: &str) {
        let sc = &span.span_context;
        self.bytes(1, &sc.trace_id().to_bytes());
        self.bytes(2, &sc.span_id().to_bytes());
        self.opt_bytes(3, trace_state.as_bytes());
        if span.parent_span_id != SpanId::INVALID {
            self.bytes(4, &span.parent_span_id.to_bytes());
        }
        self.opt_bytes(5, span.name.as_bytes());
        self.opt_varint(6, kind(&span.span_kind));
        self.opt_fixed64(7, nanos(span.start_time));
        self.opt_fixed64(8, nanos(span.end_time));
        self.attributes(9, &span.attributes);
        self.opt_varint(10, u64::from(span.dropped_attributes_count));
        for event in span.events.iter() {
            self.event(
                11,
                nanos(event.timestamp),
                &event.name,
                &event.attributes,
                u64::from(event.dropped_attributes_count),
            );
        }
        self.opt_varint(12, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            self.link(
                13,
                &link.span_context,
                &link.attributes,
                u64::from(link.dropped_attributes_count),
            );
        }
        self.opt_varint(14, u64::from(span.links.dropped_count));
        self.status(&span.status);
        self.opt_fixed32(
            16,
            flags(sc.trace_flags().to_u8(), span.parent_span_is_remote),
        );
    }
}

// ----- the request -----------------------------------------------------------------------

/// The resource, encoded once: the body of a `Resource` message and the schema URL.
#[derive(Clone, Debug, Default)]
pub(crate) struct EncodedResource {
    attributes: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut w = Writer(Vec::new());
        for (key, value) in resource.iter() {
            w.key_value(1, key.as_str(), value);
        }
        Self {
            attributes: w.0,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// An instrumentation scope, encoded once: the body of its `InstrumentationScope` message and
/// its schema URL.
#[derive(Clone, Debug, Default)]
pub(crate) struct EncodedScope {
    body: Vec<u8>,
    schema_url: String,
}

impl EncodedScope {
    pub(crate) fn new(scope: &InstrumentationScope) -> Self {
        let mut w = Writer(Vec::with_capacity(scope_len(scope)));
        w.scope(scope);
        Self {
            body: w.0,
            schema_url: scope.schema_url().unwrap_or_default().to_owned(),
        }
    }

    /// The `ScopeSpans` message around `spans`, without its key and length.
    fn scope_spans_len(&self, spans: &[&[u8]]) -> usize {
        delimited_len(1, self.body.len())
            + spans
                .iter()
                .map(|span| delimited_len(2, span.len()))
                .sum::<usize>()
            + opt_bytes_len(3, self.schema_url.len())
    }
}

/// The `ExportTraceServiceRequest` for `spans` (the SDK's) and `encoded` (spans already
/// written by [`EncodedSpan`](super::span::EncodedSpan), all of `encoded_scope`): one
/// `ResourceSpans`, with one `ScopeSpans` per instrumentation scope of `spans` in order of
/// first appearance (as opentelemetry-otlp groups them), then one for `encoded`.
#[cfg(test)]
pub(crate) fn export_request(
    resource: &EncodedResource,
    spans: &[&SpanData],
    encoded_scope: &EncodedScope,
    encoded: &[&[u8]],
) -> Vec<u8> {
    export_request_after(Vec::with_capacity, resource, spans, encoded_scope, encoded)
}

/// [`export_request`] written after what `head` makes of its length (a buffer with room for
/// the request): an HTTP request without copying the body into it.
pub(crate) fn export_request_after(
    head: impl FnOnce(usize) -> Vec<u8>,
    resource: &EncodedResource,
    spans: &[&SpanData],
    encoded_scope: &EncodedScope,
    encoded: &[&[u8]],
) -> Vec<u8> {
    // Pass 1: group by scope, and every length. Trace states are almost always empty (no
    // allocation), so they are rendered in each pass rather than kept.
    let mut scopes: Vec<(&InstrumentationScope, usize)> = Vec::new();
    let mut scope_of = Vec::with_capacity(spans.len());
    let mut span_lens = Vec::with_capacity(spans.len());
    for span in spans {
        let index = match scopes
            .iter()
            .position(|(scope, _)| *scope == &span.instrumentation_scope)
        {
            Some(index) => index,
            None => {
                scopes.push((&span.instrumentation_scope, 0));
                scopes.len() - 1
            }
        };
        let len = span_len(span, &span.span_context.trace_state().header());
        scopes[index].1 += delimited_len(2, len);
        scope_of.push(index);
        span_lens.push(len);
    }
    let scope_spans_lens: Vec<usize> = scopes
        .iter()
        .map(|(scope, spans_len)| {
            delimited_len(1, scope_len(scope))
                + spans_len
                + opt_bytes_len(3, scope.schema_url().map_or(0, str::len))
        })
        .collect();
    let encoded_scope_spans_len = encoded_scope.scope_spans_len(encoded);
    let encoded_len = if encoded.is_empty() {
        0
    } else {
        delimited_len(2, encoded_scope_spans_len)
    };
    let resource_spans_len = delimited_len(1, resource.attributes.len())
        + scope_spans_lens
            .iter()
            .map(|len| delimited_len(2, *len))
            .sum::<usize>()
        + encoded_len
        + opt_bytes_len(3, resource.schema_url.len());

    // Pass 2: the bytes.
    let total = delimited_len(1, resource_spans_len);
    let mut w = Writer(head(total));
    let start = w.0.len();
    w.open(1, resource_spans_len);
    w.bytes(1, &resource.attributes);
    for (index, ((scope, _), len)) in scopes.iter().zip(&scope_spans_lens).enumerate() {
        w.open(2, *len);
        w.open(1, scope_len(scope));
        w.scope(scope);
        for ((span, span_len), _) in spans
            .iter()
            .zip(&span_lens)
            .zip(&scope_of)
            .filter(|(_, of)| **of == index)
        {
            w.open(2, *span_len);
            w.span(span, &span.span_context.trace_state().header());
        }
        w.opt_bytes(3, scope.schema_url().unwrap_or_default().as_bytes());
    }
    if !encoded.is_empty() {
        w.open(2, encoded_scope_spans_len);
        w.bytes(1, &encoded_scope.body);
        for span in encoded {
            w.bytes(2, span);
        }
        w.opt_bytes(3, encoded_scope.schema_url.as_bytes());
    }
    w.opt_bytes(3, resource.schema_url.as_bytes());
    debug_assert_eq!(
        w.0.len() - start,
        total,
        "the lengths of pass 1 are the bytes of pass 2"
    );
    w.0
}
