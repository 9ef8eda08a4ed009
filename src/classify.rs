//! One definition of "did this call fail?", shared by the circuit breaker, the fallback cache
//! and the metrics layers, so that they always agree.
//!
//! A classifier ([`Classify`]) looks at the result of a call, `Ok(&response)` or
//! `Err(&error)`, and returns an [`Outcome`]:
//!
//! - [`Outcome::Success`]: the backend is healthy (this includes most 4xx: a bad request says
//!   nothing about the backend);
//! - [`Outcome::Failure`]: the backend is unhealthy; a circuit breaker counts it against the
//!   backend;
//! - [`Outcome::Ignore`]: neither; the call is left out of every rate (a circuit breaker's
//!   half-open probe that ends this way gives its permit back).
//!
//! [`HttpClassifier`] is the default for HTTP clients and servers. Any
//! `Fn(Result<&Res, &E>) -> Outcome` closure is a classifier too. A classifier may also read a
//! server's [`Retry-After`](retry_after) hint from a failure, which a circuit breaker honours
//! by staying open at least that long.
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use tower_bulwark::classify::{Classify, HttpClassifier, Outcome};
//!
//! let classifier = HttpClassifier::new();
//! let ok = Response::new(());
//! let unavailable = Response::builder()
//!     .status(StatusCode::SERVICE_UNAVAILABLE)
//!     .header("retry-after", "120")
//!     .body(())
//!     .unwrap();
//! let not_found = Response::builder().status(404).body(()).unwrap();
//! let transport: Result<&Response<()>, &std::io::Error> =
//!     Err(&std::io::Error::other("connection reset"));
//!
//! assert_eq!(classifier.classify(Ok::<_, &std::io::Error>(&ok)), Outcome::Success);
//! assert_eq!(classifier.classify(Ok::<_, &std::io::Error>(&not_found)), Outcome::Success);
//! assert_eq!(classifier.classify(Ok::<_, &std::io::Error>(&unavailable)), Outcome::Failure);
//! assert_eq!(classifier.classify(transport), Outcome::Failure);
//! assert_eq!(
//!     classifier.retry_after(Ok::<_, &std::io::Error>(&unavailable)),
//!     Some(std::time::Duration::from_secs(120)),
//! );
//!
//! // A closure: only 5xx count, everything else (429 included) is a success.
//! let only_5xx = |res: Result<&Response<()>, &std::io::Error>| match res {
//!     Ok(res) if res.status().is_server_error() => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(only_5xx.classify(Ok(&not_found)), Outcome::Success);
//! ```

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue, Response, StatusCode, header::RETRY_AFTER};

/// What a call says about the health of the backend. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The backend handled the call: counts as a success.
    Success,
    /// The backend failed: counts as a failure.
    Failure,
    /// Says nothing about the backend: counted neither way.
    Ignore,
}

impl Outcome {
    /// `"success"`, `"failure"` or `"ignore"`, e.g. for a metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Ignore => "ignore",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// `Res` is the response type and `E` the error type of the service whose calls are
/// classified. Implemented by [`HttpClassifier`] and by every
/// `Fn(Result<&Res, &E>) -> Outcome` closure (annotate the closure's argument type, as in the
/// [module example](self)).
///
/// A classifier is shared by every clone of the layer that uses it and called once per
/// completed call, from whatever thread completes it: keep it cheap and free of side effects.
pub trait Classify<Res, E> {
    /// The outcome of one call.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// How long the backend asked callers to stay away, if it did (e.g. `Retry-After` on a
    /// 429 or 503). Only asked for calls classified [`Outcome::Failure`]. `None` by default.
    fn retry_after(&self, result: Result<&Res, &E>) -> Option<Duration> {
        let _ = result;
        None
    }

    /// Whether the call may have reached the backend, and so may have changed something there.
    /// `true` unless the classifier knows better: an error that proves nothing was sent (a
    /// circuit breaker's rejection, a refused connection) can answer `false`. The fallback
    /// cache asks it for failed writes: a write that never left the process has nothing to
    /// invalidate, and the stored reads stay available while the backend is down.
    fn may_have_reached_backend(&self, result: Result<&Res, &E>) -> bool {
        let _ = result;
        true
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

/// The default classifier for HTTP: the backend is unhealthy when it answers 5xx or
/// `429 Too Many Requests`, or when the call fails without a response.
///
/// | result | outcome |
/// |---|---|
/// | `Ok`, status 5xx | [`Failure`](Outcome::Failure) |
/// | `Ok`, status 429 | [`Failure`](Outcome::Failure) |
/// | `Ok`, any other status (1xx–4xx) | [`Success`](Outcome::Success) |
/// | `Err(_)`: transport error, timeout, … | [`Failure`](Outcome::Failure) |
///
/// Every `Err` is a failure: a connection refused or reset, a TLS error and a timeout all say
/// the backend cannot serve. That includes `tower::timeout`'s `Elapsed`: put the timeout
/// layer *inside* the breaker. [`is_timeout`] tells a timeout apart if a metric or fallback
/// needs to.
///
/// On a 429 or 503 carrying [`Retry-After`](retry_after), [`Classify::retry_after`] returns
/// the delay asked for (an HTTP-date is measured against the system clock).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct HttpClassifier;

impl HttpClassifier {
    /// The default HTTP classifier.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }

    /// The outcome of a response with this status.
    #[must_use]
    pub fn classify_status(status: StatusCode) -> Outcome {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) => Self::classify_status(res.status()),
            Err(_) => Outcome::Failure,
        }
    }

    fn retry_after(&self, result: Result<&Response<B>, &E>) -> Option<Duration> {
        let res = result.ok()?;
        match res.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(res.headers(), SystemTime::now())
            }
            _ => None,
        }
    }
}

/// Whether `err`, or any error in its [`source`](Error::source) chain, is a timeout.
///
/// Recognised, without depending on the crates that define them:
///
/// - [`std::io::Error`] of kind [`TimedOut`](std::io::ErrorKind::TimedOut) (what hyper and
///   most I/O stacks report for a socket timeout);
/// - `tower::timeout::error::Elapsed` and `tokio::time::error::Elapsed`, recognised by their
///   derived `Debug` output, `Elapsed(())`, which names the type: no other error prints that
///   unless it is also a unit-carrying type named `Elapsed`.
///
/// The chain is followed for at most 32 links, so a cyclic `source` cannot hang it.
///
/// ```
/// use std::io;
/// use tower_bulwark::classify::is_timeout;
///
/// let timed_out = io::Error::new(io::ErrorKind::TimedOut, "read timed out");
/// assert!(is_timeout(&timed_out));
/// assert!(!is_timeout(&io::Error::other("connection reset")));
///
/// // The usual shape in tower: a `BoxError`.
/// let boxed: tower::BoxError = tower::timeout::error::Elapsed::new().into();
/// assert!(is_timeout(boxed.as_ref()));
/// ```
#[must_use]
pub fn is_timeout(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    for _ in 0..32 {
        let Some(err) = next else { return false };
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        } else if debug_is(err, "Elapsed(())") {
            return true;
        }
        next = err.source();
    }
    false
}

/// Whether `value`'s `Debug` output is exactly `expected`, without allocating.
fn debug_is(value: &dyn fmt::Debug, expected: &str) -> bool {
    struct Matcher<'a> {
        rest: &'a str,
        ok: bool,
    }
    impl fmt::Write for Matcher<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match self.rest.strip_prefix(s) {
                Some(rest) => {
                    self.rest = rest;
                    Ok(())
                }
                None => {
                    // Stop formatting at the first mismatch: no need to render the rest.
                    self.ok = false;
                    Err(fmt::Error)
                }
            }
        }
    }
    let mut m = Matcher {
        rest: expected,
        ok: true,
    };
    let _ = fmt::write(&mut m, format_args!("{value:?}"));
    m.ok && m.rest.is_empty()
}

/// The delay asked for by the first `Retry-After` header in `headers`, if it parses.
///
/// See [`parse_retry_after`] for the accepted forms; `now` is the wall-clock time an
/// HTTP-date is measured from.
#[must_use]
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?, now)
}

/// Parses a `Retry-After` value ([RFC 9110 §10.2.3]): either delay-seconds (`120`) or an
/// HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, and the obsolete RFC 850 and asctime forms,
/// which recipients must still accept).
///
/// An HTTP-date is turned into a delay from `now`; a date in the past gives
/// [`Duration::ZERO`]. Anything else (empty, negative, fractional, malformed) gives `None`.
/// Huge delay-seconds saturate rather than overflow; the circuit breaker caps what it honours
/// at its `max_open_duration`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderValue;
/// use tower_bulwark::classify::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 2015-10-21T07:26:40Z
/// let v = |s| HeaderValue::from_static(s);
/// assert_eq!(parse_retry_after(&v("120"), now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after(&v("Wed, 21 Oct 2015 07:28:00 GMT"), now),
///     Some(Duration::from_secs(80)),
/// );
/// assert_eq!(parse_retry_after(&v("soon"), now), None);
/// ```
///
/// [RFC 9110 §10.2.3]: https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3
#[must_use]
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = value.to_str().ok()?.trim_matches(|c| c == ' ' || c == '\t');
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs = s.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        return Some(Duration::from_secs(secs));
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let at = parse_http_date(s, now_secs)?;
    Some(Duration::from_secs(
        u64::try_from(at.saturating_sub(now_secs)).unwrap_or(0),
    ))
}

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms.
fn parse_http_date(s: &str, now_secs: i64) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() == 29 && b[3] == b',' {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        day_name(&b[..3])?;
        expect(b, 4, b' ')?;
        let day = digits(&b[5..7])?;
        expect(b, 7, b' ')?;
        let month = month(&b[8..11])?;
        expect(b, 11, b' ')?;
        let year = digits(&b[12..16])?;
        expect(b, 16, b' ')?;
        let (h, m, sec) = time_of_day(&b[17..25])?;
        if &b[25..] != b" GMT" {
            return None;
        }
        return to_epoch(year, month, day, h, m, sec);
    }
    if let Some(comma) = s.find(',') {
        // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
        let long_days = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        if !long_days.contains(&&s[..comma]) {
            return None;
        }
        let r = &b[comma + 1..];
        if r.len() != 23 || r[0] != b' ' || r[3] != b'-' || r[7] != b'-' || r[10] != b' ' {
            return None;
        }
        let day = digits(&r[1..3])?;
        let month = month(&r[4..7])?;
        let yy = digits(&r[8..10])?;
        let (h, m, sec) = time_of_day(&r[11..19])?;
        if &r[19..] != b" GMT" {
            return None;
        }
        // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        let this_year = 1970 + now_secs.div_euclid(31_556_952);
        let mut year = (this_year / 100) * 100 + i64::from(yy);
        if year > this_year + 50 {
            year -= 100;
        } else if year < this_year - 50 {
            year += 100;
        }
        return to_epoch(u32::try_from(year).ok()?, month, day, h, m, sec);
    }
    // asctime: "Sun Nov  6 08:49:37 1994"
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    day_name(&b[..3])?;
    let month = month(&b[4..7])?;
    let day = if b[8] == b' ' {
        digits(&b[9..10])?
    } else {
        digits(&b[8..10])?
    };
    let (h, m, sec) = time_of_day(&b[11..19])?;
    let year = digits(&b[20..24])?;
    to_epoch(year, month, day, h, m, sec)
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn day_name(b: &[u8]) -> Option<()> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    DAYS.contains(&b).then_some(())
}

fn month(b: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let i = MONTHS.iter().position(|m| *m == b)?;
    u32::try_from(i + 1).ok()
}

/// "08:49:37"
fn time_of_day(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..])?);
    // 60: a leap second is a valid time of day.
    (h < 24 && m < 60 && s <= 60).then_some((h, m, s))
}

fn to_epoch(year: u32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<i64> {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    // Days from civil (H. Hinnant), valid for every u32 year.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn parse(s: &'static str, now: SystemTime) -> Option<Duration> {
        // `from_bytes`: also takes the non-ASCII (obs-text) values a server might send.
        parse_retry_after(&HeaderValue::from_bytes(s.as_bytes()).unwrap(), now)
    }

    #[test]
    fn http_classifier_table() {
        let c = HttpClassifier::new();
        let of = |status: u16| {
            let res = Response::builder().status(status).body(()).unwrap();
            c.classify(Ok::<_, &std::io::Error>(&res))
        };
        for s in [100, 200, 204, 301, 304, 400, 401, 403, 404, 409, 422, 499] {
            assert_eq!(of(s), Outcome::Success, "{s}");
        }
        for s in [429, 500, 502, 503, 504, 599] {
            assert_eq!(of(s), Outcome::Failure, "{s}");
        }
        let err = std::io::Error::other("reset");
        assert_eq!(c.classify(Err::<&Response<()>, _>(&err)), Outcome::Failure);
    }

    #[test]
    fn retry_after_only_on_429_and_503() {
        let c = HttpClassifier::new();
        let with = |status: u16| {
            let res = Response::builder()
                .status(status)
                .header("retry-after", "7")
                .body(())
                .unwrap();
            c.retry_after(Ok::<_, &std::io::Error>(&res))
        };
        assert_eq!(with(429), Some(Duration::from_secs(7)));
        assert_eq!(with(503), Some(Duration::from_secs(7)));
        assert_eq!(with(500), None);
        assert_eq!(with(200), None);
    }

    #[test]
    fn retry_after_forms() {
        // 1994-11-06T08:49:37Z
        let t = 784_111_777;
        let now = at(t - 10);
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(parse(" 42 ", now), Some(Duration::from_secs(42)));
        assert_eq!(
            parse("99999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(date, now), Some(Duration::from_secs(10)), "{date}");
        }
        // In the past: no wait.
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", at(t + 5)),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "+3",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Someday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "日曜, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn http_date_epoch() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", 0), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT", 0),
            Some(951_825_600)
        );
        assert_eq!(parse_http_date("Mon, 29 Feb 2100 12:00:00 GMT", 0), None);
        // RFC 850 two-digit year seen from 2026: "26" is 2026, "80" is 1980.
        let now_2026 = 1_795_000_000;
        assert_eq!(
            parse_http_date("Friday, 27-Nov-26 00:00:00 GMT", now_2026),
            parse_http_date("Fri, 27 Nov 2026 00:00:00 GMT", now_2026)
        );
        assert_eq!(
            parse_http_date("Monday, 01-Jan-80 00:00:00 GMT", now_2026),
            Some(315_532_800)
        );
    }

    #[test]
    fn timeouts_are_recognised_through_the_chain() {
        #[derive(Debug)]
        struct Wrap(Box<dyn Error + Send + Sync>);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl Error for Wrap {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(self.0.as_ref())
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "t");
        assert!(is_timeout(&Wrap(Box::new(io))));
        assert!(is_timeout(&Wrap(Box::new(
            tower::timeout::error::Elapsed::new()
        ))));
        let elapsed = tokio_elapsed();
        assert!(is_timeout(&elapsed));
        assert!(!is_timeout(&Wrap(Box::new(std::io::Error::other("x")))));

        #[derive(Debug)]
        struct Elapsed(u8);
        impl fmt::Display for Elapsed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "not a timeout: {}", self.0)
            }
        }
        impl Error for Elapsed {}
        assert!(!is_timeout(&Elapsed(0)));
    }

    fn tokio_elapsed() -> tokio::time::error::Elapsed {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>()).await
        })
        .unwrap_err()
    }

    #[test]
    fn closures_classify() {
        let c = |r: Result<&u8, &()>| match r {
            Ok(0) => Outcome::Ignore,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Failure,
        };
        assert_eq!(c.classify(Ok(&0)), Outcome::Ignore);
        assert_eq!(c.classify(Ok(&1)), Outcome::Success);
        assert_eq!(c.classify(Err(&())), Outcome::Failure);
        assert_eq!(c.retry_after(Err(&())), None);
        assert_eq!(Outcome::Ignore.to_string(), "ignore");
    }
}
