//! The in-process `Cache`: a bounded `quick_cache` (S3-FIFO) with a time to
//! live per entry. The default for a single manager replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheResult};

/// What one entry costs besides its key and value bytes: the cache's own
/// bookkeeping (hash-table slot, queue position, ghost entry) and the two
/// heap allocations. An estimate on the high side, so the cache stays within
/// its byte budget.
const ENTRY_OVERHEAD_BYTES: u64 = 160;

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    /// Each entry lives for the ttl given to its own `put`, also when it
    /// replaces an older one.
    expires_at: Instant,
}

/// Weighs an entry by its bytes plus the overhead estimate.
#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, value: &Entry) -> u64 {
        key.len() as u64 + value.bytes.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// A bounded in-process [`Cache`]. Bounded by bytes (keys, values and an
/// estimate of the per-entry overhead), not by entry count, so its memory is
/// predictable whatever the size of the values. S3-FIFO: an entry read only
/// once leaves first, so a stream of one-off reads (users polling their list
/// once) does not push out the ones read again and again. No background
/// work and no batched housekeeping: every call costs about a hash-table
/// lookup (moka, used before, stalled callers for tens of milliseconds
/// while it caught up on evictions under 30,000 inserts a second).
///
/// ```
/// use std::time::Duration;
/// use manager_lib::cache::{Cache, MemoryCache};
/// futures::executor::block_on(async {
///     let cache = MemoryCache::new();
///     cache.put("k", b"v".to_vec(), Duration::from_secs(5)).await.unwrap();
///     assert_eq!(cache.get("k").await.unwrap(), Some(b"v".to_vec()));
/// });
/// ```
#[derive(Clone)]
pub struct MemoryCache {
    inner: Arc<quick_cache::sync::Cache<String, Entry, ByBytes>>,
    max_bytes: u64,
}

impl MemoryCache {
    /// The default budget: 16 MiB, about 75,000 user rows (a heartbeat's
    /// worth of node-list calls at 15,000 a second).
    pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

    /// A cache of [`Self::DEFAULT_MAX_BYTES`].
    pub fn new() -> Self {
        Self::with_max_bytes(Self::DEFAULT_MAX_BYTES)
    }

    /// A cache that holds at most about `max_bytes` of keys, values and
    /// per-entry overhead.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        // The item estimate only sizes the table up front.
        let estimated_items = (max_bytes / (ENTRY_OVERHEAD_BYTES + 64)).max(16) as usize;
        let inner = quick_cache::sync::Cache::with_weighter(estimated_items, max_bytes, ByBytes);
        Self {
            inner: Arc::new(inner),
            max_bytes,
        }
    }

    /// The configured budget in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How many bytes the entries weigh now.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.weight()
    }

    /// How many entries the cache holds now (expired ones included until
    /// they are read or pushed out).
    pub fn entry_count(&self) -> u64 {
        self.inner.len() as u64
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &self.inner.len())
            .finish()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        match self.inner.get(key) {
            Some(entry) if entry.expires_at > Instant::now() => Ok(Some(entry.bytes.to_vec())),
            Some(_) => {
                self.inner.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        let Some(expires_at) = Instant::now().checked_add(ttl).filter(|_| !ttl.is_zero()) else {
            // Already expired: storing it could only evict something useful.
            self.inner.remove(key);
            return Ok(());
        };
        let entry = Entry {
            bytes: value.into(),
            expires_at,
        };
        self.inner.insert(key.to_owned(), entry);
        Ok(())
    }

    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        self.inner.remove(key);
        Ok(())
    }
}
