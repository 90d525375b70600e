//! Each node's recent heartbeat events (migration 0011): an append and a
//! trim to the newest `keep` in one write, reads newest first by the
//! (node_id, id) index. Also the node pages' other reads: every node's
//! summary (plain columns and the profile's remark, no key) and a node's
//! traffic by day (its hours, by the (node_id, hour) key).

use async_trait::async_trait;
use manager_lib::domain::usage::UsageRow;
use manager_lib::domain::{NodeEvent, NodeId, NodeSummary, Timestamp};
use manager_lib::storage::kit::usage::group_node_days;
use manager_lib::storage::{Entity, NodeEventLog, StorageError, StorageResult};
use sqlx::Row as _;

use crate::SqliteStorage;
use crate::error::db_error;

fn err(e: sqlx::Error) -> StorageError {
    db_error(e, Some(Entity::Node))
}

pub(crate) async fn record(
    s: &SqliteStorage,
    id: NodeId,
    event: &NodeEvent,
    keep: u32,
) -> StorageResult<()> {
    let event = event.clone();
    s.write(move |conn| {
        Box::pin(async move {
            let id = id.to_string();
            let added = sqlx::query(
                "INSERT INTO node_events (node_id, at, kind, detail) \
                 SELECT id, ?2, ?3, ?4 FROM nodes WHERE id = ?1",
            )
            .bind(&id)
            .bind(event.at.0)
            .bind(event.kind.as_str())
            .bind(&event.detail)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            if added.rows_affected() == 0 {
                return Err(StorageError::NotFound(Entity::Node));
            }
            sqlx::query(
                "DELETE FROM node_events WHERE node_id = ?1 AND id <= ( \
                     SELECT id FROM node_events WHERE node_id = ?1 \
                     ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )
            .bind(&id)
            .bind(i64::from(keep.max(1)))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            Ok(())
        })
    })
    .await
}

pub(crate) async fn list(
    s: &SqliteStorage,
    id: NodeId,
    limit: u32,
) -> StorageResult<Vec<NodeEvent>> {
    let id = id.to_string();
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = ?1")
        .bind(&id)
        .fetch_optional(&s.reader)
        .await
        .map_err(err)?;
    if known.is_none() {
        return Err(StorageError::NotFound(Entity::Node));
    }
    let rows = sqlx::query(
        "SELECT at, kind, detail FROM node_events WHERE node_id = ?1 \
         ORDER BY id DESC LIMIT ?2",
    )
    .bind(&id)
    .bind(i64::from(limit))
    .fetch_all(&s.reader)
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

pub(crate) async fn summaries(s: &SqliteStorage) -> StorageResult<Vec<NodeSummary>> {
    let rows = sqlx::query(
        "SELECT id, endpoint, json_extract(profile, '$.remark') AS remark, actual_status, \
         required_status, last_seen, updated_at FROM nodes ORDER BY id",
    )
    .fetch_all(&s.reader)
    .await
    .map_err(err)?;
    rows.iter()
        .map(|r| {
            Ok(NodeSummary {
                id: crate::rows::parse(r.try_get::<&str, _>("id").map_err(err)?)?,
                endpoint: r.try_get("endpoint").map_err(err)?,
                remark: r.try_get("remark").map_err(err)?,
                actual_status: crate::rows::parse(
                    r.try_get::<&str, _>("actual_status").map_err(err)?,
                )?,
                required_status: crate::rows::parse(
                    r.try_get::<&str, _>("required_status").map_err(err)?,
                )?,
                last_seen: r
                    .try_get::<Option<i64>, _>("last_seen")
                    .map_err(err)?
                    .map(Timestamp),
                updated_at: Timestamp(r.try_get("updated_at").map_err(err)?),
            })
        })
        .collect()
}

pub(crate) async fn usage_by_day(
    s: &SqliteStorage,
    id: NodeId,
    from: Timestamp,
    to: Timestamp,
) -> StorageResult<Vec<UsageRow>> {
    let rows = sqlx::query(
        "SELECT hour, up, down FROM node_usage_hourly \
         WHERE node_id = ?1 AND hour >= ?2 AND hour < ?3",
    )
    .bind(id.to_string())
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.reader)
    .await
    .map_err(err)?;
    let mut hours = Vec::with_capacity(rows.len());
    for r in &rows {
        hours.push((
            Timestamp(r.try_get("hour").map_err(err)?),
            crate::rows::bytes(r.try_get("up").map_err(err)?)?,
            crate::rows::bytes(r.try_get("down").map_err(err)?)?,
        ));
    }
    Ok(group_node_days(id, hours))
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl NodeEventLog for SqliteStorage {
    async fn record_node_event(
        &self,
        id: NodeId,
        event: &NodeEvent,
        keep: u32,
    ) -> StorageResult<()> {
        crate::node_events::record(self, id, event, keep).await
    }

    async fn node_events(&self, id: NodeId, limit: u32) -> StorageResult<Vec<NodeEvent>> {
        crate::node_events::list(self, id, limit).await
    }

    async fn node_summaries(&self) -> StorageResult<Vec<NodeSummary>> {
        crate::node_events::summaries(self).await
    }

    async fn node_usage_by_day(
        &self,
        id: NodeId,
        from: Timestamp,
        to: Timestamp,
    ) -> StorageResult<Vec<UsageRow>> {
        crate::node_events::usage_by_day(self, id, from, to).await
    }
}
