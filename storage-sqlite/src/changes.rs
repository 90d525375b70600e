//! The change log and the nodes' cursors: pending operations, acks, the
//! fleet's newest change, and purging tombstones every node applied.

use manager_lib::domain::{FleetState, NodeId, PendingBatch, PendingOperation, Seq};
use manager_lib::seal::Sealer;
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{USER_COLUMNS_U, USER_TOTALS_T, found, user_from_row};
use crate::writer::Args;

pub(crate) async fn pending_operations(
    s: &SqliteStorage,
    id: NodeId,
    limit: u32,
) -> StorageResult<PendingBatch> {
    let limit = kit::batch_limit(limit);
    // One statement, so the cursor and the changes are one snapshot: the
    // node's row (by primary key), joined with the users after its cursor
    // in change order (index users_change_seq), or once with NULL user
    // columns when nothing is pending.
    let rows = sqlx::query(&format!(
        "SELECT n.applied_seq AS cursor, {USER_COLUMNS_U}, u.deleted AS deleted \
         FROM nodes n LEFT JOIN users u ON u.change_seq > n.applied_seq {USER_TOTALS_T} \
         WHERE n.id = ?1 ORDER BY u.change_seq LIMIT ?2"
    ))
    .bind(id.to_string())
    .bind(limit as i64 + 1)
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::Node)))?;
    let first = rows.first().ok_or(StorageError::NotFound(Entity::Node))?;
    let cursor: Seq = first
        .try_get("cursor")
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
    batch_from_rows(&rows, cursor, limit, &s.seal)
}

pub(crate) async fn changes_after(
    s: &SqliteStorage,
    after: Seq,
    limit: u32,
) -> StorageResult<PendingBatch> {
    let limit = kit::batch_limit(limit);
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS_U}, u.deleted AS deleted FROM users u {USER_TOTALS_T} \
         WHERE u.change_seq > ?1 ORDER BY u.change_seq LIMIT ?2"
    ))
    .bind(after)
    .bind(limit as i64 + 1)
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::User)))?;
    batch_from_rows(&rows, after, limit, &s.seal)
}

pub(crate) async fn ack_operations(
    s: &SqliteStorage,
    id: NodeId,
    up_to_seq: Seq,
) -> StorageResult<()> {
    let sql =
        "UPDATE nodes SET applied_seq = MAX(applied_seq, ?2) WHERE id = ?1 RETURNING 1".to_owned();
    let args = Args::default().bind(id.to_string()).bind(up_to_seq);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            found(row, Entity::Node).map(drop)
        })
        .await
}

pub(crate) async fn ack_operations_many(
    s: &SqliteStorage,
    acks: &[(NodeId, Seq)],
) -> StorageResult<()> {
    if acks.is_empty() {
        return Ok(());
    }
    // One statement: the pairs as a JSON array, the larger number per node.
    let pairs: Vec<(String, Seq)> = kit::largest_per_node(acks)
        .into_iter()
        .map(|(id, seq)| (id.to_string(), seq))
        .collect();
    let sql = "UPDATE nodes SET applied_seq = MAX(nodes.applied_seq, a.seq) \
         FROM (SELECT value ->> 0 AS id, value ->> 1 AS seq FROM json_each(?1)) AS a \
         WHERE nodes.id = a.id"
        .to_owned();
    let args = Args::default().bind(serde_json::to_string(&pairs).expect("pairs serialize"));
    s.writes
        .statement(sql, args, Some(Entity::Node), |_| Ok(()))
        .await
}

pub(crate) async fn fleet_state(s: &SqliteStorage) -> StorageResult<FleetState> {
    let (last_seq, enabled): (Seq, i64) =
        sqlx::query_as("SELECT last_seq, enabled_users FROM meta WHERE id = 1")
            .fetch_one(&s.reader)
            .await
            .map_err(|e| db_error(e, None))?;
    let enabled_users = u64::try_from(enabled)
        .map_err(|_| StorageError::Corrupt(format!("enabled_users is {enabled}")))?;
    Ok(FleetState {
        last_seq,
        enabled_users,
    })
}

pub(crate) async fn purge_tombstones(s: &SqliteStorage) -> StorageResult<u64> {
    s.write(|conn| {
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

/// A batch from rows of users in change order (a row with NULL user columns
/// ends it), for a cursor at `cursor`; `rows` may hold one row past `limit`.
fn batch_from_rows(
    rows: &[SqliteRow],
    cursor: Seq,
    limit: usize,
    seal: &Sealer,
) -> StorageResult<PendingBatch> {
    let get = |e| db_error(e, Some(Entity::User));
    let more = rows.len() > limit;
    let mut operations = Vec::with_capacity(rows.len().min(limit));
    for row in rows.iter().take(limit) {
        if row.try_get::<Option<&str>, _>("id").map_err(get)?.is_none() {
            break;
        }
        let user = user_from_row(row, seal)?;
        let deleted: bool = row.try_get("deleted").map_err(get)?;
        operations.push(PendingOperation {
            seq: user.change_seq,
            operation: kit::intent(user.status, user.blocked.is_some(), deleted),
            user: user.credentials(),
        });
    }
    Ok(kit::batch(operations, cursor, more))
}
