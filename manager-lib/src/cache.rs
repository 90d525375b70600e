//! The `Cache` port, for the hot user-node-list call, and the decorator that
//! puts it in front of a `Storage`.
//!
//! The cache holds small byte values under string keys with a time to live.
//! It is an optimisation only: every error of a cache is logged and answered
//! from storage, never returned to a client.

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
