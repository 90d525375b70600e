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
//!   under `u:<id>` for `user_ttl`, one heartbeat. A write through any
//!   replica invalidates the shared key at once, so every replica sees it; a
//!   write that raced with another replica's cache fill, or a change made
//!   outside the manager, is stale for at most `user_ttl`.
//!
//! The answer is then computed exactly as the storage would: no nodes for a
//! disabled user, else the serving nodes with `applied_seq >= change_seq`, in
//! id order. Absent users are not cached, so a deleted user is not found at
//! once through the replica that deleted it and within `user_ttl` elsewhere.
//!
//! Cached rows hold the user's secret (the cache is trusted like the
//! database); logs never show keys or values.

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
}

mod decorator;
mod memory;

pub use decorator::{CacheStats, CachedStorage, CachedStorageSettings};
pub use memory::MemoryCache;

#[cfg(feature = "conformance")]
pub mod conformance;
