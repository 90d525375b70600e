//! [`CachedStorage`]: a `Storage` that answers the user-node-list call from
//! a cache and delegates everything else.
//!
//! See the [module documentation](super) for the design.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Cache;
use super::codec::Secrets;
use super::feed::ChangeFeed;
use super::snapshot::{NodeSet, Snapshot};

mod notify;
mod user_rows;
use super::stats::{CacheStats, Counters, bump};
use crate::domain::usage::{
    EnforceOutcome, IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow,
};
use crate::domain::{
    ActualStatus, Device, DeviceSighting, DeviceVerdict, FleetState, InboundDescription, NewNode,
    NewUser, Node, NodeId, NodeProfile, Page, PageRequest, PendingBatch, PlanEdit, RequiredStatus,
    Seq, ServingNode, StartPlan, SubscriptionKey, Timestamp, User, UserId, UserNodes, UserStatus,
};
use crate::seal::Sealer;
use crate::storage::{Storage, StorageError, StorageResult};

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

/// A [`Storage`] decorator that answers [`Storage::user_nodes`] from a
/// [`Cache`] (user rows) and an in-process set of serving nodes, and
/// delegates every other method to the inner storage, dropping what a write
/// may have changed.
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    cache: Arc<dyn Cache>,
    settings: CachedStorageSettings,
    nodes: NodeSet,
    feed: ChangeFeed,
    counters: Arc<Counters>,
    /// How the user rows in the cache hold the user's secrets.
    secrets: Secrets,
}

impl CachedStorage {
    pub fn new(
        inner: Arc<dyn Storage>,
        cache: Arc<dyn Cache>,
        settings: CachedStorageSettings,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let feed = ChangeFeed::new(
            inner.clone(),
            cache.clone(),
            settings.user_ttl,
            counters.clone(),
        );
        Self {
            inner,
            cache,
            settings,
            nodes: NodeSet::default(),
            feed,
            counters,
            secrets: Secrets::Clear,
        }
    }

    /// Seals the user secrets it puts in the cache with `seal`, as the
    /// storage seals them in the database, unless the cache is
    /// process-local ([`Cache::is_process_local`]): values that never leave
    /// the process hold them as the process does, so a cache hit opens
    /// nothing. Without it they are cached in clear.
    pub fn with_sealer(self, seal: Sealer) -> Self {
        let secrets = Secrets::for_cache(self.cache.as_ref(), seal);
        Self { secrets, ..self }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        self.counters.stats()
    }

    pub fn settings(&self) -> &CachedStorageSettings {
        &self.settings
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
        let mut feed = match self.feed.place.try_lock() {
            Some(guard) => guard,
            None => {
                let generation = self.nodes.generation.load(Ordering::SeqCst);
                if let Some(old) = self.nodes.snapshot().filter(|s| s.generation == generation) {
                    return Ok(old.nodes);
                }
                self.feed.place.lock().await
            }
        };
        // The read we may have waited for (or one that just ended) can do.
        if let Some(nodes) = self.nodes.fresh(ttl) {
            return Ok(nodes);
        }
        self.feed.follow(&mut feed).await?;
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

// Tokens and audit entries are read from the database every time.
crate::forward_access_store!(CachedStorage, inner);
crate::forward_user_directory!(CachedStorage, inner);
crate::forward_node_event_log!(CachedStorage, inner);
crate::forward_webhook_store!(CachedStorage, inner);
// No cached value holds a node key (the serving-node set has none).
crate::forward_key_rotation_store!(CachedStorage, inner);

#[async_trait]
#[deny(clippy::missing_trait_methods)]
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

    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
    ) -> StorageResult<()> {
        let r = self.inner.finish_start(id, seq, template, inbounds).await;
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
        Ok(self.user_nodes_read_at(id).await?.0)
    }

    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        max_age: Duration,
    ) -> StorageResult<UserNodes> {
        let (mut found, read_at) = self.user_nodes_read_at(id).await?;
        let age_ms = Timestamp::now().0.saturating_sub(read_at.0);
        // `>=`: a zero age means always (a row read in this very
        // millisecond may predate a count stored in it).
        if u128::try_from(age_ms).unwrap_or(0) >= max_age.as_millis() {
            // Usage is not a change: the cached row kept the totals it was
            // read with. Only they are taken from the storage's row.
            let counted = self.inner.get_user(id).await?;
            found.user.used_up = counted.used_up;
            found.user.used_down = counted.used_down;
        }
        Ok(found)
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

    async fn ingest_usage(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
    ) -> StorageResult<IngestOutcome> {
        // Usage alone is not a change: cached rows of the users in the page
        // keep their old totals until their next change (the node-list call
        // reads only what decides the list). A user this page blocked took
        // a change: its row is dropped here, and every replica's feed
        // follower marks it (also when this call failed yet committed).
        let r = self.inner.ingest_usage(node, pulled_with, page, now).await;
        if let Ok(outcome) = &r {
            for id in &outcome.newly_blocked {
                self.user_written(*id, None).await;
            }
        }
        r
    }

    async fn edit_user_plan(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User> {
        let r = self.inner.edit_user_plan(id, edit, now).await;
        if !matches!(r, Err(StorageError::NotFound(_) | StorageError::Invalid(_))) {
            // The row changed even without a new change number: drop it.
            self.user_written(id, None).await;
        }
        r
    }

    async fn reset_user_usage(&self, id: UserId, now: Timestamp) -> StorageResult<User> {
        let r = self.inner.reset_user_usage(id, now).await;
        if !matches!(r, Err(StorageError::NotFound(_))) {
            self.user_written(id, None).await;
        }
        r
    }

    async fn enforce_time(&self, now: Timestamp) -> StorageResult<EnforceOutcome> {
        // A failed pass may have committed: the changes it made are in the
        // change feed, which every replica's follower marks.
        let r = self.inner.enforce_time(now).await;
        if let Ok(outcome) = &r {
            for id in outcome.expired.iter().chain(&outcome.reset) {
                self.user_written(*id, None).await;
            }
        }
        r
    }

    async fn note_user_ports(
        &self,
        id: NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        let r = self.inner.note_user_ports(id, ports).await;
        self.nodes.invalidate();
        r
    }

    async fn set_node_profile(&self, id: NodeId, profile: &NodeProfile) -> StorageResult<Node> {
        let r = self.inner.set_node_profile(id, profile).await;
        self.nodes.invalidate();
        r
    }

    async fn set_subscription_key(&self, id: UserId, key: SubscriptionKey) -> StorageResult<User> {
        let r = self.inner.set_subscription_key(id, key).await;
        self.row_rewritten(id, &r).await;
        r
    }

    async fn set_device_limit(&self, id: UserId, limit: Option<u32>) -> StorageResult<User> {
        let r = self.inner.set_device_limit(id, limit).await;
        self.row_rewritten(id, &r).await;
        r
    }

    async fn record_device(
        &self,
        id: UserId,
        sighting: &DeviceSighting,
        limit: u32,
        now: Timestamp,
    ) -> StorageResult<DeviceVerdict> {
        self.inner.record_device(id, sighting, limit, now).await
    }

    async fn list_devices(&self, id: UserId) -> StorageResult<Vec<Device>> {
        self.inner.list_devices(id).await
    }

    async fn delete_device(&self, id: UserId, hwid: &str) -> StorageResult<()> {
        self.inner.delete_device(id, hwid).await
    }

    async fn set_node_multiplier(&self, id: NodeId, multiplier: f64) -> StorageResult<Node> {
        // Not part of the node list: nothing cached changes.
        self.inner.set_node_multiplier(id, multiplier).await
    }

    async fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> StorageResult<Vec<UsageRow>> {
        self.inner.user_usage(id, from, to, group).await
    }

    async fn node_usage(&self, from: Timestamp, to: Timestamp) -> StorageResult<Vec<NodeUsage>> {
        self.inner.node_usage(from, to).await
    }

    async fn purge_usage_history(
        &self,
        user_days_before: Timestamp,
        node_hours_before: Timestamp,
    ) -> StorageResult<u64> {
        self.inner
            .purge_usage_history(user_days_before, node_hours_before)
            .await
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
