//! manager-lib's [`Storage`] on SQLite (sqlx, WAL): the embedded default
//! backend, one file on the manager's host.
//!
//! ```no_run
//! # async fn demo() -> Result<(), manager_lib::storage::StorageError> {
//! use std::sync::Arc;
//! use manager_lib::storage::Storage;
//! let storage: Arc<dyn Storage> =
//!     Arc::new(storage_sqlite::SqliteStorage::connect("sqlite://manager.db").await?);
//! # let _ = storage;
//! # Ok(()) }
//! ```
//!
//! Writes are committed in groups. One task owns the write connection;
//! every write is handed to it and waits for its answer. The task takes all
//! writes queued at that moment (at most [`MAX_BATCH`], without waiting for
//! more), runs them in one `BEGIN IMMEDIATE` transaction, each inside its own
//! `SAVEPOINT` so that a write that fails (a taken id, a missing row) is
//! undone alone and answered with its own error, then `COMMIT`s once and
//! answers every caller. Nothing is answered before its commit; a failed
//! commit answers every write of the batch with its error. A commit costs far
//! more than a short statement on most disks, so concurrent writers share it.
//! `BEGIN IMMEDIATE` takes the write lock before the first read, so another
//! process writing the same file makes the batch wait (`busy_timeout`)
//! instead of failing on a lock upgrade.
//!
//! Sequence numbers stay in commit order: the writes of a batch take them in
//! the order they run, and readers see a whole batch or none of it. User
//! changes are single statements: the trigger `users_change` (see the
//! migration) takes the sequence number and counts enabled users inside the
//! statement.
//!
//! A caller that stops waiting (drops its future) after its write was queued
//! may still have it committed, exactly as when a connection is lost after a
//! commit: the outcome is unknown to it and a retry must be harmless. A write
//! whose caller left before its batch started is skipped.
//!
//! Reads use a pool of up to [`READERS`] connections, which WAL lets run next
//! to the writer. WAL checkpoints run on a connection of their own after
//! commits, not inside the writer's commit (`checkpoint`).

mod access;
pub mod backup;
mod changes;
mod checkpoint;
mod devices;
mod directory;
mod error;
mod leases;
mod node_events;
mod nodes;
mod notify;
mod outbox;
mod plans;
mod point_reads;
mod private_file;
mod rotation;
mod rows;
mod seal;
mod usage;
mod users;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::usage::{
    EnforceOutcome, IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow,
};
use manager_lib::domain::{
    ActualStatus, Device, DeviceSighting, DeviceVerdict, FleetState, InboundDescription, NewNode,
    NewUser, Node, NodeId, NodeProfile, Page, PageRequest, PendingBatch, PlanEdit, RequiredStatus,
    Seq, ServingNode, StartPlan, SubscriptionKey, Timestamp, User, UserId, UserNodes, UserStatus,
};
use manager_lib::domain::{
    ApiToken, AuditEntry, AuditQuery, NewAuditEntry, TokenId, TokenVerifier,
};
use manager_lib::domain::{Delivery, NewDelivery};
use manager_lib::seal::Sealer;
use manager_lib::storage::WebhookStore;
use manager_lib::storage::{AccessStore, Storage, StorageResult};
// For the docs' links only.
#[cfg(doc)]
use manager_lib::storage::StorageError;
use sqlx::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::checkpoint::Checkpoints;
use crate::error::{db_error, migrate_error};
use crate::writer::{BoxFuture, Writer};
pub use crate::writer::{MAX_BATCH, WriteStats};

/// How many connections read at the same time.
pub const READERS: u32 = 8;
/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The write connection's page cache, in KiB (SQLite's default: 2,000).
/// Ingest rewrites the totals of users spread over the whole totals table
/// and its usage index; with 2 MB nearly every page was read back from the
/// file. Filled only as pages are read. Measured with the sqlite3 CLI on
/// 1,000,000 users, 1,000 user-deltas a page: 1.1 to 1.45x the user-deltas
/// a second of the default.
pub const WRITER_CACHE_KIB: u32 = 128 * 1024;
/// How long a call waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// [`Storage`] on one SQLite database file.
#[derive(Clone)]
pub struct SqliteStorage {
    /// The group-commit task's queue.
    writes: Writer,
    /// Grouped point reads of users (the node-list call's one read).
    user_reads: manager_lib::storage::grouped::GroupedReads,
    /// The write connection, used by the writer task only.
    writer: SqlitePool,
    /// Serves reads; the same pool as `writer` when built by
    /// [`SqliteStorage::from_pool`] or for an in-memory database.
    reader: SqlitePool,
    filename: PathBuf,
    /// Seals the secret columns on write, opens them on read.
    seal: Sealer,
}

impl fmt::Debug for SqliteStorage {
    // Only the file name: connect options may carry pragmas such as a cipher key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("filename", &self.filename)
            .field("writer_connections", &self.writer.size())
            .field("reader_connections", &self.reader.size())
            .finish()
    }
}

impl SqliteStorage {
    /// Opens (creating it if missing) the database at `url`, for example
    /// `sqlite:///var/lib/xray-manager/manager.db` or `sqlite://manager.db`,
    /// and brings its schema up to date. `sqlite::memory:` gives a private
    /// in-memory database that lives as long as the returned value.
    ///
    /// A file that cannot be opened or created gives
    /// [`StorageError::Unavailable`]; a file that is not a database,
    /// [`StorageError::Corrupt`].
    ///
    /// Secrets are stored in clear: the manager opens its storage with
    /// [`SqliteStorage::connect_sealed`].
    pub async fn connect(url: &str) -> StorageResult<Self> {
        Self::connect_sealed(url, Sealer::clear()).await
    }

    /// [`SqliteStorage::connect`], with node keys and user secrets sealed by
    /// `seal` on write and opened on read. Values stored in clear or under a
    /// previous master key still read; [`SqliteStorage::reseal`] seals them
    /// under the current one.
    pub async fn connect_sealed(url: &str, seal: Sealer) -> StorageResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| db_error(e, None))?
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            // Statement journals (one per write's savepoint) stay in memory.
            .pragma("temp_store", "memory");
        // A local file does not drop connections: no ping before each use.
        let pool = || {
            SqlitePoolOptions::new()
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
        };
        if url.contains(":memory:") || url.contains("mode=memory") {
            // Every connection to a private in-memory database is its own
            // database: keep exactly one, forever.
            let pool = pool()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(|e| db_error(e, None))?;
            return Self::from_pool_sealed(pool, seal).await;
        }

        // Owner-only before SQLite creates it with the umask's mode (0644
        // under the usual 022); its -wal and -shm files follow its mode.
        private_file::create_owner_only(options.get_filename())
            .map_err(|e| db_error(sqlx::Error::Io(e), None))?;

        // WAL is a property of the file; switching to it needs a lock that
        // busy_timeout cannot wait for, so only the writer asks for it, once.
        // The one writer connection stays open: reopening it would redo the
        // pragmas and lose its prepared statements.
        let writer = pool()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                options
                    .clone()
                    .journal_mode(SqliteJournalMode::Wal)
                    .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string())
                    .pragma("journal_size_limit", checkpoint::WAL_SIZE_KEPT.to_string())
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
            )
            .await
            .map_err(|e| db_error(e, None))?;
        MIGRATOR.run(&writer).await.map_err(migrate_error)?;
        let reader = pool()
            .max_connections(READERS)
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(|e| db_error(e, None))?;
        Ok(Self {
            filename: writer.connect_options().get_filename().to_path_buf(),
            writes: Writer::spawn(writer.clone(), Some(Checkpoints::spawn(reader.clone()))),
            user_reads: point_reads::spawn(reader.clone(), seal.clone()),
            writer,
            reader,
            seal,
        })
    }

    /// Uses `pool` for reads and writes, after bringing its schema up to
    /// date. The pool's options should set a `busy_timeout`, and the WAL
    /// journal when several connections share the file.
    ///
    /// Like [`SqliteStorage::connect`], this starts the writer task on the
    /// current Tokio runtime: the storage serves writes while that runtime runs.
    pub async fn from_pool(pool: SqlitePool) -> StorageResult<Self> {
        Self::from_pool_sealed(pool, Sealer::clear()).await
    }

    /// [`SqliteStorage::from_pool`] with secrets sealed by `seal`.
    pub async fn from_pool_sealed(pool: SqlitePool, seal: Sealer) -> StorageResult<Self> {
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        Ok(Self {
            filename: pool.connect_options().get_filename().to_path_buf(),
            writes: Writer::spawn(pool.clone(), None),
            user_reads: point_reads::spawn(pool.clone(), seal.clone()),
            writer: pool.clone(),
            reader: pool,
            seal,
        })
    }

    /// Seals every node key and user secret not yet sealed under the
    /// current master key (clear ones, ones under a previous key) and
    /// answers how many it re-sealed; the manager runs it at start. A value
    /// under an unknown master key fails the whole step, naming the key, so
    /// a wrong master key stops the start instead of reading garbage. Rows
    /// already sealed under the current key are not read: running it again
    /// is cheap.
    pub async fn reseal(&self) -> StorageResult<u64> {
        seal::reseal(self).await
    }

    /// What the group-commit writer did so far: how many transactions it
    /// committed, how many writes they held, how many wait now.
    pub fn write_stats(&self) -> WriteStats {
        self.writes.stats()
    }

    /// Closes every connection; later calls answer `Unavailable`.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Runs `work` on the write connection, in the next group commit (see
    /// the crate docs), and answers once it is committed.
    async fn write<T, F>(&self, work: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StorageResult<T>>
            + Send
            + 'static,
    {
        self.writes.write(work).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl WebhookStore for SqliteStorage {
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> StorageResult<()> {
        outbox::enqueue(self, deliveries).await
    }
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Delivery>> {
        outbox::claim(self, owner, now, lease, limit).await
    }
    async fn mark_delivered(&self, id: i64, now: Timestamp) -> StorageResult<bool> {
        outbox::mark_delivered(self, id, now).await
    }
    async fn schedule_retry(
        &self,
        id: i64,
        owner: &str,
        next_at: Timestamp,
        error: &str,
    ) -> StorageResult<bool> {
        outbox::schedule_retry(self, id, owner, next_at, error).await
    }
    async fn prune_deliveries(&self, before: Timestamp) -> StorageResult<u64> {
        outbox::prune(self, before).await
    }
    async fn undelivered_count(&self) -> StorageResult<u64> {
        outbox::undelivered(self).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl AccessStore for SqliteStorage {
    async fn create_token(&self, token: &ApiToken, verifier: &TokenVerifier) -> StorageResult<()> {
        access::create_token(self, token, verifier).await
    }

    async fn get_token(&self, id: TokenId) -> StorageResult<(ApiToken, TokenVerifier)> {
        access::get_token(self, id).await
    }

    async fn list_tokens(&self) -> StorageResult<Vec<ApiToken>> {
        access::list_tokens(self).await
    }

    async fn revoke_token(&self, id: TokenId, now: Timestamp) -> StorageResult<ApiToken> {
        access::revoke_token(self, id, now).await
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> StorageResult<AuditEntry> {
        access::append_audit(self, entry).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StorageResult<Page<AuditEntry>> {
        access::list_audit(self, query).await
    }

    async fn purge_audit(&self, before: Timestamp) -> StorageResult<u64> {
        access::purge_audit(self, before).await
    }
}

// Every method overridden (denied otherwise): a default would read every
// node or ack one node at a time. Each method lives with its concept:
// nodes, users, changes (the log and the cursors), leases, usage.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for SqliteStorage {
    async fn create_node(&self, new: NewNode) -> StorageResult<Node> {
        nodes::create_node(self, new).await
    }

    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        nodes::get_node(self, id).await
    }

    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        nodes::find_node_by_endpoint(self, endpoint).await
    }

    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>> {
        nodes::list_nodes(self, page).await
    }

    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        nodes::delete_node(self, id).await
    }

    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node> {
        nodes::set_required_status(self, id, status).await
    }

    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        nodes::begin_start(self, id).await
    }

    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
    ) -> StorageResult<()> {
        nodes::finish_start(self, id, seq, template, inbounds).await
    }

    async fn note_user_ports(
        &self,
        id: NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        nodes::note_user_ports(self, id, ports).await
    }

    async fn set_node_profile(&self, id: NodeId, profile: &NodeProfile) -> StorageResult<Node> {
        nodes::set_node_profile(self, id, profile).await
    }

    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        nodes::begin_stop(self, id).await
    }

    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        nodes::finish_stop(self, id).await
    }

    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        nodes::record_observation(self, id, actual).await
    }

    async fn create_user(&self, new: NewUser) -> StorageResult<User> {
        users::create_user(self, new).await
    }

    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        users::get_user(self, id).await
    }

    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>> {
        users::list_users(self, page).await
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        users::set_user_status(self, id, status).await
    }

    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        users::delete_user(self, id).await
    }

    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        users::user_nodes(self, id).await
    }

    /// Read now: the totals are as counted.
    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        _max_age: Duration,
    ) -> StorageResult<UserNodes> {
        users::user_nodes(self, id).await
    }

    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        changes::pending_operations(self, id, limit).await
    }

    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        changes::changes_after(self, after, limit).await
    }

    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        changes::ack_operations(self, id, up_to_seq).await
    }

    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        changes::ack_operations_many(self, acks).await
    }

    async fn fleet_state(&self) -> StorageResult<FleetState> {
        changes::fleet_state(self).await
    }

    async fn purge_tombstones(&self) -> StorageResult<u64> {
        changes::purge_tombstones(self).await
    }

    async fn ingest_usage(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
    ) -> StorageResult<IngestOutcome> {
        usage::ingest_usage(self, node, pulled_with, page, now).await
    }

    async fn edit_user_plan(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User> {
        plans::edit_user_plan(self, id, edit, now).await
    }

    async fn set_subscription_key(&self, id: UserId, key: SubscriptionKey) -> StorageResult<User> {
        users::set_subscription_key(self, id, key).await
    }

    async fn set_device_limit(&self, id: UserId, limit: Option<u32>) -> StorageResult<User> {
        devices::set_device_limit(self, id, limit).await
    }

    async fn record_device(
        &self,
        id: UserId,
        sighting: &DeviceSighting,
        limit: u32,
        now: Timestamp,
    ) -> StorageResult<DeviceVerdict> {
        devices::record_device(self, id, sighting, limit, now).await
    }

    async fn list_devices(&self, id: UserId) -> StorageResult<Vec<Device>> {
        devices::list_devices(self, id).await
    }

    async fn delete_device(&self, id: UserId, hwid: &str) -> StorageResult<()> {
        devices::delete_device(self, id, hwid).await
    }

    async fn reset_user_usage(&self, id: UserId, now: Timestamp) -> StorageResult<User> {
        plans::reset_user_usage(self, id, now).await
    }

    async fn enforce_time(&self, now: Timestamp) -> StorageResult<EnforceOutcome> {
        plans::enforce_time(self, now).await
    }

    async fn set_node_multiplier(&self, id: NodeId, multiplier: f64) -> StorageResult<Node> {
        usage::set_node_multiplier(self, id, multiplier).await
    }

    async fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> StorageResult<Vec<UsageRow>> {
        usage::user_usage(self, id, from, to, group).await
    }

    async fn node_usage(&self, from: Timestamp, to: Timestamp) -> StorageResult<Vec<NodeUsage>> {
        usage::node_usage(self, from, to).await
    }

    async fn purge_usage_history(
        &self,
        user_days_before: Timestamp,
        node_hours_before: Timestamp,
    ) -> StorageResult<u64> {
        usage::purge_usage_history(self, user_days_before, node_hours_before).await
    }

    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        leases::claim_nodes(self, owner, ttl, limit).await
    }

    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        leases::release_nodes(self, owner).await
    }

    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        nodes::serving_nodes(self).await
    }
}
