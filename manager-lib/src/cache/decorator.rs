//! [`CachedStorage`]: a `Storage` that answers the user-node-list call from
//! a cache and delegates everything else.
//!
//! See the [module documentation](super) for the design.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError};
use crate::domain::{
    ActualStatus, FleetState, NewNode, NewUser, Node, NodeId, Page, PageRequest, PendingBatch,
    RequiredStatus, Seq, ServingNode, StartPlan, Timestamp, User, UserId, UserNodes, UserSecret,
    UserStatus,
};
use crate::storage::{Entity, Storage, StorageError, StorageResult};

/// How long [`CachedStorage`] trusts what it cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedStorageSettings {
    /// How long a user row (or a mark of a change) stays in the cache. It
    /// bounds the cache's size, not staleness: every change is marked in the
    /// cache by the replica that made it and again by every replica's feed
    /// follower within `nodes_ttl` (see the [module documentation](super)).
    pub user_ttl: Duration,
    /// How long a replica keeps its set of serving nodes, and its place in
    /// the change feed, without asking the storage again. Local writes drop
    /// the set at once; this bounds how long a change made by another
    /// replica goes unseen.
    pub nodes_ttl: Duration,
}

impl Default for CachedStorageSettings {
    fn default() -> Self {
        Self {
            user_ttl: Duration::from_secs(3600),
            nodes_ttl: Duration::from_secs(1),
        }
    }
}

/// Counters of [`CachedStorage`], for metrics. They only grow.
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
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    node_refreshes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One read of `Storage::serving_nodes`.
#[derive(Debug, Clone)]
struct Snapshot {
    nodes: Arc<[ServingNode]>,
    /// The value of [`NodeSet::generation`] when the read started: a local
    /// node write since then makes the snapshot unusable.
    generation: u64,
    /// When the read started, so the age is never understated.
    fetched_at: Instant,
}

#[derive(Debug, Default)]
struct NodeSet {
    /// Moved on by every local node write (after it, successful or not).
    generation: AtomicU64,
    current: RwLock<Option<Snapshot>>,
    /// Held while reading the set and following the change feed: one
    /// refresh at a time.
    refresh: futures::lock::Mutex<Feed>,
}

/// Where this replica is in the change feed.
#[derive(Debug, Default)]
struct Feed {
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
/// its read to its put landing (fills older than [`FILL_AGE`] are not put),
/// and short enough that a burst of changes does not fill the cache with
/// marks.
const MARK_TTL: Duration = Duration::from_secs(60);
/// A row read longer ago than this is not cached: a mark that refused it may
/// have expired.
const FILL_AGE: Duration = Duration::from_secs(15);
/// How long a user id found absent stays cached as absent. A creation
/// through any replica marks the key at once; this only bounds the cache's
/// size, and how long a creation whose mark was lost (the cache failed)
/// leaves the new user's list answering as unknown: enabling the user goes
/// through the change feed and shows within `nodes_ttl` regardless.
const ABSENT_TTL: Duration = Duration::from_secs(300);
/// The version an absence is cached at: older than any row (`change_seq`
/// starts at 0) and any mark, so every write of the user, by any replica,
/// replaces it, and a fill read before a creation that lands after the
/// creation's mark is refused.
const ABSENT_VERSION: Seq = -1;
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

impl NodeSet {
    fn snapshot(&self) -> Option<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The snapshot if no local node write happened since it was read and it
    /// is younger than `ttl`.
    fn fresh(&self, ttl: Duration) -> Option<Arc<[ServingNode]>> {
        let generation = self.generation.load(Ordering::SeqCst);
        self.snapshot()
            .filter(|s| s.generation == generation && s.fetched_at.elapsed() < ttl)
            .map(|s| s.nodes)
    }
}

/// A [`Storage`] decorator that answers [`Storage::user_nodes`] from a
/// [`Cache`] (user rows) and an in-process set of serving nodes, and
/// delegates every other method to the inner storage, dropping what a write
/// may have changed.
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    cache: Arc<dyn Cache>,
    settings: CachedStorageSettings,
    /// Moved on by every local user write, before its cache invalidation: a
    /// reader that saw it move does not cache the row it read before.
    users_epoch: AtomicU64,
    nodes: NodeSet,
    /// The feed's generation, for the row keys; 0 until the feed started.
    row_generation: AtomicU64,
    /// Whether the last follow of the feed marked every change it read: the
    /// cache answers user rows only while it did.
    following: std::sync::atomic::AtomicBool,
    counters: Counters,
}

impl CachedStorage {
    pub fn new(
        inner: Arc<dyn Storage>,
        cache: Arc<dyn Cache>,
        settings: CachedStorageSettings,
    ) -> Self {
        Self {
            inner,
            cache,
            settings,
            users_epoch: AtomicU64::new(0),
            nodes: NodeSet::default(),
            row_generation: AtomicU64::new(0),
            following: std::sync::atomic::AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            node_refreshes: c.node_refreshes.load(Ordering::Relaxed),
        }
    }

    pub fn settings(&self) -> &CachedStorageSettings {
        &self.settings
    }

    fn cache_failed(&self, op: &'static str, error: &CacheError) {
        bump(&self.counters.errors);
        // The key is left out on purpose: it holds the user id, which with the
        // user's name authorises the node-list call.
        tracing::warn!(op, error = %error, "cache call failed; answering from storage");
    }

    /// The user's row: from the cache, else from the storage (then cached).
    async fn user_row(&self, id: UserId) -> StorageResult<User> {
        let generation = self.row_generation.load(Ordering::SeqCst);
        if generation == 0 || !self.following.load(Ordering::SeqCst) {
            // Changes made elsewhere may not be marked: the cache cannot be
            // trusted until a follow of the feed succeeds.
            bump(&self.counters.misses);
            return self.inner.get_user(id).await;
        }
        let key = user_key(generation, id);
        let mut cache_ok = true;
        match self.cache.get(&key).await {
            Ok(Some(bytes)) if bytes == ABSENT_ROW => {
                // An unknown id costs what a known one does: one cache read.
                bump(&self.counters.hits);
                return Err(StorageError::NotFound(Entity::User));
            }
            Ok(Some(bytes)) => match decode_user(id, &bytes) {
                Some(user) => {
                    bump(&self.counters.hits);
                    return Ok(user);
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
                self.cache_failed("get", &e);
                cache_ok = false;
            }
        }
        bump(&self.counters.misses);
        let epoch = self.users_epoch.load(Ordering::SeqCst);
        let read_at = Instant::now();
        let read = self.inner.get_user(id).await;
        let (row, version, ttl) = match &read {
            Ok(user) => (encode_user(user), user.change_seq, self.settings.user_ttl),
            // Cached too, so that asking again for an unknown id does not
            // reach the storage while a known one is answered from the
            // cache: the two would take measurably different times.
            Err(StorageError::NotFound(Entity::User)) => (
                ABSENT_ROW.to_vec(),
                ABSENT_VERSION,
                ABSENT_TTL.min(self.settings.user_ttl),
            ),
            Err(_) => return read,
        };
        if cache_ok
            && self.users_epoch.load(Ordering::SeqCst) == epoch
            && read_at.elapsed() < FILL_AGE
        {
            // Versioned: a change marked since the read (by any replica)
            // refuses this older row, or this absence.
            match self.cache.put_versioned(&key, row, version, ttl).await {
                Ok(()) => {
                    // A local write whose result is unknown (it failed, yet
                    // may have committed) removes the key without a version:
                    // if one ran while we read, take our row back.
                    if self.users_epoch.load(Ordering::SeqCst) != epoch {
                        self.invalidate_key(&key).await;
                    }
                }
                Err(e) => self.cache_failed("put", &e),
            }
        }
        read
    }

    async fn invalidate_key(&self, key: &str) {
        if let Err(e) = self.cache.invalidate(key).await {
            self.cache_failed("invalidate", &e);
        }
    }

    fn mark_ttl(&self) -> Duration {
        MARK_TTL.min(self.settings.user_ttl)
    }

    /// Called after every write attempt on a user, whatever its result:
    /// `changed_at` is the change's number when the write succeeded (the
    /// user's new `change_seq`, `Seq::MAX` for a deletion), `None` when its
    /// result is unknown (a write that failed may still have committed).
    async fn user_written(&self, id: UserId, changed_at: Option<Seq>) {
        self.users_epoch.fetch_add(1, Ordering::SeqCst);
        let Some(generation) = self.generation().await else {
            // No generation yet (the storage is unreachable): this replica
            // has no rows, and the other replicas' followers mark the change.
            return;
        };
        let key = user_key(generation, id);
        match changed_at {
            Some(seq) => {
                if let Err(e) = self.cache.mark_changed(&key, seq, self.mark_ttl()).await {
                    self.cache_failed("mark", &e);
                }
            }
            None => self.invalidate_key(&key).await,
        }
    }

    /// The feed's generation, starting the feed if it has not started.
    async fn generation(&self) -> Option<u64> {
        match self.row_generation.load(Ordering::SeqCst) {
            0 => {
                let mut feed = self.nodes.refresh.lock().await;
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
            Err(e) => self.cache_failed("get", &e),
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
            .put(FEED_KEY, encode_feed(feed), self.settings.user_ttl)
            .await
        {
            self.cache_failed("put", &e);
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
    async fn follow(&self, feed: &mut Feed) -> StorageResult<()> {
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
                    self.cache_failed("mark", &e);
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

    /// The serving nodes, from the local set when it is fresh.
    ///
    /// One read from the storage at a time: while one runs, callers use the
    /// previous set if only its age is against it (no local write since), or
    /// wait for the read and use its result.
    async fn serving(&self) -> StorageResult<Arc<[ServingNode]>> {
        let ttl = self.settings.nodes_ttl;
        if let Some(nodes) = self.nodes.fresh(ttl) {
            return Ok(nodes);
        }
        let mut feed = match self.nodes.refresh.try_lock() {
            Some(guard) => guard,
            None => {
                let generation = self.nodes.generation.load(Ordering::SeqCst);
                if let Some(old) = self.nodes.snapshot().filter(|s| s.generation == generation) {
                    return Ok(old.nodes);
                }
                self.nodes.refresh.lock().await
            }
        };
        // The read we may have waited for (or one that just ended) can do.
        if let Some(nodes) = self.nodes.fresh(ttl) {
            return Ok(nodes);
        }
        self.follow(&mut feed).await?;
        let generation = self.nodes.generation.load(Ordering::SeqCst);
        let started = Instant::now();
        let mut nodes = self.inner.serving_nodes().await?;
        // The contract gives them in id order already; make sure of it so
        // the answer matches `Storage::user_nodes` whatever the backend.
        nodes.sort_by_key(|n| n.entry.id);
        let nodes: Arc<[ServingNode]> = nodes.into();
        bump(&self.counters.node_refreshes);
        self.nodes.store(Snapshot {
            nodes: nodes.clone(),
            generation,
            fetched_at: started,
        });
        Ok(nodes)
    }
}

impl std::fmt::Debug for CachedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStorage")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .field("settings", &self.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

fn user_key(generation: u64, id: UserId) -> String {
    format!("u:{generation:x}:{id}")
}

/// The format version of a cached user row; a row of another version is
/// treated as absent, so a rolling upgrade never misreads one.
const USER_ROW_V1: u8 = 1;
/// What the cache holds for an id the storage does not have: not a row of
/// any version, so a replica that does not know it reads the storage.
const ABSENT_ROW: &[u8] = &[0];

/// A compact binary row: version, status, change_seq, created_at, secret
/// (length-prefixed), name (the rest). The id is the key's.
fn encode_user(user: &User) -> Vec<u8> {
    let secret = user.secret.expose().as_bytes();
    let secret_len = u16::try_from(secret.len()).expect("a user secret is short");
    let mut out = Vec::with_capacity(20 + secret.len() + user.name.len());
    out.push(USER_ROW_V1);
    out.push(match user.status {
        UserStatus::Enabled => 1,
        UserStatus::Disabled => 0,
    });
    out.extend_from_slice(&user.change_seq.to_le_bytes());
    out.extend_from_slice(&user.created_at.0.to_le_bytes());
    out.extend_from_slice(&secret_len.to_le_bytes());
    out.extend_from_slice(secret);
    out.extend_from_slice(user.name.as_bytes());
    out
}

fn decode_user(id: UserId, bytes: &[u8]) -> Option<User> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    fn i64_le(bytes: &mut &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    let mut rest = bytes;
    if take(&mut rest, 1)? != [USER_ROW_V1] {
        return None;
    }
    let status = match take(&mut rest, 1)? {
        [1] => UserStatus::Enabled,
        [0] => UserStatus::Disabled,
        _ => return None,
    };
    let change_seq: Seq = i64_le(&mut rest)?;
    let created_at = Timestamp(i64_le(&mut rest)?);
    let secret_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let secret = std::str::from_utf8(take(&mut rest, secret_len.into())?).ok()?;
    let name = std::str::from_utf8(rest).ok()?;
    Some(User {
        id,
        name: name.to_owned(),
        status,
        secret: UserSecret::from_stored(secret.to_owned()),
        change_seq,
        created_at,
    })
}

#[async_trait]
impl Storage for CachedStorage {
    async fn create_node(&self, node: NewNode) -> StorageResult<Node> {
        let r = self.inner.create_node(node).await;
        self.nodes.invalidate();
        r
    }

    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.get_node(id).await
    }

    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        self.inner.find_node_by_endpoint(endpoint).await
    }

    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>> {
        self.inner.list_nodes(page).await
    }

    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        let r = self.inner.delete_node(id).await;
        self.nodes.invalidate();
        r
    }

    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node> {
        let r = self.inner.set_required_status(id, status).await;
        self.nodes.invalidate();
        r
    }

    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        let r = self.inner.begin_start(id).await;
        self.nodes.invalidate();
        r
    }

    async fn finish_start(&self, id: NodeId, seq: Seq, template: &str) -> StorageResult<()> {
        let r = self.inner.finish_start(id, seq, template).await;
        self.nodes.invalidate();
        r
    }

    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        let r = self.inner.begin_stop(id).await;
        self.nodes.invalidate();
        r
    }

    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        let r = self.inner.finish_stop(id).await;
        self.nodes.invalidate();
        r
    }

    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        let r = self.inner.record_observation(id, actual).await;
        self.nodes.invalidate();
        r
    }

    async fn create_user(&self, user: NewUser) -> StorageResult<User> {
        // The id may be cached as absent (it was asked for before, as a
        // user migrated with their id may be): the mark replaces that on
        // every replica. A creation is not in the change feed, so only this
        // mark says it; a lost one is bounded by `ABSENT_TTL`.
        let id = user.id;
        let r = self.inner.create_user(user).await;
        let changed_at = match &r {
            Ok(user) => Some(user.change_seq),
            Err(StorageError::AlreadyExists(_)) => return r,
            Err(_) => None,
        };
        self.user_written(id, changed_at).await;
        r
    }

    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.inner.get_user(id).await
    }

    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>> {
        self.inner.list_users(page).await
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        let r = self.inner.set_user_status(id, status).await;
        let changed_at = match &r {
            Ok(user) => Some(user.change_seq),
            Err(StorageError::NotFound(_)) => return r,
            Err(_) => None,
        };
        self.user_written(id, changed_at).await;
        r
    }

    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        let r = self.inner.delete_user(id).await;
        let changed_at = match &r {
            // No later row of the user may be cached (an id that comes back
            // only misses the cache until the mark expires).
            Ok(()) => Some(Seq::MAX),
            Err(StorageError::NotFound(_)) => return r,
            Err(_) => None,
        };
        self.user_written(id, changed_at).await;
        r
    }

    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        // Nodes first: a node read earlier that has applied the user's
        // change read later has applied the user's newest state, whereas a
        // user read first may have changed again before the nodes are read.
        let serving = self.serving().await?;
        let user = self.user_row(id).await?;
        let nodes = if user.status == UserStatus::Enabled {
            serving
                .iter()
                .filter(|n| n.applied_seq >= user.change_seq)
                .map(|n| n.entry.clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok(UserNodes { user, nodes })
    }

    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        self.inner.pending_operations(id, limit).await
    }

    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        self.inner.changes_after(after, limit).await
    }

    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        let r = self.inner.ack_operations(id, up_to_seq).await;
        self.nodes.invalidate();
        r
    }

    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        let r = self.inner.ack_operations_many(acks).await;
        self.nodes.invalidate();
        r
    }

    async fn fleet_state(&self) -> StorageResult<FleetState> {
        self.inner.fleet_state().await
    }

    async fn purge_tombstones(&self) -> StorageResult<u64> {
        // Tombstones are invisible to readers: nothing cached changes.
        self.inner.purge_tombstones().await
    }

    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        self.inner.claim_nodes(owner, ttl, limit).await
    }

    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        self.inner.release_nodes(owner).await
    }

    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        // Callers of this method (the reconciler) want the truth, not the
        // hot path's snapshot.
        self.inner.serving_nodes().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, status: UserStatus) -> User {
        User {
            id: UserId::random(),
            name: name.to_owned(),
            status,
            secret: UserSecret::random(),
            change_seq: 1 << 40,
            created_at: Timestamp(-5),
        }
    }

    #[test]
    fn user_rows_round_trip() {
        for user in [
            sample("alice", UserStatus::Enabled),
            sample("", UserStatus::Disabled),
            sample(&"я🚀".repeat(200), UserStatus::Enabled),
        ] {
            assert_eq!(decode_user(user.id, &encode_user(&user)), Some(user));
        }
    }

    #[test]
    fn damaged_user_rows_are_not_read() {
        let user = sample("alice", UserStatus::Enabled);
        let bytes = encode_user(&user);
        assert_eq!(decode_user(user.id, &[]), None);
        assert_eq!(decode_user(user.id, &bytes[..10]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(decode_user(user.id, &other_version), None);
        let mut bad_status = bytes.clone();
        bad_status[1] = 7;
        assert_eq!(decode_user(user.id, &bad_status), None);
        // A secret length running past the end.
        let mut long_secret = bytes;
        long_secret[18] = 0xff;
        long_secret[19] = 0xff;
        assert_eq!(decode_user(user.id, &long_secret), None);
    }
}
