//! The reference backend's node key rotations, kept with the nodes (a
//! confirmation changes both in one step).

use std::time::Duration;

use async_trait::async_trait;

use super::MemoryStorage;
use crate::domain::key_rotation::grace_until;
use crate::domain::{KeyRotation, Node, NodeId, NodeKey, Timestamp};
use crate::storage::{Entity, KeyRotationStore, StorageError, StorageResult};

#[async_trait]
impl KeyRotationStore for MemoryStorage {
    async fn request_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        grace: Duration,
        now: Timestamp,
    ) -> StorageResult<KeyRotation> {
        let mut st = self.lock();
        st.node_mut(node)?;
        let previous = match st.rotations.get(&node) {
            Some(r) if r.pending.is_some() => {
                return Err(StorageError::AlreadyExists(Entity::KeyRotation));
            }
            Some(r) => r.previous.clone(),
            None => None,
        };
        let rotation = KeyRotation {
            node,
            pending: Some(key.clone()),
            grace,
            requested_at: now,
            previous,
        };
        st.rotations.insert(node, rotation.clone());
        Ok(rotation)
    }

    async fn key_rotation(&self, node: NodeId) -> StorageResult<Option<KeyRotation>> {
        Ok(self.lock().rotations.get(&node).cloned())
    }

    async fn pending_key_rotations(&self) -> StorageResult<Vec<KeyRotation>> {
        let st = self.lock();
        Ok(st
            .rotations
            .values()
            .filter(|r| r.pending.is_some())
            .cloned()
            .collect())
    }

    async fn confirm_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        now: Timestamp,
    ) -> StorageResult<Option<Node>> {
        let mut st = self.lock();
        let Some(rotation) = st.rotations.get(&node) else {
            return Ok(None);
        };
        if rotation.pending.as_ref() != Some(key) {
            return Ok(None);
        }
        let until = grace_until(now, rotation.grace);
        let stored = st.node_mut(node)?;
        let old = std::mem::replace(&mut stored.key, key.clone());
        stored.updated_at = now;
        let stored = stored.clone();
        let rotation = st.rotations.get_mut(&node).expect("read above");
        rotation.pending = None;
        rotation.previous = Some((old, until));
        Ok(Some(stored))
    }
}
