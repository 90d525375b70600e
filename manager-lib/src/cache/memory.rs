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
    /// `i64::MIN` for a plain `put`.
    version: i64,
    /// A mark of `Cache::mark_changed`: no value.
    mark: bool,
}

impl Entry {
    fn live(&self) -> bool {
        self.expires_at > Instant::now()
    }
}

/// Stripes of the write lock: a versioned write reads and writes its key as
/// one step against every other write of that key.
const WRITE_STRIPES: usize = 64;

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
    writes: Arc<[std::sync::Mutex<()>]>,
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
            writes: (0..WRITE_STRIPES)
                .map(|_| std::sync::Mutex::new(()))
                .collect(),
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

impl MemoryCache {
    fn write_lock(&self, key: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, RandomState};
        static STRIPES: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let hash = STRIPES.get_or_init(RandomState::new).hash_one(key);
        self.writes[(hash % WRITE_STRIPES as u64) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an entry of `version` (a mark when `mark`) for `ttl`. A
    /// versioned write (`versioned`) is refused when the live entry is newer
    /// and stores nothing without a ttl; a plain one without a ttl removes
    /// the key (an entry already expired could only evict a useful one).
    fn write(
        &self,
        key: &str,
        bytes: Arc<[u8]>,
        (version, mark): (i64, bool),
        ttl: Duration,
        versioned: bool,
    ) {
        let _write = self.write_lock(key);
        if versioned && (ttl.is_zero() || self.holds_newer(key, version, mark)) {
            return;
        }
        match Instant::now().checked_add(ttl).filter(|_| !ttl.is_zero()) {
            Some(expires_at) => self.inner.insert(
                key.to_owned(),
                Entry {
                    bytes,
                    expires_at,
                    version,
                    mark,
                },
            ),
            None => {
                self.inner.remove(key);
            }
        }
    }

    /// Whether the live entry under `key` is newer than a write of
    /// `version` (a mark when `mark`); see [`super::newer`].
    fn holds_newer(&self, key: &str, version: i64, mark: bool) -> bool {
        self.inner
            .get(key)
            .filter(Entry::live)
            .is_some_and(|e| super::newer(e.version, e.mark, version, mark))
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        match self.inner.get(key) {
            Some(entry) if entry.live() => Ok((!entry.mark).then(|| entry.bytes.to_vec())),
            Some(_) => {
                self.inner.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        self.write(key, value.into(), (i64::MIN, false), ttl, false);
        Ok(())
    }

    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        let _write = self.write_lock(key);
        self.inner.remove(key);
        Ok(())
    }

    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()> {
        self.write(key, value.into(), (version, false), ttl, true);
        Ok(())
    }

    async fn mark_changed(&self, key: &str, version: i64, ttl: Duration) -> CacheResult<()> {
        self.write(key, Arc::from([]), (version, true), ttl, true);
        Ok(())
    }

    /// Entries live in this process's heap only.
    fn is_process_local(&self) -> bool {
        true
    }
}
