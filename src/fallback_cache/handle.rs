//! The handle: invalidation and counters.

use std::{fmt, sync::Arc};

use super::{CacheKey, Stats, layer::Shared, store::is_under};

/// A handle on a [`FallbackCacheLayer`](super::FallbackCacheLayer)'s store, from
/// [`FallbackCacheLayer::handle`](super::FallbackCacheLayer::handle). Cheap to clone.
///
/// Every invalidation also stops answers to requests already in flight from being stored:
/// they may predate whatever made the invalidation necessary.
///
/// ```
/// use http::{Method, Uri};
/// use tower_bulwark::fallback_cache::{CacheKey, FallbackCacheLayer};
///
/// let layer = FallbackCacheLayer::new();
/// let handle = layer.handle();
/// assert!(!handle.invalidate(&CacheKey::new(Method::GET, Uri::from_static("/tasks/7"))));
/// assert_eq!(handle.invalidate_prefix("/tasks"), 0);
/// assert_eq!(handle.invalidate_if(|key| key.uri().query().is_some()), 0);
/// assert!(handle.is_empty());
/// ```
#[derive(Clone)]
pub struct FallbackCacheHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for FallbackCacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCacheHandle")
            .field("name", &self.shared.config.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl FallbackCacheHandle {
    /// Removes the entry filed under exactly `key`. Returns whether there was one.
    pub fn invalidate(&self, key: &CacheKey) -> bool {
        let key = self.shared.hashed(key);
        let ticket = self.shared.ticket();
        self.shared.store().invalidate(ticket, &key)
    }

    /// Removes every entry whose path is `prefix` or lies below it, segment by segment
    /// (`/tasks` covers `/tasks`, `/tasks?q=1`, `/tasks/7/notes`, not `/tasksets`; `/` covers
    /// everything), whatever the method, authority, query or key parts. Returns how many.
    ///
    /// Scans the whole store (bounded by `max_entries`).
    pub fn invalidate_prefix(&self, prefix: &str) -> usize {
        self.invalidate_if(|key| is_under(key.path(), prefix))
    }

    /// Removes every entry whose key `pred` accepts. Returns how many. `pred` runs under the
    /// store's lock: keep it quick.
    pub fn invalidate_if(&self, pred: impl FnMut(&CacheKey) -> bool) -> usize {
        let ticket = self.shared.ticket();
        self.shared.store().invalidate_if(ticket, pred)
    }

    /// Removes every entry. Returns how many.
    pub fn clear(&self) -> usize {
        self.invalidate_if(|_| true)
    }

    /// How many entries are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.store().len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes charged by the stored entries (see [`Stats::bytes`]).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.shared.store().bytes()
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.store().stats
    }

    /// The name given to the builder.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }
}
