//! The OTLP/HTTP span exporter behind [`TelemetryBuilder::otlp_endpoint`]: protobuf written
//! by the span recorder's spans themselves as they are filled in ([`span`]), or straight from
//! the SDK's span data for spans made through the SDK's API ([`encode`]), and POSTed over
//! plain HTTP/1.1 on a kept-alive connection, from the export thread's own runtime.
//!
//! It does what opentelemetry-otlp's HTTP exporter does for this case (plain `http`, binary
//! protobuf, no compression), at a fraction of the CPU cost per span: the headers of
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (else `OTEL_EXPORTER_OTLP_HEADERS`) are sent, and
//! failures are retried as the OTLP specification says (network errors and 429, 502, 503,
//! 504, with exponential backoff from 100 ms to 1.6 s plus jitter, at most 3 retries,
//! `Retry-After` in seconds honoured), all within the export timeout that the export thread
//! enforces. For TLS, gRPC or compression, pass opentelemetry-otlp's exporter to
//! [`TelemetryBuilder::span_exporter`].
//!
//! [`TelemetryBuilder::otlp_endpoint`]: super::TelemetryBuilder::otlp_endpoint
//! [`TelemetryBuilder::span_exporter`]: super::TelemetryBuilder::span_exporter

mod encode;
mod span;

pub(crate) use self::span::{AttributeBatch, EncodedSpan, EncodingTracer, SpanStart, Started};

use std::{
    fmt, io,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use http::{HeaderName, HeaderValue, Uri};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use self::encode::{EncodedResource, EncodedScope};
use super::export::{Export, Queued};

/// Retries after the first attempt.
const MAX_RETRIES: u32 = 3;
const INITIAL_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;
/// The largest response head read; collectors answer with a few short headers.
const MAX_HEAD: usize = 64 * 1024;
/// The largest response body read (a collector's answer is a small protobuf message).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Where the spans go.
#[derive(Clone, Debug)]
struct Endpoint {
    /// `host:port`, to connect to.
    address: String,
    /// The `Host` header.
    authority: String,
    path_and_query: String,
    /// The URL, for error messages.
    url: String,
}

/// The exporter; see the module docs.
pub(crate) struct OtlpHttpExporter {
    endpoint: Endpoint,
    /// The request head up to and excluding `content-length`, ready to send.
    head: Vec<u8>,
    resource: EncodedResource,
    /// The scope of the spans that come encoded (the span recorder's).
    scope: EncodedScope,
    /// The connection kept alive between exports (taken out while in use).
    connection: Mutex<Option<TcpStream>>,
}

impl fmt::Debug for OtlpHttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpExporter")
            .field("endpoint", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl OtlpHttpExporter {
    /// An exporter to `url` (the full URL, `…/v1/traces`), with the headers of the
    /// environment.
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let headers = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
            .unwrap_or_default();
        Self::with_headers(url, &headers)
    }

    fn with_headers(url: &str, headers: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid OTLP endpoint {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "invalid OTLP endpoint {url:?}: only http:// is supported here; for https, \
                 pass an exporter to `span_exporter`"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("invalid OTLP endpoint {url:?}: no host"))?;
        let address = match authority.port_u16() {
            Some(_) => authority
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let endpoint = Endpoint {
            address,
            authority: authority
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            url: url.to_owned(),
        };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-protobuf\r\n\
             user-agent: tower-bulwark/{}\r\n",
            endpoint.path_and_query,
            endpoint.authority,
            env!("CARGO_PKG_VERSION"),
        )
        .into_bytes();
        for (name, value) in parse_headers(headers) {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Ok(Self {
            endpoint,
            head,
            resource: EncodedResource::default(),
            scope: EncodedScope::default(),
            connection: Mutex::new(None),
        })
    }

    /// The resource every request names.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }

    /// The instrumentation scope of the spans that come already encoded.
    pub(crate) fn set_encoded_scope(&mut self, scope: &opentelemetry::InstrumentationScope) {
        self.scope = EncodedScope::new(scope);
    }

    async fn send(&self, request: Vec<u8>) -> OTelSdkResult {
        self.post(&request)
            .await
            .map_err(|failure| OTelSdkError::InternalFailure(failure.message))
    }

    /// The request head for a body of `len` bytes, in a buffer with room for the body.
    fn head(&self, len: usize) -> Vec<u8> {
        let mut request = Vec::with_capacity(self.head.len() + 40 + len);
        request.extend_from_slice(&self.head);
        request.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
        request
    }

    /// POSTs `request` (head and body), retrying what the specification says may be retried.
    async fn post(&self, request: &[u8]) -> Result<(), Failure> {
        let mut retries = 0;
        loop {
            match self.attempt(request).await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.retryable && retries < MAX_RETRIES => {
                    let delay = failure.retry_after.unwrap_or_else(|| backoff(retries));
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    /// One request, on the kept-alive connection if there is one (and on a new one if that
    /// turns out to have been closed by the collector meanwhile).
    async fn attempt(&self, request: &[u8]) -> Result<(), Failure> {
        let kept = self.connection.lock().ok().and_then(|mut c| c.take());
        if let Some(mut stream) = kept {
            match exchange(&mut stream, request).await {
                Ok(answer) => return self.finish(stream, answer),
                // Nothing came back: an idle connection the collector had closed. Anything
                // else is the collector's answer.
                Err(Exchange::Closed) => {}
                Err(Exchange::Failed(failure)) => return Err(failure),
            }
        }
        let mut stream = TcpStream::connect(&self.endpoint.address)
            .await
            .map_err(|e| self.network(&e))?;
        // One write per request; no Nagle delay on small requests.
        let _ = stream.set_nodelay(true);
        match exchange(&mut stream, request).await {
            Ok(answer) => self.finish(stream, answer),
            Err(Exchange::Closed) => {
                Err(self.network(&io::Error::from(io::ErrorKind::UnexpectedEof)))
            }
            Err(Exchange::Failed(failure)) => Err(failure),
        }
    }

    /// Keeps the connection if it may be reused, and judges the status.
    fn finish(&self, stream: TcpStream, answer: Answer) -> Result<(), Failure> {
        if answer.keep_alive
            && let Ok(mut connection) = self.connection.lock()
        {
            *connection = Some(stream);
        }
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        Err(Failure {
            message: format!(
                "OTLP export to {} failed with HTTP status {}",
                self.endpoint.url, answer.status
            ),
            retryable: matches!(answer.status, 429 | 502 | 503 | 504),
            retry_after: answer.retry_after,
        })
    }

    fn network(&self, error: &io::Error) -> Failure {
        Failure {
            message: format!("OTLP export to {} failed: {error}", self.endpoint.url),
            retryable: true,
            retry_after: None,
        }
    }
}

impl Export for OtlpHttpExporter {
    async fn export(&self, batch: Vec<Queued>) -> OTelSdkResult {
        let body = {
            let mut spans = Vec::new();
            let mut encoded = Vec::with_capacity(batch.len());
            for queued in &batch {
                match queued {
                    Queued::Data(span) => spans.push(&**span),
                    Queued::Encoded(bytes) => encoded.push(bytes.as_slice()),
                }
            }
            encode::export_request_after(
                |len| self.head(len),
                &self.resource,
                &spans,
                &self.scope,
                &encoded,
            )
        };
        drop(batch);
        self.send(body).await
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if let Ok(mut connection) = self.connection.lock() {
            *connection = None;
        }
        Ok(())
    }
}

/// Why an attempt failed, and whether and when to try again.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// What the collector answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    keep_alive: bool,
    retry_after: Option<Duration>,
}

enum Exchange {
    /// The connection was closed before any byte of an answer.
    Closed,
    Failed(Failure),
}

/// The delay before retry `n` (0-based): 100 ms doubling up to 1.6 s, plus up to 100 ms.
fn backoff(n: u32) -> Duration {
    let base = INITIAL_DELAY.saturating_mul(1 << n.min(16)).min(MAX_DELAY);
    // Jitter only has to differ between exporters retrying at once: the clock's
    // nanoseconds do.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    base + Duration::from_millis(nanos % (MAX_JITTER_MS + 1))
}

/// Writes `request` and reads the answer to its end.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<Answer, Exchange> {
    let failed = |e: io::Error| {
        Exchange::Failed(Failure {
            message: format!("OTLP export failed: {e}"),
            retryable: true,
            retry_after: None,
        })
    };
    if let Err(e) = stream.write_all(request).await {
        return Err(match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Exchange::Closed,
            _ => failed(e),
        });
    }
    let mut buffer = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() > MAX_HEAD {
            return Err(failed(io::Error::other("response head too large")));
        }
        match read_more(stream, &mut buffer).await {
            Ok(0) if buffer.is_empty() => return Err(Exchange::Closed),
            Ok(0) => return Err(failed(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) if buffer.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Exchange::Closed);
            }
            Err(e) => return Err(failed(e)),
        }
    };
    let head = parse_head(&buffer[..head_end]).map_err(failed)?;
    let mut body = buffer.split_off(head_end);
    let complete = match head.framing {
        Framing::Length(len) if len > MAX_BODY => false,
        Framing::Length(len) => {
            while body.len() < len {
                if read_more(stream, &mut body).await.map_err(failed)? == 0 {
                    return Err(failed(io::ErrorKind::UnexpectedEof.into()));
                }
            }
            body.len() == len
        }
        Framing::Chunked => read_chunked(stream, body).await.map_err(failed)?,
        Framing::None => true,
        // Read to the end, within bounds; the connection cannot be reused.
        Framing::UntilClose => {
            while body.len() <= MAX_BODY && read_more(stream, &mut body).await.map_err(failed)? > 0
            {
            }
            false
        }
    };
    Ok(Answer {
        status: head.status,
        keep_alive: head.keep_alive && complete,
        retry_after: head.retry_after,
    })
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    buffer.reserve(4096);
    stream.read_buf(buffer).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// How the body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// No body (1xx, 204, 304).
    None,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    retry_after: Option<Duration>,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or_else(bad)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or_else(bad)?;
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = None;
    let mut chunked = false;
    let mut retry_after = None;
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad())?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            if value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("close"))
            {
                keep_alive = false;
            } else if value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("keep-alive"))
            {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            // Seconds only; an HTTP date falls back to the backoff.
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        framing,
        keep_alive,
        retry_after,
    })
}

/// Reads a chunked body (whose first bytes are in `buffer`) to its end; `false` when it
/// was too large to read (the connection is then not reused).
async fn read_chunked(stream: &mut TcpStream, mut buffer: Vec<u8>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body");
    let mut at = 0;
    let mut total = 0;
    loop {
        // The chunk-size line.
        let line_end = loop {
            if let Some(end) = find(&buffer[at..], b"\r\n") {
                break at + end;
            }
            if buffer.len() - at > MAX_HEAD {
                return Err(bad());
            }
            if read_more(stream, &mut buffer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let line = std::str::from_utf8(&buffer[at..line_end]).map_err(|_| bad())?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, then the final empty line.
            loop {
                if let Some(end) = find(&buffer[at..], b"\r\n") {
                    if end == 0 {
                        return Ok(true);
                    }
                    at += end + 2;
                    continue;
                }
                if read_more(stream, &mut buffer).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        total += size;
        if total > MAX_BODY {
            return Ok(false);
        }
        while buffer.len() < at + size + 2 {
            if read_more(stream, &mut buffer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        at += size + 2;
        // Only what is not read yet is kept.
        buffer.drain(..at);
        at = 0;
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: comma-separated `name=value` pairs, values
/// percent-encoded; pairs that are not valid header names and values are skipped.
fn parse_headers(s: &str) -> Vec<(HeaderName, HeaderValue)> {
    s.split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = HeaderName::try_from(name.trim()).ok()?;
            let value = HeaderValue::try_from(super::percent_decode(value.trim())).ok()?;
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests;
