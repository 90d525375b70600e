//! The `Cache` port, for the hot user-node-list call, and the decorator that
//! puts it in front of a `Storage`.
//!
//! The cache holds small byte values under string keys with a time to live.
//! It is an optimisation only: every error of a cache is logged and answered
//! from storage, never returned to a client.
//!
//! # Design of [`CachedStorage`]
//!
//! [`Storage::user_nodes`](crate::storage::Storage::user_nodes) is what every
//! client calls, often; the answer is the user's row plus the nodes serving
//! now that applied the user's newest change. The two halves are cached
//! differently because they behave differently:
//!
//! - **The serving-node set** is small (at most thousands of nodes) and
//!   changes on every heartbeat (status, cursor). Each replica keeps it in
//!   process, reads it again from the storage when it is older than
//!   `nodes_ttl`, one read at a time, and drops it at once on any node write
//!   made through it. A node change made by another replica shows within
//!   `nodes_ttl`.
//! - **User rows** are many and change rarely. They live in the shared
//!   [`Cache`] (Redis when several replicas run, [`MemoryCache`] for one)
//!   under `u:<generation>:<id>` until they change (`user_ttl`, an hour by
//!   default, only bounds the cache's size). Three things keep them true:
//!   - **Versions.** A row is stored with [`Cache::put_versioned`] at its
//!     `change_seq`; a write through any replica leaves a mark of the new
//!     number with [`Cache::mark_changed`] (`Seq::MAX` for a deletion). A
//!     fill that read the row before the change and lands after the mark is
//!     refused by the cache itself, whichever replica sent it.
//!   - **The change feed.** A write whose mark was lost (the cache call
//!     failed or timed out, the replica died) is marked by every replica's
//!     follower: each refresh of the node set first reads
//!     [`Storage::changes_after`](crate::storage::Storage::changes_after)
//!     from the replica's place in the feed and marks every change in it.
//!     Until a follow has marked everything it read, the replica answers
//!     user rows from the storage, not the cache. So a change made through
//!     another replica shows within `nodes_ttl`, even when its own mark was
//!     lost.
//!   - **Generations.** `u:feed` names the generation in use and the number
//!     up to which its changes are marked. A replica that starts joins it
//!     and marks the changes after it; without it (a new or flushed cache),
//!     or when the database's newest change is older than it (a restored
//!     backup), the replica starts a new generation: an empty cache, the old
//!     rows left to expire. A follower more than 100,000 changes behind
//!     does the same rather than mark them all.
//!
//!   A change made in the database without the manager, and without a new
//!   `change_seq`, is not seen until the row leaves the cache.
//!
//! The answer is then computed exactly as the storage would: no nodes for a
//! disabled user or one blocked by their plan, else the serving nodes with
//! `applied_seq >= change_seq`, in id order. A block takes a change, so it
//! is marked like a disable; used bytes alone are not a change, so a cached
//! row may show older totals (the list never depends on them).
//!
//! **Absent users are cached too**, as a one-byte value at version -1 for at
//! most 5 minutes: otherwise an unknown id would always reach the storage
//! while a known one is answered from the cache, and the time difference
//! would tell a prober which ids exist. Any write of the user by any
//! replica (a creation included: it marks the key) replaces the absence, and
//! an absence read before such a write is refused by the write's mark.
//!
//! Cached rows hold the user's secret and subscription key: sealed as in
//! the database when the cache's values leave the process (Redis, whose
//! dumps and replicas are copies), as the process holds them in a
//! process-local cache ([`MemoryCache`]), where opening them on every hit
//! would protect nothing. Logs never show keys or values.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::storage::BoxError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache server cannot be reached; the caller falls back to storage.
    #[error("cache unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("cache error: {0}")]
    Other(#[source] BoxError),
}

pub type CacheResult<T> = Result<T, CacheError>;

/// A key-value cache with expiry. Object safe; used as `Arc<dyn Cache>`.
#[async_trait]
pub trait Cache: Debug + Send + Sync {
    /// # Contract
    /// - `Ok(None)` for a key never set, invalidated, or older than its ttl.
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;

    /// Stores `value` under `key` for at most `ttl`.
    ///
    /// # Contract
    /// - A later `get` within `ttl` returns `value` unless the key was
    ///   invalidated or set again; a bounded cache may evict it earlier.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()>;

    /// Removes the key. Removing a missing key is success.
    ///
    /// # Contract
    /// - After it returns, no `get` on any client of the same cache returns
    ///   the old value.
    async fn invalidate(&self, key: &str) -> CacheResult<()>;

    /// Stores `value` under `key` as the state of the thing it describes at
    /// `version`, unless the key holds something newer: a value of a larger
    /// version, or a mark ([`Cache::mark_changed`]) of an equal or larger one.
    /// The check and the write are one atomic step for every client of the
    /// cache, so two processes filling and changing the same key in any order
    /// leave the newest state, never an older one.
    ///
    /// # Contract
    /// - Refused silently (still `Ok`) when the key holds something newer.
    /// - A value stored with [`Cache::put`] counts as older than any version.
    /// - Otherwise as [`Cache::put`].
    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()>;

    /// Records that what `key` describes changed at `version`: `get` answers
    /// `None`, and a later [`Cache::put_versioned`] of an older version is
    /// refused, for `ttl` or until a value of `version` or newer is put.
    ///
    /// # Contract
    /// - Refused silently (still `Ok`) when the key holds a value or a mark
    ///   of `version` or newer: marking never hides a state at least as new.
    async fn mark_changed(&self, key: &str, version: i64, ttl: Duration) -> CacheResult<()>;

    /// Whether every value stays in this process's memory: no other process
    /// reads it and nothing copies it to a file (a dump, a replica).
    /// [`CachedStorage`] keeps users' secrets in such a cache as the process
    /// holds them, so a hit opens nothing; in any other it seals them as the
    /// database does.
    ///
    /// # Contract
    /// - `false` (the default) unless that holds: a wrong `true` puts
    ///   secrets in clear wherever the values go.
    fn is_process_local(&self) -> bool {
        false
    }
}

/// Whether an entry of `version` (a mark when `mark`) wins over a write of
/// `new_version` (a mark when `new_mark`): a larger version always wins; at
/// the same version only a value replaces a mark. The one rule of
/// [`Cache::put_versioned`] and [`Cache::mark_changed`], for backends that
/// check it in process.
pub fn newer(version: i64, mark: bool, new_version: i64, new_mark: bool) -> bool {
    version > new_version || (version == new_version && (!mark || new_mark))
}

mod codec;
mod decorator;
mod feed;
mod memory;
mod snapshot;
mod stats;

pub use decorator::{CachedStorage, CachedStorageSettings};
pub use memory::MemoryCache;
pub use stats::CacheStats;

#[cfg(feature = "conformance")]
pub mod conformance;
