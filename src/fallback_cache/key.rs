//! Cache keys and the hook that makes them.

use std::{
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    sync::Arc,
};

use http::{HeaderName, HeaderValue, Method, Request, Uri, header::AUTHORIZATION};

/// What a stored answer is filed under: the method, the URI and any extra parts (by default
/// the values of the configured request headers, in order).
///
/// Two requests share an entry when their keys are equal. The URI is compared as
/// [`http::Uri`] compares (scheme and authority case-insensitively), query included. Path-based
/// invalidation ([`FallbackCacheHandle::invalidate_prefix`](super::FallbackCacheHandle::invalidate_prefix))
/// looks at [`path`](Self::path) only.
///
/// ```
/// use http::{HeaderValue, Method, Uri};
/// use tower_bulwark::fallback_cache::CacheKey;
///
/// let key = CacheKey::new(Method::GET, Uri::from_static("/tasks?status=open"))
///     .with_part(Some(HeaderValue::from_static("tenant-a")));
/// assert_eq!(key.path(), "/tasks");
/// assert_ne!(key, CacheKey::new(Method::GET, Uri::from_static("/tasks?status=open")));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    method: Method,
    uri: Uri,
    parts: Vec<Option<HeaderValue>>,
}

impl CacheKey {
    /// A key for `method` and `uri`, with no extra parts.
    #[must_use]
    pub fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            parts: Vec::new(),
        }
    }

    /// Adds a part (e.g. a header value, or `None` for an absent header: absent and empty
    /// differ).
    #[must_use]
    pub fn with_part(mut self, part: Option<HeaderValue>) -> Self {
        self.parts.push(part);
        self
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URI.
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The URI's path, without the query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The extra parts, in the order they were added.
    #[must_use]
    pub fn parts(&self) -> &[Option<HeaderValue>] {
        &self.parts
    }

    /// Estimated heap bytes held by the key, for the store's byte accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        let uri = self.uri.authority().map_or(0, |a| a.as_str().len())
            + self.uri.path_and_query().map_or(0, |p| p.as_str().len());
        let parts: usize = self
            .parts
            .iter()
            .map(|p| std::mem::size_of::<Option<HeaderValue>>() + p.as_ref().map_or(0, |v| v.len()))
            .sum();
        uri + parts
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parts may hold credentials (an `Authorization` value): print only how many there are.
        f.debug_struct("CacheKey")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// Makes the [`CacheKey`] of a safe request, or `None` to leave the request alone (it is
/// neither stored nor answered from the store).
///
/// Only asked for requests with a [safe](Method::is_safe) method: unsafe methods (writes) are
/// never stored. Implemented by [`DefaultMakeKey`] and by every
/// `Fn(&Request<B>) -> Option<CacheKey>` closure. A custom key maker decides about
/// `Authorization` itself: requests of different users must not share a key.
pub trait MakeCacheKey<B> {
    /// The key of `request`, or `None` to bypass the store.
    fn make_key(&self, request: &Request<B>) -> Option<CacheKey>;
}

impl<F, B> MakeCacheKey<B> for F
where
    F: Fn(&Request<B>) -> Option<CacheKey>,
{
    fn make_key(&self, request: &Request<B>) -> Option<CacheKey> {
        self(request)
    }
}

/// The default key maker: `GET` and `HEAD` requests, keyed by method, URI and the values of
/// the configured headers (none by default).
///
/// A request carrying `Authorization` is bypassed unless `authorization` is one of the key
/// headers: one user's answer must never be served to another.
///
/// ```
/// use http::{Request, header::{ACCEPT, AUTHORIZATION}};
/// use tower_bulwark::fallback_cache::{DefaultMakeKey, MakeCacheKey};
///
/// let keys = DefaultMakeKey::new();
/// assert!(keys.make_key(&Request::get("/tasks").body(()).unwrap()).is_some());
/// assert!(keys.make_key(&Request::get("/tasks").header(AUTHORIZATION, "Bearer x").body(()).unwrap()).is_none());
/// assert!(keys.make_key(&Request::options("/tasks").body(()).unwrap()).is_none());
///
/// let per_user = DefaultMakeKey::new().headers([ACCEPT, AUTHORIZATION]);
/// let a = per_user.make_key(&Request::get("/t").header(AUTHORIZATION, "Bearer a").body(()).unwrap());
/// let b = per_user.make_key(&Request::get("/t").header(AUTHORIZATION, "Bearer b").body(()).unwrap());
/// assert!(a.is_some() && a != b);
/// ```
#[derive(Clone)]
pub struct DefaultMakeKey {
    methods: Arc<[Method]>,
    headers: Arc<[HeaderName]>,
    keys_authorization: bool,
}

impl DefaultMakeKey {
    /// `GET` and `HEAD`, no key headers.
    #[must_use]
    pub fn new() -> Self {
        Self {
            methods: Arc::new([Method::GET, Method::HEAD]),
            headers: Arc::new([]),
            keys_authorization: false,
        }
    }

    /// The methods whose answers are stored (default `GET` and `HEAD`). Unsafe methods in
    /// this list are ignored: writes are never stored.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().filter(Method::is_safe).collect();
        self
    }

    /// The request headers whose values are part of the key (like `Vary`). Including
    /// `authorization` stores answers to authorised requests, one entry per credential.
    #[must_use]
    pub fn headers(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.headers = headers.into_iter().collect();
        self.keys_authorization = self.headers.contains(&AUTHORIZATION);
        self
    }
}

impl Default for DefaultMakeKey {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DefaultMakeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultMakeKey")
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .finish()
    }
}

impl<B> MakeCacheKey<B> for DefaultMakeKey {
    fn make_key(&self, request: &Request<B>) -> Option<CacheKey> {
        if !self.methods.contains(request.method()) {
            return None;
        }
        let headers = request.headers();
        if !self.keys_authorization && headers.contains_key(AUTHORIZATION) {
            return None;
        }
        Some(CacheKey {
            method: request.method().clone(),
            uri: request.uri().clone(),
            parts: self
                .headers
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect(),
        })
    }
}

/// A [`CacheKey`] with its hash, computed once per request: the store's map hashes only this
/// number and compares full keys only when two hashes are equal.
#[derive(Debug)]
pub(crate) struct StoreKey {
    hash: u64,
    pub(crate) key: CacheKey,
}

impl StoreKey {
    /// Hashes `key` with `seed` (one per layer, random: see [`KeyHasher`]).
    ///
    /// Not through `CacheKey`'s `Hash`: `Uri` hashes its authority byte by byte. This hashes
    /// every field a word at a time, scheme and authority lowercased (as `Uri` compares them),
    /// each field preceded by its length (or a marker when absent), so equal keys hash alike.
    pub(crate) fn new(key: CacheKey, seed: u64) -> Self {
        let mut h = KeyHasher::new(seed);
        h.field(Some(key.method.as_str().as_bytes()), false);
        h.field(key.uri.scheme_str().map(str::as_bytes), true);
        h.field(key.uri.authority().map(|a| a.as_str().as_bytes()), true);
        h.field(Some(key.uri.path().as_bytes()), false);
        h.field(key.uri.query().map(str::as_bytes), false);
        for part in &key.parts {
            h.field(part.as_ref().map(HeaderValue::as_bytes), false);
        }
        Self {
            hash: h.finish(),
            key,
        }
    }
}

impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl Eq for StoreKey {}

impl Hash for StoreKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A fast seeded hasher for keys (a folded multiply per sixteen bytes, as in `foldhash`):
/// several times cheaper than the default SipHash over a `Uri`, whose authority `Hash` feeds
/// byte by byte. The key is read as a stream of words, each field as its length (or a marker
/// when absent) and its bytes padded to whole words, so field boundaries are unambiguous.
///
/// The seed is random per layer, so colliding keys cannot be precomputed; and the store is
/// bounded, so even colliding keys cost at most `max_entries` comparisons.
pub(crate) struct KeyHasher {
    state: u64,
    pending: Option<u64>,
}

/// Random seed for a layer's [`KeyHasher`].
pub(crate) fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// `w`'s bytes ASCII-lowercased if `lower`: eight at once when all are ASCII.
#[inline]
fn lowercase(w: u64, lower: bool) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if !lower {
        return w;
    }
    if w & HIGH != 0 {
        let mut b = w.to_le_bytes();
        b.make_ascii_lowercase();
        return u64::from_le_bytes(b);
    }
    // Per byte (no carries, all below 0x80): the high bit set when `A` <= byte <= `Z`.
    let upper = (w + 0x3F3F_3F3F_3F3F_3F3F) & !(w + 0x2525_2525_2525_2525) & HIGH;
    w | (upper >> 2)
}

/// The high and low halves of the full product, folded.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl KeyHasher {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xA076_1D64_78BD_642F;

    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            pending: None,
        }
    }

    #[inline]
    fn word(&mut self, w: u64) {
        match self.pending.take() {
            // Two words, one multiply.
            Some(a) => {
                self.state = fold(
                    self.state ^ a ^ Self::K1,
                    w ^ self.state.rotate_left(29) ^ Self::K2,
                );
            }
            None => self.pending = Some(w),
        }
    }

    /// A field: its length (or a marker when absent), then its bytes eight at a time (the
    /// last word zero-padded), ASCII-lowercased if `lower`.
    #[inline]
    fn field(&mut self, bytes: Option<&[u8]>, lower: bool) {
        let Some(bytes) = bytes else {
            self.word(u64::MAX);
            return;
        };
        self.word(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0; 8];
            b.copy_from_slice(w);
            self.word(lowercase(u64::from_le_bytes(b), lower));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let w = rest.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b));
            self.word(lowercase(w, lower));
        }
    }

    fn finish(mut self) -> u64 {
        if self.pending.is_some() {
            self.word(0);
        }
        // One more round, so the last words are mixed into every bit.
        fold(self.state ^ Self::K2, Self::K1)
    }
}

/// Passes a [`StoreKey`]'s precomputed hash through.
#[derive(Default)]
pub(crate) struct PassHasher(u64);

impl Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `StoreKey`); fold anything else in, to stay correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_alike_and_different_keys_apart() {
        let seed = random_seed();
        let k = |m: Method, u: &str| StoreKey::new(CacheKey::new(m, u.parse().unwrap()), seed);
        // `Uri` compares scheme and authority case-insensitively: so must the hash.
        let a = k(Method::GET, "http://Example.COM/tasks?x=1");
        let b = k(Method::GET, "http://example.com/tasks?x=1");
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
        let others = [
            k(Method::HEAD, "http://example.com/tasks?x=1"),
            k(Method::GET, "http://example.com/tasks?x=2"),
            k(Method::GET, "http://example.com/tasks"),
            k(Method::GET, "/tasks?x=1"),
            k(Method::GET, "https://example.com/tasks?x=1"),
        ];
        for o in &others {
            assert_ne!(&a, o);
            assert_ne!(a.hash, o.hash);
        }
        let p = |v: Option<&'static str>| {
            StoreKey::new(
                CacheKey::new(Method::GET, Uri::from_static("/t"))
                    .with_part(v.map(HeaderValue::from_static)),
                seed,
            )
        };
        assert_ne!(p(None).hash, p(Some("")).hash);
        assert_ne!(p(Some("a")).hash, p(Some("b")).hash);
    }

    #[test]
    fn lowercase_words() {
        let all: Vec<u8> = (0..=255).collect();
        for w in all.chunks(8).chain([&b"Ab-Z.z@["[..], b"[`{zZaA0"]) {
            let mut b = [0; 8];
            b.copy_from_slice(w);
            let mut expected = b;
            expected.make_ascii_lowercase();
            assert_eq!(
                lowercase(u64::from_le_bytes(b), true),
                u64::from_le_bytes(expected),
                "{w:?}"
            );
            assert_eq!(
                lowercase(u64::from_le_bytes(b), false),
                u64::from_le_bytes(b)
            );
        }
    }
}
