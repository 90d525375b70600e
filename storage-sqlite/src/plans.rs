//! Plans and the blocks they put on users: setting a plan, resetting used
//! bytes, and the time enforcement (expiry and periodic resets).
//!
//! A block or unblock is one statement per user that takes the next change
//! number, as an enable or disable does (the trigger `users_change` checks
//! it and keeps the on-node count).

use manager_lib::domain::usage::{EnforceOutcome, storable};
use manager_lib::domain::{BlockReason, PlanEdit, ResetStrategy, Timestamp, User, UserId};
use manager_lib::seal::Sealer;
use manager_lib::storage::kit::usage::{block_after_reset, plan_block};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::{Row as _, SqliteConnection};

use crate::SqliteStorage;
use crate::error::user_err;
use crate::rows::{USER_COLUMNS, found, parse, user_from_row};

/// Sets `blocked` with the next change number (one statement: the trigger
/// checks the number and keeps the on-node count).
pub(crate) async fn set_blocked(
    conn: &mut SqliteConnection,
    id: UserId,
    blocked: Option<BlockReason>,
) -> StorageResult<()> {
    sqlx::query(
        "UPDATE users SET blocked = ?2, \
             change_seq = (SELECT last_seq + 1 FROM meta WHERE id = 1) \
         WHERE id = ?1",
    )
    .bind(id.to_string())
    .bind(blocked.map(|b| b.as_str()))
    .execute(conn)
    .await
    .map_err(user_err)?;
    Ok(())
}

pub(crate) async fn live_user(
    conn: &mut SqliteConnection,
    id: UserId,
    seal: &Sealer,
) -> StorageResult<User> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted = 0"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(user_err)?;
    user_from_row(&found(row, Entity::User)?, seal)
}

/// The edit is applied to the plan read inside the write transaction, so
/// no other write comes between the read and the update.
pub(crate) async fn edit_user_plan(
    s: &SqliteStorage,
    id: UserId,
    edit: PlanEdit,
    now: Timestamp,
) -> StorageResult<User> {
    let seal = s.seal.clone();
    s.write(move |conn| Box::pin(async move { Ok(edit_plan(conn, id, edit, now, &seal).await?.1) }))
        .await
}

/// The plan edit on `conn`: the user before and after it.
pub(crate) async fn edit_plan(
    conn: &mut SqliteConnection,
    id: UserId,
    edit: PlanEdit,
    now: Timestamp,
    seal: &Sealer,
) -> StorageResult<(User, User)> {
    {
        {
            let user = live_user(conn, id, seal).await?;
            let plan = edit.apply(user.plan)?;
            sqlx::query(
                "UPDATE users SET data_limit = ?2, expire_at = ?3, reset_period = ?4, \
                     reset_day = ?5, on_hold = ?6, next_reset_at = ?7 \
                 WHERE id = ?1",
            )
            .bind(id.to_string())
            .bind(plan.data_limit.map(storable))
            .bind(plan.expire_at.map(|t| t.0))
            .bind(plan.reset.period())
            .bind(i64::from(plan.reset.month_day()))
            .bind(plan.on_hold.map(storable))
            .bind(plan.reset.next_reset_after(now).map(|t| t.0))
            .execute(&mut *conn)
            .await
            .map_err(user_err)?;
            let blocked = plan_block(&plan, user.used(), now);
            if blocked != user.blocked {
                set_blocked(conn, id, blocked).await?;
            }
            let after = live_user(conn, id, seal).await?;
            Ok((user, after))
        }
    }
}

pub(crate) async fn reset_user_usage(
    s: &SqliteStorage,
    id: UserId,
    now: Timestamp,
) -> StorageResult<User> {
    let seal = s.seal.clone();
    s.write(move |conn| Box::pin(async move { Ok(reset_usage(conn, id, now, &seal).await?.1) }))
        .await
}

/// The usage reset on `conn`: the user before and after it.
pub(crate) async fn reset_usage(
    conn: &mut SqliteConnection,
    id: UserId,
    now: Timestamp,
    seal: &Sealer,
) -> StorageResult<(User, User)> {
    let user = live_user(conn, id, seal).await?;
    reset(conn, id, now, user.next_reset_at).await?;
    let blocked = block_after_reset(user.blocked);
    if blocked != user.blocked {
        set_blocked(conn, id, blocked).await?;
    }
    let after = live_user(conn, id, seal).await?;
    Ok((user, after))
}

/// Used bytes to zero, the reset recorded, the next one set.
async fn reset(
    conn: &mut SqliteConnection,
    id: UserId,
    now: Timestamp,
    next: Option<Timestamp>,
) -> StorageResult<()> {
    sqlx::query("UPDATE users SET last_reset_at = ?2, next_reset_at = ?3 WHERE id = ?1")
        .bind(id.to_string())
        .bind(now.0)
        .bind(next.map(|t| t.0))
        .execute(&mut *conn)
        .await
        .map_err(user_err)?;
    sqlx::query("UPDATE user_totals SET up = 0, down = 0 WHERE user_id = ?1")
        .bind(id.to_string())
        .execute(conn)
        .await
        .map_err(user_err)?;
    Ok(())
}

pub(crate) async fn enforce_time(
    s: &SqliteStorage,
    now: Timestamp,
) -> StorageResult<EnforceOutcome> {
    s.write(move |conn| Box::pin(enforce(conn, now))).await
}

/// The time enforcement on `conn`.
pub(crate) async fn enforce(
    conn: &mut SqliteConnection,
    now: Timestamp,
) -> StorageResult<EnforceOutcome> {
    {
        {
            // Both reads use their partial indexes (users_expire_at,
            // users_next_reset_at): nothing due, nothing scanned. No ORDER
            // BY: SQLite would rather walk the primary key to avoid a sort.
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM users WHERE expire_at <= ?1 AND deleted = 0 \
                     AND (blocked IS NULL OR blocked = 'Limited')",
            )
            .bind(now.0)
            .fetch_all(&mut *conn)
            .await
            .map_err(user_err)?;
            let mut expired = Vec::with_capacity(ids.len());
            for id in &ids {
                let id: UserId = parse(id)?;
                set_blocked(conn, id, Some(BlockReason::Expired)).await?;
                expired.push(id);
            }
            let rows = sqlx::query(
                "SELECT id, reset_period, reset_day, blocked FROM users \
                 WHERE next_reset_at <= ?1 AND deleted = 0",
            )
            .bind(now.0)
            .fetch_all(&mut *conn)
            .await
            .map_err(user_err)?;
            let mut reset_ids = Vec::with_capacity(rows.len());
            let mut unblocked = Vec::new();
            for row in &rows {
                let id: UserId = parse(row.try_get::<&str, _>("id").map_err(user_err)?)?;
                let strategy = ResetStrategy::from_parts(
                    row.try_get("reset_period").map_err(user_err)?,
                    row.try_get("reset_day").map_err(user_err)?,
                )
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                let blocked: Option<BlockReason> = row
                    .try_get::<Option<&str>, _>("blocked")
                    .map_err(user_err)?
                    .map(parse)
                    .transpose()?;
                reset(conn, id, now, strategy.next_reset_after(now)).await?;
                let after = block_after_reset(blocked);
                if after != blocked {
                    set_blocked(conn, id, after).await?;
                    if after.is_none() {
                        unblocked.push(id);
                    }
                }
                reset_ids.push(id);
            }
            expired.sort();
            reset_ids.sort();
            unblocked.sort();
            Ok(EnforceOutcome {
                expired,
                reset: reset_ids,
                unblocked,
            })
        }
    }
}
