//! The layers a scrape-time collector reports on.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError, Weak},
};

/// Weak references to the shared state of the layers a collector reports on: a dropped layer
/// stops being reported, and a collector never keeps one alive. Clones share the list.
pub(crate) struct Tracked<T> {
    sources: Arc<Mutex<Vec<Weak<T>>>>,
}

impl<T> Tracked<T> {
    /// Adds `source`, forgetting the ones dropped since.
    pub(crate) fn track(&self, source: &Arc<T>) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|s| s.strong_count() > 0);
        sources.push(Arc::downgrade(source));
    }

    /// `read` of every source still alive, taken under the lock so that a scrape sees each once.
    pub(crate) fn read<R>(&self, read: impl FnMut(&T) -> R) -> Vec<R> {
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut read = read;
        sources
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| read(&s))
            .collect()
    }
}

impl<T> Clone for Tracked<T> {
    fn clone(&self) -> Self {
        Self {
            sources: self.sources.clone(),
        }
    }
}

impl<T> Default for Tracked<T> {
    fn default() -> Self {
        Self {
            sources: Arc::default(),
        }
    }
}

impl<T> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Tracked")
            .field("sources", &sources.len())
            .finish()
    }
}
