//! Leases on nodes for manager replicas. SQLite lives on one host, so the
//! lease clock is this process's clock.

use std::time::Duration;

use manager_lib::domain::{Node, Timestamp};
use manager_lib::storage::{Entity, StorageResult};

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{NODE_COLUMNS, node_from_row};
use crate::writer::Args;

pub(crate) async fn claim_nodes(
    s: &SqliteStorage,
    owner: &str,
    ttl: Duration,
    limit: u32,
) -> StorageResult<Vec<Node>> {
    let seal = s.seal.clone();
    let owner = owner.to_owned();
    s.write(move |conn| {
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
            rows.iter().map(|r| node_from_row(r, &seal)).collect()
        })
    })
    .await
}

pub(crate) async fn release_nodes(s: &SqliteStorage, owner: &str) -> StorageResult<()> {
    let sql = "UPDATE nodes SET lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner = ?1"
        .to_owned();
    let args = Args::default().bind(owner.to_owned());
    s.writes
        .statement(sql, args, Some(Entity::Node), |_| Ok(()))
        .await
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
