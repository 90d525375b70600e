//! Leases on nodes for manager replicas, on the database's clock.

use std::time::Duration;

use manager_lib::domain::Node;
use manager_lib::storage::StorageResult;

use crate::PgStorage;
use crate::error::node_err;
use crate::rows::{self, node_columns};

pub(crate) async fn claim_nodes(
    s: &PgStorage,
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
    .fetch_all(&s.pool)
    .await
    .map_err(node_err)?;
    rows.iter().map(|r| rows::node(r, &s.seal)).collect()
}

pub(crate) async fn release_nodes(s: &PgStorage, owner: &str) -> StorageResult<()> {
    sqlx::query("UPDATE nodes SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
        .bind(owner)
        .execute(&s.pool)
        .await
        .map_err(node_err)?;
    Ok(())
}
