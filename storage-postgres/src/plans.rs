//! Plans and the blocks they put on users: setting a plan, resetting used
//! bytes, and the time enforcement (expiry and periodic resets).
//!
//! A block or unblock is a user change like an enable or disable: it takes
//! the next number under the shared change lock and moves the on-node count
//! in the enabled-user stripes (see `set_blocked`). Every transaction here
//! that may block takes the shared change lock before any row lock, as the
//! change-sequence migration requires of every writer.

use manager_lib::domain::usage::{EnforceOutcome, storable};
use manager_lib::domain::{
    BlockReason, EventKind, PlanEdit, ResetStrategy, Timestamp, User, UserId,
};
use manager_lib::seal::Sealer;
use manager_lib::storage::kit::outbox::block_event;
use manager_lib::storage::kit::usage::{block_after_reset, plan_block};
use manager_lib::storage::{Entity, Notices, StorageError, StorageResult};
use sqlx::PgConnection;

use crate::PgStorage;
use crate::error::user_err;
use crate::outbox::insert;
use crate::rows::{self, free_stripe, user_columns};

/// Sets `blocked` on the live users among `ids` whose block differs, each
/// with the next change number, and moves the on-node count by the users
/// that entered or left the nodes. Answers the users changed. The caller's
/// transaction already holds the shared change lock.
pub(crate) async fn set_blocked(
    conn: &mut PgConnection,
    ids: &[UserId],
    blocked: Option<BlockReason>,
) -> StorageResult<Vec<UserId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(UserId::to_string).collect();
    let changed: Vec<String> = sqlx::query_scalar(concat!(
        "WITH target AS ( \
           SELECT id, status, blocked FROM users \
           WHERE id = ANY($1::text[]::uuid[]) AND NOT deleted AND xm_change_lock() \
             AND blocked IS DISTINCT FROM $2::text \
           ORDER BY id FOR UPDATE \
         ), changed AS ( \
           UPDATE users u SET blocked = $2::text, change_seq = xm_next_change_seq() \
           FROM target t WHERE u.id = t.id \
           RETURNING u.id, t.status, t.blocked AS was \
         ), delta AS ( \
           SELECT sum((status = 'Enabled' AND $2::text IS NULL)::int \
                      - (status = 'Enabled' AND was IS NULL)::int) AS d \
           FROM changed HAVING count(*) > 0 \
         ), pick AS ( \
           SELECT d, ",
        free_stripe!(),
        " FROM delta \
         ), counted AS ( \
           UPDATE enabled_stripes s SET enabled = s.enabled + p.d \
           FROM pick p WHERE s.stripe = p.stripe \
         ) SELECT id::text FROM changed ORDER BY id"
    ))
    .bind(ids)
    .bind(blocked.map(|b| b.as_str()))
    .fetch_all(&mut *conn)
    .await
    .map_err(user_err)?;
    changed.iter().map(|id| rows::parse(id)).collect()
}

/// Takes the shared change lock for the rest of the transaction.
pub(crate) async fn change_lock(conn: &mut PgConnection) -> StorageResult<()> {
    sqlx::query("SELECT xm_change_lock()")
        .execute(conn)
        .await
        .map_err(user_err)?;
    Ok(())
}

pub(crate) async fn locked_user(
    conn: &mut PgConnection,
    id: UserId,
    seal: &Sealer,
) -> StorageResult<User> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1::uuid AND NOT deleted FOR UPDATE"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(user_err)?;
    rows::user(&row.ok_or(StorageError::NotFound(Entity::User))?, seal)
}

/// The edit is applied to the plan of the row locked FOR UPDATE (under the
/// change lock), so no other write comes between the read and the update.
/// A refused edit rolls the transaction back (dropped): nothing written.
pub(crate) async fn edit_user_plan(
    s: &PgStorage,
    id: UserId,
    edit: PlanEdit,
    now: Timestamp,
    notices: Option<&Notices>,
) -> StorageResult<User> {
    let mut tx = s.pool.begin().await.map_err(user_err)?;
    change_lock(&mut tx).await?;
    let user = locked_user(&mut tx, id, &s.seal).await?;
    let plan = edit.apply(user.plan)?;
    sqlx::query(
        "UPDATE users SET data_limit = $2, expire_at = $3, reset_period = $4, reset_day = $5, \
             on_hold = $6, next_reset_at = $7 \
         WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(plan.data_limit.map(storable))
    .bind(plan.expire_at.map(|t| t.0))
    .bind(plan.reset.period())
    .bind(i16::from(plan.reset.month_day()))
    .bind(plan.on_hold.map(storable))
    .bind(plan.reset.next_reset_after(now).map(|t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(user_err)?;
    set_blocked(&mut tx, &[id], plan_block(&plan, user.used(), now)).await?;
    let after = locked_user(&mut tx, id, &s.seal).await?;
    plan_change(&mut tx, user.blocked, &after, notices).await?;
    tx.commit().await.map_err(user_err)?;
    Ok(after)
}

pub(crate) async fn reset_user_usage(
    s: &PgStorage,
    id: UserId,
    now: Timestamp,
    notices: Option<&Notices>,
) -> StorageResult<User> {
    let mut tx = s.pool.begin().await.map_err(user_err)?;
    change_lock(&mut tx).await?;
    let user = locked_user(&mut tx, id, &s.seal).await?;
    sqlx::query(
        "UPDATE users SET used_up = 0, used_down = 0, last_reset_at = $2 WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(now.0)
    .execute(&mut *tx)
    .await
    .map_err(user_err)?;
    set_blocked(&mut tx, &[id], block_after_reset(user.blocked)).await?;
    let after = locked_user(&mut tx, id, &s.seal).await?;
    plan_change(&mut tx, user.blocked, &after, notices).await?;
    tx.commit().await.map_err(user_err)?;
    Ok(after)
}

pub(crate) async fn enforce_time(
    s: &PgStorage,
    now: Timestamp,
    notices: Option<&Notices>,
) -> StorageResult<EnforceOutcome> {
    // Read first, without locks (partial indexes users_expire_at_idx and
    // users_next_reset_at_idx): when nothing is due that is all it costs.
    let due_expiry = "SELECT id::text FROM users WHERE expire_at <= $1 AND NOT deleted \
         AND (blocked IS NULL OR blocked = 'Limited') ORDER BY id";
    let due_reset = "SELECT id::text AS id, reset_period, reset_day, blocked FROM users \
         WHERE next_reset_at <= $1 AND NOT deleted ORDER BY id";
    let any_expiry: Option<String> = sqlx::query_scalar(&format!("{due_expiry} LIMIT 1"))
        .bind(now.0)
        .fetch_optional(&s.pool)
        .await
        .map_err(user_err)?;
    let any_reset: Option<String> =
        sqlx::query_scalar(&format!("SELECT id FROM ({due_reset} LIMIT 1) d"))
            .bind(now.0)
            .fetch_optional(&s.pool)
            .await
            .map_err(user_err)?;
    if any_expiry.is_none() && any_reset.is_none() {
        return Ok(EnforceOutcome::default());
    }
    let mut tx = s.pool.begin().await.map_err(user_err)?;
    change_lock(&mut tx).await?;
    let ids: Vec<String> = sqlx::query_scalar(&format!("{due_expiry} FOR UPDATE"))
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(user_err)?;
    let ids = ids
        .iter()
        .map(|id| rows::parse(id))
        .collect::<StorageResult<Vec<UserId>>>()?;
    let expired = set_blocked(&mut tx, &ids, Some(BlockReason::Expired)).await?;
    let due = sqlx::query(&format!("{due_reset} FOR UPDATE"))
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(user_err)?;
    let mut reset = Vec::with_capacity(due.len());
    let mut next = Vec::with_capacity(due.len());
    let mut limited = Vec::new();
    let mut unblocked = Vec::new();
    for row in &due {
        let id: UserId = rows::parse(rows::col::<&str>(row, "id")?)?;
        let strategy = ResetStrategy::from_parts(
            rows::col(row, "reset_period")?,
            rows::col::<i16>(row, "reset_day")?.into(),
        )
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        if rows::col::<Option<&str>>(row, "blocked")? == Some(BlockReason::Limited.as_str()) {
            limited.push(id);
        }
        reset.push(id);
        next.push(strategy.next_reset_after(now).map(|t| t.0));
    }
    if !reset.is_empty() {
        let ids: Vec<String> = reset.iter().map(UserId::to_string).collect();
        sqlx::query(
            "UPDATE users u SET used_up = 0, used_down = 0, last_reset_at = $3, \
                 next_reset_at = i.next \
             FROM unnest($1::text[]::uuid[], $2::bigint[]) AS i(id, next) WHERE u.id = i.id",
        )
        .bind(ids)
        .bind(next)
        .bind(now.0)
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(user_err)?;
        unblocked = set_blocked(&mut tx, &limited, None).await?;
    }
    if let Some(notices) = notices {
        for (kind, ids) in [
            (EventKind::UserExpired, &expired),
            (EventKind::UserReEnabled, &unblocked),
        ] {
            let users = users(&mut tx, ids, &s.seal).await?;
            crate::outbox::insert(&mut *tx, &notices.deliveries(kind, &users)?).await?;
        }
    }
    tx.commit().await.map_err(user_err)?;
    Ok(EnforceOutcome {
        expired,
        reset,
        unblocked,
    })
}

/// The users of `ids` (locked by the caller's transaction), as written so
/// far in it.
pub(crate) async fn users(
    conn: &mut PgConnection,
    ids: &[UserId],
    seal: &Sealer,
) -> StorageResult<Vec<User>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(locked_user(conn, *id, seal).await?);
    }
    Ok(out)
}

/// Writes the event of a user's block changing from `before` (when
/// notices are asked for).
pub(crate) async fn plan_change(
    conn: &mut PgConnection,
    before: Option<BlockReason>,
    after: &User,
    notices: Option<&Notices>,
) -> StorageResult<()> {
    let Some(notices) = notices else {
        return Ok(());
    };
    if let Some(kind) = block_event(before, after.blocked) {
        let deliveries = notices.deliveries(kind, std::slice::from_ref(after))?;
        insert(&mut *conn, &deliveries).await?;
    }
    Ok(())
}
