//! The layer, its builder and the state shared by every clone.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{HeaderName, HeaderValue, Method, StatusCode};
use tower_layer::Layer;

use super::{
    CacheKey, ConfigError, DefaultMakeKey, FallbackCache, FallbackCacheHandle,
    key::{Hashed, random_seed},
    store::{Store, is_under, write_covers},
};
use crate::classify::HttpClassifier;

/// Settings fixed at [`build`](FallbackCacheBuilder::build).
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) ttl: Duration,
    pub(crate) fresh_ttl: Option<Duration>,
    pub(crate) stale_statuses: Vec<StatusCode>,
    /// `(write prefix, read prefix)`: a write under the first invalidates entries under the
    /// second.
    pub(crate) rules: Vec<(String, String)>,
}

/// What every clone of a layer, its services and handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    store: Mutex<Store>,
    /// Orders requests: a newer answer replaces an older one; see `Store::insert`.
    tickets: AtomicU64,
    /// `<name>; hit; detail=stale-if-error`, made once.
    pub(crate) stale_status: HeaderValue,
    /// `<name>; hit`, made once.
    pub(crate) fresh_status: HeaderValue,
    /// Seeds the hash of this layer's keys.
    seed: u64,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store inconsistent in a way that
        // matters more than failing every later call: keep going.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `key` with its hash, borrowed, to look the store up.
    pub(crate) fn hashed<'a>(&self, key: &'a CacheKey) -> Hashed<'a> {
        Hashed::new(key, self.seed)
    }

    pub(crate) fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// What a completed (or unknown-outcome) write to `path` invalidates.
    pub(crate) fn invalidate_write(&self, path: &str) -> usize {
        let ticket = self.ticket();
        let rules: Vec<&str> = self
            .config
            .rules
            .iter()
            .filter(|(w, _)| is_under(path, w))
            .map(|(_, r)| r.as_str())
            .collect();
        self.store().invalidate_if(ticket, |key| {
            write_covers(path, key.path()) || rules.iter().any(|r| is_under(key.path(), r))
        })
    }
}

/// A [`Layer`] that answers failed reads with the last good answer. See the
/// [module docs](super).
///
/// Clones share one store; two layers built separately do not.
pub struct FallbackCacheLayer<K = DefaultMakeKey, C = HttpClassifier> {
    pub(crate) shared: Arc<Shared>,
    make_key: K,
    classifier: C,
}

impl<K: Clone, C: Clone> Clone for FallbackCacheLayer<K, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            make_key: self.make_key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K: fmt::Debug, C: fmt::Debug> fmt::Debug for FallbackCacheLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCacheLayer")
            .field("config", &self.shared.config)
            .field("make_key", &self.make_key)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl FallbackCacheLayer {
    /// A layer with the default settings (see [`FallbackCacheBuilder`]).
    #[must_use]
    pub fn new() -> Self {
        // The defaults are valid (a test builds them): skip validation, nothing can fail.
        FallbackCacheBuilder::default().assemble(
            HeaderValue::from_static("tower-bulwark; hit; detail=stale-if-error"),
            HeaderValue::from_static("tower-bulwark; hit"),
        )
    }

    /// A builder, starting from the defaults.
    #[must_use]
    pub fn builder() -> FallbackCacheBuilder {
        FallbackCacheBuilder::default()
    }
}

fn shared(
    config: Config,
    max_entries: usize,
    max_bytes: usize,
    stale_status: HeaderValue,
    fresh_status: HeaderValue,
) -> Shared {
    Shared {
        config,
        store: Mutex::new(Store::new(max_entries, max_bytes)),
        tickets: AtomicU64::new(0),
        stale_status,
        fresh_status,
        seed: random_seed(),
    }
}

impl Default for FallbackCacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, C> FallbackCacheLayer<K, C> {
    /// A handle on the store: invalidation, counters, metrics.
    #[must_use]
    pub fn handle(&self) -> FallbackCacheHandle {
        FallbackCacheHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for FallbackCacheLayer<K, C> {
    type Service = FallbackCache<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackCache {
            inner,
            shared: Arc::clone(&self.shared),
            make_key: self.make_key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// Builds a [`FallbackCacheLayer`].
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) (in `Cache-Status` and the metrics' `cache` label) | `tower-bulwark` |
/// | [`max_entries`](Self::max_entries) | 1000 |
/// | [`max_bytes`](Self::max_bytes) (all entries) | 64 MiB |
/// | [`max_body_bytes`](Self::max_body_bytes) (one body) | 1 MiB |
/// | [`ttl`](Self::ttl) (oldest answer served on failure) | 5 minutes |
/// | [`fresh_ttl`](Self::fresh_ttl) (answer without asking) | off |
/// | [`stale_on_statuses`](Self::stale_on_statuses) | 500, 502, 503, 504 |
/// | [`invalidate_on_write`](Self::invalidate_on_write) rules | none |
/// | [`key_headers`](Self::key_headers) / [`methods`](Self::methods) | none / `GET`, `HEAD` |
/// | [`classifier`](Self::classifier) | [`HttpClassifier`] |
pub struct FallbackCacheBuilder<K = DefaultMakeKey, C = HttpClassifier> {
    name: String,
    max_entries: usize,
    max_bytes: usize,
    max_body_bytes: usize,
    ttl: Duration,
    fresh_ttl: Option<Duration>,
    stale_statuses: Vec<StatusCode>,
    rules: Vec<(String, String)>,
    make_key: K,
    classifier: C,
}

impl Default for FallbackCacheBuilder {
    fn default() -> Self {
        Self {
            name: "tower-bulwark".into(),
            max_entries: 1000,
            max_bytes: 64 << 20,
            max_body_bytes: 1 << 20,
            ttl: Duration::from_secs(300),
            fresh_ttl: None,
            stale_statuses: [500, 502, 503, 504]
                .into_iter()
                .filter_map(|s| StatusCode::from_u16(s).ok())
                .collect(),
            rules: Vec::new(),
            make_key: DefaultMakeKey::new(),
            classifier: HttpClassifier::new(),
        }
    }
}

impl<K: fmt::Debug, C: fmt::Debug> fmt::Debug for FallbackCacheBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCacheBuilder")
            .field("name", &self.name)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ttl", &self.ttl)
            .field("fresh_ttl", &self.fresh_ttl)
            .field("stale_statuses", &self.stale_statuses)
            .field("rules", &self.rules)
            .field("make_key", &self.make_key)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<K, C> FallbackCacheBuilder<K, C> {
    /// The cache's name: the member in `Cache-Status` (an RFC 8941 token, e.g.
    /// `tower-bulwark` or `tasks-api`) and the `cache` label of its metrics.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many entries (at least 1); the least recently used goes first.
    #[must_use]
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// At most this many bytes over all entries (body, headers, key and a fixed per-entry
    /// overhead); the least recently used goes first. At least `max_body_bytes`.
    #[must_use]
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Bodies longer than this are not stored (and a longer answer removes the older entry).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// The oldest answer served when the inner call fails (RFC 5861 `stale-if-error`), counted
    /// from when it was stored plus any `Age` it arrived with. Not zero.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Fresh mode: answer from the store, without asking the inner service, while the entry is
    /// at most this old (at most [`ttl`](Self::ttl)). A request with `Cache-Control: no-cache`
    /// is always forwarded.
    #[must_use]
    pub fn fresh_ttl(mut self, fresh_ttl: Duration) -> Self {
        self.fresh_ttl = Some(fresh_ttl);
        self
    }

    /// Of the responses the [classifier](Self::classifier) calls failures, those with one of
    /// these statuses are answered from the store (default 500, 502, 503, 504, as RFC 5861).
    /// Failed calls that end in `Err` always are.
    #[must_use]
    pub fn stale_on_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.stale_statuses = statuses.into_iter().collect();
        self
    }

    /// A write (unsafe method) whose path is under `write_prefix` also invalidates every
    /// entry whose path is under `read_prefix`, on top of what its own URI covers. "Under" is
    /// segment-wise: `/tasks` covers `/tasks`, `/tasks/7`, not `/tasksets`.
    ///
    /// E.g. `("/tasks", "/tasks")`: any write under `/tasks` invalidates every `GET /tasks…`.
    #[must_use]
    pub fn invalidate_on_write(
        mut self,
        write_prefix: impl Into<String>,
        read_prefix: impl Into<String>,
    ) -> Self {
        self.rules.push((write_prefix.into(), read_prefix.into()));
        self
    }

    /// The classifier deciding whether the inner call failed (default [`HttpClassifier`]:
    /// `Err`, 5xx and 429). Only 2xx answers it does not call failures are stored.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> FallbackCacheBuilder<K, C2> {
        FallbackCacheBuilder {
            name: self.name,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_body_bytes: self.max_body_bytes,
            ttl: self.ttl,
            fresh_ttl: self.fresh_ttl,
            stale_statuses: self.stale_statuses,
            rules: self.rules,
            make_key: self.make_key,
            classifier,
        }
    }

    /// A custom [`MakeCacheKey`](super::MakeCacheKey) (a closure
    /// `Fn(&Request<B>) -> Option<CacheKey>`, say), replacing [`DefaultMakeKey`].
    #[must_use]
    pub fn make_key<K2>(self, make_key: K2) -> FallbackCacheBuilder<K2, C> {
        FallbackCacheBuilder {
            name: self.name,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_body_bytes: self.max_body_bytes,
            ttl: self.ttl,
            fresh_ttl: self.fresh_ttl,
            stale_statuses: self.stale_statuses,
            rules: self.rules,
            make_key,
            classifier: self.classifier,
        }
    }

    /// The layer, or why the settings do not make sense.
    pub fn build(self) -> Result<FallbackCacheLayer<K, C>, ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::new("max_entries must be at least 1"));
        }
        if self.max_body_bytes > self.max_bytes {
            return Err(ConfigError::new("max_body_bytes must not exceed max_bytes"));
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::new("ttl must not be zero"));
        }
        if self.fresh_ttl.is_some_and(|f| f > self.ttl) {
            return Err(ConfigError::new("fresh_ttl must not exceed ttl"));
        }
        if !is_token(&self.name) {
            return Err(ConfigError::new(
                "name must be a structured-field token (a letter or `*`, then tchar, `:` or `/`)",
            ));
        }
        let header = |s: String| {
            HeaderValue::try_from(s).map_err(|_| ConfigError::new("name is not a header value"))
        };
        let stale_status = header(format!("{}; hit; detail=stale-if-error", self.name))?;
        let fresh_status = header(format!("{}; hit", self.name))?;
        Ok(self.assemble(stale_status, fresh_status))
    }

    fn assemble(
        self,
        stale_status: HeaderValue,
        fresh_status: HeaderValue,
    ) -> FallbackCacheLayer<K, C> {
        let config = Config {
            name: self.name,
            max_body_bytes: self.max_body_bytes,
            ttl: self.ttl,
            fresh_ttl: self.fresh_ttl,
            stale_statuses: self.stale_statuses,
            rules: self.rules,
        };
        FallbackCacheLayer {
            shared: Arc::new(shared(
                config,
                self.max_entries,
                self.max_bytes,
                stale_status,
                fresh_status,
            )),
            make_key: self.make_key,
            classifier: self.classifier,
        }
    }
}

impl<C> FallbackCacheBuilder<DefaultMakeKey, C> {
    /// Request headers whose values are part of the key (see [`DefaultMakeKey::headers`]).
    /// Include `authorization` to store answers to authorised requests per credential.
    #[must_use]
    pub fn key_headers(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.make_key = self.make_key.headers(headers);
        self
    }

    /// Methods whose answers are stored (see [`DefaultMakeKey::methods`]).
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.make_key = self.make_key.methods(methods);
        self
    }
}

/// RFC 8941 §3.3.4 token: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
fn is_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'*')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_bad_settings_are_refused() {
        assert!(FallbackCacheBuilder::default().build().is_ok());
        let _ = FallbackCacheLayer::new();
        let bad = [
            FallbackCacheLayer::builder().max_entries(0),
            FallbackCacheLayer::builder()
                .max_bytes(10)
                .max_body_bytes(11),
            FallbackCacheLayer::builder().ttl(Duration::ZERO),
            FallbackCacheLayer::builder()
                .ttl(Duration::from_secs(1))
                .fresh_ttl(Duration::from_secs(2)),
            FallbackCacheLayer::builder().name("has space"),
            FallbackCacheLayer::builder().name("9lives"),
            FallbackCacheLayer::builder().name(""),
        ];
        for b in bad {
            let err = b.build().unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid fallback cache configuration")
            );
        }
        assert!(
            FallbackCacheLayer::builder()
                .name("tasks-api/v1")
                .build()
                .is_ok()
        );
    }
}
