//! The response future: decides what to do with the inner service's result.

use std::{
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{
    HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri,
    header::{self, AGE, CACHE_CONTROL, CONNECTION, TRANSFER_ENCODING},
};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{
    FallbackBody,
    body::Capture,
    key::StoreKey,
    layer::Shared,
    store::{Entry, Lookup},
};
use crate::classify::{Classify, Outcome};

/// `Cache-Status` (RFC 9211); not among `http`'s constants.
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why a response was answered from the store: the failure of the inner call it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// The inner service returned an error: a transport error, a timeout, a circuit breaker's
    /// rejection, …
    Error,
    /// The inner service answered with this status (500, 502, 503 or 504 by default).
    Status(StatusCode),
}

/// Response extension on an answer served from the store because the inner call failed.
///
/// ```
/// # use tower_bulwark::fallback_cache::StaleAnswer;
/// # let res = http::Response::new(());
/// if let Some(stale) = res.extensions().get::<StaleAnswer>() {
///     println!("stale by {:?} because of {:?}", stale.age, stale.reason);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleAnswer {
    /// How old the answer is (also sent, in whole seconds, as `Age`).
    pub age: Duration,
    /// The failure it replaces.
    pub reason: StaleReason,
}

/// Response extension on an answer served from the store, without asking the inner service,
/// in fresh mode ([`fresh_ttl`](super::FallbackCacheBuilder::fresh_ttl)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FreshAnswer {
    /// How old the answer is (also sent, in whole seconds, as `Age`).
    pub age: Duration,
}

pin_project! {
    /// Response future of a [`FallbackCache`](super::FallbackCache).
    pub struct ResponseFuture<F, C, B> {
        #[pin]
        state: State<F, B>,
        classifier: C,
    }
}

pin_project! {
    #[project = StateProj]
    pub(crate) enum State<F, B> {
        // Answered from the store in fresh mode, without calling the inner service.
        Ready { response: Option<Response<FallbackBody<B>>> },
        Call { #[pin] future: F, mode: Mode },
    }
}

/// What the call is, for the store.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Neither stored nor answered from the store.
    Bypass,
    /// A read with a key.
    Read(Read),
    /// A write (unsafe method): invalidates what its URI covers.
    Write { shared: Arc<Shared>, uri: Uri },
    /// Completed.
    Done,
}

#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: Arc<StoreKey>,
    pub(crate) ticket: u64,
    /// False when the request said `Cache-Control: no-store`.
    pub(crate) may_store: bool,
}

impl<F, C, B> ResponseFuture<F, C, B> {
    pub(crate) fn ready(response: Response<FallbackBody<B>>, classifier: C) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            classifier,
        }
    }

    pub(crate) fn call(future: F, mode: Mode, classifier: C) -> Self {
        Self {
            state: State::Call { future, mode },
            classifier,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>, E>,
    B: Body,
    B::Data: From<Bytes>,
{
    type Output = Result<Response<FallbackBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            // Polled again after completion: stay pending rather than panic.
            StateProj::Ready { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            StateProj::Call { future, mode } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(match mem::replace(mode, Mode::Done) {
                    Mode::Bypass | Mode::Done => passthrough(result),
                    Mode::Write { shared, uri } => {
                        let reached = this.classifier.may_have_reached_backend(result.as_ref());
                        if reached && write_may_have_happened(&result) {
                            shared.invalidate_write(uri.path());
                        }
                        passthrough(result)
                    }
                    Mode::Read(read) => read.complete(result, this.classifier),
                })
            }
        }
    }
}

fn passthrough<B, E>(result: Result<Response<B>, E>) -> Result<Response<FallbackBody<B>>, E> {
    result.map(|res| res.map(FallbackBody::inner))
}

/// RFC 9111 §4.4 invalidates on a non-error answer; an error or a `504` leaves the outcome
/// unknown (the write may have reached the backend), so they invalidate too, to be safe —
/// unless the classifier says the call never reached the backend
/// ([`Classify::may_have_reached_backend`]).
fn write_may_have_happened<B, E>(result: &Result<Response<B>, E>) -> bool {
    match result {
        Err(_) => true,
        Ok(res) => {
            let s = res.status();
            s.is_success() || s.is_redirection() || s == StatusCode::GATEWAY_TIMEOUT
        }
    }
}

impl Read {
    fn complete<B, E, C>(
        self,
        result: Result<Response<B>, E>,
        classifier: &C,
    ) -> Result<Response<FallbackBody<B>>, E>
    where
        C: Classify<Response<B>, E>,
        B: Body,
    {
        let outcome = classifier.classify(result.as_ref());
        let stale_reason = match (&result, outcome) {
            (Err(_), Outcome::Failure) => Some(StaleReason::Error),
            (Ok(res), Outcome::Failure)
                if self.shared.config.stale_statuses.contains(&res.status()) =>
            {
                Some(StaleReason::Status(res.status()))
            }
            _ => None,
        };
        if let Some(reason) = stale_reason {
            let now = Instant::now();
            let found = {
                let mut store = self.shared.store();
                match store.get(&self.key, now, self.shared.config.ttl) {
                    Lookup::Hit(entry) => {
                        store.stats.stale_served += 1;
                        Some(entry)
                    }
                    Lookup::Miss => {
                        store.stats.misses += 1;
                        None
                    }
                }
            };
            return match found {
                Some(entry) => {
                    let age = entry.age(now);
                    let mut res = from_store(&entry, age, None);
                    res.extensions_mut().insert(StaleAnswer { age, reason });
                    Ok(res)
                }
                None => passthrough(result),
            };
        }
        let res = result?;
        if outcome == Outcome::Failure {
            // A failure not answered from the store (a 429, say): leave the entry alone.
            return Ok(res.map(FallbackBody::inner));
        }
        let limit = self.shared.config.max_body_bytes as u64;
        let storable = self.may_store
            && res.status().is_success()
            && !forbids_storing(res.headers())
            && res.body().size_hint().lower() <= limit;
        if !storable {
            // The newest answer may not be kept, so the older one is no longer the last word
            // either: serving it later would go back in time.
            self.shared.store().remove_older(&self.key, self.ticket);
            return Ok(res.map(FallbackBody::inner));
        }
        let (parts, body) = res.into_parts();
        // The one copy of the headers, made into those of a stale answer now, once: without
        // `Age` (kept apart) and the hop-by-hop fields (they describe this connection's
        // framing, not the stored answer), with an `Age` placeholder and `Cache-Status`.
        // Room for one more: `HeaderMap::insert` grows a full map even when replacing, and
        // the stale answer's copy (a clone, same room) replaces the `Age` placeholder.
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 3);
        let mut initial_age = None;
        for (name, value) in &parts.headers {
            if name == AGE {
                initial_age = initial_age.or(Some(value));
            } else if name != TRANSFER_ENCODING && name != CONNECTION {
                headers.append(name.clone(), value.clone());
            }
        }
        let initial_age = initial_age
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        headers.insert(AGE, age_value(0));
        // Appended: RFC 9211 lists caches from the origin outwards, and this one is outermost.
        headers.append(CACHE_STATUS, self.shared.stale_status.clone());
        let capacity = body.size_hint().exact().map_or(0, |n| n as usize);
        let capture = Capture {
            entry: Arc::new(Entry {
                status: parts.status,
                version: parts.version,
                headers,
                body: Bytes::new(),
                // The response time (RFC 9111 §4.2.3): when the answer arrived, not when its
                // body ended.
                stored_at: Instant::now(),
                initial_age,
                ticket: self.ticket,
                cost: 0,
            }),
            shared: self.shared,
            key: self.key,
            buf: BytesMut::with_capacity(capacity),
        };
        Ok(Response::from_parts(
            parts,
            FallbackBody::capture(body, capture),
        ))
    }
}

/// A response rebuilt from `entry`, with its `Age`; its `Cache-Status` is that of a stale
/// answer unless `fresh_status` replaces it.
pub(crate) fn from_store<B>(
    entry: &Entry,
    age: Duration,
    fresh_status: Option<&HeaderValue>,
) -> Response<FallbackBody<B>> {
    let mut res = Response::new(FallbackBody::stored(entry.body.clone()));
    *res.status_mut() = entry.status;
    *res.version_mut() = entry.version;
    let headers = res.headers_mut();
    *headers = entry.headers.clone();
    // Replaces the placeholder in place: no allocation for ages under 100 seconds.
    headers.insert(AGE, age_value(age.as_secs()));
    if let Some(fresh) = fresh_status
        && let header::Entry::Occupied(mut statuses) = headers.entry(CACHE_STATUS)
        && let Some(last) = statuses.iter_mut().last()
    {
        // The last one is this layer's (see `Read::complete`).
        *last = fresh.clone();
    }
    res
}

/// `"00"`, `"01"`, … `"99"`: ages under 100 seconds, without allocating.
const AGES: &str = {
    const BYTES: [u8; 200] = {
        let mut b = [0; 200];
        let mut i = 0;
        while i < 100 {
            b[2 * i] = b'0' + (i / 10) as u8;
            b[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        b
    };
    match std::str::from_utf8(&BYTES) {
        Ok(s) => s,
        Err(_) => panic!("ASCII digits"),
    }
};

/// The `Age` value for `secs`.
fn age_value(secs: u64) -> HeaderValue {
    match usize::try_from(secs) {
        Ok(n @ 0..10) => HeaderValue::from_static(&AGES[2 * n + 1..2 * n + 2]),
        Ok(n @ 10..100) => HeaderValue::from_static(&AGES[2 * n..2 * n + 2]),
        _ => HeaderValue::from(secs),
    }
}

/// Whether `Cache-Control` says a cache must not keep this response, or must not serve it
/// once stale without revalidating (which a disconnected cache cannot do): `no-store`,
/// `private`, `no-cache`, `must-revalidate`, `proxy-revalidate`.
pub(crate) fn forbids_storing(headers: &HeaderMap) -> bool {
    has_directive(
        headers,
        &[
            "no-store",
            "private",
            "no-cache",
            "must-revalidate",
            "proxy-revalidate",
        ],
    )
}

/// Whether any `Cache-Control` field has one of `names` (case-insensitive, with or without
/// an argument).
pub(crate) fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|directive| {
            let name = directive.split(|&b| b == b'=').next().unwrap_or_default();
            let name = name.trim_ascii();
            names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_static(v));
            m
        };
        assert!(forbids_storing(&h("no-store")));
        assert!(forbids_storing(&h("max-age=60, Private")));
        assert!(forbids_storing(&h("no-cache=\"set-cookie\"")));
        assert!(forbids_storing(&h(" must-revalidate ")));
        assert!(!forbids_storing(&h("max-age=60, public")));
        assert!(!forbids_storing(&h("stale-if-error=60")));
        assert!(!forbids_storing(&HeaderMap::new()));
    }

    #[test]
    fn age_values() {
        for n in [0, 1, 9, 10, 42, 99, 100, 12_345, u64::MAX] {
            assert_eq!(age_value(n), n.to_string().as_str());
        }
    }
}
