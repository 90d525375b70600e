//! Reading rows back into domain values. A value that does not parse (a
//! status, an id or a key in a bad form) is [`StorageError::Corrupt`].

use std::str::FromStr;

use manager_lib::domain::{
    Node, NodeEntry, Plan, ResetStrategy, Timestamp, UsageCursor, User, UserCredentials,
};
use manager_lib::seal::Sealer;
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};

use crate::error::map_err;

/// The node columns every query that returns a node selects, in this spelling.
macro_rules! node_columns {
    () => {
        "id::text AS id, endpoint, node_key, actual_status, required_status, \
         user_config_template, state_up_to_date, applied_seq, last_seen, created_at, updated_at, \
         usage_journal, usage_seq, traffic_multiplier, used_up, used_down, inbounds, profile"
    };
}

/// The user columns every query that returns a user selects.
macro_rules! user_columns {
    () => {
        "id::text AS id, name, status, secret, change_seq, created_at, data_limit, expire_at, \
         reset_period, reset_day, on_hold, used_up, used_down, blocked, next_reset_at, \
         last_reset_at, subscription_key, device_limit"
    };
}

/// [`user_columns!`] of a `users u` joined with other tables.
macro_rules! user_columns_u {
    () => {
        "u.id::text AS id, u.name, u.status, u.secret, u.change_seq, u.created_at, \
         u.data_limit, u.expire_at, u.reset_period, u.reset_day, u.on_hold, u.used_up, \
         u.used_down, u.blocked, u.next_reset_at, u.last_reset_at, u.subscription_key, \
         u.device_limit"
    };
}

/// The stripe of the enabled-user count a change adds its delta to: one no
/// other transaction holds right now (so writers do not queue on it), or any
/// stripe when all are taken.
///
/// It is picked in a CTE of its own (`pick`, one row per counted change) that
/// the count's UPDATE joins, never in that UPDATE's WHERE: when the UPDATE
/// finds its row changed by a concurrent commit it rechecks the row
/// (EvalPlanQual), and a stripe chosen in its own WHERE was seen to lose
/// deltas under concurrency then; a joined CTE row is carried as is.
macro_rules! free_stripe {
    () => {
        "COALESCE( \
           (SELECT stripe FROM enabled_stripes ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED), \
           (SELECT stripe FROM enabled_stripes ORDER BY random() LIMIT 1)) AS stripe"
    };
}

pub(crate) use {free_stripe, node_columns, user_columns, user_columns_u};

pub(crate) fn col<'r, T>(row: &'r PgRow, name: &str) -> StorageResult<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(name).map_err(|e| map_err(Entity::Node, e))
}

/// Parses a stored id, status or key. The key's error never echoes the key.
pub(crate) fn parse<T>(text: &str) -> StorageResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| StorageError::Corrupt(e.to_string()))
}

fn parse_col<T>(row: &PgRow, name: &str) -> StorageResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    parse(col::<&str>(row, name)?)
}

/// A node from its row; its key opened by `seal`.
pub(crate) fn node(row: &PgRow, seal: &Sealer) -> StorageResult<Node> {
    let id: &str = col(row, "id")?;
    Ok(Node {
        id: parse(id)?,
        endpoint: col(row, "endpoint")?,
        key: seal.open_node_key(id, col(row, "node_key")?)?,
        actual_status: parse_col(row, "actual_status")?,
        required_status: parse_col(row, "required_status")?,
        user_config_template: col(row, "user_config_template")?,
        inbounds: kit::profile::inbounds_from_json(col(row, "inbounds")?)?,
        profile: kit::profile::profile_from_json(col(row, "profile")?)?,
        state_up_to_date: col(row, "state_up_to_date")?,
        applied_seq: col(row, "applied_seq")?,
        last_seen: col::<Option<i64>>(row, "last_seen")?.map(Timestamp),
        created_at: Timestamp(col(row, "created_at")?),
        updated_at: Timestamp(col(row, "updated_at")?),
        usage_cursor: UsageCursor {
            journal: col(row, "usage_journal")?,
            seq: count(col(row, "usage_seq")?)?,
        },
        traffic_multiplier: col(row, "traffic_multiplier")?,
        used_up: count(col(row, "used_up")?)?,
        used_down: count(col(row, "used_down")?)?,
    })
}

/// A user from its row; its secret opened by `seal`.
pub(crate) fn user(row: &PgRow, seal: &Sealer) -> StorageResult<User> {
    let id: &str = col(row, "id")?;
    Ok(User {
        id: parse(id)?,
        name: col(row, "name")?,
        status: parse_col(row, "status")?,
        secret: seal.open_user_secret(id, col(row, "secret")?)?,
        subscription_key: seal.open_subscription_key(id, col(row, "subscription_key")?)?,
        device_limit: col::<Option<i32>>(row, "device_limit")?
            .map(|v| {
                u32::try_from(v).map_err(|_| StorageError::Corrupt(format!("device limit {v}")))
            })
            .transpose()?,
        change_seq: col(row, "change_seq")?,
        created_at: Timestamp(col(row, "created_at")?),
        plan: Plan {
            data_limit: col::<Option<i64>>(row, "data_limit")?
                .map(count)
                .transpose()?,
            expire_at: col::<Option<i64>>(row, "expire_at")?.map(Timestamp),
            reset: ResetStrategy::from_parts(
                col(row, "reset_period")?,
                col::<i16>(row, "reset_day")?.into(),
            )
            .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            on_hold: col::<Option<i64>>(row, "on_hold")?.map(count).transpose()?,
        },
        used_up: count(col(row, "used_up")?)?,
        used_down: count(col(row, "used_down")?)?,
        blocked: col::<Option<&str>>(row, "blocked")?
            .map(parse)
            .transpose()?,
        next_reset_at: col::<Option<i64>>(row, "next_reset_at")?.map(Timestamp),
        last_reset_at: col::<Option<i64>>(row, "last_reset_at")?.map(Timestamp),
    })
}

/// A stored count (bytes, seconds, a sequence number): never negative.
pub(crate) fn count(v: i64) -> StorageResult<u64> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt(format!("negative count {v}")))
}

pub(crate) fn credentials(row: &PgRow, seal: &Sealer) -> StorageResult<UserCredentials> {
    let id: &str = col(row, "id")?;
    Ok(UserCredentials {
        id: parse(id)?,
        name: col(row, "name")?,
        secret: seal.open_user_secret(id, col(row, "secret")?)?,
    })
}

/// The node half of a `user_nodes` row; `None` for the row of a user on no node.
pub(crate) fn node_entry(row: &PgRow) -> StorageResult<Option<NodeEntry>> {
    let Some(id) = col::<Option<&str>>(row, "node_id")? else {
        return Ok(None);
    };
    Ok(Some(kit::profile::node_entry(
        parse(id)?,
        col(row, "endpoint")?,
        col(row, "user_config_template")?,
        col(row, "inbounds")?,
        col(row, "profile")?,
    )?))
}

/// Now, as stored in the timestamp columns.
pub(crate) fn now_ms() -> i64 {
    manager_lib::domain::Timestamp::now().0
}
