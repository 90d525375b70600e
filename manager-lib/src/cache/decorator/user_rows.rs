//! How the decorator reads a user's row (from the cache, else from the
//! storage, then cached, with when it was read) and marks it after a write,
//! so that no replica serves a row older than a change it could know of.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::codec::{ABSENT_ROW, decode_user, encode_user, user_key};
use super::super::stats::bump;
use super::{ABSENT_TTL, ABSENT_VERSION, CachedStorage, FILL_AGE};
use crate::domain::{Seq, Timestamp, User, UserId, UserNodes};
use crate::storage::{Entity, StorageError, StorageResult};

impl CachedStorage {
    /// [`Storage::user_nodes`] through the cache, with when the user's row
    /// was read from the storage.
    pub(super) async fn user_nodes_read_at(
        &self,
        id: UserId,
    ) -> StorageResult<(UserNodes, Timestamp)> {
        // Nodes first: a node read earlier that has applied the user's
        // change read later has applied the user's newest state, whereas a
        // user read first may have changed again before the nodes are read.
        let serving = self.serving().await?;
        let (user, read_at) = self.user_row(id).await?;
        let nodes = if user.on_nodes() {
            serving
                .iter()
                .filter(|n| n.applied_seq >= user.change_seq)
                .map(|n| n.entry.clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok((UserNodes { user, nodes }, read_at))
    }

    /// The user's row: from the cache, else from the storage (then cached);
    /// with when it was read from the storage.
    pub(super) async fn user_row(&self, id: UserId) -> StorageResult<(User, Timestamp)> {
        let generation = self.feed.row_generation.load(Ordering::SeqCst);
        if generation == 0 || !self.feed.following.load(Ordering::SeqCst) {
            // Changes made elsewhere may not be marked: the cache cannot be
            // trusted until a follow of the feed succeeds.
            bump(&self.counters.misses);
            let read_at = Timestamp::now();
            return Ok((self.inner.get_user(id).await?, read_at));
        }
        let key = user_key(generation, id);
        let mut cache_ok = true;
        match self.cache.get(&key).await {
            Ok(Some(bytes)) if bytes == ABSENT_ROW => {
                // An unknown id costs what a known one does: one cache read.
                bump(&self.counters.hits);
                return Err(StorageError::NotFound(Entity::User));
            }
            Ok(Some(bytes)) => match decode_user(id, &bytes, &self.secrets) {
                Some(row) => {
                    bump(&self.counters.hits);
                    return Ok(row);
                }
                None => {
                    bump(&self.counters.errors);
                    tracing::warn!("cached user row is unreadable; answering from storage");
                }
            },
            Ok(None) => {}
            Err(e) => {
                // A cache that failed now will most likely fail the put too:
                // do not pay its timeout twice.
                self.counters.cache_failed("get", &e);
                cache_ok = false;
            }
        }
        bump(&self.counters.misses);
        let epoch = self.feed.users_epoch.load(Ordering::SeqCst);
        let read_at = Instant::now();
        // Taken before the read: the row is at least this fresh.
        let read_at_wall = Timestamp::now();
        let read = self.inner.get_user(id).await;
        let (row, version, ttl) = match &read {
            Ok(user) => (
                encode_user(user, read_at_wall, &self.secrets),
                user.change_seq,
                self.settings.user_ttl,
            ),
            // Cached too, so that asking again for an unknown id does not
            // reach the storage while a known one is answered from the
            // cache: the two would take measurably different times.
            Err(StorageError::NotFound(Entity::User)) => (
                ABSENT_ROW.to_vec(),
                ABSENT_VERSION,
                ABSENT_TTL.min(self.settings.user_ttl),
            ),
            Err(_) => return read.map(|user| (user, read_at_wall)),
        };
        if cache_ok
            && self.feed.users_epoch.load(Ordering::SeqCst) == epoch
            && read_at.elapsed() < FILL_AGE
        {
            // Versioned: a change marked since the read (by any replica)
            // refuses this older row, or this absence.
            match self.cache.put_versioned(&key, row, version, ttl).await {
                Ok(()) => {
                    // A local write whose result is unknown (it failed, yet
                    // may have committed) removes the key without a version:
                    // if one ran while we read, take our row back.
                    if self.feed.users_epoch.load(Ordering::SeqCst) != epoch {
                        self.invalidate_key(&key).await;
                    }
                }
                Err(e) => self.counters.cache_failed("put", &e),
            }
        }
        read.map(|user| (user, read_at_wall))
    }

    pub(super) async fn invalidate_key(&self, key: &str) {
        if let Err(e) = self.cache.invalidate(key).await {
            self.counters.cache_failed("invalidate", &e);
        }
    }

    /// Called after every write attempt on a user, whatever its result:
    /// `changed_at` is the change's number when the write succeeded (the
    /// user's new `change_seq`, `Seq::MAX` for a deletion), `None` when its
    /// result is unknown (a write that failed may still have committed).
    pub(super) async fn user_written(&self, id: UserId, changed_at: Option<Seq>) {
        self.feed.users_epoch.fetch_add(1, Ordering::SeqCst);
        let Some(generation) = self.feed.generation().await else {
            // No generation yet (the storage is unreachable): this replica
            // has no rows, and the other replicas' followers mark the change.
            return;
        };
        let key = user_key(generation, id);
        match changed_at {
            Some(seq) => {
                if let Err(e) = self
                    .cache
                    .mark_changed(&key, seq, self.feed.mark_ttl())
                    .await
                {
                    self.counters.cache_failed("mark", &e);
                }
            }
            None => self.invalidate_key(&key).await,
        }
    }

    /// After a write of a user's row that takes no change number (a new
    /// subscription key, a device limit), whatever its result. A mark one
    /// above the row's number replaces the cached row (of that number) in
    /// one atomic step on the cache, and refuses every fill of that number,
    /// an old row read before the write included, while the mark lasts (far
    /// longer than a fill may take); meanwhile the user is read from
    /// storage. A write whose result is unknown drops the row.
    pub(super) async fn row_rewritten(&self, id: UserId, result: &StorageResult<User>) {
        match result {
            Ok(user) => {
                self.user_written(id, Some(user.change_seq.saturating_add(1)))
                    .await
            }
            Err(StorageError::NotFound(_)) => {}
            Err(_) => self.user_written(id, None).await,
        }
    }
}
