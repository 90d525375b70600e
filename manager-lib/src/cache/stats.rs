//! The counters of [`CachedStorage`](super::CachedStorage), shared by the
//! decorator and its change feed, which both answer from the storage when
//! the cache fails.

use std::sync::atomic::{AtomicU64, Ordering};

use super::CacheError;

/// Counters of [`CachedStorage`](super::CachedStorage), for metrics. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// User rows answered from the cache.
    pub hits: u64,
    /// User rows read from the storage (not cached, expired, or the cache failed).
    pub misses: u64,
    /// Cache calls that failed (and were answered from the storage) and
    /// cached values that could not be read back.
    pub errors: u64,
    /// Times the serving-node set was read from the storage.
    pub node_refreshes: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) node_refreshes: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters so far.
    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            node_refreshes: self.node_refreshes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn cache_failed(&self, op: &'static str, error: &CacheError) {
        bump(&self.errors);
        // The key is left out on purpose: it holds the user id, which with the
        // user's name authorises the node-list call.
        tracing::warn!(op, error = %error, "cache call failed; answering from storage");
    }
}
