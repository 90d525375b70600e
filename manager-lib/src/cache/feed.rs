//! The change feed of [`CachedStorage`](super::CachedStorage): each replica
//! marks in the cache every change made since its last follow, by any
//! replica, under a generation it shares with the others (see the
//! [module documentation](super)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Cache;
use super::codec::{USER_ROW_V1, user_key};
use super::stats::Counters;
use crate::domain::Seq;
use crate::storage::{Storage, StorageResult};

/// Where this replica is in the change feed.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// The generation of the cached rows this replica reads and writes
    /// (part of every row key); 0 before the feed started.
    generation: u64,
    /// Every change numbered up to here is marked in the cache under
    /// `generation`.
    cursor: Seq,
}

/// The shared record of a generation and how far its changes are marked,
/// so a replica that starts takes the rows already cached (and the changes
/// it must still mark) rather than a cold cache.
const FEED_KEY: &str = "u:feed";
/// How long a mark of a change stays: far longer than a fill can take from
/// its read to its put landing (the decorator puts no fill older than its
/// `FILL_AGE`), and short enough that a burst of changes does not fill the
/// cache with marks.
const MARK_TTL: Duration = Duration::from_secs(60);
/// Changes read from the feed per call.
const FEED_PAGE: u32 = 10_000;
/// More pages than this behind, and a new generation (an empty cache) is
/// cheaper than marking every change.
const FEED_PAGES: usize = 10;

fn encode_feed(feed: &Feed) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(USER_ROW_V1);
    out.extend_from_slice(&feed.generation.to_le_bytes());
    out.extend_from_slice(&feed.cursor.to_le_bytes());
    out
}

fn decode_feed(bytes: &[u8]) -> Option<Feed> {
    let (&[USER_ROW_V1], rest) = bytes.split_at_checked(1)? else {
        return None;
    };
    let (generation, cursor) = rest.split_at_checked(8)?;
    Some(Feed {
        generation: u64::from_le_bytes(generation.try_into().ok()?),
        cursor: Seq::from_le_bytes(cursor.try_into().ok()?),
    })
    .filter(|f| f.generation != 0)
}

/// This replica's follower of the change feed, and what the decorator reads
/// of it to decide whether cached rows can be trusted.
pub(super) struct ChangeFeed {
    inner: Arc<dyn Storage>,
    cache: Arc<dyn Cache>,
    /// The decorator's `user_ttl`, which also bounds marks and the shared record.
    user_ttl: Duration,
    counters: Arc<Counters>,
    /// Held while reading the node set and following the change feed: one
    /// refresh at a time.
    pub(super) place: futures::lock::Mutex<Feed>,
    /// Moved on by every local user write, before its cache invalidation,
    /// and by every follow that marks changes: a reader that saw it move
    /// does not cache the row it read before.
    pub(super) users_epoch: AtomicU64,
    /// The feed's generation, for the row keys; 0 until the feed started.
    pub(super) row_generation: AtomicU64,
    /// Whether the last follow of the feed marked every change it read: the
    /// cache answers user rows only while it did.
    pub(super) following: AtomicBool,
}

impl ChangeFeed {
    pub(super) fn new(
        inner: Arc<dyn Storage>,
        cache: Arc<dyn Cache>,
        user_ttl: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            inner,
            cache,
            user_ttl,
            counters,
            place: futures::lock::Mutex::default(),
            users_epoch: AtomicU64::new(0),
            row_generation: AtomicU64::new(0),
            following: AtomicBool::new(false),
        }
    }

    pub(super) fn mark_ttl(&self) -> Duration {
        MARK_TTL.min(self.user_ttl)
    }

    /// The feed's generation, starting the feed if it has not started.
    pub(super) async fn generation(&self) -> Option<u64> {
        match self.row_generation.load(Ordering::SeqCst) {
            0 => {
                let mut feed = self.place.lock().await;
                if feed.generation == 0 {
                    let last = match self.inner.fleet_state().await {
                        Ok(state) => state.last_seq,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start following the change feed");
                            return None;
                        }
                    };
                    self.join_shared(&mut feed, last).await;
                }
                Some(feed.generation)
            }
            generation => Some(generation),
        }
    }

    /// Joins the generation the cache names as shared, with its place in
    /// the feed, when it is older than this replica's (or this replica has
    /// none) and the database has not gone back before that place, as a
    /// restored backup would. Without one, a replica with no generation
    /// takes a new one and names it. Two replicas that started at once with
    /// generations of their own both end in the older one.
    async fn join_shared(&self, feed: &mut Feed, last: Seq) {
        match self.cache.get(FEED_KEY).await {
            Ok(Some(bytes)) => {
                if let Some(shared) = decode_feed(&bytes).filter(|f| f.cursor <= last) {
                    if feed.generation == 0 || shared.generation < feed.generation {
                        // Until the follow that joins it has marked the
                        // changes after its place, its rows are not read.
                        self.following.store(false, Ordering::SeqCst);
                        *feed = shared;
                        self.row_generation.store(feed.generation, Ordering::SeqCst);
                    }
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => self.counters.cache_failed("get", &e),
        }
        if feed.generation == 0 {
            self.new_generation(feed, last);
            self.publish(feed).await;
        }
    }

    /// Names this replica's generation and place in the feed as shared.
    async fn publish(&self, feed: &Feed) {
        if let Err(e) = self
            .cache
            .put(FEED_KEY, encode_feed(feed), self.user_ttl)
            .await
        {
            self.counters.cache_failed("put", &e);
        }
    }

    /// A generation no replica has used: an empty cache, with nothing to
    /// mark before `last`.
    fn new_generation(&self, feed: &mut Feed, last: Seq) {
        feed.generation = rand::random::<u64>().max(1);
        feed.cursor = last;
        self.row_generation.store(feed.generation, Ordering::SeqCst);
    }

    /// Marks in the cache every change made since the last follow, by any
    /// replica: what makes cached rows trustworthy although another
    /// replica's own mark may have failed. Cache failures stop the cache
    /// from answering rows (until a follow succeeds), not the caller.
    pub(super) async fn follow(&self, feed: &mut Feed) -> StorageResult<()> {
        let last = self.inner.fleet_state().await?.last_seq;
        if last < feed.cursor {
            // The database went back (a restored backup): every cached row,
            // and the shared record, may be from the future.
            self.new_generation(feed, last);
            self.publish(feed).await;
        } else {
            self.join_shared(feed, last).await;
        }
        let mut pages = 0;
        loop {
            let batch = self.inner.changes_after(feed.cursor, FEED_PAGE).await?;
            if !batch.operations.is_empty() {
                self.users_epoch.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<(String, Seq)> = batch
                    .operations
                    .iter()
                    .map(|op| (user_key(feed.generation, op.user.id), op.seq))
                    .collect();
                let marks = keys
                    .iter()
                    .map(|(key, seq)| self.cache.mark_changed(key, *seq, self.mark_ttl()));
                if let Some(e) = futures::future::join_all(marks)
                    .await
                    .into_iter()
                    .find_map(Result::err)
                {
                    self.counters.cache_failed("mark", &e);
                    self.following.store(false, Ordering::SeqCst);
                    return Ok(());
                }
            }
            feed.cursor = batch.up_to_seq;
            if !batch.more {
                break;
            }
            pages += 1;
            if pages == FEED_PAGES {
                self.new_generation(feed, last.max(feed.cursor));
                break;
            }
        }
        self.publish(feed).await;
        self.following.store(true, Ordering::SeqCst);
        Ok(())
    }
}
