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
    header::{AGE, CACHE_CONTROL, CONNECTION, TRANSFER_ENCODING},
};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{
    CacheKey, FallbackBody,
    body::Capture,
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
    pub(crate) key: Arc<CacheKey>,
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
                        if write_may_have_happened(&result) {
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
/// unknown (the write may have reached the backend), so they invalidate too, to be safe.
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
                    let mut res = from_store(&entry, age, &self.shared.stale_status);
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
        let mut headers = parts.headers.clone();
        let initial_age = headers
            .remove(AGE)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        // Hop-by-hop: describe this connection's framing, not the stored answer.
        headers.remove(TRANSFER_ENCODING);
        headers.remove(CONNECTION);
        let capacity = body.size_hint().exact().map_or(0, |n| n as usize);
        let capture = Capture {
            shared: self.shared,
            key: self.key,
            ticket: self.ticket,
            status: parts.status,
            version: parts.version,
            headers,
            initial_age,
            buf: BytesMut::with_capacity(capacity),
        };
        Ok(Response::from_parts(
            parts,
            FallbackBody::capture(body, capture),
        ))
    }
}

/// A response rebuilt from `entry`, marked with `Age` and `Cache-Status`.
pub(crate) fn from_store<B>(
    entry: &Entry,
    age: Duration,
    cache_status: &HeaderValue,
) -> Response<FallbackBody<B>> {
    let mut res = Response::new(FallbackBody::stored(entry.body.clone()));
    *res.status_mut() = entry.status;
    *res.version_mut() = entry.version;
    let headers = res.headers_mut();
    *headers = entry.headers.clone();
    headers.insert(AGE, HeaderValue::from(age.as_secs()));
    // Appended: RFC 9211 lists caches from the origin outwards, and this one is outermost.
    headers.append(CACHE_STATUS, cache_status.clone());
    res
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
}
