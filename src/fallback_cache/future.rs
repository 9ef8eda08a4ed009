//! The response future: decides what to do with the inner service's result.

use std::{
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
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
    store::{Entry, Held, Lookup, Meta},
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
    pub(crate) target: Target,
    pub(crate) ticket: u64,
    /// False when the request said `Cache-Control: no-store`.
    pub(crate) may_store: bool,
}

/// What a read's answer may replace.
#[derive(Debug)]
pub(crate) enum Target {
    /// The entry stored under the key when the request was made (its key is the store's own
    /// copy). Held until the answer arrives, to compare it with: if the store drops it
    /// meanwhile, the `Arc` keeps it alive, no longer than the request.
    Stored(Held),
    /// Nothing was stored: the key, for a new entry.
    New(Arc<StoreKey>),
}

impl Target {
    fn key(&self) -> &Arc<StoreKey> {
        match self {
            Self::Stored(held) => &held.entry.key,
            Self::New(key) => key,
        }
    }

    fn held(&self) -> Option<&Held> {
        match self {
            Self::Stored(held) => Some(held),
            Self::New(_) => None,
        }
    }
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
                let (key, held) = (self.target.key(), self.target.held());
                match store.get(&**key, held, now, self.shared.config.ttl) {
                    Lookup::Hit(entry, age) => {
                        store.stats.stale_served += 1;
                        Some((entry, age))
                    }
                    Lookup::Miss => {
                        store.stats.misses += 1;
                        None
                    }
                }
            };
            return match found {
                Some((entry, age)) => {
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
        let scan = (self.may_store
            && res.status().is_success()
            && res.body().size_hint().lower() <= limit)
            .then(|| Scan::of(res.headers()))
            .filter(|scan| !scan.forbids);
        let Some(Scan { initial_age, .. }) = scan else {
            // The newest answer may not be kept, so the older one is no longer the last word
            // either: serving it later would go back in time.
            self.shared
                .store()
                .remove_older(self.target.key(), self.ticket);
            return Ok(res.map(FallbackBody::inner));
        };
        let meta = Meta {
            // The response time (RFC 9111 §4.2.3): when the answer arrived, not when its body
            // ended.
            stored_at: Instant::now(),
            initial_age,
            ticket: self.ticket,
        };
        let (parts, body) = res.into_parts();
        let capture = match self.target {
            // The same answer again (the steady state of a key read again and again): compare
            // the body as it passes instead of copying it, and renew the entry in place.
            Target::Stored(held)
                if held.entry.status == parts.status
                    && held.entry.version == parts.version
                    && body
                        .size_hint()
                        .exact()
                        .is_none_or(|n| n == held.entry.body.len() as u64)
                    && same_headers(&parts.headers, &held.entry, &self.shared.stale_status) =>
            {
                Capture::same(self.shared, held, meta)
            }
            target => {
                let key = match target {
                    Target::Stored(held) => Arc::clone(&held.entry.key),
                    Target::New(key) => key,
                };
                let (headers, plain) = stale_headers(&parts.headers, &self.shared.stale_status);
                let entry = Entry {
                    key,
                    status: parts.status,
                    version: parts.version,
                    headers,
                    plain,
                    body: Bytes::new(),
                    cost: 0,
                };
                let capacity = body.size_hint().exact().map_or(0, |n| n as usize);
                Capture::copy(self.shared, entry, meta, capacity)
            }
        };
        Ok(Response::from_parts(
            parts,
            FallbackBody::capture(body, capture),
        ))
    }
}

/// The headers of `res`, made into those of a stale answer, once, when stored: without `Age`
/// (kept apart, in [`Meta`]) and the hop-by-hop fields (they describe this connection's
/// framing, not the stored answer), with an `Age` placeholder and `stale_status` appended to
/// `Cache-Status`. And whether they are [plain](Entry::plain). [`same_headers`] must agree.
fn stale_headers(res: &HeaderMap, stale_status: &HeaderValue) -> (HeaderMap, bool) {
    // Room for one more: `HeaderMap::insert` grows a full map even when replacing, and the
    // stale answer's copy (a clone, same room) replaces the `Age` placeholder.
    let mut headers = HeaderMap::with_capacity(res.len() + 3);
    let mut plain = true;
    for (name, value) in res {
        if name != AGE && name != TRANSFER_ENCODING && name != CONNECTION {
            plain = plain && name != CACHE_STATUS;
            headers.append(name.clone(), value.clone());
        } else {
            plain = false;
        }
    }
    headers.insert(AGE, age_value(0));
    // Appended: RFC 9211 lists caches from the origin outwards, and this one is outermost.
    headers.append(CACHE_STATUS, stale_status.clone());
    (headers, plain)
}

/// Whether `entry`'s headers are exactly what [`stale_headers`] makes of `res`: the same
/// fields, values (and sensitivity) in the same order, but for `Age`, the hop-by-hop fields,
/// and `stale_status` last among the `Cache-Status` values. Compares without copying.
fn same_headers(res: &HeaderMap, entry: &Entry, stale_status: &HeaderValue) -> bool {
    let same = |(n, v): (&HeaderName, &HeaderValue), (name, value): (&HeaderName, &HeaderValue)| {
        n == name && v == value && v.is_sensitive() == value.is_sensitive()
    };
    let stored = &entry.headers;
    // The common case: a plain entry, whose fields are `res`'s, then the `Age` placeholder and
    // this layer's `Cache-Status` (so `res` has none of the fields `stale_headers` sets apart).
    if entry.plain
        && stored.len() == res.len() + 2
        && res.iter().zip(stored).all(|(r, s)| same(s, r))
    {
        return true;
    }
    // `HeaderMap` iterates field by field, each with its values in order: this layer's
    // `Cache-Status` is the last of its field's values, so the one followed by another field.
    let ours = |(n, v): (&HeaderName, &HeaderValue), next: Option<&(&HeaderName, &HeaderValue)>| {
        n == CACHE_STATUS && v == stale_status && next.is_none_or(|&(next, _)| next != CACHE_STATUS)
    };
    // The placeholder is the entry's only `Age`.
    let mut stored = stored.iter().filter(|&(n, _)| n != AGE).peekable();
    let mut skipped = false;
    for r in res {
        if r.0 == AGE || r.0 == TRANSFER_ENCODING || r.0 == CONNECTION {
            continue;
        }
        let Some(mut s) = stored.next() else {
            return false;
        };
        if same(s, r) {
            continue;
        }
        if skipped || !ours(s, stored.peek()) {
            return false;
        }
        skipped = true;
        match stored.next() {
            Some(next) => s = next,
            None => return false,
        }
        if !same(s, r) {
            return false;
        }
    }
    match stored.next() {
        None => skipped,
        Some(s) => !skipped && ours(s, None) && stored.next().is_none(),
    }
}

/// What one pass over a response's headers says about storing it.
struct Scan {
    /// `Cache-Control` has one of the [`FORBIDDING`] directives.
    forbids: bool,
    /// The first `Age` (from a cache further in), if it parses.
    initial_age: Duration,
}

impl Scan {
    fn of(headers: &HeaderMap) -> Self {
        let mut forbids = false;
        let mut age = None;
        for (name, value) in headers {
            if name == CACHE_CONTROL {
                forbids = forbids || value_has_directive(value, FORBIDDING);
            } else if name == AGE {
                age = age.or(Some(value));
            }
        }
        Self {
            forbids,
            initial_age: age
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_secs),
        }
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

/// The `Cache-Control` directives that keep a response out of the store: a cache must not
/// keep it (`no-store`, `private`), or must not serve it once stale without revalidating,
/// which a disconnected cache cannot do (`no-cache`, `must-revalidate`, `proxy-revalidate`).
const FORBIDDING: &[&str] = &[
    "no-store",
    "private",
    "no-cache",
    "must-revalidate",
    "proxy-revalidate",
];

/// Whether `Cache-Control` has one of the [`FORBIDDING`] directives.
#[cfg(test)]
pub(crate) fn forbids_storing(headers: &HeaderMap) -> bool {
    Scan::of(headers).forbids
}

/// Whether any `Cache-Control` field has one of `names` (case-insensitive, with or without
/// an argument).
pub(crate) fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
    // Most requests have few headers, often none.
    !headers.is_empty()
        && headers
            .get_all(CACHE_CONTROL)
            .iter()
            .any(|value| value_has_directive(value, names))
}

/// Whether one `Cache-Control` value has one of `names`.
fn value_has_directive(value: &HeaderValue, names: &[&str]) -> bool {
    value.as_bytes().split(|&b| b == b',').any(|directive| {
        let name = directive.split(|&b| b == b'=').next().unwrap_or_default();
        let name = name.trim_ascii();
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
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
    fn same_headers_agrees_with_stale_headers() {
        use crate::fallback_cache::{CacheKey, key::StoreKey};

        let ours = HeaderValue::from_static("tower-bulwark; hit; detail=stale-if-error");
        let sensitive = {
            let mut v = HeaderValue::from_static("application/json");
            v.set_sensitive(true);
            v
        };
        let map = |fields: &[(&'static str, &HeaderValue)]| {
            let mut m = HeaderMap::new();
            for &(n, v) in fields {
                m.append(n, v.clone());
            }
            m
        };
        let v = HeaderValue::from_static;
        let (json, text, one, origin) = (
            v("application/json"),
            v("text/plain"),
            v("1"),
            v("origin; hit"),
        );
        let maps = [
            map(&[]),
            map(&[("content-type", &json)]),
            map(&[("content-type", &sensitive)]),
            map(&[("content-type", &text)]),
            map(&[("content-type", &json), ("x-a", &one)]),
            map(&[("x-a", &one), ("content-type", &json)]),
            map(&[("content-type", &json), ("content-type", &text)]),
            map(&[("content-type", &text), ("content-type", &json)]),
            map(&[("x-a", &one), ("x-a", &one)]),
            map(&[("content-type", &json), ("age", &one)]),
            map(&[("age", &one), ("content-type", &json)]),
            map(&[
                ("content-type", &json),
                ("transfer-encoding", &v("chunked")),
            ]),
            map(&[("connection", &v("close")), ("content-type", &json)]),
            map(&[("cache-status", &origin)]),
            map(&[("cache-status", &origin), ("content-type", &json)]),
            map(&[("content-type", &json), ("cache-status", &origin)]),
            map(&[("content-type", &json), ("cache-status", &ours)]),
            map(&[("cache-status", &ours), ("cache-status", &origin)]),
            map(&[("cache-status", &origin), ("cache-status", &ours)]),
            map(&[("cache-status", &ours)]),
        ];
        let fields = |m: &HeaderMap| -> Vec<(HeaderName, HeaderValue, bool)> {
            m.iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect()
        };
        let key = Arc::new(StoreKey::new(
            CacheKey::new(http::Method::GET, Uri::from_static("/")),
            0,
        ));
        // The same but for `Age` or hop-by-hop fields.
        let alike = [1, 9, 10, 11, 12];
        for (i, stored) in maps.iter().enumerate() {
            let (headers, plain) = stale_headers(stored, &ours);
            let entry = Entry {
                key: Arc::clone(&key),
                status: StatusCode::OK,
                version: http::Version::HTTP_11,
                headers,
                plain,
                body: Bytes::new(),
                cost: 0,
            };
            for (j, res) in maps.iter().enumerate() {
                let expected = fields(&stale_headers(res, &ours).0) == fields(&entry.headers);
                assert_eq!(same_headers(res, &entry, &ours), expected, "{i} {j}");
                assert_eq!(
                    expected,
                    i == j || (alike.contains(&i) && alike.contains(&j)),
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn age_values() {
        for n in [0, 1, 9, 10, 42, 99, 100, 12_345, u64::MAX] {
            assert_eq!(age_value(n), n.to_string().as_str());
        }
    }
}
