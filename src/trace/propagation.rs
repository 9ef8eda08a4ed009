//! W3C Trace Context (`traceparent`, `tracestate`) and W3C Baggage in and out of HTTP headers.
//!
//! `traceparent` is parsed here, strictly: opentelemetry's `TraceContextPropagator` accepts
//! values the specification refuses (`u8::from_str_radix` takes a leading `+` and short
//! fields). `tracestate` and `baggage` go through opentelemetry's parsers, which already cap
//! their size (32 list members; 64 entries / 8 KiB).

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    baggage::BaggageExt as _,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::propagation::BaggagePropagator;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The length of a version-`00` `traceparent`: `vv-` + 32 + `-` + 16 + `-` + `ff`.
const TRACEPARENT_LEN: usize = 55;

/// Longest `tracestate` read (all header lines together). The specification asks vendors to
/// propagate at least 512 characters; beyond a few KiB it is abuse, and parsing it would cost
/// every request.
const MAX_TRACESTATE_LEN: usize = 4096;

/// A parsed W3C [`traceparent`](https://www.w3.org/TR/trace-context/#traceparent-header)
/// header: the caller's trace, the caller's span and its trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The header's version (`00` today; later versions are read by their first four fields).
    pub version: u8,
    /// The trace ID, never all zeros.
    pub trace_id: TraceId,
    /// The caller's span ID, never all zeros.
    pub parent_id: SpanId,
    /// The trace flags byte as sent; bit 0 is `sampled`.
    pub flags: TraceFlags,
}

impl TraceParent {
    /// Whether the caller sampled (recorded) its span.
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }
}

/// Parses a `traceparent` header value strictly, as the W3C Trace Context specification
/// says; `None` for anything else.
///
/// Accepted: version `00` as exactly `00-<32 hex>-<16 hex>-<2 hex>` (55 characters), and any
/// later version except `ff` as those four fields followed by nothing or by `-` and more.
/// Refused: upper-case hex, surrounding whitespace, an all-zero trace or parent ID, wrong
/// lengths or separators, version `ff`.
///
/// It never panics and does not allocate, so it is safe on untrusted input.
///
/// ```
/// use tower_bulwark::trace::parse_traceparent;
///
/// let tp = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(tp.is_sampled());
///
/// assert!(parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
/// assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_none());
/// // A later version may carry more fields.
/// assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
/// ```
#[must_use]
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let b = value.as_bytes();
    if b.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_u8(b[0], b[1])?;
    if version == 0xff {
        return None;
    }
    if version == 0 && b.len() != TRACEPARENT_LEN {
        return None;
    }
    if b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = hex_u128(&b[3..35])?;
    let parent_id = hex_u128(&b[36..52])?;
    let flags = hex_u8(b[53], b[54])?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceParent {
        version,
        trace_id: TraceId::from(trace_id),
        // 16 hex digits always fit a u64.
        parent_id: SpanId::from(parent_id as u64),
        flags: TraceFlags::new(flags),
    })
}

/// Lower-case hex only: the specification forbids upper case.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_u8(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_digit(hi)? << 4 | hex_digit(lo)?)
}

/// At most 32 digits (callers pass 32 or 16), so the shifts never overflow.
fn hex_u128(digits: &[u8]) -> Option<u128> {
    digits
        .iter()
        .try_fold(0u128, |acc, &c| Some(acc << 4 | u128::from(hex_digit(c)?)))
}

/// Formats a version-`00` `traceparent` for `sc` (only the `sampled` flag is sent, as the
/// specification asks of version `00`).
pub(crate) fn format_traceparent(sc: &SpanContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; TRACEPARENT_LEN];
    buf[..3].copy_from_slice(b"00-");
    for (i, byte) in sc.trace_id().to_bytes().iter().enumerate() {
        buf[3 + 2 * i] = HEX[usize::from(byte >> 4)];
        buf[4 + 2 * i] = HEX[usize::from(byte & 0xf)];
    }
    buf[35] = b'-';
    for (i, byte) in sc.span_id().to_bytes().iter().enumerate() {
        buf[36 + 2 * i] = HEX[usize::from(byte >> 4)];
        buf[37 + 2 * i] = HEX[usize::from(byte & 0xf)];
    }
    buf[52] = b'-';
    let flags = (sc.trace_flags() & TraceFlags::SAMPLED).to_u8();
    buf[53] = b'0';
    buf[54] = HEX[usize::from(flags)];
    // Only ASCII hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The remote context a request carries: its caller's span (from a valid `traceparent`, with
/// `tracestate` if that parses too) and its baggage. `None` when the request carries
/// neither, so a request without trace headers costs two header look-ups.
pub(crate) fn extract(headers: &HeaderMap, baggage: bool) -> Option<Context> {
    let has_baggage = baggage && headers.contains_key(BAGGAGE);
    let remote = remote_span_context(headers);
    if remote.is_none() && !has_baggage {
        return None;
    }
    let mut cx = Context::new();
    if let Some(sc) = remote {
        cx = cx.with_remote_span_context(sc);
    }
    if has_baggage {
        cx = BaggagePropagator::new().extract_with_context(&cx, &HeaderExtractor(headers));
    }
    Some(cx)
}

/// The caller's span context from `traceparent` (exactly one valid value) and `tracestate`.
fn remote_span_context(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Two parents: which one a proxy meant is unknowable, so start a new trace.
        return None;
    }
    let tp = parse_traceparent(value.to_str().ok()?)?;
    Some(SpanContext::new(
        tp.trace_id,
        tp.parent_id,
        tp.flags & TraceFlags::SAMPLED,
        true,
        trace_state(headers),
    ))
}

/// `tracestate`, all its header lines joined as the HTTP list syntax allows; empty if it is
/// too long or does not parse (the parent is kept either way, as the specification says).
fn trace_state(headers: &HeaderMap) -> TraceState {
    let mut values = headers.get_all(TRACESTATE).iter();
    let Some(first) = values.next() else {
        return TraceState::default();
    };
    // opentelemetry's parser accepts an empty key, which the specification does not.
    let parse = |s: &str| {
        TraceState::from_str(s)
            .ok()
            .filter(|ts| ts.into_iter().all(|(key, _)| !key.is_empty()))
            .unwrap_or_default()
    };
    let Some(second) = values.next() else {
        return match first.to_str() {
            Ok(s) if s.len() <= MAX_TRACESTATE_LEN => parse(s),
            _ => TraceState::default(),
        };
    };
    let mut joined = String::new();
    for value in std::iter::once(first)
        .chain(std::iter::once(second))
        .chain(values)
    {
        let Ok(s) = value.to_str() else {
            return TraceState::default();
        };
        if joined.len() + s.len() + 1 > MAX_TRACESTATE_LEN {
            return TraceState::default();
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(s);
    }
    parse(&joined)
}

/// Writes `traceparent` and `tracestate` for `sc`, and `baggage` from `cx`, replacing any the
/// request carried: the outgoing parent is this span, whatever the caller set.
pub(crate) fn inject(
    sc: &SpanContext,
    cx: Option<&Context>,
    baggage: bool,
    headers: &mut HeaderMap,
) {
    headers.insert(TRACEPARENT, format_traceparent(sc));
    let state = sc.trace_state().header();
    match HeaderValue::try_from(state) {
        Ok(value) if !value.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
    if let Some(cx) = cx.filter(|cx| baggage && !cx.baggage().is_empty()) {
        BaggagePropagator::new().inject_context(cx, &mut HeaderInjector(headers));
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes its own well-formed header names; values it cannot
        // encode are dropped rather than sent half-valid.
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example() {
        let tp = parse_traceparent(VALID).unwrap();
        assert_eq!(tp.version, 0);
        assert_eq!(
            tp.trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(tp.parent_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(tp.is_sampled());
        let unsampled = parse_traceparent(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bé-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_first_four_fields() {
        let tp = parse_traceparent(&format!("cc{}-what-comes-next", &VALID[2..])).unwrap();
        assert_eq!(tp.version, 0xcc);
        assert!(parse_traceparent(&format!("cc{}", &VALID[2..])).is_some());
    }

    #[test]
    fn formats_what_it_parses() {
        let tp = parse_traceparent(VALID).unwrap();
        let sc = SpanContext::new(
            tp.trace_id,
            tp.parent_id,
            tp.flags,
            false,
            TraceState::default(),
        );
        assert_eq!(format_traceparent(&sc), VALID);
    }

    #[test]
    fn extracts_parent_state_and_baggage() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACESTATE, HeaderValue::from_static("vendor1=a"));
        headers.append(TRACESTATE, HeaderValue::from_static("vendor2=b"));
        headers.insert(BAGGAGE, HeaderValue::from_static("tenant=acme"));
        let cx = extract(&headers, true).unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "vendor1=a,vendor2=b");
        assert_eq!(
            cx.baggage().get("tenant").map(|v| v.as_str().to_owned()),
            Some("acme".into())
        );
        assert!(extract(&headers, false).is_some());
    }

    #[test]
    fn ignores_duplicate_or_malformed_parents() {
        let mut headers = HeaderMap::new();
        assert!(extract(&headers, true).is_none());
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        assert!(extract(&headers, true).is_none());
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(extract(&headers, true).is_none());
        // A bad tracestate keeps the parent and drops the state.
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(TRACESTATE, HeaderValue::from_static("=,=="));
        let cx = extract(&headers, true).unwrap();
        assert!(cx.span().span_context().is_valid());
        assert!(cx.span().span_context().trace_state().header().is_empty());
    }

    #[test]
    fn injects_and_replaces() {
        let sc = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_str("k=v").unwrap(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        let cx = Context::new().with_baggage([opentelemetry::KeyValue::new("a", "b")]);
        inject(&sc, Some(&cx), true, &mut headers);
        assert_eq!(
            headers[TRACEPARENT],
            "00-00000000000000000000000000000007-0000000000000009-01"
        );
        assert_eq!(headers[TRACESTATE], "k=v");
        assert_eq!(headers[BAGGAGE], "a=b");
        let mut headers = HeaderMap::new();
        inject(&sc, Some(&cx), false, &mut headers);
        assert!(!headers.contains_key(BAGGAGE));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(s in ".{0,80}") {
            let _ = parse_traceparent(&s);
        }

        #[test]
        fn never_panics_near_valid_values(
            pos in 0usize..60,
            byte in any::<u8>(),
            tail in "[-0-9a-f]{0,8}",
        ) {
            let mut bytes = VALID.as_bytes().to_vec();
            if pos < bytes.len() { bytes[pos] = byte; } else { bytes.push(byte); }
            if let Ok(s) = String::from_utf8(bytes) {
                let with_tail = format!("{s}{tail}");
                if let Some(tp) = parse_traceparent(&with_tail) {
                    // Whatever is accepted round-trips to the canonical form.
                    let sc = SpanContext::new(
                        tp.trace_id, tp.parent_id, tp.flags, false, TraceState::default());
                    let formatted = format_traceparent(&sc);
                    prop_assert_eq!(parse_traceparent(formatted.to_str().unwrap()).map(|t| t.trace_id), Some(tp.trace_id));
                }
            }
        }

        #[test]
        fn extraction_never_panics_on_any_header_bytes(
            tp in proptest::collection::vec(any::<u8>(), 0..80),
            ts in proptest::collection::vec(any::<u8>(), 0..200),
            bg in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut headers = HeaderMap::new();
            for (name, bytes) in [(TRACEPARENT, tp), (TRACESTATE, ts), (BAGGAGE, bg)] {
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    headers.insert(name, value);
                }
            }
            let _ = extract(&headers, true);
        }
    }
}
