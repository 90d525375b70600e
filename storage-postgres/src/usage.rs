//! Traffic accounting: storing pulled usage pages exactly once, the node's
//! traffic multiplier, and the history reads (plans and blocks: `plans`).
//!
//! A page is stored first without the shared change lock: most pages block
//! nobody, and a transaction that takes no change number need not hold it
//! (so ingests never delay the change-log readers, who wait for every
//! holder). A page that takes a user over a limit is rolled back and stored
//! again under the lock, taken before any row lock as the change-sequence
//! migration requires of every writer that blocks (`plans::set_blocked`).

use manager_lib::domain::usage::{
    IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow, check_multiplier,
    storable,
};
use manager_lib::domain::{BlockReason, EventKind, Node, NodeId, Timestamp, UserId};
use manager_lib::storage::kit::usage::{group_user_rows, sum_page};
use manager_lib::storage::{Entity, Notices, StorageError, StorageResult};

use crate::PgStorage;
use crate::error::{node_err, user_err};
use crate::plans::{change_lock, set_blocked};
use crate::rows::{self, count, node_columns};

use manager_lib::sql_saturating_add as sat_add;

/// Pages stored at once; more callers wait here, in the manager, not in
/// the server. A heartbeat pulls from dozens of nodes at once, and as many
/// ingests running in the server only share its cores: measured at 1M
/// users, 1,000 nodes x 1,000 users on two cores (`bench_usage ingest`),
/// 32 at once stored no more user-deltas a second than 4 (35.8k and 34.0k)
/// while a node-list call's point read, queued behind them for the CPU,
/// took a p99 of 138 ms instead of 19 ms.
pub(crate) const CONCURRENT_INGESTS: usize = 4;

pub(crate) async fn ingest_usage(
    s: &PgStorage,
    node: NodeId,
    pulled_with: &UsageCursor,
    page: &UsagePage,
    now: Timestamp,
    notices: Option<&Notices>,
) -> StorageResult<IngestOutcome> {
    let _slot =
        s.ingest_slots.acquire().await.map_err(|_| {
            StorageError::Unavailable("the PostgreSQL storage is shutting down".into())
        })?;
    if let Some(outcome) = ingest(s, node, pulled_with, page, now, false, notices).await? {
        return Ok(outcome);
    }
    ingest(s, node, pulled_with, page, now, true, notices)
        .await?
        .ok_or_else(|| StorageError::Corrupt("an ingest under the change lock gave up".into()))
}

/// One attempt at storing `page`. Without `blocking` it gives up (rolls
/// back, answers `None`) when the page would block a user.
async fn ingest(
    s: &PgStorage,
    node: NodeId,
    pulled_with: &UsageCursor,
    page: &UsagePage,
    now: Timestamp,
    blocking: bool,
    notices: Option<&Notices>,
) -> StorageResult<Option<IngestOutcome>> {
    let mut tx = s.pool.begin().await.map_err(node_err)?;
    // The change lock first when this attempt may block users, then the
    // node's row: concurrent ingests of one node queue here and the second
    // sees the first one's cursor.
    if blocking {
        change_lock(&mut tx).await?;
    }
    let row = sqlx::query(
        "SELECT usage_journal, usage_seq, traffic_multiplier FROM nodes \
         WHERE id = $1::uuid FOR UPDATE",
    )
    .bind(node.to_string())
    .fetch_optional(&mut *tx)
    .await
    .map_err(node_err)?
    .ok_or(StorageError::NotFound(Entity::Node))?;
    let stored = UsageCursor {
        journal: rows::col(&row, "usage_journal")?,
        seq: count(rows::col(&row, "usage_seq")?)?,
    };
    if stored != *pulled_with {
        return Ok(Some(IngestOutcome {
            stored: false,
            cursor: stored,
            user_deltas: 0,
            newly_blocked: Vec::new(),
        }));
    }
    let multiplier: f64 = rows::col(&row, "traffic_multiplier")?;
    let sums = sum_page(page, pulled_with, multiplier);
    let cursor = page.cursor_after(pulled_with);
    let mut newly_blocked = Vec::new();
    if !sums.users.is_empty() {
        // Users locked in id order (the sums are), so two ingests sharing
        // users never wait for each other in a cycle.
        let ids: Vec<String> = sums.users.keys().map(UserId::to_string).collect();
        let ups: Vec<i64> = sums.users.values().map(|b| storable(b.up)).collect();
        let downs: Vec<i64> = sums.users.values().map(|b| storable(b.down)).collect();
        // Only the users this page took to their limit come back (the
        // rest of the page is neither decoded nor sent): at or over the
        // limit (`kit::usage::over_limit` in SQL, in numeric so a sum past
        // i64 compares right) and not blocked yet.
        let crossing: Vec<String> = sqlx::query_scalar(concat!(
            "WITH i AS ( \
               SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::bigint[]) \
                 AS i(id, up, down) \
             ), locked AS ( \
               SELECT u.id FROM users u JOIN i ON u.id = i.id \
               WHERE NOT u.deleted ORDER BY u.id FOR UPDATE OF u \
             ), updated AS ( \
               UPDATE users u SET used_up = ",
            sat_add!("u.used_up", "i.up"),
            ", used_down = ",
            sat_add!("u.used_down", "i.down"),
            ", expire_at = CASE WHEN (i.up > 0 OR i.down > 0) AND u.on_hold IS NOT NULL \
                 THEN $4 + u.on_hold * 1000 ELSE u.expire_at END, \
               on_hold = CASE WHEN i.up > 0 OR i.down > 0 THEN NULL ELSE u.on_hold END \
               FROM i JOIN locked l ON l.id = i.id WHERE u.id = i.id \
               RETURNING u.id, u.used_up, u.used_down, u.data_limit, u.blocked \
             ) SELECT id::text FROM updated \
             WHERE blocked IS NULL AND data_limit IS NOT NULL \
               AND used_up::numeric + used_down >= data_limit \
             ORDER BY id"
        ))
        .bind(ids)
        .bind(ups)
        .bind(downs)
        .bind(now.0)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await
        .map_err(user_err)?;
        let crossing = crossing
            .iter()
            .map(|id| rows::parse(id))
            .collect::<StorageResult<Vec<UserId>>>()?;
        if !crossing.is_empty() && !blocking {
            tx.rollback().await.map_err(user_err)?;
            return Ok(None);
        }
        newly_blocked = set_blocked(&mut tx, &crossing, Some(BlockReason::Limited)).await?;
        // History of live users only (a deleted or unknown user's bytes
        // are not kept): the join below.
        let days: Vec<_> = sums.user_days.iter().collect();
        let day_users: Vec<String> = days.iter().map(|((id, _), _)| id.to_string()).collect();
        let day_at: Vec<i64> = days.iter().map(|((_, day), _)| day.0).collect();
        let day_up: Vec<i64> = days.iter().map(|(_, b)| storable(b.up)).collect();
        let day_down: Vec<i64> = days.iter().map(|(_, b)| storable(b.down)).collect();
        sqlx::query(concat!(
            "INSERT INTO user_usage_daily AS h (user_id, day, node_id, up, down) \
             SELECT i.id, i.day, $5::uuid, i.up, i.down \
             FROM unnest($1::text[]::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) \
               AS i(id, day, up, down) \
             JOIN users u ON u.id = i.id AND NOT u.deleted \
             ON CONFLICT (day, node_id, user_id) DO UPDATE SET up = ",
            sat_add!("h.up", "EXCLUDED.up"),
            ", down = ",
            sat_add!("h.down", "EXCLUDED.down")
        ))
        .bind(day_users)
        .bind(day_at)
        .bind(day_up)
        .bind(day_down)
        .bind(node.to_string())
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(user_err)?;
        let hours: Vec<i64> = sums.node_hours.keys().map(|h| h.0).collect();
        let hour_up: Vec<i64> = sums.node_hours.values().map(|b| storable(b.up)).collect();
        let hour_down: Vec<i64> = sums.node_hours.values().map(|b| storable(b.down)).collect();
        sqlx::query(concat!(
            "INSERT INTO node_usage_hourly AS h (node_id, hour, up, down) \
             SELECT $1::uuid, i.hour, i.up, i.down \
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS i(hour, up, down) \
             ON CONFLICT (node_id, hour) DO UPDATE SET up = ",
            sat_add!("h.up", "EXCLUDED.up"),
            ", down = ",
            sat_add!("h.down", "EXCLUDED.down")
        ))
        .bind(node.to_string())
        .bind(hours)
        .bind(hour_up)
        .bind(hour_down)
        .execute(&mut *tx)
        .await
        .map_err(node_err)?;
    }
    sqlx::query(concat!(
        "UPDATE nodes SET usage_journal = $4, usage_seq = $5, used_up = ",
        sat_add!("used_up", "$2"),
        ", used_down = ",
        sat_add!("used_down", "$3"),
        " WHERE id = $1::uuid"
    ))
    .bind(node.to_string())
    .bind(storable(sums.node.up))
    .bind(storable(sums.node.down))
    .bind(cursor.journal.clone())
    .bind(storable(cursor.seq))
    .execute(&mut *tx)
    .await
    .map_err(node_err)?;
    if let Some(notices) = notices {
        let limited = crate::plans::users(&mut tx, &newly_blocked, &s.seal).await?;
        let deliveries = notices.deliveries(EventKind::UserLimited, &limited)?;
        crate::outbox::insert(&mut *tx, &deliveries).await?;
    }
    tx.commit().await.map_err(node_err)?;
    Ok(Some(IngestOutcome {
        stored: true,
        cursor,
        user_deltas: sums.user_deltas,
        newly_blocked,
    }))
}

pub(crate) async fn set_node_multiplier(
    s: &PgStorage,
    id: NodeId,
    multiplier: f64,
) -> StorageResult<Node> {
    let multiplier = check_multiplier(multiplier)?;
    let row = sqlx::query(concat!(
        "UPDATE nodes SET traffic_multiplier = $2, updated_at = $3 WHERE id = $1::uuid \
         RETURNING ",
        node_columns!()
    ))
    .bind(id.to_string())
    .bind(multiplier)
    .bind(rows::now_ms())
    .fetch_optional(&s.pool)
    .await
    .map_err(node_err)?
    .ok_or(StorageError::NotFound(Entity::Node))?;
    rows::node(&row, &s.seal)
}

pub(crate) async fn user_usage(
    s: &PgStorage,
    id: UserId,
    from: Timestamp,
    to: Timestamp,
    group: UsageGrouping,
) -> StorageResult<Vec<UsageRow>> {
    // One statement: the user's existence and its rows (summed in Rust,
    // saturating like every total).
    let found = sqlx::query(
        "SELECT h.day, h.node_id::text AS node_id, h.up, h.down \
         FROM users u LEFT JOIN user_usage_daily h \
           ON h.user_id = u.id AND h.day >= $2 AND h.day < $3 \
         WHERE u.id = $1::uuid AND NOT u.deleted",
    )
    .bind(id.to_string())
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.pool)
    .await
    .map_err(user_err)?;
    if found.is_empty() {
        return Err(StorageError::NotFound(Entity::User));
    }
    let mut history = Vec::with_capacity(found.len());
    for row in &found {
        let Some(day) = rows::col::<Option<i64>>(row, "day")? else {
            continue;
        };
        history.push((
            Timestamp(day),
            rows::parse(rows::col::<&str>(row, "node_id")?)?,
            count(rows::col(row, "up")?)?,
            count(rows::col(row, "down")?)?,
        ));
    }
    Ok(group_user_rows(history, group))
}

pub(crate) async fn node_usage(
    s: &PgStorage,
    from: Timestamp,
    to: Timestamp,
) -> StorageResult<Vec<NodeUsage>> {
    // sum() of BIGINT is NUMERIC: no overflow, capped on the way out.
    let found = sqlx::query(
        "SELECT node_id::text AS node_id, \
             LEAST(sum(up), 9223372036854775807)::bigint AS up, \
             LEAST(sum(down), 9223372036854775807)::bigint AS down \
         FROM node_usage_hourly WHERE hour >= $1 AND hour < $2 \
         GROUP BY node_id ORDER BY node_id",
    )
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.pool)
    .await
    .map_err(node_err)?;
    found
        .iter()
        .map(|row| {
            Ok(NodeUsage {
                node: rows::parse(rows::col::<&str>(row, "node_id")?)?,
                up: count(rows::col(row, "up")?)?,
                down: count(rows::col(row, "down")?)?,
            })
        })
        .collect()
}

pub(crate) async fn purge_usage_history(
    s: &PgStorage,
    user_days_before: Timestamp,
    node_hours_before: Timestamp,
) -> StorageResult<u64> {
    let removed: i64 = sqlx::query_scalar(
        "WITH d AS (DELETE FROM user_usage_daily WHERE day < $1 RETURNING 1), \
              h AS (DELETE FROM node_usage_hourly WHERE hour < $2 RETURNING 1) \
         SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM h)",
    )
    .bind(user_days_before.0)
    .bind(node_hours_before.0)
    .fetch_one(&s.pool)
    .await
    .map_err(node_err)?;
    Ok(u64::try_from(removed).unwrap_or_default())
}
