//! Reading rows back into domain values. A value that does not parse is
//! [`StorageError::Corrupt`]: the schema's checks should make that impossible.

use std::str::FromStr;

use manager_lib::domain::{Node, Timestamp, User, UserSecret};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::error::db_error;

/// The columns [`node_from_row`] reads, in `SELECT` / `RETURNING` form.
pub(crate) const NODE_COLUMNS: &str = "id, endpoint, key, actual_status, required_status, \
     user_config_template, state_up_to_date, applied_seq, last_seen, created_at, updated_at";

/// The columns [`user_from_row`] reads.
pub(crate) const USER_COLUMNS: &str = "id, name, status, secret, change_seq, created_at";

/// [`USER_COLUMNS`] from a `users u` joined with other tables.
pub(crate) const USER_COLUMNS_U: &str = "u.id AS id, u.name AS name, u.status AS status, \
     u.secret AS secret, u.change_seq AS change_seq, u.created_at AS created_at";

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

pub(crate) fn node_from_row(row: &SqliteRow) -> StorageResult<Node> {
    let e = Entity::Node;
    let key: String = get(row, "key", e)?;
    Ok(Node {
        id: parse(get(row, "id", e)?)?,
        endpoint: get(row, "endpoint", e)?,
        // The key is never echoed into the error: NodeKey's parse error is redacted.
        key: parse(&key)?,
        actual_status: parse(get(row, "actual_status", e)?)?,
        required_status: parse(get(row, "required_status", e)?)?,
        user_config_template: get(row, "user_config_template", e)?,
        state_up_to_date: get(row, "state_up_to_date", e)?,
        applied_seq: get(row, "applied_seq", e)?,
        last_seen: get::<Option<i64>>(row, "last_seen", e)?.map(Timestamp),
        created_at: Timestamp(get(row, "created_at", e)?),
        updated_at: Timestamp(get(row, "updated_at", e)?),
    })
}

pub(crate) fn user_from_row(row: &SqliteRow) -> StorageResult<User> {
    let e = Entity::User;
    Ok(User {
        id: parse(get(row, "id", e)?)?,
        name: get(row, "name", e)?,
        status: parse(get(row, "status", e)?)?,
        secret: UserSecret::from_stored(get(row, "secret", e)?),
        change_seq: get(row, "change_seq", e)?,
        created_at: Timestamp(get(row, "created_at", e)?),
    })
}

/// The row a write returned, or [`StorageError::NotFound`] when it touched none.
pub(crate) fn found(row: Option<SqliteRow>, entity: Entity) -> StorageResult<SqliteRow> {
    row.ok_or(StorageError::NotFound(entity))
}
