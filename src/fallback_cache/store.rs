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

use super::key::{AsKey, CacheKey, PassHasher, StoreKey};

/// What a stored answer says: immutable once stored, so an answer fetched again and found
/// identical keeps it and only renews its [`Meta`].
#[derive(Debug)]
pub(crate) struct Entry {
    /// The key it is stored under (shared with the store's map).
    pub(crate) key: Arc<StoreKey>,
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The headers of a stale answer, made once when stored: hop-by-hop fields and `Age`
    /// removed, then an `Age` placeholder and this layer's `Cache-Status` added, so that
    /// answering only sets `Age` in place.
    pub(crate) headers: HeaderMap,
    /// The answer had no `Age`, `Cache-Status` or hop-by-hop field: `headers` are its own, in
    /// order, then the `Age` placeholder and this layer's `Cache-Status`.
    pub(crate) plain: bool,
    pub(crate) body: Bytes,
    /// Bytes charged against the store's budget.
    pub(crate) cost: usize,
}

/// When and by which request a stored answer was fetched: kept in the store's slot, next to
/// the shared [`Entry`], and renewed in place when the same answer arrives again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    /// When it arrived: the response time (tokio clock, so paused-clock tests can move it).
    pub(crate) stored_at: Instant,
    /// The `Age` the answer already had when it arrived (from a cache further in).
    pub(crate) initial_age: Duration,
    /// The ticket of the request that fetched it: a newer answer replaces an older one, never
    /// the reverse.
    pub(crate) ticket: u64,
}

impl Meta {
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
    entry: Arc<Entry>,
    meta: Meta,
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
    /// Answers stored: new, replacing an older one, or identical to the stored one (status,
    /// headers and body), which is then renewed in place (its age restarts from zero).
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
    /// The entry and its age at the lookup's `now`.
    Hit(Arc<Entry>, Duration),
    Miss,
}

/// An entry as found in the store (by [`Store::find`]): where it was and which it was. Holding
/// the `Arc` keeps its address from being reused, so the same address in that slot later is
/// the same entry, under the same key: found again without hashing the key, and renewed by
/// [`Store::refresh`].
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) slot: usize,
    pub(crate) entry: Arc<Entry>,
}

/// What [`Store::refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Renewed in place.
    Renewed,
    /// Left alone: a newer answer is stored, or an invalidation came after the request.
    Refused,
    /// The slot no longer holds that entry (replaced, evicted, invalidated): insert instead.
    Gone,
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

    /// The entry under `key` (in `held`'s slot if it is still there) if it is at most
    /// `max_age` old at `now`; an older one is removed. Touches the entry (most recently used).
    pub(crate) fn get(
        &mut self,
        key: &dyn AsKey,
        held: Option<&Held>,
        now: Instant,
        max_age: Duration,
    ) -> Lookup {
        let i = match held {
            Some(h) if self.holds(h) => h.slot,
            _ => match self.map.get(key) {
                Some(&i) => i,
                None => return Lookup::Miss,
            },
        };
        let Some(slot) = self.slots[i].as_ref() else {
            return Lookup::Miss;
        };
        let age = slot.meta.age(now);
        if age > max_age {
            self.remove_slot(i);
            self.stats.expirations += 1;
            return Lookup::Miss;
        }
        let entry = Arc::clone(&slot.entry);
        self.touch(i);
        Lookup::Hit(entry, age)
    }

    /// The entry stored under `key`, whatever its age; neither touched nor expired.
    pub(crate) fn find(&self, key: &dyn AsKey) -> Option<Held> {
        let &i = self.map.get(key)?;
        let slot = self.slots[i].as_ref()?;
        Some(Held {
            slot: i,
            entry: Arc::clone(&slot.entry),
        })
    }

    /// Whether `held`'s slot still holds its entry.
    fn holds(&self, held: &Held) -> bool {
        self.slots
            .get(held.slot)
            .and_then(Option::as_ref)
            .is_some_and(|s| Arc::ptr_eq(&s.entry, &held.entry))
    }

    /// Renews `held` with `meta` (the same answer, fetched again), if its slot still holds it
    /// and, as for [`insert`](Self::insert), the request started after the latest
    /// invalidation and the entry's own request. Counts as a store.
    pub(crate) fn refresh(&mut self, held: &Held, meta: Meta) -> Refresh {
        let Some(s) = self
            .slots
            .get_mut(held.slot)
            .and_then(Option::as_mut)
            .filter(|s| Arc::ptr_eq(&s.entry, &held.entry))
        else {
            return Refresh::Gone;
        };
        if meta.ticket < self.last_invalidation || s.meta.ticket > meta.ticket {
            return Refresh::Refused;
        }
        s.meta = meta;
        self.touch(held.slot);
        self.stats.stores += 1;
        Refresh::Renewed
    }

    /// Stores `entry` under its key, unless the request that fetched it started before the
    /// latest invalidation or before the answer already stored. Evicts least recently used
    /// entries to make room. Returns whether it was stored.
    pub(crate) fn insert(&mut self, entry: Arc<Entry>, meta: Meta) -> bool {
        if meta.ticket < self.last_invalidation || entry.cost > self.max_bytes {
            return false;
        }
        if let Some(&i) = self.map.get(&entry.key) {
            let Some(slot) = self.slots[i].as_mut() else {
                return false;
            };
            if slot.meta.ticket > meta.ticket {
                return false;
            }
            // Replace in place: no second hash of the key, no map churn (the common case of
            // a key read again and again).
            let old_cost = slot.entry.cost as u64;
            self.stats.bytes = self.stats.bytes - old_cost + entry.cost as u64;
            slot.entry = entry;
            slot.meta = meta;
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
        let key = Arc::clone(&entry.key);
        let slot = Slot {
            entry,
            meta,
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
            Some(slot) if slot.meta.ticket < ticket => {
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
    pub(crate) fn invalidate(&mut self, ticket: u64, key: &dyn AsKey) -> bool {
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
            self.map.remove(&*slot.entry.key);
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
            out.push(s.entry.key.key.uri().to_string());
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

    fn entry(uri: &str, body: usize) -> Arc<Entry> {
        Arc::new(Entry {
            key: key(uri),
            status: StatusCode::OK,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            plain: true,
            body: Bytes::from(vec![0; body]),
            cost: ENTRY_OVERHEAD + body,
        })
    }

    fn meta(ticket: u64) -> Meta {
        Meta {
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            ticket,
        }
    }

    /// Inserts a new entry of `body` bytes under `uri`, fetched by request `ticket`.
    fn put(s: &mut Store, uri: &str, ticket: u64, body: usize) -> bool {
        s.insert(entry(uri, body), meta(ticket))
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
            assert!(put(&mut s, u, t as u64 + 1, 1));
        }
        // Touch /a: /b becomes the oldest.
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            s.get(&*key("/a"), None, Instant::now(), ttl),
            Lookup::Hit(..)
        ));
        assert!(put(&mut s, "/d", 9, 1));
        assert_eq!(s.lru_order(), ["/d", "/a", "/c"]);
        assert_eq!(s.stats.evictions, 1);
        assert_eq!(s.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn byte_budget_and_tickets() {
        let per = ENTRY_OVERHEAD + 100;
        let mut s = Store::new(100, per * 2);
        assert!(put(&mut s, "/a", 5, 100));
        // An older answer never replaces a newer one.
        assert!(!put(&mut s, "/a", 4, 100));
        assert!(put(&mut s, "/b", 6, 100));
        assert!(put(&mut s, "/c", 7, 100));
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), (per * 2) as u64);
        // Too big for the whole budget: refused.
        assert!(!put(&mut s, "/d", 8, per * 2));
        // A request that started before an invalidation is not stored.
        assert_eq!(s.invalidate_if(10, |k| k.path() == "/b"), 1);
        assert!(!put(&mut s, "/e", 9, 1));
        assert!(put(&mut s, "/e", 11, 1));
        assert!(s.remove_older(&key("/e"), 12));
        assert!(!s.remove_older(&key("/c"), 1));
        assert!(s.invalidate(13, &*key("/c")));
        assert_eq!((s.len(), s.bytes()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_go() {
        let mut s = Store::new(10, usize::MAX);
        put(&mut s, "/a", 1, 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            s.get(&*key("/a"), None, Instant::now(), Duration::from_secs(60)),
            Lookup::Miss
        ));
        assert_eq!((s.len(), s.stats.expirations), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_renews_in_place_and_follows_the_insert_rules() {
        let ttl = Duration::from_secs(60);
        let mut s = Store::new(2, usize::MAX);
        assert!(put(&mut s, "/a", 1, 10));
        assert!(put(&mut s, "/b", 2, 10));
        let held = s.find(&*key("/a")).unwrap();
        assert_eq!(held.entry.key.key.path(), "/a");
        let bytes = s.bytes();
        tokio::time::advance(Duration::from_secs(50)).await;
        // Renewed: same entry, age from zero, most recently used, counted as a store.
        assert_eq!(s.refresh(&held, meta(3)), Refresh::Renewed);
        assert_eq!(s.lru_order(), ["/a", "/b"]);
        assert_eq!((s.len(), s.bytes(), s.stats.stores), (2, bytes, 3));
        tokio::time::advance(Duration::from_secs(20)).await;
        for hint in [None, Some(&held)] {
            match s.get(&*key("/a"), hint, Instant::now(), ttl) {
                Lookup::Hit(e, age) => {
                    assert!(Arc::ptr_eq(&e, &held.entry));
                    assert_eq!(age, Duration::from_secs(20));
                }
                Lookup::Miss => panic!("renewed"),
            }
        }
        // Not by an older request.
        assert_eq!(s.refresh(&held, meta(2)), Refresh::Refused);
        // Not by one that started before an invalidation.
        assert_eq!(s.invalidate_if(5, |_| false), 0);
        assert_eq!(s.refresh(&held, meta(4)), Refresh::Refused);
        // Not once the slot holds another entry, even under the same key; a lookup with the
        // outdated hint finds the new one.
        assert!(put(&mut s, "/a", 6, 10));
        assert_eq!(s.refresh(&held, meta(7)), Refresh::Gone);
        match s.get(&*key("/a"), Some(&held), Instant::now(), ttl) {
            Lookup::Hit(e, _) => assert!(!Arc::ptr_eq(&e, &held.entry)),
            Lookup::Miss => panic!("replaced"),
        }
        assert!(s.invalidate(8, &*key("/a")));
        assert_eq!(s.refresh(&held, meta(9)), Refresh::Gone);
        assert!(matches!(
            s.get(&*key("/a"), Some(&held), Instant::now(), ttl),
            Lookup::Miss
        ));
        assert_eq!(s.stats.stores, 4);
    }
}
