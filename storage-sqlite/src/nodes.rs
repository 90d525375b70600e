//! Nodes: creation, reads, the operator's wish, start and stop, what a
//! heartbeat saw, and the nodes that serve users now.

use manager_lib::domain::{
    ActualStatus, InboundDescription, NewNode, Node, NodeId, NodeProfile, Page, PageRequest,
    RequiredStatus, Seq, ServingNode, StartPlan, Timestamp,
};
use manager_lib::storage::{Entity, StorageResult, kit};
use sqlx::Row as _;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{NODE_COLUMNS, USER_COLUMNS, found, node_from_row, parse, user_from_row};
use crate::writer::Args;

pub(crate) async fn create_node(s: &SqliteStorage, new: NewNode) -> StorageResult<Node> {
    let seal = s.seal.clone();
    let sql = format!(
        "INSERT INTO nodes (id, endpoint, key, actual_status, required_status, \
             user_config_template, state_up_to_date, applied_seq, last_seen, \
             created_at, updated_at) \
         SELECT ?1, ?2, ?3, 'Stopped', 'Stopped', NULL, 1, last_seq, NULL, ?4, ?4 \
         FROM meta WHERE id = 1 \
         RETURNING {NODE_COLUMNS}"
    );
    let args = Args::default()
        .bind(new.id.to_string())
        .bind(new.endpoint)
        .bind(seal.seal_node_key(new.id, &new.key))
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            node_from_row(&found(row, Entity::Node)?, &seal)
        })
        .await
}

pub(crate) async fn get_node(s: &SqliteStorage, id: NodeId) -> StorageResult<Node> {
    let seal = s.seal.clone();
    let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_one(&s.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::Node)))?;
    node_from_row(&row, &seal)
}

pub(crate) async fn find_node_by_endpoint(
    s: &SqliteStorage,
    endpoint: &str,
) -> StorageResult<Option<Node>> {
    let seal = s.seal.clone();
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE endpoint = ?1"
    ))
    .bind(endpoint)
    .fetch_optional(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::Node)))?;
    row.as_ref().map(|r| node_from_row(r, &seal)).transpose()
}

pub(crate) async fn list_nodes(s: &SqliteStorage, page: &PageRequest) -> StorageResult<Page<Node>> {
    let limit = page.clamped_limit();
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))
    // "" sorts before every id.
    .bind(
        kit::page_after::<NodeId>(page)
            .map(|id| id.to_string())
            .unwrap_or_default(),
    )
    .bind(i64::from(limit) + 1)
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::Node)))?;
    kit::into_page(
        &rows,
        limit as usize,
        |r| node_from_row(r, &s.seal),
        |n: &Node| n.id.to_string(),
    )
}

pub(crate) async fn delete_node(s: &SqliteStorage, id: NodeId) -> StorageResult<()> {
    let sql = "DELETE FROM nodes WHERE id = ?1 RETURNING 1".to_owned();
    let args = Args::default().bind(id.to_string());
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            found(row, Entity::Node).map(drop)
        })
        .await
}

pub(crate) async fn set_required_status(
    s: &SqliteStorage,
    id: NodeId,
    status: RequiredStatus,
) -> StorageResult<Node> {
    let seal = s.seal.clone();
    let sql = format!(
        "UPDATE nodes SET \
             updated_at = CASE WHEN required_status = ?2 THEN updated_at ELSE ?3 END, \
             required_status = ?2 \
         WHERE id = ?1 RETURNING {NODE_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            node_from_row(&found(row, Entity::Node)?, &seal)
        })
        .await
}

pub(crate) async fn begin_start(s: &SqliteStorage, id: NodeId) -> StorageResult<StartPlan> {
    let seal = s.seal.clone();
    s.write(move |conn| {
        Box::pin(async move {
            let row = sqlx::query(&format!(
                "UPDATE nodes SET state_up_to_date = 0, updated_at = ?2 \
                 WHERE id = ?1 RETURNING {NODE_COLUMNS}"
            ))
            .bind(id.to_string())
            .bind(Timestamp::now().0)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(e, Some(Entity::Node)))?;
            let node = node_from_row(&row, &seal)?;
            let seq: Seq = sqlx::query_scalar("SELECT last_seq FROM meta WHERE id = 1")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error(e, None))?;
            // Tombstones are never 'Enabled'; this reads the partial index users_enabled.
            let rows = sqlx::query(&format!(
                "SELECT {USER_COLUMNS} FROM users \
                 WHERE status = 'Enabled' AND blocked IS NULL ORDER BY id"
            ))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error(e, Some(Entity::User)))?;
            let users = rows
                .iter()
                .map(|r| user_from_row(r, &seal).map(|u| u.credentials()))
                .collect::<StorageResult<_>>()?;
            Ok(StartPlan { node, users, seq })
        })
    })
    .await
}

/// `?1` node, `?2` seq, `?3` template, `?4` now, `?5` inbounds (JSON).
pub(crate) const FINISH_START: &str = "UPDATE nodes SET actual_status = 'Running', \
         user_config_template = ?3, inbounds = ?5, applied_seq = MAX(applied_seq, ?2), \
         state_up_to_date = 1, last_seen = ?4, updated_at = ?4 \
     WHERE id = ?1 RETURNING 1";

pub(crate) async fn finish_start(
    s: &SqliteStorage,
    id: NodeId,
    seq: Seq,
    template: &str,
    inbounds: &[InboundDescription],
) -> StorageResult<()> {
    let sql = FINISH_START.to_owned();
    let args = Args::default()
        .bind(id.to_string())
        .bind(seq)
        .bind(template.to_owned())
        .bind(Timestamp::now().0)
        .bind(kit::profile::inbounds_to_json(inbounds));
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            found(row, Entity::Node).map(drop)
        })
        .await
}

/// Read, then compare-and-set on the text read: no transaction spans the
/// writer's queue, and a start storing new inbounds meanwhile wins.
pub(crate) async fn note_user_ports(
    s: &SqliteStorage,
    id: NodeId,
    ports: &std::collections::BTreeMap<String, u16>,
) -> StorageResult<()> {
    for _ in 0..kit::profile::NOTE_TRIES {
        let stored: String = sqlx::query_scalar("SELECT inbounds FROM nodes WHERE id = ?1")
            .bind(id.to_string())
            .fetch_one(&s.reader)
            .await
            .map_err(|e| db_error(e, Some(Entity::Node)))?;
        let Some(noted) = kit::profile::inbounds_with_user_ports(&stored, ports)? else {
            return Ok(());
        };
        let sql = "UPDATE nodes SET inbounds = ?3, updated_at = ?4 \
                   WHERE id = ?1 AND inbounds = ?2 RETURNING 1"
            .to_owned();
        let args = Args::default()
            .bind(id.to_string())
            .bind(stored)
            .bind(noted)
            .bind(Timestamp::now().0);
        if s.writes
            .statement(sql, args, Some(Entity::Node), move |row| Ok(row.is_some()))
            .await?
        {
            return Ok(());
        }
    }
    Err(manager_lib::storage::StorageError::Other(
        "the node's inbounds kept changing while users' ports were noted".into(),
    ))
}

pub(crate) async fn set_node_profile(
    s: &SqliteStorage,
    id: NodeId,
    profile: &NodeProfile,
) -> StorageResult<Node> {
    let seal = s.seal.clone();
    profile.validate()?;
    let sql = format!(
        "UPDATE nodes SET profile = ?2, updated_at = ?3 WHERE id = ?1 RETURNING {NODE_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(kit::profile::profile_to_json(profile))
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            node_from_row(&found(row, Entity::Node)?, &seal)
        })
        .await
}

pub(crate) async fn begin_stop(s: &SqliteStorage, id: NodeId) -> StorageResult<Node> {
    let seal = s.seal.clone();
    let sql = format!(
        "UPDATE nodes SET state_up_to_date = 0, updated_at = ?2 \
         WHERE id = ?1 RETURNING {NODE_COLUMNS}"
    );
    let args = Args::default()
        .bind(id.to_string())
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            node_from_row(&found(row, Entity::Node)?, &seal)
        })
        .await
}

pub(crate) async fn finish_stop(s: &SqliteStorage, id: NodeId) -> StorageResult<()> {
    let sql = "UPDATE nodes SET actual_status = 'Stopped', state_up_to_date = 1, \
             last_seen = ?2, updated_at = ?2 \
         WHERE id = ?1 RETURNING 1"
        .to_owned();
    let args = Args::default()
        .bind(id.to_string())
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            found(row, Entity::Node).map(drop)
        })
        .await
}

/// `?1` node, `?2` actual status, `?3` now.
pub(crate) const RECORD_OBSERVATION: &str = "UPDATE nodes SET \
         last_seen = CASE WHEN ?2 = 'Error' THEN last_seen ELSE ?3 END, \
         updated_at = CASE WHEN actual_status = ?2 THEN updated_at ELSE ?3 END, \
         actual_status = ?2 \
     WHERE id = ?1 RETURNING 1";

pub(crate) async fn record_observation(
    s: &SqliteStorage,
    id: NodeId,
    actual: ActualStatus,
) -> StorageResult<()> {
    let sql = RECORD_OBSERVATION.to_owned();
    let args = Args::default()
        .bind(id.to_string())
        .bind(actual.as_str())
        .bind(Timestamp::now().0);
    s.writes
        .statement(sql, args, Some(Entity::Node), move |row| {
            found(row, Entity::Node).map(drop)
        })
        .await
}

pub(crate) async fn serving_nodes(s: &SqliteStorage) -> StorageResult<Vec<ServingNode>> {
    // The same node conditions as `user_nodes`, minus the user's.
    let rows = sqlx::query(
        "SELECT id, endpoint, user_config_template, inbounds, profile, applied_seq FROM nodes \
         WHERE actual_status = 'Running' AND state_up_to_date = 1 \
             AND user_config_template IS NOT NULL \
         ORDER BY id",
    )
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, Some(Entity::Node)))?;
    let get = |e| db_error(e, Some(Entity::Node));
    rows.iter()
        .map(|row| {
            Ok(ServingNode {
                entry: kit::profile::node_entry(
                    parse(row.try_get::<&str, _>("id").map_err(get)?)?,
                    row.try_get("endpoint").map_err(get)?,
                    row.try_get("user_config_template").map_err(get)?,
                    row.try_get("inbounds").map_err(get)?,
                    row.try_get("profile").map_err(get)?,
                )?,
                applied_seq: row.try_get("applied_seq").map_err(get)?,
            })
        })
        .collect()
}
