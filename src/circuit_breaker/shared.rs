//! The state one layer's services share: one breaker, or a bounded registry of per-key
//! breakers.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Arc, PoisonError, RwLock},
};

use super::{
    State,
    state::{Breaker, Core},
};

pub(crate) struct Shared<K> {
    pub(crate) core: Core<K>,
    pub(crate) breakers: Breakers<K>,
}

impl<K> fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.core.config.name)
            .finish_non_exhaustive()
    }
}

// Inline rather than boxed: it lives once per layer, inside an `Arc`, and the hot path
// saves a pointer chase.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Breakers<K> {
    /// One breaker for every request.
    Single(Breaker<K>),
    /// One breaker per key.
    Keyed(Registry<K>),
}

/// Per-key breakers, at most `max_keys` of them.
///
/// A known key costs a read lock and a hash lookup; a new key a write lock. When full, idle
/// breakers (unused for `idle_timeout`) go first, then the least recently used one. Breakers
/// held by hand (forced open or closed, disabled) are evicted only when nothing else can be.
/// There is no sweeper task: eviction runs when a new key needs room, or on
/// [`evict_idle`](super::CircuitBreakerHandle::evict_idle).
pub(crate) struct Registry<K> {
    map: RwLock<HashMap<K, Arc<Breaker<K>>>>,
}

fn is_manual(state: State) -> bool {
    matches!(
        state,
        State::ForcedOpen | State::ForcedClosed | State::Disabled
    )
}

impl<K: Clone + Hash + Eq + 'static> Registry<K> {
    pub(crate) fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<Arc<Breaker<K>>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The breaker for `key`, made if new; marks it used.
    pub(crate) fn get_or_insert(&self, key: K, core: &Core<K>) -> Arc<Breaker<K>> {
        let now = core.now();
        if let Some(b) = self.get(&key) {
            b.touch(now);
            return b;
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(&key) {
            return b.clone();
        }
        if map.len() >= core.config.max_keys {
            Self::make_room(&mut map, core, now);
        }
        let b = Arc::new(Breaker::new(key.clone(), core));
        map.insert(key, b.clone());
        b
    }

    fn make_room(map: &mut HashMap<K, Arc<Breaker<K>>>, core: &Core<K>, now: u64) {
        let idle = u64::try_from(core.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        map.retain(|_, b| now.saturating_sub(b.last_used()) < idle || is_manual(b.state()));
        while map.len() >= core.config.max_keys {
            // Least recently used, sparing breakers held by hand if possible.
            let victim = map
                .iter()
                .min_by_key(|(_, b)| (is_manual(b.state()), b.last_used()))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Removes every idle breaker not held by hand; returns how many went.
    pub(crate) fn evict_idle(&self, core: &Core<K>) -> usize {
        let now = core.now();
        let idle = u64::try_from(core.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        map.retain(|_, b| now.saturating_sub(b.last_used()) < idle || is_manual(b.state()));
        before - map.len()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Breaker<K>>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
