//! The in-process `Cache`: a bounded `moka` cache with a time to live per
//! entry. The default for a single manager replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheResult};

/// What one entry costs besides its key and value bytes: moka's own
/// bookkeeping (hash-table slot, access-order and write-order nodes, the
/// expiry timer wheel entry) and the two heap allocations. An estimate on the
/// high side, so the cache stays within its byte budget.
const ENTRY_OVERHEAD_BYTES: u64 = 160;

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

/// Each entry lives for the ttl given to its own `put`, also when it replaces
/// an older one (moka's default would keep the old deadline on update).
struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, value: &Entry, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A bounded in-process [`Cache`]. Bounded by bytes (keys, values and an
/// estimate of the per-entry overhead), not by entry count, so its memory is
/// predictable whatever the size of the values; the least useful entries are
/// evicted first (TinyLFU).
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
    inner: moka::future::Cache<String, Entry>,
    max_bytes: u64,
}

impl MemoryCache {
    /// The default budget: 32 MiB, about 150,000 user rows. With 1M users the
    /// hot ones stay cached and the manager stays well under 100 MB RSS.
    pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;

    /// A cache of [`Self::DEFAULT_MAX_BYTES`].
    pub fn new() -> Self {
        Self::with_max_bytes(Self::DEFAULT_MAX_BYTES)
    }

    /// A cache that holds at most about `max_bytes` of keys, values and
    /// per-entry overhead.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        let inner = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Entry| {
                let weight = key.len() as u64 + value.bytes.len() as u64 + ENTRY_OVERHEAD_BYTES;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { inner, max_bytes }
    }

    /// The configured budget in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How many bytes the entries weigh now (approximate: moka applies
    /// evictions in batches).
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// How many entries the cache holds now (approximate, as above).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Applies pending evictions and expirations now; moka otherwise does it
    /// a little later, on later calls.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
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
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        Ok(self.inner.get(key).await.map(|e| e.bytes.to_vec()))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        if ttl.is_zero() {
            // Already expired: storing it could only evict something useful.
            self.inner.invalidate(key).await;
            return Ok(());
        }
        let entry = Entry {
            bytes: value.into(),
            ttl,
        };
        self.inner.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        self.inner.invalidate(key).await;
        Ok(())
    }
}
