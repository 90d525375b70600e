//! The change log and the nodes' cursors: the settled horizon, pending
//! operations, acks, the fleet's state, and purging tombstones every node
//! applied.

use manager_lib::domain::{FleetState, NodeId, PendingBatch, PendingOperation, Seq, UserStatus};
use manager_lib::seal::Sealer;
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::postgres::PgRow;

use crate::PgStorage;
use crate::error::{node_err, user_err};
use crate::rows;

impl PgStorage {
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
    pub(crate) async fn settled_state(&self) -> StorageResult<FleetState> {
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

pub(crate) async fn pending_operations(
    s: &PgStorage,
    id: NodeId,
    limit: u32,
) -> StorageResult<PendingBatch> {
    let limit = kit::batch_limit(limit);
    // Only changes up to the settled horizon may go in the batch: a
    // larger number may have a smaller one still in flight below it, and
    // acknowledging it would skip that one. Changes above the horizon
    // that are already visible stay for the next batch (`more`).
    let horizon = s.settled_state().await?.last_seq;
    // One statement, so the cursor and the changes come from one snapshot
    // (taken after the horizon's). Fetches one more than asked to learn
    // whether more follow.
    let rows = sqlx::query(
        "SELECT n.applied_seq, u.id::text AS id, u.name, u.secret, u.status, u.deleted, \
         u.blocked, u.change_seq \
         FROM nodes n \
         LEFT JOIN LATERAL ( \
           SELECT id, name, secret, status, deleted, blocked, change_seq FROM users \
           WHERE change_seq > n.applied_seq ORDER BY change_seq LIMIT $2 \
         ) u ON TRUE \
         WHERE n.id = $1::uuid \
         ORDER BY u.change_seq",
    )
    .bind(id.to_string())
    .bind(limit as i64 + 1)
    .fetch_all(&s.pool)
    .await
    .map_err(node_err)?;
    let first = rows.first().ok_or(StorageError::NotFound(Entity::Node))?;
    let cursor: Seq = rows::col(first, "applied_seq")?;
    batch_from_rows(&rows, cursor, horizon, limit, &s.seal)
}

pub(crate) async fn changes_after(
    s: &PgStorage,
    after: Seq,
    limit: u32,
) -> StorageResult<PendingBatch> {
    let limit = kit::batch_limit(limit);
    // The settled horizon, as in `pending_operations`.
    let horizon = s.settled_state().await?.last_seq;
    let rows = sqlx::query(
        "SELECT id::text AS id, name, secret, status, deleted, blocked, change_seq FROM users \
         WHERE change_seq > $1 ORDER BY change_seq LIMIT $2",
    )
    .bind(after)
    .bind(limit as i64 + 1)
    .fetch_all(&s.pool)
    .await
    .map_err(user_err)?;
    batch_from_rows(&rows, after, horizon, limit, &s.seal)
}

pub(crate) async fn ack_operations(s: &PgStorage, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
    let done =
        sqlx::query("UPDATE nodes SET applied_seq = GREATEST(applied_seq, $2) WHERE id = $1::uuid")
            .bind(id.to_string())
            .bind(up_to_seq)
            .execute(&s.pool)
            .await
            .map_err(node_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    Ok(())
}

pub(crate) async fn ack_operations_many(
    s: &PgStorage,
    acks: &[(NodeId, Seq)],
) -> StorageResult<()> {
    if acks.is_empty() {
        return Ok(());
    }
    // One statement for every node (replicas hold different nodes, so
    // two batches rarely touch the same rows; a deadlock PostgreSQL
    // breaks fails one push, which the next one repeats).
    let (ids, seqs): (Vec<String>, Vec<Seq>) = kit::largest_per_node(acks)
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
    .execute(&s.pool)
    .await
    .map_err(node_err)?;
    Ok(())
}

pub(crate) async fn fleet_state(s: &PgStorage) -> StorageResult<FleetState> {
    s.settled_state().await
}

pub(crate) async fn purge_tombstones(s: &PgStorage) -> StorageResult<u64> {
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
    .fetch_one(&s.pool)
    .await
    .map_err(user_err)?;
    Ok(u64::try_from(removed).unwrap_or_default())
}

/// A batch from rows of users in change order (a row with a NULL
/// `change_seq` ends it) for a cursor at `cursor`, cut at the settled
/// `horizon`; `rows` may hold one row past `limit`.
fn batch_from_rows(
    rows: &[PgRow],
    cursor: Seq,
    horizon: Seq,
    limit: usize,
    seal: &Sealer,
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
        let blocked = rows::col::<Option<&str>>(row, "blocked")?.is_some();
        operations.push(PendingOperation {
            user: rows::credentials(row, seal)?,
            operation: kit::intent(status, blocked, deleted),
            seq,
        });
    }
    let more = past_horizon || rows.len() > limit;
    Ok(kit::batch(operations, cursor, more))
}
