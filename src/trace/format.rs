//! Log line formats that put `trace_id`, `span_id` and `request_id` on every line written
//! inside a request.

use std::fmt::{self, Write as _};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, Writer},
    },
    registry::LookupSpan,
};

use super::correlation;

/// One JSON object per line, with the correlation fields at the top level:
///
/// ```json
/// {"timestamp":"2026-11-27T10:00:00.123456Z","level":"INFO","trace_id":"4bf9…","span_id":"00f0…","request_id":"abc-123","target":"taskman","span":"http.server.request","message":"task created","task_id":42}
/// ```
///
/// - `trace_id`, `span_id` (lower-case hex) and `request_id` appear on every line written
///   inside a span that has them, sampled or not (see [`CorrelationLayer`]), and are left
///   out elsewhere.
/// - The event's own fields follow `message` at the top level; one whose name collides with
///   the fields above is written as `fields.<name>`.
/// - `span` is the name of the innermost span. Span fields are not repeated on each line:
///   the trace has them, and formatting them per line is what makes tracing-subscriber's JSON
///   output slow. Pair it with [`SkipFields`] so spans are not formatted at all.
///
/// [`CorrelationLayer`]: super::CorrelationLayer
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use tower_bulwark::trace::{CorrelationLayer, JsonFormat, SkipFields};
///
/// let subscriber = tracing_subscriber::registry().with(CorrelationLayer::new()).with(
///     tracing_subscriber::fmt::layer()
///         .event_format(JsonFormat::new())
///         .fmt_fields(SkipFields)
///         .with_writer(std::io::stderr),
/// );
/// # drop(subscriber);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormat {
    _p: (),
}

impl JsonFormat {
    /// The format described above.
    #[must_use]
    pub const fn new() -> Self {
        Self { _p: () }
    }
}

/// Field names the format writes itself; event fields with these names are prefixed.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "trace_id",
    "span_id",
    "request_id",
    "target",
    "span",
];

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;

        let cx = correlation::for_event(ctx.event_scope());
        if let Some(ids) = cx.ids {
            writer.write_str(",\"trace_id\":\"")?;
            write_hex(&mut writer, &ids.trace_id.to_bytes())?;
            writer.write_str("\",\"span_id\":\"")?;
            write_hex(&mut writer, &ids.span_id.to_bytes())?;
            writer.write_char('"')?;
        }
        if let Some(request_id) = cx.request_id {
            writer.write_str(",\"request_id\":")?;
            write_json_str(&mut writer, &request_id)?;
        }
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        if let Some(name) = cx.span_name {
            writer.write_str(",\"span\":")?;
            write_json_str(&mut writer, name)?;
        }
        let mut visitor = JsonVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str("}\n")
    }
}

struct JsonVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonVisitor<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        // `r#type` style raw identifiers reach us with their prefix.
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.writer.write_str(",\"")?;
        if RESERVED.contains(&name) {
            self.writer.write_str("fields.")?;
        }
        JsonEscaper(&mut *self.writer).write_str(name)?;
        self.writer.write_str("\":")
    }

    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.writer));
        }
    }
}

impl Visit for JsonVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, |w| write_json_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, |w| {
            w.write_char('"')?;
            write!(JsonEscaper(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, |w| {
            w.write_char('"')?;
            write!(JsonEscaper(&mut *w), "{value}")?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities.
        if value.is_finite() {
            self.write(field, |w| write!(w, "{value}"));
        } else {
            self.write(field, |w| write!(w, "\"{value}\""));
        }
    }
}

/// Writes `bytes` as lower-case hex, in one write.
fn write_hex(w: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let len = bytes.len().min(16) * 2;
    for (i, b) in bytes.iter().take(16).enumerate() {
        buf[2 * i] = HEX[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    w.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// Writes `time` as RFC 3339 UTC with microseconds (`2026-11-27T13:02:03.123456Z`), in one
/// write: several times faster than formatting each part with `write!`.
fn write_timestamp(w: &mut impl fmt::Write, time: std::time::SystemTime) -> fmt::Result {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).map_err(|_| fmt::Error)?;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return Err(fmt::Error);
    }
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    // All in range, checked or by construction.
    put(0, 4, year as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, u64::from(since_epoch.subsec_micros()));
    w.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// Writes `s` as a JSON string, quotes included.
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscaper(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string: quotes, backslashes and control
/// characters, so no field value can break the line or the object.
struct JsonEscaper<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscaper<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// A [`FormatFields`] that formats nothing: for [`JsonFormat`], which never prints span
/// fields, it saves formatting every span's fields into a string that nobody reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct SkipFields;

impl<'w> FormatFields<'w> for SkipFields {
    fn format_fields<R: RecordFields>(&self, _: Writer<'w>, _: R) -> fmt::Result {
        Ok(())
    }
}

/// A human-readable format: tracing-subscriber's own (the single-line default, or
/// [`pretty`](Self::pretty)) with ` trace_id=… span_id=… request_id=…` appended to each line
/// written inside a request.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use tower_bulwark::trace::{CorrelationLayer, TextFormat};
///
/// let subscriber = tracing_subscriber::registry()
///     .with(CorrelationLayer::new())
///     .with(tracing_subscriber::fmt::layer().event_format(TextFormat::new()));
/// # drop(subscriber);
/// ```
#[derive(Clone, Debug)]
pub struct TextFormat<F = format::Format> {
    inner: F,
}

impl TextFormat {
    /// tracing-subscriber's default single-line format, without colours.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: format::Format::default().with_ansi(false),
        }
    }

    /// tracing-subscriber's multi-line `Pretty` format, without colours.
    #[must_use]
    pub fn pretty() -> TextFormat<format::Format<format::Pretty>> {
        TextFormat {
            inner: format::Format::default().pretty().with_ansi(false),
        }
    }
}

impl Default for TextFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl<F> TextFormat<F> {
    /// Wraps any event format.
    #[must_use]
    pub fn wrap(inner: F) -> Self {
        Self { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for TextFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writer.write_str(body)?;
        let cx = correlation::for_event(ctx.event_scope());
        if let Some(ids) = cx.ids {
            write!(writer, " trace_id={} span_id={}", ids.trace_id, ids.span_id)?;
        }
        if let Some(request_id) = cx.request_id {
            write!(writer, " request_id={request_id}")?;
        }
        writer.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_json_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let show = |secs: u64, micros: u32| {
            let mut out = String::new();
            let t = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_micros(u64::from(micros));
            write_timestamp(&mut out, t).unwrap();
            out
        };
        assert_eq!(show(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(show(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(show(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
        assert_eq!(show(1_795_784_523, 123_456), "2026-11-27T13:02:03.123456Z");
    }

    #[test]
    fn hex_is_lower_case() {
        let mut out = String::new();
        write_hex(&mut out, &[0x00, 0xab, 0x7f]).unwrap();
        assert_eq!(out, "00ab7f");
    }

    #[test]
    fn escapes_everything_that_could_break_a_line() {
        assert_eq!(escaped("plain"), "\"plain\"");
        assert_eq!(escaped("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(escaped("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(escaped("\u{0}\u{1b}\u{7f}é"), "\"\\u0000\\u001b\\u007fé\"");
        let parsed: String = serde_json::from_str(&escaped("x\u{1}\"\n{}")).unwrap();
        assert_eq!(parsed, "x\u{1}\"\n{}");
    }
}
