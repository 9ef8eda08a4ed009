//! `parse_traceparent` on arbitrary text: never panics; an accepted value has non-zero IDs,
//! and its four fields, formatted again (`vv-<32 hex>-<16 hex>-ff`), parse to the same value.
//! A version-`00` value is accepted only as exactly that text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bulwark::trace::{
    TraceParent,
    otel::opentelemetry::trace::{SpanId, TraceId},
    parse_traceparent,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn format(tp: &TraceParent) -> String {
    format!(
        "{:02x}-{}-{}-{:02x}",
        tp.version,
        hex(&tp.trace_id.to_bytes()),
        hex(&tp.parent_id.to_bytes()),
        tp.flags.to_u8()
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(tp) = parse_traceparent(text) else {
        return;
    };
    assert_ne!(tp.trace_id, TraceId::INVALID, "{text:?}");
    assert_ne!(tp.parent_id, SpanId::INVALID, "{text:?}");
    assert_ne!(tp.version, 0xff, "{text:?}");

    let formatted = format(&tp);
    assert_eq!(formatted.len(), 55, "{formatted:?}");
    assert_eq!(
        parse_traceparent(&formatted),
        Some(tp),
        "{text:?} -> {formatted:?}"
    );
    // Strict: lower-case hex, so the accepted fields are the input's first 55 bytes verbatim;
    // version 00 has nothing after them, a later version nothing or `-` and more.
    assert_eq!(&text[..55], formatted, "{text:?}");
    if tp.version == 0 {
        assert_eq!(text.len(), 55, "{text:?}");
    } else {
        assert!(text.len() == 55 || text.as_bytes()[55] == b'-', "{text:?}");
    }
});
