//! Node key rotations. A request and a confirmation are each one
//! transaction that locks the node's row (a request) or the rotation's row
//! (a confirmation), so two replicas never both switch a node's key. Keys
//! are sealed in their own columns, bound to the node's id.

use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::key_rotation::grace_until;
use manager_lib::domain::{KeyRotation, Node, NodeId, NodeKey, Timestamp};
use manager_lib::seal::rotation::StoredRotation;
use manager_lib::seal::{Column, Sealer};
use manager_lib::storage::{Entity, KeyRotationStore, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::error::map_err;
use crate::rows::node_columns;
use crate::{PgStorage, rows};

const COLUMNS: &str =
    "id::text AS id, pending_key, grace_ms, requested_at, previous_key, previous_until";

fn err(e: sqlx::Error) -> StorageError {
    map_err(Entity::KeyRotation, e)
}

fn rotation_from_row(row: &PgRow, seal: &Sealer) -> StorageResult<KeyRotation> {
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
impl KeyRotationStore for PgStorage {
    async fn request_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        grace: Duration,
        now: Timestamp,
    ) -> StorageResult<KeyRotation> {
        let id = node.to_string();
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Held to the commit: the node cannot be deleted meanwhile.
        let exists = sqlx::query("SELECT 1 FROM nodes WHERE id = $1::uuid FOR KEY SHARE")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if exists.is_none() {
            return Err(StorageError::NotFound(Entity::Node));
        }
        // Inserted, or set on a row with nothing pending; a row with a
        // pending key is left alone (no row comes back).
        let row = sqlx::query(&format!(
            "INSERT INTO node_key_rotations (id, pending_key, grace_ms, requested_at) \
             VALUES ($1::uuid, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET pending_key = excluded.pending_key, \
                 grace_ms = excluded.grace_ms, requested_at = excluded.requested_at \
             WHERE node_key_rotations.pending_key IS NULL \
             RETURNING {COLUMNS}"
        ))
        .bind(&id)
        .bind(self.seal.seal_key_in(Column::PendingNodeKey, node, key))
        .bind(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            return Err(StorageError::AlreadyExists(Entity::KeyRotation));
        };
        let rotation = rotation_from_row(&row, &self.seal)?;
        tx.commit().await.map_err(err)?;
        Ok(rotation)
    }

    async fn key_rotation(&self, node: NodeId) -> StorageResult<Option<KeyRotation>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_key_rotations WHERE id = $1::uuid"
        ))
        .bind(node.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|r| rotation_from_row(&r, &self.seal)).transpose()
    }

    async fn pending_key_rotations(&self) -> StorageResult<Vec<KeyRotation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_key_rotations WHERE pending_key IS NOT NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
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
        let id = node.to_string();
        let mut tx = self.pool.begin().await.map_err(err)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_key_rotations WHERE id = $1::uuid FOR UPDATE"
        ))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(rotation) = row.map(|r| rotation_from_row(&r, &self.seal)).transpose()? else {
            return Ok(None);
        };
        if rotation.pending.as_ref() != Some(key) {
            return Ok(None);
        }
        let old: String =
            sqlx::query_scalar("SELECT node_key FROM nodes WHERE id = $1::uuid FOR UPDATE")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| map_err(Entity::Node, e))?;
        let old = self.seal.open_node_key(&id, &old)?;
        let stored = sqlx::query(concat!(
            "UPDATE nodes SET node_key = $2, updated_at = $3 WHERE id = $1::uuid RETURNING ",
            node_columns!()
        ))
        .bind(&id)
        .bind(self.seal.seal_node_key(node, key))
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_err(Entity::Node, e))?;
        sqlx::query(
            "UPDATE node_key_rotations \
             SET pending_key = NULL, previous_key = $2, previous_until = $3 \
             WHERE id = $1::uuid",
        )
        .bind(&id)
        .bind(self.seal.seal_key_in(Column::PreviousNodeKey, node, &old))
        .bind(grace_until(now, rotation.grace).0)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let node = rows::node(&stored, &self.seal)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(node))
    }
}
