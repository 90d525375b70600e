//! Users' devices and device limits. A known device's sighting is answered
//! from the readers' pool; only a new device (or a `last_seen` an hour
//! behind) reaches the writer, in one statement, so the single writer makes
//! the limit exact.

use manager_lib::domain::device::LAST_SEEN_STEP_MS;
use manager_lib::domain::{Device, DeviceSighting, DeviceVerdict, Timestamp, User, UserId};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{USER_COLUMNS, found, user_from_row};
use crate::users::get_user;
use crate::writer::Args;

pub(crate) async fn set_device_limit(
    s: &SqliteStorage,
    id: UserId,
    limit: Option<u32>,
) -> StorageResult<User> {
    let seal = s.seal.clone();
    let sql = format!(
        "UPDATE users SET device_limit = ?2 WHERE id = ?1 AND deleted = 0 RETURNING {USER_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(limit.map(i64::from));
    s.writes
        .statement(sql, args, Some(Entity::User), move |row| {
            user_from_row(&found(row, Entity::User)?, &seal)
        })
        .await
}

pub(crate) async fn record_device(
    s: &SqliteStorage,
    id: UserId,
    sighting: &DeviceSighting,
    limit: u32,
    now: Timestamp,
) -> StorageResult<DeviceVerdict> {
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT last_seen FROM user_devices WHERE user_id = ?1 AND hwid = ?2")
            .bind(id.to_string())
            .bind(&sighting.hwid)
            .fetch_optional(&s.reader)
            .await
            .map_err(|e| db_error(e, Some(Entity::User)))?;
    if seen.is_some_and(|at| now.0 - at < LAST_SEEN_STEP_MS) {
        return Ok(DeviceVerdict::Allowed);
    }
    // One statement: a known device is updated (the conflict), a new one
    // inserted while the user has fewer than `limit`; no row answered
    // means over the limit, or no such user.
    let sql = "INSERT INTO user_devices \
             (user_id, hwid, os, os_version, model, user_agent, first_seen, last_seen) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 \
         WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1 AND deleted = 0) \
           AND (?8 = 0 \
             OR EXISTS (SELECT 1 FROM user_devices WHERE user_id = ?1 AND hwid = ?2) \
             OR (SELECT count(*) FROM user_devices WHERE user_id = ?1) < ?8) \
         ON CONFLICT (user_id, hwid) DO UPDATE SET os = excluded.os, \
             os_version = excluded.os_version, model = excluded.model, \
             user_agent = excluded.user_agent, last_seen = excluded.last_seen \
         RETURNING 1"
        .to_owned();
    let args = Args::default()
        .bind(id.to_string())
        .bind(sighting.hwid.clone())
        .bind(sighting.os.clone())
        .bind(sighting.os_version.clone())
        .bind(sighting.model.clone())
        .bind(sighting.user_agent.clone())
        .bind(now.0)
        .bind(i64::from(limit));
    let recorded = s
        .writes
        .statement(sql, args, Some(Entity::User), move |row| Ok(row.is_some()))
        .await?;
    if recorded {
        return Ok(DeviceVerdict::Allowed);
    }
    get_user(s, id).await?;
    Ok(DeviceVerdict::OverLimit)
}

pub(crate) async fn list_devices(s: &SqliteStorage, id: UserId) -> StorageResult<Vec<Device>> {
    get_user(s, id).await?;
    let rows = sqlx::query(
        "SELECT hwid, os, os_version, model, user_agent, first_seen, last_seen \
         FROM user_devices WHERE user_id = ?1 ORDER BY first_seen, hwid",
    )
    .bind(id.to_string())
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::User)))?;
    let get = |e| db_error(e, Some(Entity::Device));
    rows.iter()
        .map(|row| {
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

pub(crate) async fn delete_device(s: &SqliteStorage, id: UserId, hwid: &str) -> StorageResult<()> {
    get_user(s, id).await?;
    let sql = "DELETE FROM user_devices WHERE user_id = ?1 AND hwid = ?2 RETURNING 1".to_owned();
    let args = Args::default().bind(id.to_string()).bind(hwid.to_owned());
    let deleted = s
        .writes
        .statement(
            sql,
            args,
            Some(Entity::Device),
            move |row| Ok(row.is_some()),
        )
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(StorageError::NotFound(Entity::Device))
    }
}
