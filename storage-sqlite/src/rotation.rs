//! Node key rotations: writes through the group-commit writer (a
//! confirmation switches the node's key and clears the pending one in one
//! transaction), reads from the readers' pool. Keys are sealed in their own
//! columns, bound to the node's id.

use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::key_rotation::grace_until;
use manager_lib::domain::{KeyRotation, Node, NodeId, NodeKey, Timestamp};
use manager_lib::seal::rotation::StoredRotation;
use manager_lib::seal::{Column, Sealer};
use manager_lib::storage::{Entity, KeyRotationStore, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{NODE_COLUMNS, node_from_row};

const COLUMNS: &str = "id, pending_key, grace_ms, requested_at, previous_key, previous_until";

fn err(e: sqlx::Error) -> StorageError {
    db_error(e, Some(Entity::KeyRotation))
}

fn rotation_from_row(row: &SqliteRow, seal: &Sealer) -> StorageResult<KeyRotation> {
    StoredRotation {
        id: row.try_get("id").map_err(err)?,
        pending_key: row.try_get("pending_key").map_err(err)?,
        grace_ms: row.try_get("grace_ms").map_err(err)?,
        requested_at: row.try_get("requested_at").map_err(err)?,
        previous_key: row.try_get("previous_key").map_err(err)?,
        previous_until: row.try_get("previous_until").map_err(err)?,
    }
    .open(seal)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyRotationStore for SqliteStorage {
    async fn request_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        grace: Duration,
        now: Timestamp,
    ) -> StorageResult<KeyRotation> {
        let seal = self.seal.clone();
        let sealed = seal.seal_key_in(Column::PendingNodeKey, node, key);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Box::pin(async move {
                let id = node.to_string();
                let exists = sqlx::query("SELECT 1 FROM nodes WHERE id = ?1")
                    .bind(&id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(err)?;
                if exists.is_none() {
                    return Err(StorageError::NotFound(Entity::Node));
                }
                // Inserted, or set on a row with nothing pending; a row
                // with a pending key is left alone (no row comes back).
                let row = sqlx::query(&format!(
                    "INSERT INTO node_key_rotations (id, pending_key, grace_ms, requested_at) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (id) DO UPDATE SET pending_key = excluded.pending_key, \
                         grace_ms = excluded.grace_ms, requested_at = excluded.requested_at \
                     WHERE node_key_rotations.pending_key IS NULL \
                     RETURNING {COLUMNS}"
                ))
                .bind(&id)
                .bind(sealed)
                .bind(grace_ms)
                .bind(now.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
                match row {
                    Some(row) => rotation_from_row(&row, &seal),
                    None => Err(StorageError::AlreadyExists(Entity::KeyRotation)),
                }
            })
        })
        .await
    }

    async fn key_rotation(&self, node: NodeId) -> StorageResult<Option<KeyRotation>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_key_rotations WHERE id = ?1"
        ))
        .bind(node.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(err)?;
        row.map(|r| rotation_from_row(&r, &self.seal)).transpose()
    }

    async fn pending_key_rotations(&self) -> StorageResult<Vec<KeyRotation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_key_rotations WHERE pending_key IS NOT NULL ORDER BY id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| rotation_from_row(r, &self.seal))
            .collect()
    }

    async fn confirm_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        now: Timestamp,
    ) -> StorageResult<Option<Node>> {
        let seal = self.seal.clone();
        let key = key.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let id = node.to_string();
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM node_key_rotations WHERE id = ?1"
                ))
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
                let Some(rotation) = row.map(|r| rotation_from_row(&r, &seal)).transpose()? else {
                    return Ok(None);
                };
                if rotation.pending.as_ref() != Some(&key) {
                    return Ok(None);
                }
                let old: String = sqlx::query_scalar("SELECT key FROM nodes WHERE id = ?1")
                    .bind(&id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error(e, Some(Entity::Node)))?;
                let old = seal.open_node_key(&id, &old)?;
                let stored = sqlx::query(&format!(
                    "UPDATE nodes SET key = ?2, updated_at = ?3 WHERE id = ?1 \
                     RETURNING {NODE_COLUMNS}"
                ))
                .bind(&id)
                .bind(seal.seal_node_key(node, &key))
                .bind(now.0)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error(e, Some(Entity::Node)))?;
                sqlx::query(
                    "UPDATE node_key_rotations \
                     SET pending_key = NULL, previous_key = ?2, previous_until = ?3 \
                     WHERE id = ?1",
                )
                .bind(&id)
                .bind(seal.seal_key_in(Column::PreviousNodeKey, node, &old))
                .bind(grace_until(now, rotation.grace).0)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
                node_from_row(&stored, &seal).map(Some)
            })
        })
        .await
    }
}
