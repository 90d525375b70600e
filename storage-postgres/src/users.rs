//! Users: creation, reads and status changes (grouped, see `grouped`),
//! deletion (a tombstone), and the user-node-list read.

use manager_lib::domain::{
    NewUser, Page, PageRequest, SubscriptionKey, User, UserId, UserNodes, UserStatus,
};
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};

use crate::PgStorage;
use crate::error::user_err;
use crate::rows::{self, free_stripe, user_columns, user_columns_u};

pub(crate) async fn create_user(s: &PgStorage, new: NewUser) -> StorageResult<User> {
    new.plan.validate()?;
    s.calls().create(new).await
}

pub(crate) async fn get_user(s: &PgStorage, id: UserId) -> StorageResult<User> {
    s.calls().user_reads.get(id).await
}

pub(crate) async fn list_users(s: &PgStorage, page: &PageRequest) -> StorageResult<Page<User>> {
    let limit = page.clamped_limit() as usize;
    let query = match kit::page_after::<UserId>(page) {
        Some(after) => sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id > $1::uuid AND NOT deleted ORDER BY id LIMIT $2"
        ))
        .bind(after.to_string()),
        None => sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE NOT deleted ORDER BY id LIMIT $1"
        )),
    };
    let rows = query
        .bind(limit as i64 + 1)
        .fetch_all(&s.pool)
        .await
        .map_err(user_err)?;
    kit::into_page(
        &rows,
        limit,
        |r| rows::user(r, &s.seal),
        |u| u.id.to_string(),
    )
}

pub(crate) async fn set_user_status(
    s: &PgStorage,
    id: UserId,
    status: UserStatus,
) -> StorageResult<User> {
    // Grouped with other callers' changes: see `grouped::set_statuses`.
    s.calls().set_status(id, status).await
}

pub(crate) async fn set_subscription_key(
    s: &PgStorage,
    id: UserId,
    key: SubscriptionKey,
) -> StorageResult<User> {
    // No change number: the nodes are not concerned.
    let row = sqlx::query(concat!(
        "UPDATE users SET subscription_key = $2 \
         WHERE id = $1::uuid AND NOT deleted RETURNING ",
        user_columns!()
    ))
    .bind(id.to_string())
    .bind(s.seal.seal_subscription_key(id, &key))
    .fetch_optional(&s.pool)
    .await
    .map_err(user_err)?
    .ok_or(StorageError::NotFound(Entity::User))?;
    rows::user(&row, &s.seal)
}

pub(crate) async fn delete_user(s: &PgStorage, id: UserId) -> StorageResult<()> {
    // One statement, as in `set_user_status`: lock (shared change lock
    // first), tombstone with the next number, and one enabled user less
    // when the user was enabled.
    let deleted: i64 = sqlx::query_scalar(concat!(
        "WITH target AS ( \
           SELECT id, status, blocked FROM users \
           WHERE id = $1::uuid AND NOT deleted AND xm_change_lock() \
           FOR UPDATE \
         ), changed AS ( \
           UPDATE users u SET status = 'Disabled', deleted = TRUE, \
             change_seq = xm_next_change_seq() \
           FROM target t WHERE u.id = t.id \
           RETURNING t.status AS was, t.blocked AS was_blocked \
         ), pick AS ( \
           SELECT ",
        free_stripe!(),
        " FROM changed WHERE was = 'Enabled' AND was_blocked IS NULL \
         ), counted AS ( \
           UPDATE enabled_stripes s SET enabled = s.enabled - 1 \
           FROM pick p WHERE s.stripe = p.stripe \
         ) SELECT count(*) FROM changed"
    ))
    .bind(id.to_string())
    .fetch_one(&s.pool)
    .await
    .map_err(user_err)?;
    if deleted == 0 {
        return Err(StorageError::NotFound(Entity::User));
    }
    Ok(())
}

pub(crate) async fn user_nodes(s: &PgStorage, id: UserId) -> StorageResult<UserNodes> {
    // One round trip: the user's row joined with the nodes that can serve
    // it; a user on no node still yields one row (with NULL node columns),
    // and no row at all means no such user.
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns_u!(),
        ", n.id::text AS node_id, n.endpoint, n.user_config_template, n.inbounds, n.profile \
         FROM users u \
         LEFT JOIN nodes n ON u.status = 'Enabled' AND u.blocked IS NULL \
           AND n.actual_status = 'Running' \
           AND n.state_up_to_date \
           AND n.user_config_template IS NOT NULL \
           AND n.applied_seq >= u.change_seq \
         WHERE u.id = $1::uuid AND NOT u.deleted \
         ORDER BY n.id"
    ))
    .bind(id.to_string())
    .fetch_all(&s.pool)
    .await
    .map_err(user_err)?;
    let first = rows.first().ok_or(StorageError::NotFound(Entity::User))?;
    let user = rows::user(first, &s.seal)?;
    let mut nodes = Vec::with_capacity(rows.len());
    for row in &rows {
        nodes.extend(rows::node_entry(row)?);
    }
    Ok(UserNodes { user, nodes })
}
