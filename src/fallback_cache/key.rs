//! Cache keys and the hook that makes them.

use std::{
    borrow::Borrow,
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
        let parts = if self.headers.is_empty() {
            Vec::new()
        } else {
            self.headers
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect()
        };
        Some(CacheKey {
            method: request.method().clone(),
            uri: request.uri().clone(),
            parts,
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
    /// Hashes `key` with `seed`: see [`hash`].
    #[cfg(test)]
    pub(crate) fn new(key: CacheKey, seed: u64) -> Self {
        Self {
            hash: hash(&key, seed),
            key,
        }
    }

    /// `key` with its `hash` (from [`Hashed`]).
    pub(crate) fn from_hashed(hash: u64, key: CacheKey) -> Self {
        Self { hash, key }
    }
}

/// A borrowed [`CacheKey`] with its hash: looks up the store without building (moving,
/// dropping) a [`StoreKey`], which an entry already stored does not need.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hashed<'a> {
    pub(crate) hash: u64,
    pub(crate) key: &'a CacheKey,
}

impl<'a> Hashed<'a> {
    /// `key` hashed with `seed`: see [`hash`].
    pub(crate) fn new(key: &'a CacheKey, seed: u64) -> Self {
        Self {
            hash: hash(key, seed),
            key,
        }
    }
}

/// What the store's map is looked up by: a [`StoreKey`] or a [`Hashed`], hashed and compared
/// alike (through `dyn AsKey`, which the map's `Arc<StoreKey>` keys borrow as).
pub(crate) trait AsKey {
    fn key_hash(&self) -> u64;
    fn cache_key(&self) -> &CacheKey;
}

impl AsKey for StoreKey {
    fn key_hash(&self) -> u64 {
        self.hash
    }

    fn cache_key(&self) -> &CacheKey {
        &self.key
    }
}

impl AsKey for Hashed<'_> {
    fn key_hash(&self) -> u64 {
        self.hash
    }

    fn cache_key(&self) -> &CacheKey {
        self.key
    }
}

impl<'a> Borrow<dyn AsKey + 'a> for Arc<StoreKey> {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        &**self
    }
}

/// As `StoreKey` hashes.
impl Hash for dyn AsKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key_hash());
    }
}

/// As `StoreKey` compares.
impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key_hash() == other.key_hash() && self.cache_key().same(other.cache_key())
    }
}

impl Eq for dyn AsKey + '_ {}

/// Hashes `key` with `seed` (one per layer, random: see [`KeyHasher`]).
///
/// Not through `CacheKey`'s `Hash`: `Uri` hashes its authority byte by byte. This hashes every
/// field a word at a time, scheme and authority lowercased (as `Uri` compares them), each
/// field with its length (or a marker when absent), so equal keys hash alike.
fn hash(key: &CacheKey, seed: u64) -> u64 {
    let mut h = KeyHasher::new(seed);
    h.field(Some(key.method.as_str().as_bytes()), false);
    h.field(key.uri.scheme_str().map(str::as_bytes), true);
    h.field(key.uri.authority().map(|a| a.as_str().as_bytes()), true);
    // Path and query as one field: `Uri`s equal as `Uri` compares them (same path, same
    // query) have the same `path_and_query`, or none.
    h.field(
        key.uri.path_and_query().map(|p| p.as_str().as_bytes()),
        false,
    );
    for part in &key.parts {
        h.field(part.as_ref().map(HeaderValue::as_bytes), false);
    }
    h.finish()
}

impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        // The store's own copy, looked up again: no need to compare.
        std::ptr::eq(self, other) || (self.hash == other.hash && self.key.same(&other.key))
    }
}

impl Eq for StoreKey {}

impl Hash for StoreKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl CacheKey {
    /// `self == other`, faster when the URIs are spelled alike (the common case: equal
    /// hashes, a client building the same URI again).
    fn same(&self, other: &Self) -> bool {
        self.method == other.method && same_uri(&self.uri, &other.uri) && self.parts == other.parts
    }
}

/// `a == b`: first byte for byte (what equal keys almost always are), then as `Uri` compares
/// (scheme and authority case-insensitively).
#[inline]
fn same_uri(a: &Uri, b: &Uri) -> bool {
    let spelled_alike = a.authority().map(|x| x.as_str()) == b.authority().map(|x| x.as_str())
        && matches!(
            (a.path_and_query(), b.path_and_query()),
            (Some(x), Some(y)) if x.as_str() == y.as_str()
        )
        && a.scheme() == b.scheme();
    spelled_alike || a == b
}

/// A fast seeded hasher for keys (a folded multiply per sixteen bytes, as in `foldhash`):
/// several times cheaper than the default SipHash over a `Uri`, whose authority `Hash` feeds
/// byte by byte. Each field is read as pairs of words, the first pair starting with its length
/// (or a marker when absent), so field boundaries are unambiguous (see [`field`](Self::field)).
///
/// The seed is random per layer, so colliding keys cannot be precomputed; and the store is
/// bounded, so even colliding keys cost at most `max_entries` comparisons.
pub(crate) struct KeyHasher {
    state: u64,
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

/// The first eight bytes of `b` (at least eight long), little-endian.
#[inline]
fn read8(b: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The first four bytes of `b` (at least four long), little-endian.
#[inline]
fn read4(b: &[u8]) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
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
        Self { state: seed }
    }

    /// Two words, one multiply.
    #[inline(always)]
    fn pair(&mut self, a: u64, b: u64) {
        self.state = fold(
            self.state ^ a ^ Self::K1,
            b ^ self.state.rotate_left(29) ^ Self::K2,
        );
    }

    /// A field: its length (or a marker when absent) and words covering its bytes,
    /// ASCII-lowercased if `lower`, two words at a time. Up to seven bytes make one word (two
    /// four-byte loads, overlapping, or three single bytes); longer fields are read eight bytes
    /// at a time, the last word overlapping the one before. With the length first, every byte
    /// is read and the number of words is fixed, so distinct fields give distinct words.
    #[inline(always)]
    fn field(&mut self, bytes: Option<&[u8]>, lower: bool) {
        let Some(bytes) = bytes else {
            self.pair(u64::MAX, 0);
            return;
        };
        let len = bytes.len();
        let word = |b: &[u8]| lowercase(read8(b), lower);
        if len < 8 {
            let w = match len {
                0 => 0,
                1..4 => {
                    u64::from(bytes[0])
                        | (u64::from(bytes[len / 2]) << 8)
                        | (u64::from(bytes[len - 1]) << 16)
                }
                _ => u64::from(read4(bytes)) | (u64::from(read4(&bytes[len - 4..])) << 32),
            };
            self.pair(len as u64, lowercase(w, lower));
            return;
        }
        self.pair(len as u64, word(bytes));
        let mut rest = &bytes[8..];
        while rest.len() > 16 {
            self.pair(word(rest), word(&rest[8..]));
            rest = &rest[16..];
        }
        let last = &bytes[len - 8..];
        match rest.len() {
            0 => {}
            1..=8 => self.pair(word(last), 0),
            _ => self.pair(word(rest), word(last)),
        }
    }

    fn finish(self) -> u64 {
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
        // No path is `/` to `Uri`: so to the hash (path and query are hashed as one).
        let (root, empty) = (k(Method::GET, "http://h/"), k(Method::GET, "http://h"));
        assert_eq!((&root, root.hash), (&empty, empty.hash));
        assert_ne!(root.hash, k(Method::GET, "http://h/?").hash);
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
    fn every_byte_of_every_length_counts() {
        let seed = random_seed();
        let k = |authority: &str, path: &str| {
            let uri = format!("http://{authority}/{path}").parse().unwrap();
            StoreKey::new(CacheKey::new(Method::GET, uri), seed)
        };
        for len in 1..=40 {
            let base = "a".repeat(len);
            let (host, path) = (k(&base, "p"), k("h", &base));
            // Scheme and authority case-insensitively, as `Uri` compares them.
            let upper = k(&base.to_uppercase(), "p");
            assert_eq!((&host, host.hash), (&upper, upper.hash), "{len}");
            assert_ne!(path.hash, k("h", &base.to_uppercase()).hash, "{len}");
            for i in 0..len {
                let mut other = base.clone().into_bytes();
                other[i] = b'b';
                let other = String::from_utf8(other).unwrap();
                assert_ne!(host.hash, k(&other, "p").hash, "{len} {i}");
                assert_ne!(path.hash, k("h", &other).hash, "{len} {i}");
            }
            // A byte moved from one field to the next.
            assert_ne!(
                k(&base, "ab").hash,
                k(&format!("{base}a"), "b").hash,
                "{len}"
            );
        }
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
