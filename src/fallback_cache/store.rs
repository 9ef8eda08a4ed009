//! The bounded LRU store of last good answers.
//!
//! A small hand-written LRU (a hash map from key to slot, and a doubly linked list threaded
//! through a slab of slots by index): no dependency, no `unsafe`, O(1) lookup, insert, touch
//! and eviction. Prefix and pattern invalidation scan every entry: writes are rare next to
//! reads, and the store is bounded.

use std::{
    collections::HashMap, hash::BuildHasherDefault, mem::size_of, sync::Arc, time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use tokio::time::Instant;

use super::key::{CacheKey, PassHasher, StoreKey};

/// A stored answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The headers of a stale answer, made once when stored: hop-by-hop fields and `Age`
    /// removed, then an `Age` placeholder and this layer's `Cache-Status` added, so that
    /// answering only sets `Age` in place.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When it arrived: the response time (tokio clock, so paused-clock tests can move it).
    pub(crate) stored_at: Instant,
    /// The `Age` the answer already had when it arrived (from a cache further in).
    pub(crate) initial_age: Duration,
    /// The ticket of the request that fetched it: a newer answer replaces an older one, never
    /// the reverse.
    pub(crate) ticket: u64,
    /// Bytes charged against the store's budget.
    pub(crate) cost: usize,
}

impl Entry {
    /// How old the answer is at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at) + self.initial_age
    }
}

/// Fixed bytes charged per entry on top of body, headers and key: the slot, the map's share,
/// the `Entry` and the key's inline size, rounded up for allocator overhead.
pub(crate) const ENTRY_OVERHEAD: usize = size_of::<Slot>()
    + size_of::<(Arc<StoreKey>, usize)>()
    + size_of::<Entry>()
    + size_of::<StoreKey>()
    + 64;

/// The bytes an entry is charged: body, headers, key and fixed overhead.
pub(crate) fn cost(key: &CacheKey, headers: &HeaderMap, body: usize) -> usize {
    // Per header: name, value and the map's bucket (about 32 bytes more per field in `http`).
    let headers: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    ENTRY_OVERHEAD + body + headers + key.heap_bytes()
}

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Slot {
    key: Arc<StoreKey>,
    entry: Arc<Entry>,
    prev: usize,
    next: usize,
}

/// Running totals, read by the handle and by metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Entries stored now.
    pub entries: u64,
    /// Bytes charged by the stored entries now (body, headers, key and a fixed per-entry
    /// overhead: an estimate of the heap they hold).
    pub bytes: u64,
    /// Failed calls answered from the store.
    pub stale_served: u64,
    /// Fresh hits answered without asking the inner service (fresh mode only).
    pub fresh_hits: u64,
    /// Failed calls with nothing usable stored: the failure went to the caller.
    pub misses: u64,
    /// Answers stored (new or replacing).
    pub stores: u64,
    /// Entries removed to make room (LRU).
    pub evictions: u64,
    /// Entries removed because they had outlived the TTL.
    pub expirations: u64,
    /// Entries removed by invalidation (writes, the handle, or newer unstorable answers).
    pub invalidations: u64,
}

/// The store. Always used under the shared mutex.
#[derive(Debug)]
pub(crate) struct Store {
    map: HashMap<Arc<StoreKey>, usize, BuildHasherDefault<PassHasher>>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: evicted first.
    tail: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The ticket of the latest invalidation: answers to requests that started before it are
    /// not stored, as they may predate the write that caused it.
    last_invalidation: u64,
    pub(crate) stats: Stats,
}

/// What a lookup for a failed call found.
pub(crate) enum Lookup {
    Hit(Arc<Entry>),
    Miss,
}

impl Store {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            max_entries,
            max_bytes,
            last_invalidation: 0,
            stats: Stats::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.stats.bytes
    }

    /// The entry under `key` if it is at most `max_age` old at `now`; an older one is removed.
    /// Touches the entry (most recently used).
    pub(crate) fn get(&mut self, key: &StoreKey, now: Instant, max_age: Duration) -> Lookup {
        let Some(&i) = self.map.get(key) else {
            return Lookup::Miss;
        };
        let Some(slot) = self.slots[i].as_ref() else {
            return Lookup::Miss;
        };
        if slot.entry.age(now) > max_age {
            self.remove_slot(i);
            self.stats.expirations += 1;
            return Lookup::Miss;
        }
        let entry = Arc::clone(&slot.entry);
        self.touch(i);
        Lookup::Hit(entry)
    }

    /// Stores `entry` under `key`, unless the request that fetched it started before the
    /// latest invalidation or before the answer already stored. Evicts least recently used
    /// entries to make room. Returns whether it was stored.
    pub(crate) fn insert(&mut self, key: Arc<StoreKey>, entry: Arc<Entry>) -> bool {
        if entry.ticket < self.last_invalidation || entry.cost > self.max_bytes {
            return false;
        }
        if let Some(&i) = self.map.get(&key) {
            let Some(slot) = self.slots[i].as_mut() else {
                return false;
            };
            if slot.entry.ticket > entry.ticket {
                return false;
            }
            // Replace in place: no second hash of the key, no map churn (the common case of
            // a key read again and again).
            let old_cost = slot.entry.cost as u64;
            self.stats.bytes = self.stats.bytes - old_cost + entry.cost as u64;
            slot.entry = entry;
            self.touch(i);
            while self.stats.bytes > self.max_bytes as u64 && self.tail != i && self.tail != NIL {
                self.remove_slot(self.tail);
                self.stats.evictions += 1;
            }
            self.stats.stores += 1;
            return true;
        }
        while self.map.len() >= self.max_entries
            || self.stats.bytes + entry.cost as u64 > self.max_bytes as u64
        {
            if self.tail == NIL {
                break;
            }
            self.remove_slot(self.tail);
            self.stats.evictions += 1;
        }
        self.stats.bytes += entry.cost as u64;
        let slot = Slot {
            key: Arc::clone(&key),
            entry,
            prev: NIL,
            next: self.head,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.link_front(i);
        self.map.insert(key, i);
        self.stats.stores += 1;
        self.stats.entries = self.map.len() as u64;
        true
    }

    /// Removes the entry under `key` if it is older than the request with `ticket` (a newer
    /// answer said it may not be kept).
    pub(crate) fn remove_older(&mut self, key: &StoreKey, ticket: u64) -> bool {
        let Some(&i) = self.map.get(key) else {
            return false;
        };
        match self.slots[i].as_ref() {
            Some(slot) if slot.entry.ticket < ticket => {
                self.remove_slot(i);
                self.stats.invalidations += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes every entry for which `pred` holds; `ticket` becomes the latest invalidation.
    pub(crate) fn invalidate_if(
        &mut self,
        ticket: u64,
        mut pred: impl FnMut(&CacheKey) -> bool,
    ) -> usize {
        self.last_invalidation = self.last_invalidation.max(ticket);
        let doomed: Vec<usize> = self
            .map
            .iter()
            .filter(|(k, _)| pred(&k.key))
            .map(|(_, &i)| i)
            .collect();
        for &i in &doomed {
            self.remove_slot(i);
        }
        self.stats.invalidations += doomed.len() as u64;
        doomed.len()
    }

    /// Removes the entry under `key`; `ticket` becomes the latest invalidation.
    pub(crate) fn invalidate(&mut self, ticket: u64, key: &StoreKey) -> bool {
        self.last_invalidation = self.last_invalidation.max(ticket);
        match self.map.get(key) {
            Some(&i) => {
                self.remove_slot(i);
                self.stats.invalidations += 1;
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, i: usize) {
        self.unlink(i);
        if let Some(slot) = self.slots[i].take() {
            self.map.remove(&*slot.key);
            self.stats.bytes -= slot.entry.cost as u64;
            self.free.push(i);
        }
        self.stats.entries = self.map.len() as u64;
        if self.map.is_empty() {
            // Give the slab back once empty (after a `clear`, say): bounded by entries, but
            // no reason to keep a large one around.
            self.slots.clear();
            self.free.clear();
            self.slots.shrink_to(16);
            self.free.shrink_to(16);
        }
    }

    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn link_front(&mut self, i: usize) {
        let old_head = self.head;
        if let Some(slot) = self.slots[i].as_mut() {
            slot.prev = NIL;
            slot.next = old_head;
        }
        if let Some(h) = self.slots.get_mut(old_head).and_then(Option::as_mut) {
            h.prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn unlink(&mut self, i: usize) {
        let Some((prev, next)) = self.slots[i].as_ref().map(|s| (s.prev, s.next)) else {
            return;
        };
        match self.slots.get_mut(prev).and_then(Option::as_mut) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next).and_then(Option::as_mut) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        if let Some(s) = self.slots[i].as_mut() {
            s.prev = NIL;
            s.next = NIL;
        }
    }

    #[cfg(test)]
    fn lru_order(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = self.head;
        while let Some(s) = self.slots.get(i).and_then(Option::as_ref) {
            out.push(s.key.key.uri().to_string());
            i = s.next;
        }
        out
    }
}

/// `path` without one trailing `/` (except the root itself).
fn trim(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

/// Whether `path` is `prefix` or lies below it, segment by segment: `/tasks` covers `/tasks`,
/// `/tasks/` and `/tasks/7/notes`, not `/tasksets`. `/` and the empty prefix cover everything.
pub(crate) fn is_under(path: &str, prefix: &str) -> bool {
    let (path, prefix) = (trim(path), trim(prefix));
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The parent collection of `path`: `/tasks` for `/tasks/7`, `/` for `/tasks`, `None` for `/`.
pub(crate) fn parent(path: &str) -> Option<&str> {
    let path = trim(path);
    if path == "/" || path.is_empty() {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Whether a write to `write_path` invalidates an entry at `entry_path`, before configured
/// rules: the same resource or anything below it, or its parent collection exactly.
pub(crate) fn write_covers(write_path: &str, entry_path: &str) -> bool {
    is_under(entry_path, write_path) || parent(write_path).is_some_and(|p| trim(entry_path) == p)
}

#[cfg(test)]
mod tests {
    use http::{Method, Uri};

    use super::*;

    fn key(uri: &str) -> Arc<StoreKey> {
        Arc::new(StoreKey::new(
            CacheKey::new(Method::GET, uri.parse::<Uri>().unwrap()),
            7,
        ))
    }

    fn entry(ticket: u64, body: usize) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![0; body]),
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            ticket,
            cost: ENTRY_OVERHEAD + body,
        })
    }

    #[test]
    fn paths() {
        assert!(is_under("/tasks", "/tasks"));
        assert!(is_under("/tasks/", "/tasks"));
        assert!(is_under("/tasks/7/notes", "/tasks/"));
        assert!(!is_under("/tasksets", "/tasks"));
        assert!(!is_under("/task", "/tasks"));
        assert!(is_under("/anything", "/"));
        assert_eq!(parent("/tasks/7"), Some("/tasks"));
        assert_eq!(parent("/tasks/7/"), Some("/tasks"));
        assert_eq!(parent("/tasks"), Some("/"));
        assert_eq!(parent("/"), None);
        assert!(write_covers("/tasks/7", "/tasks/7"));
        assert!(write_covers("/tasks/7", "/tasks/7/notes"));
        assert!(write_covers("/tasks/7", "/tasks"));
        assert!(!write_covers("/tasks/7", "/tasks/8"));
        assert!(!write_covers("/tasks/7", "/users"));
        assert!(write_covers("/tasks", "/tasks/8"));
    }

    #[tokio::test(start_paused = true)]
    async fn lru_evicts_least_recently_used() {
        let mut s = Store::new(3, usize::MAX);
        for (t, u) in ["/a", "/b", "/c"].into_iter().enumerate() {
            assert!(s.insert(key(u), entry(t as u64 + 1, 1)));
        }
        // Touch /a: /b becomes the oldest.
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            s.get(&key("/a"), Instant::now(), ttl),
            Lookup::Hit(_)
        ));
        assert!(s.insert(key("/d"), entry(9, 1)));
        assert_eq!(s.lru_order(), ["/d", "/a", "/c"]);
        assert_eq!(s.stats.evictions, 1);
        assert_eq!(s.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn byte_budget_and_tickets() {
        let per = ENTRY_OVERHEAD + 100;
        let mut s = Store::new(100, per * 2);
        assert!(s.insert(key("/a"), entry(5, 100)));
        // An older answer never replaces a newer one.
        assert!(!s.insert(key("/a"), entry(4, 100)));
        assert!(s.insert(key("/b"), entry(6, 100)));
        assert!(s.insert(key("/c"), entry(7, 100)));
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), (per * 2) as u64);
        // Too big for the whole budget: refused.
        assert!(!s.insert(key("/d"), entry(8, per * 2)));
        // A request that started before an invalidation is not stored.
        assert_eq!(s.invalidate_if(10, |k| k.path() == "/b"), 1);
        assert!(!s.insert(key("/e"), entry(9, 1)));
        assert!(s.insert(key("/e"), entry(11, 1)));
        assert!(s.remove_older(&key("/e"), 12));
        assert!(!s.remove_older(&key("/c"), 1));
        assert!(s.invalidate(13, &key("/c")));
        assert_eq!((s.len(), s.bytes()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_go() {
        let mut s = Store::new(10, usize::MAX);
        s.insert(key("/a"), entry(1, 1));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            s.get(&key("/a"), Instant::now(), Duration::from_secs(60)),
            Lookup::Miss
        ));
        assert_eq!((s.len(), s.stats.expirations), (0, 1));
    }
}
