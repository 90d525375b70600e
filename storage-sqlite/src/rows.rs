//! Reading rows back into domain values. A value that does not parse is
//! [`StorageError::Corrupt`]: the schema's checks should make that impossible.

use std::str::FromStr;

use manager_lib::domain::{Node, Plan, ResetStrategy, Timestamp, UsageCursor, User};
use manager_lib::seal::Sealer;
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::error::db_error;

/// The columns [`node_from_row`] reads, in `SELECT` / `RETURNING` form.
pub(crate) const NODE_COLUMNS: &str = "id, endpoint, key, actual_status, required_status, \
     user_config_template, state_up_to_date, applied_seq, last_seen, created_at, updated_at, \
     usage_journal, usage_seq, traffic_multiplier, used_up, used_down, inbounds, profile";

/// The columns [`user_from_row`] reads. The used bytes live in
/// `user_totals` (migration 0014): read by key beside the row, also in a
/// `RETURNING` list; `id` there is the users row's (the totals table has
/// none). No row (a tombstone) reads as zero.
pub(crate) const USER_COLUMNS: &str = "id, name, status, secret, change_seq, created_at, \
     data_limit, expire_at, reset_period, reset_day, on_hold, \
     COALESCE((SELECT t.up FROM user_totals t WHERE t.user_id = id), 0) AS used_up, \
     COALESCE((SELECT t.down FROM user_totals t WHERE t.user_id = id), 0) AS used_down, \
     blocked, next_reset_at, last_reset_at, subscription_key, device_limit";

/// [`USER_COLUMNS`] from a `users u` joined with other tables, and with
/// [`USER_TOTALS_T`] (a user's row repeated per node would otherwise look
/// its totals up once per repeat).
pub(crate) const USER_COLUMNS_U: &str = "u.id AS id, u.name AS name, u.status AS status, \
     u.secret AS secret, u.change_seq AS change_seq, u.created_at AS created_at, \
     u.data_limit AS data_limit, u.expire_at AS expire_at, u.reset_period AS reset_period, \
     u.reset_day AS reset_day, u.on_hold AS on_hold, \
     COALESCE(t.up, 0) AS used_up, COALESCE(t.down, 0) AS used_down, \
     u.blocked AS blocked, u.next_reset_at AS next_reset_at, \
     u.last_reset_at AS last_reset_at, u.subscription_key AS subscription_key, \
     u.device_limit AS device_limit";

/// The join [`USER_COLUMNS_U`] reads the used bytes from.
pub(crate) const USER_TOTALS_T: &str = "LEFT JOIN user_totals t ON t.user_id = u.id";

/// Parses a stored id or status.
pub(crate) fn parse<T>(s: &str) -> StorageResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StorageError::Corrupt(e.to_string()))
}

fn get<'r, T>(row: &'r SqliteRow, column: &str, entity: Entity) -> StorageResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|e| db_error(e, Some(entity)))
}

/// A node from its row; its key opened by `seal`.
pub(crate) fn node_from_row(row: &SqliteRow, seal: &Sealer) -> StorageResult<Node> {
    let e = Entity::Node;
    let id: &str = get(row, "id", e)?;
    Ok(Node {
        id: parse(id)?,
        endpoint: get(row, "endpoint", e)?,
        // The key is never echoed into the error: NodeKey's parse error is redacted.
        key: seal.open_node_key(id, get(row, "key", e)?)?,
        actual_status: parse(get(row, "actual_status", e)?)?,
        required_status: parse(get(row, "required_status", e)?)?,
        user_config_template: get(row, "user_config_template", e)?,
        inbounds: kit::profile::inbounds_from_json(get(row, "inbounds", e)?)?,
        profile: kit::profile::profile_from_json(get(row, "profile", e)?)?,
        state_up_to_date: get(row, "state_up_to_date", e)?,
        applied_seq: get(row, "applied_seq", e)?,
        last_seen: get::<Option<i64>>(row, "last_seen", e)?.map(Timestamp),
        created_at: Timestamp(get(row, "created_at", e)?),
        updated_at: Timestamp(get(row, "updated_at", e)?),
        usage_cursor: UsageCursor {
            journal: get(row, "usage_journal", e)?,
            seq: bytes(get(row, "usage_seq", e)?)?,
        },
        traffic_multiplier: get(row, "traffic_multiplier", e)?,
        used_up: bytes(get(row, "used_up", e)?)?,
        used_down: bytes(get(row, "used_down", e)?)?,
    })
}

/// A user from its row; its secret opened by `seal`.
pub(crate) fn user_from_row(row: &SqliteRow, seal: &Sealer) -> StorageResult<User> {
    let e = Entity::User;
    let id: &str = get(row, "id", e)?;
    Ok(User {
        id: parse(id)?,
        name: get(row, "name", e)?,
        status: parse(get(row, "status", e)?)?,
        secret: seal.open_user_secret(id, get(row, "secret", e)?)?,
        subscription_key: seal.open_subscription_key(id, get(row, "subscription_key", e)?)?,
        device_limit: get::<Option<i64>>(row, "device_limit", e)?
            .map(|v| {
                u32::try_from(v).map_err(|_| StorageError::Corrupt(format!("device limit {v}")))
            })
            .transpose()?,
        change_seq: get(row, "change_seq", e)?,
        created_at: Timestamp(get(row, "created_at", e)?),
        plan: Plan {
            data_limit: get::<Option<i64>>(row, "data_limit", e)?
                .map(bytes)
                .transpose()?,
            expire_at: get::<Option<i64>>(row, "expire_at", e)?.map(Timestamp),
            reset: ResetStrategy::from_parts(
                get(row, "reset_period", e)?,
                get(row, "reset_day", e)?,
            )
            .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            on_hold: get::<Option<i64>>(row, "on_hold", e)?
                .map(bytes)
                .transpose()?,
        },
        used_up: bytes(get(row, "used_up", e)?)?,
        used_down: bytes(get(row, "used_down", e)?)?,
        blocked: get::<Option<&str>>(row, "blocked", e)?
            .map(parse)
            .transpose()?,
        next_reset_at: get::<Option<i64>>(row, "next_reset_at", e)?.map(Timestamp),
        last_reset_at: get::<Option<i64>>(row, "last_reset_at", e)?.map(Timestamp),
    })
}

/// A stored count (bytes, seconds, a sequence number): never negative.
pub(crate) fn bytes(v: i64) -> StorageResult<u64> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt(format!("negative count {v}")))
}

/// The row a write returned, or [`StorageError::NotFound`] when it touched none.
pub(crate) fn found(row: Option<SqliteRow>, entity: Entity) -> StorageResult<SqliteRow> {
    row.ok_or(StorageError::NotFound(entity))
}
