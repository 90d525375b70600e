//! The webhook outbox: single statements on the pool. A claim locks the
//! rows it takes (`FOR UPDATE SKIP LOCKED`) and re-checks the lease on the
//! newest row version, so two replicas never hold the same delivery.

use std::time::Duration;

use manager_lib::domain::{Delivery, NewDelivery, Timestamp};
use manager_lib::storage::kit::outbox::{StoredDelivery, check_delivery};
use manager_lib::storage::outbox::lease_until;
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::PgStorage;
use crate::error::map_err;

const COLUMNS: &str = "id, event_id, endpoint, event, body, created, attempts, next_at";

// Outbox rows are no entity of their own: a missing one is never an error.
fn err(e: sqlx::Error) -> StorageError {
    map_err(Entity::Node, e)
}

fn delivery_from_row(row: &PgRow) -> StorageResult<Delivery> {
    StoredDelivery {
        id: row.try_get("id").map_err(err)?,
        event_id: row.try_get("event_id").map_err(err)?,
        endpoint: row.try_get("endpoint").map_err(err)?,
        event: row.try_get("event").map_err(err)?,
        body: row.try_get("body").map_err(err)?,
        created: row.try_get("created").map_err(err)?,
        attempts: i64::from(row.try_get::<i32, _>("attempts").map_err(err)?),
        next_at: row.try_get("next_at").map_err(err)?,
    }
    .into_delivery()
}

pub(crate) async fn enqueue(s: &PgStorage, deliveries: &[NewDelivery]) -> StorageResult<()> {
    insert(&s.pool, deliveries).await
}

/// Adds the deliveries with `exec` (the pool, or the caller's
/// transaction), each checked first ([`check_delivery`]).
pub(crate) async fn insert<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    deliveries: &[NewDelivery],
) -> StorageResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    deliveries.iter().try_for_each(check_delivery)?;
    let col = |f: fn(&NewDelivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
    let created: Vec<i64> = deliveries.iter().map(|d| d.created.0).collect();
    // One statement: the whole batch lands or none of it.
    sqlx::query(
        "INSERT INTO webhook_outbox (event_id, endpoint, event, body, created, next_at) \
         SELECT e, p, k, b, c, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[]) AS t(e, p, k, b, c) \
         ON CONFLICT (event_id, endpoint) DO NOTHING",
    )
    .bind(col(|d| d.event_id.clone()))
    .bind(col(|d| d.endpoint.clone()))
    .bind(col(|d| d.event.as_str().to_owned()))
    .bind(col(|d| d.body.clone()))
    .bind(created)
    .execute(exec)
    .await
    .map_err(err)?;
    Ok(())
}

pub(crate) async fn claim(
    s: &PgStorage,
    owner: &str,
    now: Timestamp,
    lease: Duration,
    limit: u32,
) -> StorageResult<Vec<Delivery>> {
    let until = lease_until(now, lease);
    let rows = sqlx::query(&format!(
        "WITH free AS ( \
           SELECT id FROM webhook_outbox \
           WHERE delivered IS NULL AND next_at <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3) \
           ORDER BY id LIMIT $4 \
           FOR UPDATE SKIP LOCKED \
         ), claimed AS ( \
           UPDATE webhook_outbox SET lease_owner = $1, lease_until = $2 \
           WHERE id IN (SELECT id FROM free) AND delivered IS NULL \
             AND (lease_until IS NULL OR lease_until <= $3) \
           RETURNING {COLUMNS} \
         ) SELECT * FROM claimed ORDER BY id"
    ))
    .bind(owner)
    .bind(until.0)
    .bind(now.0)
    .bind(i64::from(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(err)?;
    rows.iter().map(delivery_from_row).collect()
}

pub(crate) async fn mark_delivered(s: &PgStorage, id: i64, now: Timestamp) -> StorageResult<bool> {
    let done = sqlx::query(
        "UPDATE webhook_outbox SET delivered = $2, lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND delivered IS NULL",
    )
    .bind(id)
    .bind(now.0)
    .execute(&s.pool)
    .await
    .map_err(err)?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn schedule_retry(
    s: &PgStorage,
    id: i64,
    owner: &str,
    next_at: Timestamp,
    error: &str,
) -> StorageResult<bool> {
    let done = sqlx::query(
        "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = $3, last_error = $4, \
         lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2 AND delivered IS NULL",
    )
    .bind(id)
    .bind(owner)
    .bind(next_at.0)
    .bind(error)
    .execute(&s.pool)
    .await
    .map_err(err)?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn prune(s: &PgStorage, before: Timestamp) -> StorageResult<u64> {
    let done = sqlx::query("DELETE FROM webhook_outbox WHERE delivered < $1")
        .bind(before.0)
        .execute(&s.pool)
        .await
        .map_err(err)?;
    Ok(done.rows_affected())
}

pub(crate) async fn undelivered(s: &PgStorage) -> StorageResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE delivered IS NULL")
        .fetch_one(&s.pool)
        .await
        .map_err(err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
