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
//! only, inside one round trip (see [`PgStorage::settled_state`]); everything
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
use manager_lib::domain::{
    ActualStatus, FleetState, NewNode, NewUser, Node, NodeId, Operation, Page, PageRequest,
    PendingBatch, PendingOperation, RequiredStatus, Seq, ServingNode, StartPlan, Timestamp, User,
    UserId, UserNodes, UserStatus,
};
use manager_lib::storage::{Entity, Storage, StorageError, StorageResult};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

mod error;
mod grouped;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;

use error::{map_err, map_migrate_err};
use grouped::Calls;
use manager_lib::storage::largest_per_node;
use rows::{free_stripe, node_columns, user_columns};

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
    pub async fn connect(url: &str) -> StorageResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| map_err(Entity::Node, e))?;
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(|e| map_err(Entity::Node, e))?;
        let storage = Self::from_pool(pool);
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
        }
    }

    fn calls(&self) -> &Calls {
        self.calls.get_or_init(|| Calls::spawn(&self.pool))
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

    /// The newest change `H` such that every change numbered `<= H` has
    /// ended (so a cursor may move up to it), and the enabled-user count as
    /// of exactly those changes.
    ///
    /// One round trip, one implicit transaction: the first statement waits
    /// for the exclusive change lock (every change in flight has ended), the
    /// second reads with a new snapshot taken after that, and the lock goes
    /// with the transaction at once. New writers queue behind the lock while
    /// it waits for the changes in flight and for that second, index-only
    /// statement: no network round trip happens while it is held.
    async fn settled_state(&self) -> StorageResult<FleetState> {
        let rows = sqlx::raw_sql(SETTLED_STATE)
            .fetch_all(&self.pool)
            .await
            .map_err(node_err)?;
        // The first row is the lock call's (void) result.
        let row = rows.last().filter(|_| rows.len() == 2).ok_or_else(|| {
            StorageError::Corrupt("the change state query answered no row".into())
        })?;
        let last_seq: Option<Seq> = rows::col(row, "last_seq")?;
        let enabled: i64 = rows::col(row, "enabled_users")?;
        Ok(FleetState {
            last_seq: last_seq
                .ok_or_else(|| StorageError::Corrupt("the meta row is missing".into()))?,
            enabled_users: u64::try_from(enabled)
                .map_err(|_| StorageError::Corrupt(format!("enabled_users = {enabled}")))?,
        })
    }
}

/// See [`PgStorage::settled_state`]. Sent with the simple query protocol
/// (no parameters) so both statements go in one message; READ COMMITTED
/// gives each statement its own snapshot.
const SETTLED_STATE: &str = "SELECT xm_wait_for_changes(); \
     SELECT GREATEST((SELECT max(change_seq) FROM users), \
                     (SELECT floor_seq FROM meta)) AS last_seq, \
            (SELECT COALESCE(sum(enabled), 0) FROM enabled_stripes)::bigint AS enabled_users";

fn node_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::Node, e)
}

pub(crate) fn user_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::User, e)
}

fn now_ms() -> i64 {
    Timestamp::now().0
}

/// `after` as an id: a cursor that is not one starts from the beginning, like
/// the reference backend.
fn page_after<T: std::str::FromStr>(page: &PageRequest) -> Option<T> {
    page.after.as_deref().and_then(|a| a.parse().ok())
}

/// Turns `limit + 1` fetched rows into a page.
fn into_page<T>(
    rows: Vec<PgRow>,
    limit: usize,
    decode: impl Fn(&PgRow) -> StorageResult<T>,
    key: impl Fn(&T) -> String,
) -> StorageResult<Page<T>> {
    let more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(decode)
        .collect::<StorageResult<Vec<T>>>()?;
    let next = if more { items.last().map(key) } else { None };
    Ok(Page { items, next })
}

#[async_trait]
impl Storage for PgStorage {
    async fn create_node(&self, new: NewNode) -> StorageResult<Node> {
        // The cursor starts at the newest settled change: a stopped node has
        // nothing to apply, and a change still in flight or made later has a
        // larger number, so it stays pending for the new node.
        let settled = self.settled_state().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO nodes (id, endpoint, node_key, actual_status, required_status, \
             user_config_template, state_up_to_date, applied_seq, last_seen, created_at, \
             updated_at) \
             VALUES ($1::uuid, $2, $3, 'Stopped', 'Stopped', NULL, TRUE, $5, NULL, $4, $4) \
             RETURNING ",
            node_columns!()
        ))
        .bind(new.id.to_string())
        .bind(&new.endpoint)
        .bind(new.key.expose())
        .bind(now_ms())
        .bind(settled.last_seq)
        .fetch_one(&self.pool)
        .await
        .map_err(node_err)?;
        rows::node(&row)
    }

    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        // Grouped with other callers' reads: see `grouped::read_nodes`.
        self.calls().node_reads.get(id).await
    }

    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE endpoint = $1"
        ))
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await
        .map_err(node_err)?;
        row.as_ref().map(rows::node).transpose()
    }

    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>> {
        let limit = page.clamped_limit() as usize;
        // Two statements rather than `$1 IS NULL OR id > $1`, so each keeps an
        // index scan under a generic plan. The limit is the last parameter.
        let query = match page_after::<NodeId>(page) {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                node_columns!(),
                " FROM nodes WHERE id > $1::uuid ORDER BY id LIMIT $2"
            ))
            .bind(after.to_string()),
            None => sqlx::query(concat!(
                "SELECT ",
                node_columns!(),
                " FROM nodes ORDER BY id LIMIT $1"
            )),
        };
        let rows = query
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(node_err)?;
        into_page(rows, limit, rows::node, |n| n.id.to_string())
    }

    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1::uuid")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(node_err)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(Entity::Node));
        }
        Ok(())
    }

    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node> {
        // SET expressions see the row before the update, so updated_at moves
        // only when the status really changes.
        let row = sqlx::query(concat!(
            "UPDATE nodes SET required_status = $2, \
             updated_at = CASE WHEN required_status = $2 THEN updated_at ELSE $3 END \
             WHERE id = $1::uuid RETURNING ",
            node_columns!()
        ))
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(node_err)?;
        rows::node(&row)
    }

    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        // Three steps, none holding a lock across a round trip:
        // 1. the node leaves every user's list (committed at once);
        // 2. `seq` = the newest settled change: every change <= seq ended;
        // 3. the enabled users, read with a snapshot taken after 2.
        // The users therefore reflect every change <= seq, plus possibly some
        // later ones; those have numbers > seq, so they stay pending after
        // `finish_start(seq)` and the node applies each user's newest intent
        // again (adds and deletes are idempotent on the node). Reading the
        // users under the lock instead would stop every writer for as long
        // as the list takes to read.
        let row = sqlx::query(concat!(
            "UPDATE nodes SET state_up_to_date = FALSE, updated_at = $2 \
             WHERE id = $1::uuid RETURNING ",
            node_columns!()
        ))
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(node_err)?;
        let node = rows::node(&row)?;
        let seq = self.settled_state().await?.last_seq;
        let users = sqlx::query(
            "SELECT id::text AS id, name, secret FROM users \
             WHERE status = 'Enabled' AND NOT deleted ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(user_err)?
        .iter()
        .map(rows::credentials)
        .collect::<StorageResult<Vec<_>>>()?;
        Ok(StartPlan { node, users, seq })
    }

    async fn finish_start(&self, id: NodeId, seq: Seq, template: &str) -> StorageResult<()> {
        let done = sqlx::query(
            "UPDATE nodes SET actual_status = 'Running', user_config_template = $3, \
             applied_seq = GREATEST(applied_seq, $2), state_up_to_date = TRUE, \
             last_seen = $4, updated_at = $4 WHERE id = $1::uuid",
        )
        .bind(id.to_string())
        .bind(seq)
        .bind(template)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(Entity::Node));
        }
        Ok(())
    }

    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        let row = sqlx::query(concat!(
            "UPDATE nodes SET state_up_to_date = FALSE, updated_at = $2 \
             WHERE id = $1::uuid RETURNING ",
            node_columns!()
        ))
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(node_err)?;
        rows::node(&row)
    }

    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        let done = sqlx::query(
            "UPDATE nodes SET actual_status = 'Stopped', state_up_to_date = TRUE, \
             last_seen = $2, updated_at = $2 WHERE id = $1::uuid",
        )
        .bind(id.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(Entity::Node));
        }
        Ok(())
    }

    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        let done = sqlx::query(
            "UPDATE nodes SET actual_status = $2, \
             last_seen = CASE WHEN $2 = 'Error' THEN last_seen ELSE $3 END, \
             updated_at = CASE WHEN actual_status = $2 THEN updated_at ELSE $3 END \
             WHERE id = $1::uuid",
        )
        .bind(id.to_string())
        .bind(actual.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(Entity::Node));
        }
        Ok(())
    }

    async fn create_user(&self, new: NewUser) -> StorageResult<User> {
        self.calls().create(new).await
    }

    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.calls().user_reads.get(id).await
    }

    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>> {
        let limit = page.clamped_limit() as usize;
        let query = match page_after::<UserId>(page) {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id > $1::uuid AND NOT deleted ORDER BY id LIMIT $2"
            ))
            .bind(after.to_string()),
            None => sqlx::query(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE NOT deleted ORDER BY id LIMIT $1"
            )),
        };
        let rows = query
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(user_err)?;
        into_page(rows, limit, rows::user, |u| u.id.to_string())
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        // Grouped with other callers' changes: see `grouped::set_statuses`.
        self.calls().set_status(id, status).await
    }

    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        // One statement, as in `set_user_status`: lock (shared change lock
        // first), tombstone with the next number, and one enabled user less
        // when the user was enabled.
        let deleted: i64 = sqlx::query_scalar(concat!(
            "WITH target AS ( \
               SELECT id, status FROM users \
               WHERE id = $1::uuid AND NOT deleted AND xm_change_lock() \
               FOR UPDATE \
             ), changed AS ( \
               UPDATE users u SET status = 'Disabled', deleted = TRUE, \
                 change_seq = xm_next_change_seq() \
               FROM target t WHERE u.id = t.id \
               RETURNING t.status AS was \
             ), pick AS ( \
               SELECT ",
            free_stripe!(),
            " FROM changed WHERE was = 'Enabled' \
             ), counted AS ( \
               UPDATE enabled_stripes s SET enabled = s.enabled - 1 \
               FROM pick p WHERE s.stripe = p.stripe \
             ) SELECT count(*) FROM changed"
        ))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(user_err)?;
        if deleted == 0 {
            return Err(StorageError::NotFound(Entity::User));
        }
        Ok(())
    }

    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        // One round trip: the user's row joined with the nodes that can serve
        // it; a user on no node still yields one row (with NULL node columns),
        // and no row at all means no such user.
        let rows = sqlx::query(
            "SELECT u.id::text AS id, u.name, u.status, u.secret, u.change_seq, u.created_at, \
             n.id::text AS node_id, n.endpoint, n.user_config_template \
             FROM users u \
             LEFT JOIN nodes n ON u.status = 'Enabled' \
               AND n.actual_status = 'Running' \
               AND n.state_up_to_date \
               AND n.user_config_template IS NOT NULL \
               AND n.applied_seq >= u.change_seq \
             WHERE u.id = $1::uuid AND NOT u.deleted \
             ORDER BY n.id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(user_err)?;
        let first = rows.first().ok_or(StorageError::NotFound(Entity::User))?;
        let user = rows::user(first)?;
        let mut nodes = Vec::with_capacity(rows.len());
        for row in &rows {
            nodes.extend(rows::node_entry(row)?);
        }
        Ok(UserNodes { user, nodes })
    }

    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        let limit = limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        // Only changes up to the settled horizon may go in the batch: a
        // larger number may have a smaller one still in flight below it, and
        // acknowledging it would skip that one. Changes above the horizon
        // that are already visible stay for the next batch (`more`).
        let horizon = self.settled_state().await?.last_seq;
        // One statement, so the cursor and the changes come from one snapshot
        // (taken after the horizon's). Fetches one more than asked to learn
        // whether more follow.
        let rows = sqlx::query(
            "SELECT n.applied_seq, u.id::text AS id, u.name, u.secret, u.status, u.deleted, \
             u.change_seq \
             FROM nodes n \
             LEFT JOIN LATERAL ( \
               SELECT id, name, secret, status, deleted, change_seq FROM users \
               WHERE change_seq > n.applied_seq ORDER BY change_seq LIMIT $2 \
             ) u ON TRUE \
             WHERE n.id = $1::uuid \
             ORDER BY u.change_seq",
        )
        .bind(id.to_string())
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(node_err)?;
        let first = rows.first().ok_or(StorageError::NotFound(Entity::Node))?;
        let cursor: Seq = rows::col(first, "applied_seq")?;
        batch_from_rows(&rows, cursor, horizon, limit)
    }

    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        let limit = limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        // The settled horizon, as in `pending_operations`.
        let horizon = self.settled_state().await?.last_seq;
        let rows = sqlx::query(
            "SELECT id::text AS id, name, secret, status, deleted, change_seq FROM users \
             WHERE change_seq > $1 ORDER BY change_seq LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(user_err)?;
        batch_from_rows(&rows, after, horizon, limit)
    }

    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        let done = sqlx::query(
            "UPDATE nodes SET applied_seq = GREATEST(applied_seq, $2) WHERE id = $1::uuid",
        )
        .bind(id.to_string())
        .bind(up_to_seq)
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(Entity::Node));
        }
        Ok(())
    }

    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        if acks.is_empty() {
            return Ok(());
        }
        // One statement for every node (replicas hold different nodes, so
        // two batches rarely touch the same rows; a deadlock PostgreSQL
        // breaks fails one push, which the next one repeats).
        let (ids, seqs): (Vec<String>, Vec<Seq>) = largest_per_node(acks)
            .into_iter()
            .map(|(id, seq)| (id.to_string(), seq))
            .unzip();
        sqlx::query(
            "UPDATE nodes n SET applied_seq = GREATEST(n.applied_seq, a.seq) \
             FROM unnest($1::text[], $2::bigint[]) AS a(id, seq) \
             WHERE n.id = a.id::uuid",
        )
        .bind(ids)
        .bind(seqs)
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        Ok(())
    }

    async fn fleet_state(&self) -> StorageResult<FleetState> {
        self.settled_state().await
    }

    async fn purge_tombstones(&self) -> StorageResult<u64> {
        // A node that is stopped and meant to stay stopped holds no users (its
        // core restarts empty and a start sends every enabled user), so only
        // the other nodes' cursors keep tombstones alive. The newest removed
        // number goes to meta.floor_seq, so the newest change never moves
        // backwards when its tombstone goes.
        let removed: i64 = sqlx::query_scalar(
            "WITH gone AS ( \
               DELETE FROM users WHERE deleted AND change_seq <= COALESCE( \
                 (SELECT min(applied_seq) FROM nodes \
                  WHERE actual_status <> 'Stopped' OR required_status <> 'Stopped'), \
                 9223372036854775807) \
               RETURNING change_seq \
             ), floor AS ( \
               UPDATE meta SET floor_seq = GREATEST(floor_seq, (SELECT max(change_seq) FROM gone)) \
               WHERE EXISTS (SELECT 1 FROM gone) \
             ) SELECT count(*) FROM gone",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(user_err)?;
        Ok(u64::try_from(removed).unwrap_or_default())
    }

    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        // One statement on the database clock. `free` locks up to `limit`
        // unowned or expired nodes, skipping rows another replica is claiming
        // right now; the UPDATE re-checks the lease on the newest row version,
        // so a lease another replica took meanwhile is never overwritten.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(concat!(
            "WITH free AS ( \
               SELECT id FROM nodes \
               WHERE lease_owner IS NULL OR (lease_owner <> $1 AND lease_until <= now()) \
               ORDER BY id LIMIT $3 \
               FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
               UPDATE nodes SET lease_owner = $1, \
                 lease_until = now() + $2 * interval '1 millisecond' \
               WHERE (lease_owner = $1 OR id IN (SELECT id FROM free)) \
                 AND (lease_owner = $1 OR lease_owner IS NULL OR lease_until <= now()) \
               RETURNING ",
            node_columns!(),
            ") SELECT * FROM claimed ORDER BY id"
        ))
        .bind(owner)
        .bind(ttl_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(node_err)?;
        rows.iter().map(rows::node).collect()
    }

    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        sqlx::query(
            "UPDATE nodes SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(node_err)?;
        Ok(())
    }

    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        // The node half of `user_nodes`' join condition, in one query.
        let rows = sqlx::query(
            "SELECT id::text AS node_id, endpoint, user_config_template, applied_seq \
             FROM nodes \
             WHERE actual_status = 'Running' AND state_up_to_date \
               AND user_config_template IS NOT NULL \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(node_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(entry) = rows::node_entry(row)? {
                out.push(ServingNode {
                    entry,
                    applied_seq: rows::col(row, "applied_seq")?,
                });
            }
        }
        Ok(out)
    }
}

/// A batch from rows of users in change order (a row with a NULL
/// `change_seq` ends it) for a cursor at `cursor`, cut at the settled
/// `horizon`; `rows` may hold one row past `limit`.
fn batch_from_rows(
    rows: &[sqlx::postgres::PgRow],
    cursor: Seq,
    horizon: Seq,
    limit: usize,
) -> StorageResult<PendingBatch> {
    let mut operations = Vec::with_capacity(rows.len().min(limit));
    let mut past_horizon = false;
    for row in rows.iter().take(limit) {
        let Some(seq) = rows::col::<Option<Seq>>(row, "change_seq")? else {
            break;
        };
        if seq > horizon {
            past_horizon = true;
            break;
        }
        let deleted: bool = rows::col(row, "deleted")?;
        let status: UserStatus = rows::parse(rows::col::<&str>(row, "status")?)?;
        let operation = if !deleted && status == UserStatus::Enabled {
            Operation::Add
        } else {
            Operation::Delete
        };
        operations.push(PendingOperation {
            user: rows::credentials(row)?,
            operation,
            seq,
        });
    }
    let more = past_horizon || rows.len() > limit;
    let up_to_seq = operations.last().map_or(cursor, |op| op.seq);
    Ok(PendingBatch {
        operations,
        up_to_seq,
        more,
    })
}
