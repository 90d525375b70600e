//! The webhook outbox: writes through the group-commit writer (so a claim
//! is one serialised transaction: two replicas never hold a row at once),
//! reads from the readers' pool.

use std::time::Duration;

use manager_lib::domain::{Delivery, NewDelivery, Timestamp};
use manager_lib::storage::kit::outbox::{StoredDelivery, check_delivery};
use manager_lib::storage::outbox::lease_until;
use manager_lib::storage::{StorageError, StorageResult};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteConnection};

use crate::SqliteStorage;
use crate::error::db_error;

const COLUMNS: &str = "id, event_id, endpoint, event, body, created, attempts, next_at";

fn err(e: sqlx::Error) -> StorageError {
    db_error(e, None)
}

fn delivery_from_row(row: &SqliteRow) -> StorageResult<Delivery> {
    StoredDelivery {
        id: row.try_get("id").map_err(err)?,
        event_id: row.try_get("event_id").map_err(err)?,
        endpoint: row.try_get("endpoint").map_err(err)?,
        event: row.try_get("event").map_err(err)?,
        body: row.try_get("body").map_err(err)?,
        created: row.try_get("created").map_err(err)?,
        attempts: row.try_get("attempts").map_err(err)?,
        next_at: row.try_get("next_at").map_err(err)?,
    }
    .into_delivery()
}

pub(crate) async fn enqueue(s: &SqliteStorage, deliveries: &[NewDelivery]) -> StorageResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let deliveries = deliveries.to_vec();
    s.write(move |conn| Box::pin(async move { insert(conn, &deliveries).await }))
        .await
}

/// Adds the deliveries on `conn` (in the caller's transaction), each
/// checked first ([`check_delivery`]).
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
) -> StorageResult<()> {
    {
        {
            for d in deliveries {
                check_delivery(d)?;
                sqlx::query(
                    "INSERT INTO webhook_outbox \
                     (event_id, endpoint, event, body, created, next_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                     ON CONFLICT (event_id, endpoint) DO NOTHING",
                )
                .bind(&d.event_id)
                .bind(&d.endpoint)
                .bind(d.event.as_str())
                .bind(&d.body)
                .bind(d.created.0)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            }
            Ok(())
        }
    }
}

pub(crate) async fn claim(
    s: &SqliteStorage,
    owner: &str,
    now: Timestamp,
    lease: Duration,
    limit: u32,
) -> StorageResult<Vec<Delivery>> {
    let owner = owner.to_owned();
    let until = lease_until(now, lease);
    s.write(move |conn| {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "UPDATE webhook_outbox SET lease_owner = ?1, lease_until = ?2 \
                 WHERE id IN ( \
                     SELECT id FROM webhook_outbox \
                     WHERE delivered IS NULL AND next_at <= ?3 \
                         AND (lease_until IS NULL OR lease_until <= ?3) \
                     ORDER BY id LIMIT ?4) \
                 RETURNING {COLUMNS}"
            ))
            .bind(&owner)
            .bind(until.0)
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
            let mut out = rows
                .iter()
                .map(delivery_from_row)
                .collect::<StorageResult<Vec<_>>>()?;
            // RETURNING gives no order.
            out.sort_by_key(|d| d.id);
            Ok(out)
        })
    })
    .await
}

pub(crate) async fn mark_delivered(
    s: &SqliteStorage,
    id: i64,
    now: Timestamp,
) -> StorageResult<bool> {
    s.write(move |conn| {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE webhook_outbox SET delivered = ?2, lease_owner = NULL, \
                 lease_until = NULL WHERE id = ?1 AND delivered IS NULL",
            )
            .bind(id)
            .bind(now.0)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            Ok(done.rows_affected() == 1)
        })
    })
    .await
}

pub(crate) async fn schedule_retry(
    s: &SqliteStorage,
    id: i64,
    owner: &str,
    next_at: Timestamp,
    error: &str,
) -> StorageResult<bool> {
    let owner = owner.to_owned();
    let error = error.to_owned();
    s.write(move |conn| {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?3, \
                 last_error = ?4, lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND delivered IS NULL",
            )
            .bind(id)
            .bind(&owner)
            .bind(next_at.0)
            .bind(&error)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            Ok(done.rows_affected() == 1)
        })
    })
    .await
}

pub(crate) async fn prune(s: &SqliteStorage, before: Timestamp) -> StorageResult<u64> {
    s.write(move |conn| {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM webhook_outbox WHERE delivered < ?1")
                .bind(before.0)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            Ok(done.rows_affected())
        })
    })
    .await
}

pub(crate) async fn undelivered(s: &SqliteStorage) -> StorageResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE delivered IS NULL")
        .fetch_one(&s.reader)
        .await
        .map_err(err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
