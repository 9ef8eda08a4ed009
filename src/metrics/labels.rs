//! Label values: the public [`LabelValue`], [`TraceId`] and [`ErrorClass`], and the private,
//! bounded label sets the layers record under.

use std::{
    borrow::Cow,
    fmt::{self, Write as _},
    hash::{BuildHasherDefault, Hash, Hasher},
    sync::Arc,
};

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A label value: a route template, an operation name, a health check's name.
///
/// Cheap to clone: either a `&'static str` or a shared `Arc<str>`. Two values are equal when
/// their text is, however they were made. When encoded, `\`, `"` and line feeds are escaped
/// as OpenMetrics requires, so no value can break the exposition.
///
/// The set of values a classifier returns must be **bounded** (route templates, a fixed list
/// of operations): every distinct value is a new series. The layers also cap the number of
/// distinct values (see [`ServerMetricsBuilder::max_routes`](super::ServerMetricsBuilder::max_routes)).
///
/// ```
/// use tower_bulwark::metrics::LabelValue;
///
/// let a = LabelValue::from_static("/tasks/{id}");
/// let b = LabelValue::new(&String::from("/tasks/{id}"));
/// assert_eq!(a, b);
/// assert_eq!(a.as_str(), "/tasks/{id}");
/// ```
#[derive(Clone)]
pub struct LabelValue(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl LabelValue {
    /// A value from a static string, with no allocation.
    #[must_use]
    pub const fn from_static(value: &'static str) -> Self {
        Self(Repr::Static(value))
    }

    /// A value copied from `value`.
    #[must_use]
    pub fn new(value: &str) -> Self {
        Self(Repr::Shared(Arc::from(value)))
    }

    /// The value's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

/// `route` of requests the route classifier could not place (`None`).
pub(crate) const UNMATCHED: &str = "unmatched";
/// `route` or `operation` once the cap on distinct values is reached, and `operation` of
/// requests the operation classifier could not place.
pub(crate) const OTHER: &str = "other";

impl From<&'static str> for LabelValue {
    fn from(value: &'static str) -> Self {
        Self::from_static(value)
    }
}

impl From<String> for LabelValue {
    fn from(value: String) -> Self {
        Self(Repr::Shared(value.into()))
    }
}

impl From<Arc<str>> for LabelValue {
    fn from(value: Arc<str>) -> Self {
        Self(Repr::Shared(value))
    }
}

impl From<Cow<'static, str>> for LabelValue {
    fn from(value: Cow<'static, str>) -> Self {
        match value {
            Cow::Borrowed(s) => Self::from_static(s),
            Cow::Owned(s) => s.into(),
        }
    }
}

impl PartialEq for LabelValue {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // The same static string, the common case, needs no byte comparison.
        a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
    }
}

impl Eq for LabelValue {}

// Tables keyed by `LabelValue` are searched with the `&str` a classifier lends: hashing and
// equality are those of the text.
impl std::borrow::Borrow<str> for LabelValue {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for LabelValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        // prometheus-client writes label values verbatim; a `"` or a line feed in a route
        // template would otherwise corrupt the whole exposition.
        let s = self.as_str();
        let mut rest = s;
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

/// A W3C / OpenTelemetry trace ID (128 bits, never zero), attached to latency observations
/// as the OpenMetrics exemplar label `trace_id` (32 lowercase hex digits).
///
/// ```
/// use tower_bulwark::metrics::TraceId;
///
/// let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(TraceId::new(0), None); // the W3C "invalid" ID
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

impl TraceId {
    /// The ID with this numeric value, or `None` for zero (invalid in W3C Trace Context).
    #[must_use]
    pub const fn new(id: u128) -> Option<Self> {
        if id == 0 { None } else { Some(Self(id)) }
    }

    /// The ID from its 16 bytes, big-endian as on the wire (OpenTelemetry's
    /// `TraceId::to_bytes()`), or `None` if they are all zero.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        Self::new(u128::from_be_bytes(bytes))
    }

    /// The ID from exactly 32 hex digits (either case), or `None` if malformed or zero.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().and_then(Self::new)
    }

    /// The numeric value.
    #[must_use]
    pub const fn get(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl EncodeLabelValue for TraceId {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        write!(encoder, "{:032x}", self.0)
    }
}

/// The exemplar label set of the latency histograms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct TraceLabel {
    pub(crate) trace_id: TraceId,
}

/// What kind of failure an inner service's error is: decides the `status` (and, on the
/// server, the `kind`) label of a request that failed without a response.
///
/// Returned by a [`ClassifyError`](super::ClassifyError) hook. [`ErrorClass::from_error`]
/// recognises the I/O error kinds a connection attempt or a socket timeout produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request timed out (e.g. `tower::timeout::error::Elapsed`): label `timeout`.
    Timeout,
    /// No connection could be made or kept to the peer: label `connect_error`.
    Connect,
    /// Anything else: label `error`.
    Other,
}

impl ErrorClass {
    /// Classifies an error by the [`std::io::ErrorKind`]s in its
    /// [`source`](std::error::Error::source) chain: `TimedOut` is a [`Timeout`](Self::Timeout);
    /// refused, reset, aborted or unreachable connections are [`Connect`](Self::Connect);
    /// anything else is [`Other`](Self::Other).
    ///
    /// Timeout errors that are not I/O errors (tower's `Elapsed`) need a downcast in your own
    /// classifier; see [`ClassifyError`](super::ClassifyError).
    #[must_use]
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        use std::io::ErrorKind as K;
        let mut next = Some(error);
        while let Some(err) = next {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    K::TimedOut => return Self::Timeout,
                    K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable => return Self::Connect,
                    _ => {}
                }
            }
            next = err.source();
        }
        Self::Other
    }
}

/// `method`: the nine standard methods, and `other` for the rest (extension methods are
/// unbounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl MethodLabel {
    pub(crate) fn of(method: &Method) -> Self {
        match method.as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "CONNECT" => Self::Connect,
            "OPTIONS" => Self::Options,
            "TRACE" => Self::Trace,
            "PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "other",
        }
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `status`: the numeric code of a completed response (100..=999, as `http::StatusCode`
/// guarantees) or one of four outcomes without one. Codes below 100 encode the outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StatusLabel(u16);

impl StatusLabel {
    pub(crate) const CANCELLED: Self = Self(1);
    pub(crate) const ERROR: Self = Self(2);
    pub(crate) const TIMEOUT: Self = Self(3);
    pub(crate) const CONNECT_ERROR: Self = Self(4);

    pub(crate) fn code(status: StatusCode) -> Self {
        Self(status.as_u16())
    }

    pub(crate) fn of_error(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Timeout => Self::TIMEOUT,
            ErrorClass::Connect => Self::CONNECT_ERROR,
            ErrorClass::Other => Self::ERROR,
        }
    }
}

impl EncodeLabelValue for StatusLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        match *self {
            Self::CANCELLED => encoder.write_str("cancelled"),
            Self::ERROR => encoder.write_str("error"),
            Self::TIMEOUT => encoder.write_str("timeout"),
            Self::CONNECT_ERROR => encoder.write_str("connect_error"),
            Self(code) => write!(encoder, "{code}"),
        }
    }
}

/// `kind` of `http_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ErrorKind {
    /// A 5xx response other than 504.
    ServerError,
    /// A 408 or 504 response, or an error classified [`ErrorClass::Timeout`].
    Timeout,
    /// An error classified [`ErrorClass::Connect`].
    ConnectError,
    /// Any other error from the inner service.
    Error,
    /// The response body failed after the head was sent.
    BodyError,
}

impl ErrorKind {
    pub(crate) const COUNT: usize = 5;

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn of_status(status: StatusCode) -> Option<Self> {
        match status.as_u16() {
            408 | 504 => Some(Self::Timeout),
            500..=599 => Some(Self::ServerError),
            _ => None,
        }
    }

    pub(crate) fn of_error(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Timeout => Self::Timeout,
            ErrorClass::Connect => Self::ConnectError,
            ErrorClass::Other => Self::Error,
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(match self {
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::Error => "error",
            Self::BodyError => "body_error",
        })
    }
}

/// `{method,route,status}` of `http_requests_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: MethodLabel,
    pub(crate) route: LabelValue,
    pub(crate) status: StatusLabel,
}

/// `{method,route}` of `http_request_duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) method: MethodLabel,
    pub(crate) route: LabelValue,
}

/// `{method,route,kind}` of `http_errors_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) method: MethodLabel,
    pub(crate) route: LabelValue,
    pub(crate) kind: ErrorKind,
}

/// `{operation,status}` of `backend_api_calls_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallLabels {
    pub(crate) operation: LabelValue,
    pub(crate) status: StatusLabel,
}

/// `{operation}` of `backend_api_duration_seconds` and `backend_api_retries_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub(crate) operation: LabelValue,
}

/// `{check}` of `health_check_status`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    pub(crate) check: LabelValue,
}

/// The default latency buckets, in seconds: 1 ms to 10 s, the Prometheus client defaults
/// plus 1 ms and 2.5 ms for fast APIs.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Finite, sorted, deduplicated bucket bounds; the defaults if none are left. Unsorted bounds
/// would make prometheus-client count observations in the wrong bucket.
pub(crate) fn sanitize_buckets(buckets: impl IntoIterator<Item = f64>) -> Arc<[f64]> {
    let mut b: Vec<f64> = buckets.into_iter().filter(|v| v.is_finite()).collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    if b.is_empty() {
        b.extend_from_slice(DEFAULT_LATENCY_BUCKETS);
    }
    b.into()
}

/// FxHash (rustc's hasher): our series tables are keyed by short, bounded, capped label
/// values, so SipHash's flooding resistance buys nothing and costs ~15 ns a lookup.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxHasher(u64);

pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Shifted in rather than copied: a variable-length copy is a `memcpy` call.
            let word = rest
                .iter()
                .enumerate()
                .fold(0, |w, (i, &b)| w | u64::from(b) << (8 * i));
            self.add(word);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
