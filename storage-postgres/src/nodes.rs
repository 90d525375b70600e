//! Nodes: creation, reads, the operator's wish, start and stop, what a
//! heartbeat saw, and the nodes that serve users now.

use manager_lib::domain::{
    ActualStatus, InboundDescription, NewNode, Node, NodeId, NodeProfile, Page, PageRequest,
    RequiredStatus, Seq, ServingNode, StartPlan,
};
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};

use crate::PgStorage;
use crate::error::{node_err, user_err};
use crate::rows::node_columns;
use crate::rows::{self, now_ms};

pub(crate) async fn create_node(s: &PgStorage, new: NewNode) -> StorageResult<Node> {
    // The cursor starts at the newest settled change: a stopped node has
    // nothing to apply, and a change still in flight or made later has a
    // larger number, so it stays pending for the new node.
    let settled = s.settled_state().await?;
    let row = sqlx::query(concat!(
        "INSERT INTO nodes (id, endpoint, node_key, actual_status, required_status, \
         user_config_template, state_up_to_date, applied_seq, last_seen, created_at, \
         updated_at) \
         VALUES ($1::uuid, $2, $3, 'Stopped', 'Stopped', NULL, TRUE, $5, NULL, $4, $4) \
         RETURNING ",
        node_columns!()
    ))
    .bind(new.id.to_string())
    .bind(&new.endpoint)
    .bind(s.seal.seal_node_key(new.id, &new.key))
    .bind(now_ms())
    .bind(settled.last_seq)
    .fetch_one(&s.pool)
    .await
    .map_err(node_err)?;
    rows::node(&row, &s.seal)
}

pub(crate) async fn get_node(s: &PgStorage, id: NodeId) -> StorageResult<Node> {
    // Grouped with other callers' reads: see `grouped::read_nodes`.
    s.calls().node_reads.get(id).await
}

pub(crate) async fn find_node_by_endpoint(
    s: &PgStorage,
    endpoint: &str,
) -> StorageResult<Option<Node>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes WHERE endpoint = $1"
    ))
    .bind(endpoint)
    .fetch_optional(&s.pool)
    .await
    .map_err(node_err)?;
    row.as_ref().map(|r| rows::node(r, &s.seal)).transpose()
}

pub(crate) async fn list_nodes(s: &PgStorage, page: &PageRequest) -> StorageResult<Page<Node>> {
    let limit = page.clamped_limit() as usize;
    // Two statements rather than `$1 IS NULL OR id > $1`, so each keeps an
    // index scan under a generic plan. The limit is the last parameter.
    let query = match kit::page_after::<NodeId>(page) {
        Some(after) => sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE id > $1::uuid ORDER BY id LIMIT $2"
        ))
        .bind(after.to_string()),
        None => sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes ORDER BY id LIMIT $1"
        )),
    };
    let rows = query
        .bind(limit as i64 + 1)
        .fetch_all(&s.pool)
        .await
        .map_err(node_err)?;
    kit::into_page(
        &rows,
        limit,
        |r| rows::node(r, &s.seal),
        |n| n.id.to_string(),
    )
}

pub(crate) async fn delete_node(s: &PgStorage, id: NodeId) -> StorageResult<()> {
    let done = sqlx::query("DELETE FROM nodes WHERE id = $1::uuid")
        .bind(id.to_string())
        .execute(&s.pool)
        .await
        .map_err(node_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    Ok(())
}

pub(crate) async fn set_required_status(
    s: &PgStorage,
    id: NodeId,
    status: RequiredStatus,
) -> StorageResult<Node> {
    // SET expressions see the row before the update, so updated_at moves
    // only when the status really changes.
    let row = sqlx::query(concat!(
        "UPDATE nodes SET required_status = $2, \
         updated_at = CASE WHEN required_status = $2 THEN updated_at ELSE $3 END \
         WHERE id = $1::uuid RETURNING ",
        node_columns!()
    ))
    .bind(id.to_string())
    .bind(status.as_str())
    .bind(now_ms())
    .fetch_one(&s.pool)
    .await
    .map_err(node_err)?;
    rows::node(&row, &s.seal)
}

pub(crate) async fn begin_start(s: &PgStorage, id: NodeId) -> StorageResult<StartPlan> {
    // Three steps, none holding a lock across a round trip:
    // 1. the node leaves every user's list (committed at once);
    // 2. `seq` = the newest settled change: every change <= seq ended;
    // 3. the enabled users, read with a snapshot taken after 2.
    // The users therefore reflect every change <= seq, plus possibly some
    // later ones; those have numbers > seq, so they stay pending after
    // `finish_start(seq)` and the node applies each user's newest intent
    // again (adds and deletes are idempotent on the node). Reading the
    // users under the lock instead would stop every writer for as long
    // as the list takes to read.
    let row = sqlx::query(concat!(
        "UPDATE nodes SET state_up_to_date = FALSE, updated_at = $2 \
         WHERE id = $1::uuid RETURNING ",
        node_columns!()
    ))
    .bind(id.to_string())
    .bind(now_ms())
    .fetch_one(&s.pool)
    .await
    .map_err(node_err)?;
    let node = rows::node(&row, &s.seal)?;
    let seq = s.settled_state().await?.last_seq;
    let users = sqlx::query(
        "SELECT id::text AS id, name, secret FROM users \
         WHERE status = 'Enabled' AND NOT deleted AND blocked IS NULL ORDER BY id",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(user_err)?
    .iter()
    .map(|r| rows::credentials(r, &s.seal))
    .collect::<StorageResult<Vec<_>>>()?;
    Ok(StartPlan { node, users, seq })
}

pub(crate) async fn finish_start<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    id: NodeId,
    seq: Seq,
    template: &str,
    inbounds: &[InboundDescription],
) -> StorageResult<()> {
    let done = sqlx::query(
        "UPDATE nodes SET actual_status = 'Running', user_config_template = $3, \
         inbounds = $5, applied_seq = GREATEST(applied_seq, $2), state_up_to_date = TRUE, \
         last_seen = $4, updated_at = $4 WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(template)
    .bind(now_ms())
    .bind(kit::profile::inbounds_to_json(inbounds))
    .execute(exec)
    .await
    .map_err(node_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    Ok(())
}

/// Read, then compare-and-set on the text read (as the SQLite backend): a
/// start storing new inbounds meanwhile wins.
pub(crate) async fn note_user_ports(
    s: &PgStorage,
    id: NodeId,
    ports: &std::collections::BTreeMap<String, u16>,
) -> StorageResult<()> {
    for _ in 0..kit::profile::NOTE_TRIES {
        let stored: String = sqlx::query_scalar("SELECT inbounds FROM nodes WHERE id = $1::uuid")
            .bind(id.to_string())
            .fetch_optional(&s.pool)
            .await
            .map_err(node_err)?
            .ok_or(StorageError::NotFound(Entity::Node))?;
        let Some(noted) = kit::profile::inbounds_with_user_ports(&stored, ports)? else {
            return Ok(());
        };
        let done = sqlx::query(
            "UPDATE nodes SET inbounds = $3, updated_at = $4 \
             WHERE id = $1::uuid AND inbounds = $2",
        )
        .bind(id.to_string())
        .bind(stored)
        .bind(noted)
        .bind(now_ms())
        .execute(&s.pool)
        .await
        .map_err(node_err)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
    }
    Err(StorageError::Other(
        "the node's inbounds kept changing while users' ports were noted".into(),
    ))
}

pub(crate) async fn set_node_profile(
    s: &PgStorage,
    id: NodeId,
    profile: &NodeProfile,
) -> StorageResult<Node> {
    profile.validate()?;
    let row = sqlx::query(concat!(
        "UPDATE nodes SET profile = $2, updated_at = $3 WHERE id = $1::uuid RETURNING ",
        node_columns!()
    ))
    .bind(id.to_string())
    .bind(kit::profile::profile_to_json(profile))
    .bind(now_ms())
    .fetch_optional(&s.pool)
    .await
    .map_err(node_err)?
    .ok_or(StorageError::NotFound(Entity::Node))?;
    rows::node(&row, &s.seal)
}

pub(crate) async fn begin_stop(s: &PgStorage, id: NodeId) -> StorageResult<Node> {
    let row = sqlx::query(concat!(
        "UPDATE nodes SET state_up_to_date = FALSE, updated_at = $2 \
         WHERE id = $1::uuid RETURNING ",
        node_columns!()
    ))
    .bind(id.to_string())
    .bind(now_ms())
    .fetch_one(&s.pool)
    .await
    .map_err(node_err)?;
    rows::node(&row, &s.seal)
}

pub(crate) async fn finish_stop(s: &PgStorage, id: NodeId) -> StorageResult<()> {
    let done = sqlx::query(
        "UPDATE nodes SET actual_status = 'Stopped', state_up_to_date = TRUE, \
         last_seen = $2, updated_at = $2 WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(now_ms())
    .execute(&s.pool)
    .await
    .map_err(node_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    Ok(())
}

pub(crate) async fn record_observation<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    id: NodeId,
    actual: ActualStatus,
) -> StorageResult<()> {
    let done = sqlx::query(
        "UPDATE nodes SET actual_status = $2, \
         last_seen = CASE WHEN $2 = 'Error' THEN last_seen ELSE $3 END, \
         updated_at = CASE WHEN actual_status = $2 THEN updated_at ELSE $3 END \
         WHERE id = $1::uuid",
    )
    .bind(id.to_string())
    .bind(actual.as_str())
    .bind(now_ms())
    .execute(exec)
    .await
    .map_err(node_err)?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(Entity::Node));
    }
    Ok(())
}

pub(crate) async fn serving_nodes(s: &PgStorage) -> StorageResult<Vec<ServingNode>> {
    // The node half of `user_nodes`' join condition, in one query.
    let rows = sqlx::query(
        "SELECT id::text AS node_id, endpoint, user_config_template, inbounds, profile, \
             applied_seq \
         FROM nodes \
         WHERE actual_status = 'Running' AND state_up_to_date \
           AND user_config_template IS NOT NULL \
         ORDER BY id",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(node_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(entry) = rows::node_entry(row)? {
            out.push(ServingNode {
                entry,
                applied_seq: rows::col(row, "applied_seq")?,
            });
        }
    }
    Ok(out)
}
