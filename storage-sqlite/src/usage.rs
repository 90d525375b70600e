//! Traffic accounting: storing pulled usage pages exactly once, the node's
//! traffic multiplier, and the history reads (plans and blocks: `plans`).
//!
//! Every addition of bytes saturates in the statement itself (see the
//! migration `0002_usage.sql`). A page's users and their history go in one
//! statement each, their rows passed as one JSON array (`json_each`): a
//! statement per user costs SQLite several times the row's own work.

use manager_lib::domain::usage::{
    IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow, check_multiplier,
    storable,
};
use manager_lib::domain::{BlockReason, Node, NodeId, Timestamp, UserId};
use manager_lib::storage::kit::usage::{group_node_rows, group_user_rows, sum_page};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::{Row as _, SqliteConnection};

use crate::SqliteStorage;
use crate::error::{node_err, user_err};
use crate::plans::set_blocked;
use crate::rows::{NODE_COLUMNS, bytes, found, node_from_row, parse};
use crate::writer::Args;

use manager_lib::sql_saturating_add as sat_add;

/// A JSON array of the already-encoded `items`.
fn json_rows(items: impl Iterator<Item = String>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

pub(crate) async fn ingest_usage(
    s: &SqliteStorage,
    node: NodeId,
    pulled_with: &UsageCursor,
    page: &UsagePage,
    now: Timestamp,
) -> StorageResult<IngestOutcome> {
    let (pulled_with, page) = (pulled_with.clone(), page.clone());
    s.write(move |conn| Box::pin(ingest(conn, node, pulled_with, page, now)))
        .await
}

pub(crate) async fn ingest(
    conn: &mut SqliteConnection,
    node: NodeId,
    pulled_with: UsageCursor,
    page: UsagePage,
    now: Timestamp,
) -> StorageResult<IngestOutcome> {
    let row =
        sqlx::query("SELECT usage_journal, usage_seq, traffic_multiplier FROM nodes WHERE id = ?1")
            .bind(node.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(node_err)?;
    let row = found(row, Entity::Node)?;
    let stored = UsageCursor {
        journal: row.try_get("usage_journal").map_err(node_err)?,
        seq: bytes(row.try_get("usage_seq").map_err(node_err)?)?,
    };
    if stored != pulled_with {
        return Ok(IngestOutcome {
            stored: false,
            cursor: stored,
            user_deltas: 0,
            newly_blocked: Vec::new(),
        });
    }
    let multiplier: f64 = row.try_get("traffic_multiplier").map_err(node_err)?;
    let sums = sum_page(&page, &pulled_with, multiplier);
    let cursor = page.cursor_after(&pulled_with);
    let node_text = node.to_string();
    let mut newly_blocked = Vec::new();
    if !sums.users.is_empty() {
        // One statement for every user of the page: the deltas travel as
        // one JSON array, `[id, up, down]` each. It writes the narrow totals
        // table (migration 0014), where only live users have a row, and
        // answers nothing: every row sent back costs a hop between threads.
        let deltas = json_rows(
            sums.users
                .iter()
                .map(|(id, b)| format!("[\"{id}\",{},{}]", storable(b.up), storable(b.down))),
        );
        sqlx::query(concat!(
            "UPDATE user_totals AS t SET up = ",
            sat_add!("t.up", "i.up"),
            ", down = ",
            sat_add!("t.down", "i.down"),
            " FROM (SELECT value ->> 0 AS id, value ->> 1 AS up, value ->> 2 AS down \
                   FROM json_each(?1)) AS i \
             WHERE t.user_id = i.id"
        ))
        .bind(&deltas)
        .execute(&mut *conn)
        .await
        .map_err(user_err)?;
        // One pass over the page's users reads back only the rare ones: on
        // hold with bytes (their hold starts now) or at or over their limit
        // and not blocked yet (`kit::usage::over_limit` in SQL; a sum past
        // i64 becomes a REAL here, which still compares right).
        let rows = sqlx::query(
            "SELECT u.id AS id, \
                 u.on_hold IS NOT NULL AND (j.value ->> 1 > 0 OR j.value ->> 2 > 0) AS holds, \
                 u.blocked IS NULL AND u.data_limit IS NOT NULL \
                     AND t.up + t.down >= u.data_limit AS crossing \
             FROM json_each(?1) AS j JOIN users AS u ON u.id = j.value ->> 0 \
                 JOIN user_totals AS t ON t.user_id = u.id \
             WHERE u.deleted = 0 AND ( \
                 (u.on_hold IS NOT NULL AND (j.value ->> 1 > 0 OR j.value ->> 2 > 0)) \
                 OR (u.blocked IS NULL AND u.data_limit IS NOT NULL \
                     AND t.up + t.down >= u.data_limit))",
        )
        .bind(&deltas)
        .fetch_all(&mut *conn)
        .await
        .map_err(user_err)?;
        let mut holds = Vec::new();
        let mut crossing = Vec::new();
        for row in &rows {
            let id: &str = row.try_get("id").map_err(user_err)?;
            if row.try_get::<bool, _>("holds").map_err(user_err)? {
                holds.push(id.to_owned());
            }
            if row.try_get::<bool, _>("crossing").map_err(user_err)? {
                crossing.push(parse::<UserId>(id)?);
            }
        }
        // Holds start at the first byte (expiry = now + hold).
        if !holds.is_empty() {
            sqlx::query(
                "UPDATE users SET expire_at = ?2 + on_hold * 1000, on_hold = NULL \
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(serde_json::to_string(&holds).expect("strings serialize"))
            .bind(now.0)
            .execute(&mut *conn)
            .await
            .map_err(user_err)?;
        }
        crossing.sort();
        for id in crossing {
            set_blocked(conn, id, Some(BlockReason::Limited)).await?;
            newly_blocked.push(id);
        }
    }
    // History of live users only (a deleted or unknown user's bytes are
    // not kept: only live users have totals), in key order within the
    // page's (day, node).
    let days = json_rows(sums.user_days.iter().map(|((id, day), b)| {
        format!(
            "[\"{id}\",{},{},{}]",
            day.0,
            storable(b.up),
            storable(b.down)
        )
    }));
    // `WHERE true`: SQLite's upsert after a SELECT needs it to parse.
    sqlx::query(concat!(
        "INSERT INTO user_usage_daily (user_id, day, node_id, up, down) \
         SELECT j.value ->> 0, j.value ->> 1, ?2, j.value ->> 2, j.value ->> 3 \
         FROM json_each(?1) AS j JOIN user_totals AS t ON t.user_id = j.value ->> 0 \
         WHERE true \
         ON CONFLICT (day, node_id, user_id) DO UPDATE SET up = ",
        sat_add!("up", "excluded.up"),
        ", down = ",
        sat_add!("down", "excluded.down")
    ))
    .bind(days)
    .bind(&node_text)
    .execute(&mut *conn)
    .await
    .map_err(user_err)?;
    for (hour, b) in &sums.node_hours {
        sqlx::query(concat!(
            "INSERT INTO node_usage_hourly (node_id, hour, up, down) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (node_id, hour) DO UPDATE SET up = ",
            sat_add!("up", "?3"),
            ", down = ",
            sat_add!("down", "?4")
        ))
        .bind(&node_text)
        .bind(hour.0)
        .bind(storable(b.up))
        .bind(storable(b.down))
        .execute(&mut *conn)
        .await
        .map_err(node_err)?;
    }
    sqlx::query(concat!(
        "UPDATE nodes SET usage_journal = ?4, usage_seq = ?5, used_up = ",
        sat_add!("used_up", "?2"),
        ", used_down = ",
        sat_add!("used_down", "?3"),
        " WHERE id = ?1"
    ))
    .bind(&node_text)
    .bind(storable(sums.node.up))
    .bind(storable(sums.node.down))
    .bind(cursor.journal.clone())
    .bind(storable(cursor.seq))
    .execute(&mut *conn)
    .await
    .map_err(node_err)?;
    Ok(IngestOutcome {
        stored: true,
        cursor,
        user_deltas: sums.user_deltas,
        newly_blocked,
    })
}

pub(crate) async fn set_node_multiplier(
    s: &SqliteStorage,
    id: NodeId,
    multiplier: f64,
) -> StorageResult<Node> {
    let seal = s.seal.clone();
    let multiplier = check_multiplier(multiplier)?;
    let sql = format!(
        "UPDATE nodes SET traffic_multiplier = ?2, updated_at = ?3 \
         WHERE id = ?1 RETURNING {NODE_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(multiplier)
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            node_from_row(&found(row, Entity::Node)?, &seal)
        })
        .await
}

pub(crate) async fn user_usage(
    s: &SqliteStorage,
    id: UserId,
    from: Timestamp,
    to: Timestamp,
    group: UsageGrouping,
) -> StorageResult<Vec<UsageRow>> {
    // One statement: the user's existence and its rows (summed here, where
    // sums saturate instead of failing on overflow).
    let rows = sqlx::query(
        "SELECT u.id AS id, h.day AS day, h.node_id AS node_id, h.up AS up, h.down AS down \
         FROM users u LEFT JOIN user_usage_daily h \
             ON h.user_id = u.id AND h.day >= ?2 AND h.day < ?3 \
         WHERE u.id = ?1 AND u.deleted = 0",
    )
    .bind(id.to_string())
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.reader)
    .await
    .map_err(user_err)?;
    if rows.is_empty() {
        return Err(StorageError::NotFound(Entity::User));
    }
    let mut history = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(day) = row.try_get::<Option<i64>, _>("day").map_err(user_err)? else {
            continue;
        };
        history.push((
            Timestamp(day),
            parse(row.try_get::<&str, _>("node_id").map_err(user_err)?)?,
            bytes(row.try_get("up").map_err(user_err)?)?,
            bytes(row.try_get("down").map_err(user_err)?)?,
        ));
    }
    Ok(group_user_rows(history, group))
}

pub(crate) async fn node_usage(
    s: &SqliteStorage,
    from: Timestamp,
    to: Timestamp,
) -> StorageResult<Vec<NodeUsage>> {
    let rows = sqlx::query(
        "SELECT node_id, up, down FROM node_usage_hourly WHERE hour >= ?1 AND hour < ?2",
    )
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&s.reader)
    .await
    .map_err(node_err)?;
    let mut history = Vec::with_capacity(rows.len());
    for row in &rows {
        history.push((
            parse(row.try_get::<&str, _>("node_id").map_err(node_err)?)?,
            bytes(row.try_get("up").map_err(node_err)?)?,
            bytes(row.try_get("down").map_err(node_err)?)?,
        ));
    }
    Ok(group_node_rows(history))
}

pub(crate) async fn purge_usage_history(
    s: &SqliteStorage,
    user_days_before: Timestamp,
    node_hours_before: Timestamp,
) -> StorageResult<u64> {
    s.write(move |conn| {
        Box::pin(async move {
            let days = sqlx::query("DELETE FROM user_usage_daily WHERE day < ?1")
                .bind(user_days_before.0)
                .execute(&mut *conn)
                .await
                .map_err(user_err)?;
            let hours = sqlx::query("DELETE FROM node_usage_hourly WHERE hour < ?1")
                .bind(node_hours_before.0)
                .execute(&mut *conn)
                .await
                .map_err(node_err)?;
            Ok(days.rows_affected() + hours.rows_affected())
        })
    })
    .await
}
