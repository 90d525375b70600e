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
//! to the writer.

pub mod backup;
mod error;
mod point_reads;
mod private_file;
mod rows;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::{
    ActualStatus, FleetState, NewNode, NewUser, Node, NodeEntry, NodeId, Operation, Page,
    PageRequest, PendingBatch, PendingOperation, RequiredStatus, Seq, ServingNode, StartPlan,
    Timestamp, User, UserId, UserNodes, UserStatus,
};
use manager_lib::storage::{Entity, Storage, StorageError, StorageResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, SqliteConnection};

use crate::error::{db_error, migrate_error};
use crate::rows::{
    NODE_COLUMNS, USER_COLUMNS, USER_COLUMNS_U, node_from_row, parse, user_from_row,
};
use crate::writer::{Args, BoxFuture, Writer};
pub use crate::writer::{MAX_BATCH, WriteStats};
use manager_lib::storage::largest_per_node;

/// How many connections read at the same time.
pub const READERS: u32 = 8;
/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
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
    pub async fn connect(url: &str) -> StorageResult<Self> {
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
            return Self::from_pool(pool).await;
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
            .connect_with(options.clone().journal_mode(SqliteJournalMode::Wal))
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
            writes: Writer::spawn(writer.clone()),
            user_reads: point_reads::spawn(reader.clone()),
            writer,
            reader,
        })
    }

    /// Uses `pool` for reads and writes, after bringing its schema up to
    /// date. The pool's options should set a `busy_timeout`, and the WAL
    /// journal when several connections share the file.
    ///
    /// Like [`SqliteStorage::connect`], this starts the writer task on the
    /// current Tokio runtime: the storage serves writes while that runtime runs.
    pub async fn from_pool(pool: SqlitePool) -> StorageResult<Self> {
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        Ok(Self {
            filename: pool.connect_options().get_filename().to_path_buf(),
            writes: Writer::spawn(pool.clone()),
            user_reads: point_reads::spawn(pool.clone()),
            writer: pool.clone(),
            reader: pool,
        })
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

/// The row a write returned, or [`StorageError::NotFound`] when it touched none.
fn found(row: Option<SqliteRow>, entity: Entity) -> StorageResult<SqliteRow> {
    row.ok_or(StorageError::NotFound(entity))
}

/// The text form of a page's `after`, or "" (before every id). An `after`
/// that is no id of this kind starts from the beginning, as in memory.
fn page_after<K: FromStr + ToString>(page: &PageRequest) -> String {
    page.after
        .as_deref()
        .and_then(|a| a.parse::<K>().ok())
        .map(|k| k.to_string())
        .unwrap_or_default()
}

/// Splits the `limit + 1` rows read into a page and its `next` cursor.
fn into_page<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_node(&self, new: NewNode) -> StorageResult<Node> {
        let sql = format!(
            "INSERT INTO nodes (id, endpoint, key, actual_status, required_status, \
                 user_config_template, state_up_to_date, applied_seq, last_seen, \
                 created_at, updated_at) \
             SELECT ?1, ?2, ?3, 'Stopped', 'Stopped', NULL, 1, last_seq, NULL, ?4, ?4 \
             FROM meta WHERE id = 1 \
             RETURNING {NODE_COLUMNS}"
        );
        let args = Args::default()
            .bind(new.id.to_string())
            .bind(new.endpoint)
            .bind(new.key.expose().to_owned())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                node_from_row(&found(row, Entity::Node)?)
            })
            .await
    }

    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error(e, Some(Entity::Node)))?;
        node_from_row(&row)
    }

    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE endpoint = ?1"
        ))
        .bind(endpoint)
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>> {
        let limit = page.clamped_limit();
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .bind(page_after::<NodeId>(page))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
        let nodes = rows
            .iter()
            .map(node_from_row)
            .collect::<StorageResult<_>>()?;
        Ok(into_page(nodes, limit as usize, |n: &Node| {
            n.id.to_string()
        }))
    }

    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        let sql = "DELETE FROM nodes WHERE id = ?1 RETURNING 1".to_owned();
        let args = Args::default().bind(id.to_string());
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                found(row, Entity::Node).map(drop)
            })
            .await
    }

    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node> {
        let sql = format!(
            "UPDATE nodes SET \
                 updated_at = CASE WHEN required_status = ?2 THEN updated_at ELSE ?3 END, \
                 required_status = ?2 \
             WHERE id = ?1 RETURNING {NODE_COLUMNS}"
        );
        let args = Args::default()
            .bind(id.to_string())
            .bind(status.as_str())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                node_from_row(&found(row, Entity::Node)?)
            })
            .await
    }

    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        self.write(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "UPDATE nodes SET state_up_to_date = 0, updated_at = ?2 \
                     WHERE id = ?1 RETURNING {NODE_COLUMNS}"
                ))
                .bind(id.to_string())
                .bind(Timestamp::now().0)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::Node)))?;
                let node = node_from_row(&row)?;
                let seq: Seq = sqlx::query_scalar("SELECT last_seq FROM meta WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error(e, None))?;
                // Tombstones are never 'Enabled'; this reads the partial index users_enabled.
                let rows = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE status = 'Enabled' ORDER BY id"
                ))
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::User)))?;
                let users = rows
                    .iter()
                    .map(|r| user_from_row(r).map(|u| u.credentials()))
                    .collect::<StorageResult<_>>()?;
                Ok(StartPlan { node, users, seq })
            })
        })
        .await
    }

    async fn finish_start(&self, id: NodeId, seq: Seq, template: &str) -> StorageResult<()> {
        let sql = "UPDATE nodes SET actual_status = 'Running', user_config_template = ?3, \
                 applied_seq = MAX(applied_seq, ?2), state_up_to_date = 1, \
                 last_seen = ?4, updated_at = ?4 \
             WHERE id = ?1 RETURNING 1"
            .to_owned();
        let args = Args::default()
            .bind(id.to_string())
            .bind(seq)
            .bind(template.to_owned())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                found(row, Entity::Node).map(drop)
            })
            .await
    }

    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        let sql = format!(
            "UPDATE nodes SET state_up_to_date = 0, updated_at = ?2 \
             WHERE id = ?1 RETURNING {NODE_COLUMNS}"
        );
        let args = Args::default()
            .bind(id.to_string())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                node_from_row(&found(row, Entity::Node)?)
            })
            .await
    }

    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        let sql = "UPDATE nodes SET actual_status = 'Stopped', state_up_to_date = 1, \
                 last_seen = ?2, updated_at = ?2 \
             WHERE id = ?1 RETURNING 1"
            .to_owned();
        let args = Args::default()
            .bind(id.to_string())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                found(row, Entity::Node).map(drop)
            })
            .await
    }

    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        let sql = "UPDATE nodes SET \
                 last_seen = CASE WHEN ?2 = 'Error' THEN last_seen ELSE ?3 END, \
                 updated_at = CASE WHEN actual_status = ?2 THEN updated_at ELSE ?3 END, \
                 actual_status = ?2 \
             WHERE id = ?1 RETURNING 1"
            .to_owned();
        let args = Args::default()
            .bind(id.to_string())
            .bind(actual.as_str())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                found(row, Entity::Node).map(drop)
            })
            .await
    }

    async fn create_user(&self, new: NewUser) -> StorageResult<User> {
        let sql = format!(
            "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at) \
             VALUES (?1, ?2, 'Disabled', ?3, 0, 0, ?4) \
             RETURNING {USER_COLUMNS}"
        );
        let args = Args::default()
            .bind(new.id.to_string())
            .bind(new.name)
            .bind(new.secret.expose().to_owned())
            .bind(Timestamp::now().0);
        self.writes
            .statement(sql, args, Some(Entity::User), |row| {
                user_from_row(&found(row, Entity::User)?)
            })
            .await
    }

    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.user_reads.get(id).await
    }

    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>> {
        let limit = page.clamped_limit();
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 AND deleted = 0 ORDER BY id LIMIT ?2"
        ))
        .bind(page_after::<UserId>(page))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::User)))?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<StorageResult<_>>()?;
        Ok(into_page(users, limit as usize, |u: &User| {
            u.id.to_string()
        }))
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        // One statement: the trigger users_change hands out the sequence
        // number named here and counts the enabled users, atomically.
        let sql = format!(
            "UPDATE users SET status = ?2, \
                 change_seq = (SELECT last_seq + 1 FROM meta WHERE id = 1) \
             WHERE id = ?1 AND deleted = 0 AND status <> ?2 \
             RETURNING {USER_COLUMNS}"
        );
        let args = Args::default().bind(id.to_string()).bind(status.as_str());
        let changed = self
            .writes
            .statement(sql, args, Some(Entity::User), |row| {
                row.as_ref().map(user_from_row).transpose()
            })
            .await?;
        match changed {
            Some(user) => Ok(user),
            // Already so, or no such user: nothing was written. Read after
            // the (empty) write committed, so no older state is seen.
            None => self.get_user(id).await,
        }
    }

    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        // One statement, as in set_user_status.
        let sql = "UPDATE users SET status = 'Disabled', deleted = 1, \
                 change_seq = (SELECT last_seq + 1 FROM meta WHERE id = 1) \
             WHERE id = ?1 AND deleted = 0 RETURNING 1"
            .to_owned();
        let args = Args::default().bind(id.to_string());
        self.writes
            .statement(sql, args, Some(Entity::User), |row| {
                found(row, Entity::User).map(drop)
            })
            .await
    }

    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        // One statement: the user's row (by primary key), repeated once per
        // usable node, or once with NULL node columns when there is none.
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS_U}, n.id AS node_id, n.endpoint AS node_endpoint, \
                 n.user_config_template AS node_template \
             FROM users u \
             LEFT JOIN nodes n ON u.status = 'Enabled' \
                 AND n.actual_status = 'Running' AND n.state_up_to_date = 1 \
                 AND n.user_config_template IS NOT NULL AND n.applied_seq >= u.change_seq \
             WHERE u.id = ?1 AND u.deleted = 0 \
             ORDER BY n.id"
        ))
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::User)))?;
        let first = rows.first().ok_or(StorageError::NotFound(Entity::User))?;
        let user = user_from_row(first)?;
        let get = |e| db_error(e, Some(Entity::Node));
        let mut nodes = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(node_id) = row.try_get::<Option<&str>, _>("node_id").map_err(get)? else {
                continue;
            };
            nodes.push(NodeEntry {
                id: parse(node_id)?,
                endpoint: row.try_get::<&str, _>("node_endpoint").map_err(get)?.into(),
                user_config_template: row.try_get::<&str, _>("node_template").map_err(get)?.into(),
            });
        }
        Ok(UserNodes { user, nodes })
    }

    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        let limit = limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        // One statement, so the cursor and the changes are one snapshot: the
        // node's row (by primary key), joined with the users after its cursor
        // in change order (index users_change_seq), or once with NULL user
        // columns when nothing is pending.
        let rows = sqlx::query(&format!(
            "SELECT n.applied_seq AS cursor, {USER_COLUMNS_U}, u.deleted AS deleted \
             FROM nodes n LEFT JOIN users u ON u.change_seq > n.applied_seq \
             WHERE n.id = ?1 ORDER BY u.change_seq LIMIT ?2"
        ))
        .bind(id.to_string())
        .bind(limit as i64 + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
        let first = rows.first().ok_or(StorageError::NotFound(Entity::Node))?;
        let cursor: Seq = first
            .try_get("cursor")
            .map_err(|e| db_error(e, Some(Entity::Node)))?;
        batch_from_rows(&rows, cursor, limit)
    }

    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        let limit = limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS_U}, u.deleted AS deleted FROM users u \
             WHERE u.change_seq > ?1 ORDER BY u.change_seq LIMIT ?2"
        ))
        .bind(after)
        .bind(limit as i64 + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::User)))?;
        batch_from_rows(&rows, after, limit)
    }

    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        let sql = "UPDATE nodes SET applied_seq = MAX(applied_seq, ?2) WHERE id = ?1 RETURNING 1"
            .to_owned();
        let args = Args::default().bind(id.to_string()).bind(up_to_seq);
        self.writes
            .statement(sql, args, Some(Entity::Node), |row| {
                found(row, Entity::Node).map(drop)
            })
            .await
    }

    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        if acks.is_empty() {
            return Ok(());
        }
        // One statement: the pairs as a JSON array, the larger number per node.
        let pairs: Vec<(String, Seq)> = largest_per_node(acks)
            .into_iter()
            .map(|(id, seq)| (id.to_string(), seq))
            .collect();
        let sql = "UPDATE nodes SET applied_seq = MAX(nodes.applied_seq, a.seq) \
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS seq FROM json_each(?1)) AS a \
             WHERE nodes.id = a.id"
            .to_owned();
        let args = Args::default().bind(serde_json::to_string(&pairs).expect("pairs serialize"));
        self.writes
            .statement(sql, args, Some(Entity::Node), |_| Ok(()))
            .await
    }

    async fn fleet_state(&self) -> StorageResult<FleetState> {
        let (last_seq, enabled): (Seq, i64) =
            sqlx::query_as("SELECT last_seq, enabled_users FROM meta WHERE id = 1")
                .fetch_one(&self.reader)
                .await
                .map_err(|e| db_error(e, None))?;
        let enabled_users = u64::try_from(enabled)
            .map_err(|_| StorageError::Corrupt(format!("enabled_users is {enabled}")))?;
        Ok(FleetState {
            last_seq,
            enabled_users,
        })
    }

    async fn purge_tombstones(&self) -> StorageResult<u64> {
        self.write(|conn| {
            Box::pin(async move {
                // The horizon: the oldest cursor among nodes that are or
                // should be running (a node stopped on purpose gets every
                // user afresh on start).
                let done = sqlx::query(
                    "DELETE FROM users WHERE deleted = 1 AND change_seq <= COALESCE( \
                         (SELECT MIN(applied_seq) FROM nodes \
                          WHERE actual_status <> 'Stopped' OR required_status <> 'Stopped'), \
                         9223372036854775807)",
                )
                .execute(conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::User)))?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                // SQLite lives on one host: its clock is this process's clock.
                let now = Timestamp::now().0;
                let until = now.saturating_add(millis(ttl));
                sqlx::query("UPDATE nodes SET lease_until = ?2 WHERE lease_owner = ?1")
                    .bind(&owner)
                    .bind(until)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error(e, Some(Entity::Node)))?;
                sqlx::query(
                    "UPDATE nodes SET lease_owner = ?1, lease_until = ?2 WHERE id IN ( \
                         SELECT id FROM nodes \
                         WHERE (lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?3) \
                             AND lease_owner IS NOT ?1 \
                         ORDER BY id LIMIT ?4)",
                )
                .bind(&owner)
                .bind(until)
                .bind(now)
                .bind(i64::from(limit))
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::Node)))?;
                let rows = sqlx::query(&format!(
                    "SELECT {NODE_COLUMNS} FROM nodes WHERE lease_owner = ?1 ORDER BY id"
                ))
                .bind(&owner)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::Node)))?;
                rows.iter().map(node_from_row).collect()
            })
        })
        .await
    }

    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        let sql = "UPDATE nodes SET lease_owner = NULL, lease_until = NULL \
             WHERE lease_owner = ?1"
            .to_owned();
        let args = Args::default().bind(owner.to_owned());
        self.writes
            .statement(sql, args, Some(Entity::Node), |_| Ok(()))
            .await
    }

    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        // The same node conditions as `user_nodes`, minus the user's.
        let rows = sqlx::query(
            "SELECT id, endpoint, user_config_template, applied_seq FROM nodes \
             WHERE actual_status = 'Running' AND state_up_to_date = 1 \
                 AND user_config_template IS NOT NULL \
             ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
        let get = |e| db_error(e, Some(Entity::Node));
        rows.iter()
            .map(|row| {
                Ok(ServingNode {
                    entry: NodeEntry {
                        id: parse(row.try_get::<&str, _>("id").map_err(get)?)?,
                        endpoint: row.try_get::<&str, _>("endpoint").map_err(get)?.into(),
                        user_config_template: row
                            .try_get::<&str, _>("user_config_template")
                            .map_err(get)?
                            .into(),
                    },
                    applied_seq: row.try_get("applied_seq").map_err(get)?,
                })
            })
            .collect()
    }
}

/// A batch from rows of users in change order (a row with NULL user columns
/// ends it), for a cursor at `cursor`; `rows` may hold one row past `limit`.
fn batch_from_rows(rows: &[SqliteRow], cursor: Seq, limit: usize) -> StorageResult<PendingBatch> {
    let get = |e| db_error(e, Some(Entity::User));
    let more = rows.len() > limit;
    let mut operations = Vec::with_capacity(rows.len().min(limit));
    for row in rows.iter().take(limit) {
        if row.try_get::<Option<&str>, _>("id").map_err(get)?.is_none() {
            break;
        }
        let user = user_from_row(row)?;
        let deleted: bool = row.try_get("deleted").map_err(get)?;
        let operation = if !deleted && user.status == UserStatus::Enabled {
            Operation::Add
        } else {
            Operation::Delete
        };
        operations.push(PendingOperation {
            seq: user.change_seq,
            user: user.credentials(),
            operation,
        });
    }
    let up_to_seq = operations.last().map_or(cursor, |op| op.seq);
    Ok(PendingBatch {
        operations,
        up_to_seq,
        more,
    })
}
