//! manager-lib's [`Storage`] on PostgreSQL: a sqlx pool, migrations embedded
//! in the binary and run on connect, and the change log described in
//! [`manager_lib::storage`].
//!
//! # How change numbers keep their meaning without serialising writers
//!
//! A change takes its number from a SEQUENCE while holding an advisory lock in
//! shared mode (writers do not block each other, so their commits are flushed
//! together). A reader that hands out or stores a cursor first takes that lock
//! exclusively, which waits until every change in flight has ended, and then
//! reads the newest committed number `H` in a later statement: every change
//! numbered `<= H` is then committed (or rolled back), and every later change
//! gets a larger number. The exclusive lock is held for one short statement
//! only, inside one round trip (see `PgStorage::settled_state`); everything
//! else the reader does happens afterwards, bounded by `H`. The full argument
//! is in `migrations/20250601000000_change_sequence.sql`.
//!
//! The enabled-user count is striped over 64 rows so that no row is shared by
//! all writers, and `create_user` touches no shared row at all.
//!
//! User creations, status changes and point reads of callers that come at
//! the same time go in groups: one statement (and one commit) for many
//! callers, each of whom still gets their own answer (module `grouped`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), manager_lib::storage::StorageError> {
//! use std::sync::Arc;
//! use manager_lib::storage::Storage;
//! let storage: Arc<dyn Storage> =
//!     Arc::new(storage_postgres::PgStorage::connect("postgres://postgres@127.0.0.1/xm").await?);
//! # let _ = storage; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
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
use manager_lib::storage::{AccessStore, Entity, Storage, StorageResult};
// For the docs' links only.
#[cfg(doc)]
use manager_lib::storage::StorageError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

mod access;
mod changes;
mod devices;
mod directory;
mod error;
mod grouped;
mod leases;
mod node_events;
mod nodes;
mod notify;
mod outbox;
mod plans;
mod rotation;
mod rows;
mod seal;
#[cfg(feature = "testing")]
pub mod testing;
mod usage;
mod users;

use error::{map_err, map_migrate_err};
use grouped::Calls;

/// The schema, embedded so a binary carries its own migrations.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long getting a connection may take before a call answers
/// [`StorageError::Unavailable`]. The pool retries a refused connection until
/// then, so a database that restarts quickly is not an error.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The default number of pooled connections.
///
/// User creations, status changes and point reads, and node point reads, go
/// in groups and hold at most eight connections between them (see
/// `grouped`); the rest serve the reconciler's node calls, which run up to its concurrency at once, and
/// the admin API. Sized for one manager next to a server with the default
/// `max_connections = 100`; several replicas need a larger server limit
/// (connections are opened only when needed, so a quiet replica holds few).
pub const MAX_CONNECTIONS: u32 = 64;

/// A [`Storage`] on PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStorage {
    pool: PgPool,
    /// Grouped point reads, creations and status changes of users, and point
    /// reads of nodes (see `grouped`), started on first use so `from_pool`
    /// needs no runtime.
    calls: Arc<std::sync::OnceLock<Calls>>,
    /// Usage pages stored at once (see `usage`).
    ingest_slots: Arc<tokio::sync::Semaphore>,
    /// Seals the secret columns on write, opens them on read.
    seal: Sealer,
}

impl fmt::Debug for PgStorage {
    // Only where the database is: the connect options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.pool.connect_options();
        f.debug_struct("PgStorage")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl PgStorage {
    /// The pool settings [`PgStorage::connect`] uses: bounded acquire time so
    /// a down database answers [`StorageError::Unavailable`] instead of hanging.
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`) and
    /// brings the schema up to date. Several managers may connect at once:
    /// the migrator holds an advisory lock while it migrates.
    ///
    /// A malformed URL is [`StorageError::Other`]; an unreachable database is
    /// [`StorageError::Unavailable`] after at most [`ACQUIRE_TIMEOUT`].
    ///
    /// Secrets are stored in clear: the manager opens its storage with
    /// [`PgStorage::connect_sealed`].
    pub async fn connect(url: &str) -> StorageResult<Self> {
        Self::connect_sealed(url, Sealer::clear()).await
    }

    /// [`PgStorage::connect`], with node keys and user secrets sealed by
    /// `seal` on write and opened on read. Values stored in clear or under a
    /// previous master key still read; [`PgStorage::reseal`] seals them
    /// under the current one.
    pub async fn connect_sealed(url: &str, seal: Sealer) -> StorageResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| map_err(Entity::Node, e))?;
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(|e| map_err(Entity::Node, e))?;
        let storage = Self::from_pool(pool).with_sealer(seal);
        storage.migrate().await?;
        let options = storage.pool.connect_options();
        tracing::info!(
            host = options.get_host(),
            port = options.get_port(),
            database = options.get_database(),
            "PostgreSQL storage ready, schema up to date"
        );
        Ok(storage)
    }

    /// Uses an existing pool as is; call [`PgStorage::migrate`] before use
    /// unless the schema is known to be current.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            calls: Arc::default(),
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(usage::CONCURRENT_INGESTS)),
            seal: Sealer::clear(),
        }
    }

    /// Seals the secret columns with `seal` (the default stores them in
    /// clear); set it before the first call.
    pub fn with_sealer(self, seal: Sealer) -> Self {
        Self {
            seal,
            calls: Arc::default(),
            ..self
        }
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

    pub(crate) fn calls(&self) -> &Calls {
        self.calls
            .get_or_init(|| Calls::spawn(&self.pool, &self.seal))
    }

    /// Brings the schema up to date (idempotent; safe to run concurrently).
    pub async fn migrate(&self) -> StorageResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(map_migrate_err)
    }

    /// The pool, for callers that share it (health checks, admin tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection; later calls answer [`StorageError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl WebhookStore for PgStorage {
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
impl manager_lib::storage::UserDirectory for PgStorage {
    async fn find_users(
        &self,
        query: &manager_lib::domain::UserQuery,
    ) -> StorageResult<manager_lib::domain::Page<manager_lib::domain::User>> {
        directory::find_users(self, query).await
    }

    async fn count_users_by_state(&self) -> StorageResult<manager_lib::domain::StateCounts> {
        directory::count_users_by_state(self).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl manager_lib::storage::NodeEventLog for PgStorage {
    async fn record_node_event(
        &self,
        id: NodeId,
        event: &manager_lib::domain::NodeEvent,
        keep: u32,
    ) -> StorageResult<()> {
        node_events::record(self, id, event, keep).await
    }

    async fn node_events(
        &self,
        id: NodeId,
        limit: u32,
    ) -> StorageResult<Vec<manager_lib::domain::NodeEvent>> {
        node_events::list(self, id, limit).await
    }

    async fn node_summaries(&self) -> StorageResult<Vec<manager_lib::domain::NodeSummary>> {
        node_events::summaries(self).await
    }

    async fn node_usage_by_day(
        &self,
        id: NodeId,
        from: Timestamp,
        to: Timestamp,
    ) -> StorageResult<Vec<manager_lib::domain::usage::UsageRow>> {
        node_events::usage_by_day(self, id, from, to).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl AccessStore for PgStorage {
    async fn create_token(&self, token: &ApiToken, verifier: &TokenVerifier) -> StorageResult<()> {
        access::create_token(&self.pool, token, verifier).await
    }

    async fn get_token(&self, id: TokenId) -> StorageResult<(ApiToken, TokenVerifier)> {
        access::get_token(self, id).await
    }

    async fn list_tokens(&self) -> StorageResult<Vec<ApiToken>> {
        access::list_tokens(self).await
    }

    async fn revoke_token(&self, id: TokenId, now: Timestamp) -> StorageResult<ApiToken> {
        Ok(access::revoke_token(&self.pool, id, now).await?.0)
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
// nodes, users, changes (the log, the cursors and the settled horizon), leases,
// usage.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for PgStorage {
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
        nodes::finish_start(&self.pool, id, seq, template, inbounds).await
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
        nodes::record_observation(&self.pool, id, actual).await
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
        usage::ingest_usage(self, node, pulled_with, page, now, None).await
    }

    async fn edit_user_plan(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User> {
        plans::edit_user_plan(self, id, edit, now, None).await
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
        plans::reset_user_usage(self, id, now, None).await
    }

    async fn enforce_time(&self, now: Timestamp) -> StorageResult<EnforceOutcome> {
        plans::enforce_time(self, now, None).await
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
