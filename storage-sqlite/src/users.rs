//! Users: creation, reads, status changes, deletion (a tombstone), and the
//! user-node-list read.

use manager_lib::domain::usage::storable;
use manager_lib::domain::{
    NewUser, Page, PageRequest, SubscriptionKey, Timestamp, User, UserId, UserNodes, UserStatus,
};
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::Row as _;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{USER_COLUMNS, USER_COLUMNS_U, USER_TOTALS_T, found, parse, user_from_row};
use crate::writer::Args;

pub(crate) async fn create_user(s: &SqliteStorage, new: NewUser) -> StorageResult<User> {
    let seal = s.seal.clone();
    new.plan.validate()?;
    let now = Timestamp::now();
    let plan = new.plan;
    // A new user has no change yet (change_seq 0): its block, if its plan
    // already expired, is written without one (it is on no node anyway).
    let sql = format!(
        "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at, \
             data_limit, expire_at, reset_period, reset_day, on_hold, blocked, next_reset_at, \
             subscription_key) \
         VALUES (?1, ?2, 'Disabled', ?3, 0, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         RETURNING {USER_COLUMNS}"
    );
    let args = Args::default()
        .bind(new.id.to_string())
        .bind(new.name)
        .bind(seal.seal_user_secret(new.id, &new.secret))
        .bind(now.0)
        .bind(plan.data_limit.map(storable))
        .bind(plan.expire_at.map(|t| t.0))
        .bind(plan.reset.period())
        .bind(i64::from(plan.reset.month_day()))
        .bind(plan.on_hold.map(storable))
        .bind(kit::usage::plan_block(&plan, 0, now).map(|b| b.as_str()))
        .bind(plan.reset.next_reset_after(now).map(|t| t.0))
        .bind(seal.seal_subscription_key(new.id, &new.subscription_key));
    s.writes
        .statement(sql, args, Some(Entity::User), move |row| {
            user_from_row(&found(row, Entity::User)?, &seal)
        })
        .await
}

pub(crate) async fn get_user(s: &SqliteStorage, id: UserId) -> StorageResult<User> {
    s.user_reads.get(id).await
}

pub(crate) async fn list_users(s: &SqliteStorage, page: &PageRequest) -> StorageResult<Page<User>> {
    let limit = page.clamped_limit();
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 AND deleted = 0 ORDER BY id LIMIT ?2"
    ))
    // "" sorts before every id.
    .bind(
        kit::page_after::<UserId>(page)
            .map(|id| id.to_string())
            .unwrap_or_default(),
    )
    .bind(i64::from(limit) + 1)
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::User)))?;
    kit::into_page(
        &rows,
        limit as usize,
        |r| user_from_row(r, &s.seal),
        |u: &User| u.id.to_string(),
    )
}

pub(crate) async fn set_user_status(
    s: &SqliteStorage,
    id: UserId,
    status: UserStatus,
) -> StorageResult<User> {
    let seal = s.seal.clone();
    // One statement: the trigger users_change hands out the sequence
    // number named here and counts the enabled users, atomically.
    let sql = format!(
        "UPDATE users SET status = ?2, \
             change_seq = (SELECT last_seq + 1 FROM meta WHERE id = 1) \
         WHERE id = ?1 AND deleted = 0 AND status <> ?2 \
         RETURNING {USER_COLUMNS}"
    );
    let args = Args::default().bind(id.to_string()).bind(status.as_str());
    let changed = s
        .writes
        .statement(sql, args, Some(Entity::User), move |row| {
            row.as_ref().map(|r| user_from_row(r, &seal)).transpose()
        })
        .await?;
    match changed {
        Some(user) => Ok(user),
        // Already so, or no such user: nothing was written. Read after
        // the (empty) write committed, so no older state is seen.
        None => get_user(s, id).await,
    }
}

pub(crate) async fn set_subscription_key(
    s: &SqliteStorage,
    id: UserId,
    key: SubscriptionKey,
) -> StorageResult<User> {
    let seal = s.seal.clone();
    let sql = format!(
        "UPDATE users SET subscription_key = ?2 WHERE id = ?1 AND deleted = 0 \
         RETURNING {USER_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(seal.seal_subscription_key(id, &key));
    s.writes
        .statement(sql, args, Some(Entity::User), move |row| {
            user_from_row(&found(row, Entity::User)?, &seal)
        })
        .await
}

pub(crate) async fn delete_user(s: &SqliteStorage, id: UserId) -> StorageResult<()> {
    // One statement, as in set_user_status.
    let sql = "UPDATE users SET status = 'Disabled', deleted = 1, \
             change_seq = (SELECT last_seq + 1 FROM meta WHERE id = 1) \
         WHERE id = ?1 AND deleted = 0 RETURNING 1"
        .to_owned();
    let args = Args::default().bind(id.to_string());
    s.writes
        .statement(sql, args, Some(Entity::User), move |row| {
            found(row, Entity::User).map(drop)
        })
        .await
}

pub(crate) async fn user_nodes(s: &SqliteStorage, id: UserId) -> StorageResult<UserNodes> {
    // One statement: the user's row (by primary key), repeated once per
    // usable node, or once with NULL node columns when there is none.
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS_U}, n.id AS node_id, n.endpoint AS node_endpoint, \
             n.user_config_template AS node_template, n.inbounds AS node_inbounds, \
             n.profile AS node_profile \
         FROM users u {USER_TOTALS_T} \
         LEFT JOIN nodes n ON u.status = 'Enabled' AND u.blocked IS NULL \
             AND n.actual_status = 'Running' AND n.state_up_to_date = 1 \
             AND n.user_config_template IS NOT NULL AND n.applied_seq >= u.change_seq \
         WHERE u.id = ?1 AND u.deleted = 0 \
         ORDER BY n.id"
    ))
    .bind(id.to_string())
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::User)))?;
    let first = rows.first().ok_or(StorageError::NotFound(Entity::User))?;
    let user = user_from_row(first, &s.seal)?;
    let get = |e| db_error(e, Some(Entity::Node));
    let mut nodes = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(node_id) = row.try_get::<Option<&str>, _>("node_id").map_err(get)? else {
            continue;
        };
        nodes.push(kit::profile::node_entry(
            parse(node_id)?,
            row.try_get("node_endpoint").map_err(get)?,
            row.try_get("node_template").map_err(get)?,
            row.try_get("node_inbounds").map_err(get)?,
            row.try_get("node_profile").map_err(get)?,
        )?);
    }
    Ok(UserNodes { user, nodes })
}
