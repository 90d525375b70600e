//! Users' devices and device limits. A known device's sighting is one
//! read; a new device (or a `last_seen` an hour behind) is recorded in a
//! transaction that first locks the user's row, so concurrent new devices
//! of one user are counted one after another and never pass the limit.

use manager_lib::domain::device::LAST_SEEN_STEP_MS;
use manager_lib::domain::{Device, DeviceSighting, DeviceVerdict, Timestamp, User, UserId};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;

use crate::PgStorage;
use crate::error::user_err;
use crate::rows::{self, user_columns};

pub(crate) async fn set_device_limit(
    s: &PgStorage,
    id: UserId,
    limit: Option<u32>,
) -> StorageResult<User> {
    let limit = limit.map(i32::try_from).transpose().map_err(|_| {
        StorageError::Invalid(manager_lib::domain::ParseError {
            what: "device limit",
            value: "too large".into(),
        })
    })?;
    let row = sqlx::query(concat!(
        "UPDATE users SET device_limit = $2 WHERE id = $1::uuid AND NOT deleted RETURNING ",
        user_columns!()
    ))
    .bind(id.to_string())
    .bind(limit)
    .fetch_optional(&s.pool)
    .await
    .map_err(user_err)?
    .ok_or(StorageError::NotFound(Entity::User))?;
    rows::user(&row, &s.seal)
}

pub(crate) async fn record_device(
    s: &PgStorage,
    id: UserId,
    sighting: &DeviceSighting,
    limit: u32,
    now: Timestamp,
) -> StorageResult<DeviceVerdict> {
    let seen: Option<i64> = sqlx::query_scalar(
        "SELECT last_seen FROM user_devices WHERE user_id = $1::uuid AND hwid = $2",
    )
    .bind(id.to_string())
    .bind(&sighting.hwid)
    .fetch_optional(&s.pool)
    .await
    .map_err(user_err)?;
    if seen.is_some_and(|at| now.0 - at < LAST_SEEN_STEP_MS) {
        return Ok(DeviceVerdict::Allowed);
    }
    let mut tx = s.pool.begin().await.map_err(user_err)?;
    // The user's row first: concurrent sightings of this user's devices
    // wait here, and the count below (a later statement, a later
    // snapshot) sees every device they recorded.
    let live: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM users WHERE id = $1::uuid AND NOT deleted FOR NO KEY UPDATE",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *tx)
    .await
    .map_err(user_err)?;
    if live.is_none() {
        return Err(StorageError::NotFound(Entity::User));
    }
    let recorded: Option<i32> = sqlx::query_scalar(
        "INSERT INTO user_devices \
             (user_id, hwid, os, os_version, model, user_agent, first_seen, last_seen) \
         SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $7 \
         WHERE $8 = 0 \
            OR EXISTS (SELECT 1 FROM user_devices WHERE user_id = $1::uuid AND hwid = $2) \
            OR (SELECT count(*) FROM user_devices WHERE user_id = $1::uuid) < $8 \
         ON CONFLICT (user_id, hwid) DO UPDATE SET os = excluded.os, \
             os_version = excluded.os_version, model = excluded.model, \
             user_agent = excluded.user_agent, last_seen = excluded.last_seen \
         RETURNING 1",
    )
    .bind(id.to_string())
    .bind(&sighting.hwid)
    .bind(&sighting.os)
    .bind(&sighting.os_version)
    .bind(&sighting.model)
    .bind(&sighting.user_agent)
    .bind(now.0)
    .bind(i64::from(limit))
    .fetch_optional(&mut *tx)
    .await
    .map_err(user_err)?;
    tx.commit().await.map_err(user_err)?;
    Ok(match recorded {
        Some(_) => DeviceVerdict::Allowed,
        None => DeviceVerdict::OverLimit,
    })
}

async fn live_user(s: &PgStorage, id: UserId) -> StorageResult<()> {
    let live: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1::uuid AND NOT deleted")
            .bind(id.to_string())
            .fetch_optional(&s.pool)
            .await
            .map_err(user_err)?;
    live.map(drop).ok_or(StorageError::NotFound(Entity::User))
}

pub(crate) async fn list_devices(s: &PgStorage, id: UserId) -> StorageResult<Vec<Device>> {
    live_user(s, id).await?;
    let rows = sqlx::query(
        "SELECT hwid, os, os_version, model, user_agent, first_seen, last_seen \
         FROM user_devices WHERE user_id = $1::uuid ORDER BY first_seen, hwid",
    )
    .bind(id.to_string())
    .fetch_all(&s.pool)
    .await
    .map_err(user_err)?;
    rows.iter()
        .map(|row| {
            let get = |e| StorageError::Corrupt(format!("a device row: {e}"));
            Ok(Device {
                hwid: row.try_get("hwid").map_err(get)?,
                os: row.try_get("os").map_err(get)?,
                os_version: row.try_get("os_version").map_err(get)?,
                model: row.try_get("model").map_err(get)?,
                user_agent: row.try_get("user_agent").map_err(get)?,
                first_seen: Timestamp(row.try_get("first_seen").map_err(get)?),
                last_seen: Timestamp(row.try_get("last_seen").map_err(get)?),
            })
        })
        .collect()
}

pub(crate) async fn delete_device(s: &PgStorage, id: UserId, hwid: &str) -> StorageResult<()> {
    live_user(s, id).await?;
    let done = sqlx::query("DELETE FROM user_devices WHERE user_id = $1::uuid AND hwid = $2")
        .bind(id.to_string())
        .bind(hwid)
        .execute(&s.pool)
        .await
        .map_err(user_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Device));
    }
    Ok(())
}
