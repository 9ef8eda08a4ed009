//! The spans, after the OpenTelemetry semantic conventions for HTTP
//! (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/>).

use std::{fmt, sync::Arc};

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri, Version};
use opentelemetry::{
    Array, Context, Key, KeyValue, StringValue, Value,
    trace::{SpanContext, Status, TraceContextExt as _},
};
use tracing::{Level, Span, field::Empty};

#[cfg(feature = "otlp")]
use crate::trace::telemetry::AttributeBatch;

/// Headers never recorded, even when allow-listed: credentials and idempotency keys.
pub(crate) const NEVER_RECORDED: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "idempotency-key",
    "x-api-key",
];

/// Longest header value recorded; longer ones are cut at a character boundary.
const MAX_HEADER_VALUE_LEN: usize = 256;

/// Longest `server.address` recorded (a DNS name is at most 253 characters).
const MAX_HOST_LEN: usize = 255;

/// What the span is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Client,
}

/// An allow-listed header and the attribute key it is recorded under.
#[derive(Clone, Debug)]
pub(crate) struct RecordedHeader {
    name: HeaderName,
    key: Key,
}

/// Settings shared by a layer and all its services.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) level: Level,
    pub(crate) request_headers: Arc<[RecordedHeader]>,
    pub(crate) response_headers: Arc<[RecordedHeader]>,
    pub(crate) baggage: bool,
    pub(crate) response_event: Option<Level>,
    /// Client only: keep query values in `url.full`.
    pub(crate) full_query: bool,
    /// Client only: write `traceparent` / `tracestate` / `baggage` on the request.
    pub(crate) inject: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            level: Level::INFO,
            request_headers: Arc::new([]),
            response_headers: Arc::new([]),
            baggage: true,
            response_event: None,
            full_query: false,
            inject: true,
        }
    }
}

/// The allow-list, minus [`NEVER_RECORDED`] and duplicates.
pub(crate) fn recorded_headers(
    names: impl IntoIterator<Item = HeaderName>,
    prefix: &str,
) -> Arc<[RecordedHeader]> {
    let mut out: Vec<RecordedHeader> = Vec::new();
    for name in names {
        if NEVER_RECORDED.contains(&name.as_str()) || out.iter().any(|h| h.name == name) {
            continue;
        }
        let key = Key::new(format!("{prefix}.{}", name.as_str()));
        out.push(RecordedHeader { name, key });
    }
    out.into()
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_HEADER_VALUE_LEN {
        return s.to_owned();
    }
    let mut end = MAX_HEADER_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// `http.request.method`, and `http.request.method_original` when the method is not one
/// of the known ones (the conventions' `_OTHER`, which keeps span names bounded).
fn method(m: &Method) -> (&'static str, Option<&str>) {
    let known = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return ("_OTHER", Some(m.as_str())),
    };
    (known, None)
}

/// `{method} {route}`, `{method}`, or `HTTP` for an unknown method.
struct SpanName<'a>(&'static str, Option<&'a str>);

impl SpanName<'_> {
    /// The name as a `String`, built without the formatting machinery.
    fn to_name(&self) -> String {
        match self {
            SpanName("_OTHER", _) => "HTTP".to_owned(),
            SpanName(method, Some(route)) => {
                let mut name = String::with_capacity(method.len() + 1 + route.len());
                name.push_str(method);
                name.push(' ');
                name.push_str(route);
                name
            }
            SpanName(method, None) => (*method).to_owned(),
        }
    }
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpanName("_OTHER", _) => f.write_str("HTTP"),
            SpanName(method, Some(route)) => write!(f, "{method} {route}"),
            SpanName(method, None) => f.write_str(method),
        }
    }
}

fn protocol_version(v: Version) -> Option<&'static str> {
    Some(match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// Splits `host[:port]` / `[v6]:port`; `None` for anything that is not a plausible host.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (authority, None),
        }
    };
    let plausible = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b));
    plausible.then_some((host, port))
}

/// Without the `request-id` feature there is no request ID to read (a `request_id` field
/// recorded by other code still reaches the logs through `CorrelationLayer`).
#[cfg(not(feature = "request-id"))]
fn request_id<B>(_: &Request<B>, _: Kind) -> Option<&'static str> {
    None
}

/// The request's ID, if a request-ID layer put one in its extensions (or, on a client, if
/// the request is made while serving one).
#[cfg(feature = "request-id")]
fn request_id<B>(req: &Request<B>, kind: Kind) -> Option<crate::request_id::RequestId> {
    use crate::request_id::RequestId;
    req.extensions()
        .get::<RequestId>()
        .cloned()
        .or_else(|| (kind == Kind::Client).then(RequestId::current).flatten())
}

/// Makes a span at a level chosen at run time (`tracing`'s macros want a constant).
macro_rules! span_at {
    ($level:expr, $name:literal, $($fields:tt)*) => {
        match $level {
            Level::ERROR => tracing::error_span!(target: "tower_bulwark::trace", $name, $($fields)*),
            Level::WARN => tracing::warn_span!(target: "tower_bulwark::trace", $name, $($fields)*),
            Level::INFO => tracing::info_span!(target: "tower_bulwark::trace", $name, $($fields)*),
            Level::DEBUG => tracing::debug_span!(target: "tower_bulwark::trace", $name, $($fields)*),
            Level::TRACE => tracing::trace_span!(target: "tower_bulwark::trace", $name, $($fields)*),
        }
    };
}

/// Writes an event at a level chosen at run time.
macro_rules! event_at {
    ($level:expr, $($fields:tt)*) => {
        match $level {
            Level::ERROR => tracing::event!(target: "tower_bulwark::trace", Level::ERROR, $($fields)*),
            Level::WARN => tracing::event!(target: "tower_bulwark::trace", Level::WARN, $($fields)*),
            Level::INFO => tracing::event!(target: "tower_bulwark::trace", Level::INFO, $($fields)*),
            Level::DEBUG => tracing::event!(target: "tower_bulwark::trace", Level::DEBUG, $($fields)*),
            Level::TRACE => tracing::event!(target: "tower_bulwark::trace", Level::TRACE, $($fields)*),
        }
    };
}

/// The server span of `req`, with only what must be there before the sampling decision (its
/// kind) and what log lines need (the request ID). [`Details`] adds the rest.
pub(crate) fn server_span<B>(cfg: &Config, req: &Request<B>) -> Span {
    let request_id = request_id(req, Kind::Server);
    let request_id: Option<&str> = request_id.as_ref().map(AsRef::as_ref);
    span_at!(
        cfg.level,
        "http.server.request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = Empty,
        http.request.method_original = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = Empty,
        url.scheme = Empty,
        server.address = Empty,
        server.port = Empty,
        network.protocol.version = Empty,
        error.type = Empty,
        request_id = request_id,
    )
}

/// The client span of `req`; see [`server_span`].
pub(crate) fn client_span<B>(cfg: &Config, req: &Request<B>) -> Span {
    let request_id = request_id(req, Kind::Client);
    let request_id: Option<&str> = request_id.as_ref().map(AsRef::as_ref);
    span_at!(
        cfg.level,
        "http.client.request",
        otel.name = Empty,
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = Empty,
        http.request.method_original = Empty,
        url.full = Empty,
        url.template = Empty,
        server.address = Empty,
        server.port = Empty,
        network.protocol.version = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        request_id = request_id,
    )
}

/// Where a span's details (name, attributes, status) go.
///
/// Only sampled spans, and spans without OpenTelemetry (whose fields text logs show), get
/// them: the OpenTelemetry layer copies every `tracing` field into the span builder, with an
/// allocation per string, before the sampler has decided, and for an unsampled span that
/// work is thrown away. So the spans are made with empty fields, started at once (the
/// sampler decides), and filled in only if someone will see the result. A consequence: a
/// sampler sees the span kind and the name `http.server.request` / `http.client.request`,
/// not the attributes (a ratio or parent-based sampler needs neither).
#[derive(Clone, Debug)]
pub(crate) enum Details {
    /// Disabled or unsampled: nothing more is recorded.
    Skip,
    /// Sampled: straight onto the OpenTelemetry span, without going through `tracing`.
    Otel(Context),
    /// Sampled, and written as it goes (the built-in OTLP exporter's spans): each write is
    /// encoded here and added to the span in the `tracing` span's extensions at once.
    #[cfg(feature = "otlp")]
    Encoded,
    /// No OpenTelemetry: onto the `tracing` fields.
    Fields,
}

impl Details {
    /// Decides from the span and what [`correlation::span_context`] found for it (which
    /// starts its OpenTelemetry span).
    ///
    /// [`correlation::span_context`]: super::correlation::span_context
    pub(crate) fn new(span: &Span, found: Option<&(SpanContext, Option<Context>)>) -> Self {
        if span.is_disabled() {
            return Self::Skip;
        }
        match found {
            #[cfg(feature = "otlp")]
            Some((sc, Some(cx))) if sc.is_sampled() && !cx.span().is_recording() => Self::Encoded,
            Some((sc, Some(cx))) if sc.is_sampled() => Self::Otel(cx.clone()),
            Some((_, Some(_))) => Self::Skip,
            _ => Self::Fields,
        }
    }

    fn is_skip(&self) -> bool {
        matches!(self, Self::Skip)
    }

    /// Collects attributes for one write.
    fn sink<'a>(&'a self, span: &'a Span) -> Sink<'a> {
        Sink {
            details: self,
            span,
            // A request's attributes (at most 8) in one allocation; none without OpenTelemetry.
            attributes: match self {
                Self::Otel(_) => Vec::with_capacity(8),
                _ => Vec::new(),
            },
            #[cfg(feature = "otlp")]
            batch: match self {
                Self::Encoded => AttributeBatch::with_capacity(256),
                _ => AttributeBatch::default(),
            },
        }
    }

    /// The request's details on a server span.
    pub(crate) fn record_server<B>(
        &self,
        span: &Span,
        cfg: &Config,
        req: &Request<B>,
        route: Option<&str>,
    ) {
        if self.is_skip() {
            return;
        }
        let (method, method_original) = method(req.method());
        let mut sink = self.sink(span);
        sink.name(SpanName(method, route));
        sink.static_str("http.request.method", method);
        sink.opt_str("http.request.method_original", method_original);
        sink.opt_str("http.route", route);
        sink.str("url.path", req.uri().path());
        sink.opt_str("url.scheme", req.uri().scheme_str());
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok());
        if let Some((address, port)) = authority.and_then(split_host_port) {
            sink.str("server.address", address);
            if let Some(port) = port {
                sink.int("server.port", i64::from(port));
            }
        }
        if let Some(version) = protocol_version(req.version()) {
            sink.static_str("network.protocol.version", version);
        }
        sink.headers(req.headers(), &cfg.request_headers);
        sink.finish();
    }

    /// The request's details on a client span.
    pub(crate) fn record_client<B>(
        &self,
        span: &Span,
        cfg: &Config,
        req: &Request<B>,
        template: Option<&str>,
    ) {
        if self.is_skip() {
            return;
        }
        let (method, method_original) = method(req.method());
        let uri = req.uri();
        let mut sink = self.sink(span);
        sink.name(SpanName(method, template));
        sink.static_str("http.request.method", method);
        sink.opt_str("http.request.method_original", method_original);
        sink.display(
            "url.full",
            RedactedUrl {
                uri,
                full_query: cfg.full_query,
            },
        );
        sink.opt_str("url.template", template);
        sink.opt_str("server.address", uri.host());
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        });
        if let Some(port) = port {
            sink.int("server.port", i64::from(port));
        }
        if let Some(version) = protocol_version(req.version()) {
            sink.static_str("network.protocol.version", version);
        }
        sink.headers(req.headers(), &cfg.request_headers);
        sink.finish();
    }

    /// The response: status code, and for a failure (5xx on a server, 4xx or 5xx on a
    /// client, as the conventions say) `error.type` and an error status. Also writes the
    /// response event if configured, whatever the sampling.
    pub(crate) fn record_response<B>(
        &self,
        span: &Span,
        kind: Kind,
        cfg: &Config,
        res: &Response<B>,
    ) {
        let status = res.status();
        if !self.is_skip() {
            let mut sink = self.sink(span);
            sink.int("http.response.status_code", i64::from(status.as_u16()));
            if is_failure(kind, status) {
                sink.str("error.type", status.as_str());
                sink.error_status(None);
            }
            sink.headers(res.headers(), &cfg.response_headers);
            sink.finish();
        }
        if let Some(level) = cfg.response_event {
            let _entered = span.enter();
            event_at!(
                level,
                http.response.status_code = status.as_u16(),
                "response"
            );
        }
    }

    /// A failure without a response: the inner service's error, or the body's.
    /// `error.type` is the error's type name, as the conventions say for errors without a
    /// status code; the message becomes the status description.
    pub(crate) fn record_error<E: fmt::Display>(&self, span: &Span, cfg: &Config, error: &E) {
        if !self.is_skip() {
            let mut sink = self.sink(span);
            sink.static_str("error.type", std::any::type_name::<E>());
            sink.error_status(Some(error));
            sink.finish();
        }
        if let Some(level) = cfg.response_event {
            let _entered = span.enter();
            event_at!(level, error = %error, "failed");
        }
    }
}

/// One batch of writes to a span, for any destination.
struct Sink<'a> {
    details: &'a Details,
    span: &'a Span,
    attributes: Vec<KeyValue>,
    #[cfg(feature = "otlp")]
    batch: AttributeBatch,
}

impl Sink<'_> {
    fn name(&mut self, name: SpanName<'_>) {
        match self.details {
            Details::Otel(cx) => cx.span().update_name(name.to_name()),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.name(name.to_name()),
            Details::Fields => {
                self.span.record("otel.name", tracing::field::display(name));
            }
            Details::Skip => {}
        }
    }

    fn static_str(&mut self, key: &'static str, value: &'static str) {
        match self.details {
            Details::Otel(_) => self.attributes.push(KeyValue::new(key, value)),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.str(key, value),
            Details::Fields => {
                self.span.record(key, value);
            }
            Details::Skip => {}
        }
    }

    fn str(&mut self, key: &'static str, value: &str) {
        match self.details {
            Details::Otel(_) => self.attributes.push(KeyValue::new(key, value.to_owned())),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.str(key, value),
            Details::Fields => {
                self.span.record(key, value);
            }
            Details::Skip => {}
        }
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    fn display(&mut self, key: &'static str, value: impl fmt::Display) {
        match self.details {
            Details::Otel(_) => self.attributes.push(KeyValue::new(key, value.to_string())),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.str(key, &value.to_string()),
            Details::Fields => {
                self.span.record(key, tracing::field::display(value));
            }
            Details::Skip => {}
        }
    }

    fn int(&mut self, key: &'static str, value: i64) {
        match self.details {
            Details::Otel(_) => self.attributes.push(KeyValue::new(key, value)),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.i64(key, value),
            Details::Fields => {
                self.span.record(key, value);
            }
            Details::Skip => {}
        }
    }

    /// The allow-listed headers, as `string[]` attributes (OpenTelemetry only: `tracing`
    /// field names are static).
    fn headers(&mut self, headers: &HeaderMap, allowed: &[RecordedHeader]) {
        if matches!(self.details, Details::Fields | Details::Skip) {
            return;
        }
        for header in allowed {
            let values: Vec<StringValue> = headers
                .get_all(&header.name)
                .iter()
                .map(|v| StringValue::from(truncate(&String::from_utf8_lossy(v.as_bytes()))))
                .collect();
            if values.is_empty() {
                continue;
            }
            let attribute = KeyValue::new(header.key.clone(), Value::Array(Array::String(values)));
            match self.details {
                #[cfg(feature = "otlp")]
                Details::Encoded => self.batch.attribute(&attribute),
                _ => self.attributes.push(attribute),
            }
        }
    }

    fn error_status(&mut self, description: Option<&dyn fmt::Display>) {
        let status = || {
            Status::error(
                description
                    .map(|d| truncate(&d.to_string()))
                    .unwrap_or_default(),
            )
        };
        match self.details {
            Details::Otel(cx) => cx.span().set_status(status()),
            #[cfg(feature = "otlp")]
            Details::Encoded => self.batch.status(status()),
            Details::Fields => {
                self.span.record("otel.status_code", "error");
                if let Some(description) = description {
                    self.span.record(
                        "otel.status_description",
                        tracing::field::display(description),
                    );
                }
            }
            Details::Skip => {}
        }
    }

    fn finish(self) {
        match self.details {
            Details::Otel(cx) if !self.attributes.is_empty() => {
                cx.span().set_attributes(self.attributes);
            }
            #[cfg(feature = "otlp")]
            Details::Encoded => crate::trace::telemetry::append_encoded(self.span, self.batch),
            _ => {}
        }
    }
}

fn is_failure(kind: Kind, status: StatusCode) -> bool {
    match kind {
        Kind::Server => status.is_server_error(),
        Kind::Client => status.is_client_error() || status.is_server_error(),
    }
}

/// `url.full` with credentials always, and query values by default, replaced by
/// `REDACTED`, as the conventions recommend.
struct RedactedUrl<'a> {
    uri: &'a Uri,
    full_query: bool,
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.uri;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            let authority = authority.as_str();
            match authority.rsplit_once('@') {
                Some((_, host)) => write!(f, "REDACTED:REDACTED@{host}")?,
                None => f.write_str(authority)?,
            }
        }
        f.write_str(uri.path())?;
        if let Some(query) = uri.query() {
            f.write_str("?")?;
            if self.full_query {
                f.write_str(query)?;
            } else {
                for (i, pair) in query.split('&').enumerate() {
                    if i > 0 {
                        f.write_str("&")?;
                    }
                    match pair.split_once('=') {
                        Some((key, _)) => write!(f, "{key}=REDACTED")?,
                        None => f.write_str(pair)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_follow_the_conventions() {
        assert_eq!(
            SpanName("GET", Some("/tasks/{id}")).to_string(),
            "GET /tasks/{id}"
        );
        assert_eq!(SpanName("POST", None).to_string(), "POST");
        assert_eq!(SpanName("_OTHER", Some("/x")).to_string(), "HTTP");
        for name in [
            SpanName("GET", Some("/tasks/{id}")),
            SpanName("POST", None),
            SpanName("_OTHER", Some("/x")),
        ] {
            assert_eq!(name.to_name(), name.to_string());
        }
        assert_eq!(
            method(&Method::from_bytes(b"PURGE").unwrap()),
            ("_OTHER", Some("PURGE"))
        );
    }

    #[test]
    fn urls_are_redacted() {
        let show = |s: &str, full_query| {
            RedactedUrl {
                uri: &s.parse().unwrap(),
                full_query,
            }
            .to_string()
        };
        assert_eq!(
            show(
                "http://u:p@api.example:8080/tasks?token=s3cret&flag&a=b",
                false
            ),
            "http://REDACTED:REDACTED@api.example:8080/tasks?token=REDACTED&flag&a=REDACTED"
        );
        assert_eq!(show("https://h/p?a=b", true), "https://h/p?a=b");
        assert_eq!(show("/relative?q=1", false), "/relative?q=REDACTED");
    }

    #[test]
    fn hosts_are_split_and_checked() {
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(
            split_host_port("example.com:8080"),
            Some(("example.com", Some(8080)))
        );
        assert_eq!(split_host_port("[::1]:3000"), Some(("::1", Some(3000))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("h:99999"), None);
        assert_eq!(split_host_port("bad host"), None);
        assert_eq!(split_host_port(""), None);
        assert_eq!(split_host_port("[::1"), None);
    }

    #[test]
    fn credentials_are_never_recorded() {
        let names = [
            HeaderName::from_static("authorization"),
            HeaderName::from_static("cookie"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("user-agent"),
            HeaderName::from_static("user-agent"),
        ];
        let recorded = recorded_headers(names, "http.request.header");
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].key.as_str(), "http.request.header.user-agent");
    }

    #[test]
    fn long_header_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_HEADER_VALUE_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
