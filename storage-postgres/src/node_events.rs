//! Each node's recent heartbeat events (migration 20261214000000): an
//! append and a trim to the newest `keep` in one transaction, reads newest
//! first by the (node_id, id) index. Also the node pages' other reads:
//! every node's summary (plain columns and the profile's remark, no key)
//! and a node's traffic by day (its hours, by the (node_id, hour) key).

use manager_lib::domain::usage::UsageRow;
use manager_lib::domain::{NodeEvent, NodeId, NodeSummary, Timestamp};
use manager_lib::storage::kit::usage::group_node_days;
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;

use crate::PgStorage;
use crate::error::node_err as err;
use crate::rows::{col, count, parse};

pub(crate) async fn record(
    s: &PgStorage,
    id: NodeId,
    event: &NodeEvent,
    keep: u32,
) -> StorageResult<()> {
    let mut tx = s.pool.begin().await.map_err(err)?;
    let added = sqlx::query(
        "INSERT INTO node_events (node_id, at, kind, detail) \
         SELECT id, $2, $3, $4 FROM nodes WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(event.at.0)
    .bind(event.kind.as_str())
    .bind(&event.detail)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    if added.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    sqlx::query(
        "DELETE FROM node_events WHERE node_id = $1::uuid AND id <= ( \
             SELECT id FROM node_events WHERE node_id = $1::uuid \
             ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(id.to_string())
    .bind(i64::from(keep.max(1)))
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}

pub(crate) async fn list(s: &PgStorage, id: NodeId, limit: u32) -> StorageResult<Vec<NodeEvent>> {
    let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = $1::uuid")
        .bind(id.to_string())
        .fetch_optional(&s.pool)
        .await
        .map_err(err)?;
    if known.is_none() {
        return Err(StorageError::NotFound(Entity::Node));
    }
    let rows = sqlx::query(
        "SELECT at, kind, detail FROM node_events WHERE node_id = $1::uuid \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(id.to_string())
    .bind(i64::from(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(err)?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind").map_err(err)?;
            Ok(NodeEvent {
                at: Timestamp(r.try_get("at").map_err(err)?),
                kind: kind.parse()?,
                detail: r.try_get("detail").map_err(err)?,
            })
        })
        .collect()
}

pub(crate) async fn summaries(s: &PgStorage) -> StorageResult<Vec<NodeSummary>> {
    let rows = sqlx::query(
        "SELECT id::text AS id, endpoint, profile::jsonb ->> 'remark' AS remark, actual_status, \
         required_status, last_seen, updated_at FROM nodes ORDER BY id",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(err)?;
    rows.iter()
        .map(|r| {
            Ok(NodeSummary {
                id: parse(col::<&str>(r, "id")?)?,
                endpoint: col(r, "endpoint")?,
                remark: col(r, "remark")?,
                actual_status: parse(col::<&str>(r, "actual_status")?)?,
                required_status: parse(col::<&str>(r, "required_status")?)?,
                last_seen: col::<Option<i64>>(r, "last_seen")?.map(Timestamp),
                updated_at: Timestamp(col(r, "updated_at")?),
            })
        })
        .collect()
}

pub(crate) async fn usage_by_day(
    s: &PgStorage,
    id: NodeId,
    from: Timestamp,
    to: Timestamp,
) -> StorageResult<Vec<UsageRow>> {
    let rows = sqlx::query(
        "SELECT hour, up, down FROM node_usage_hourly \
         WHERE node_id = $1::uuid AND hour >= $2 AND hour < $3",
    )
    .bind(id.to_string())
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.pool)
    .await
    .map_err(err)?;
    let mut hours = Vec::with_capacity(rows.len());
    for r in &rows {
        hours.push((
            Timestamp(col(r, "hour")?),
            count(col(r, "up")?)?,
            count(col(r, "down")?)?,
        ));
    }
    Ok(group_node_days(id, hours))
}
