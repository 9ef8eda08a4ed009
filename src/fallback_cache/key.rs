//! Cache keys and the hook that makes them.

use std::{fmt, sync::Arc};

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
