//! Node key rotation (see [`crate::domain::key_rotation`]): a new key is
//! stored as pending, delivered to the node's agent (`POST /key`, sealed
//! under the key in use), and made the node's key once the agent confirmed.
//!
//! Nothing is lost on the way: a key the agent did not confirm stays
//! pending and the heartbeat delivers it again; a delivery refused under
//! the old key is tried under the pending key (the agent took it, but the
//! confirmation was not stored and the grace has ended, or the agent
//! restarted without the old key), and an agent that refuses the node's
//! key while the previous one still opens it (its state directory was
//! wiped during the grace) is given the node's key again under the previous.

use std::time::Duration;

use super::{Manager, ManagerError, ManagerResult};
use crate::domain::key_rotation::MAX_GRACE;
use crate::domain::{KeyRotation, Node, NodeId, NodeKey, Timestamp};
use crate::transport::TransportError;

/// What a rotation answers: the new key (shown once), and whether the
/// agent already took it.
#[derive(Clone, Debug)]
pub struct KeyRotated {
    pub node: NodeId,
    /// The node's new key; `Debug` shows none.
    pub key: NodeKey,
    pub grace: Duration,
    /// When the agent stops accepting the old key (`None` until it took the
    /// new one: the heartbeat delivers it and the grace starts then).
    pub grace_until: Option<Timestamp>,
}

impl Manager {
    /// Gives node `id` a new key; its agent accepts the old one for `grace`
    /// more. Answers once the agent took it, or (unreachable, in trouble)
    /// with the key pending: the heartbeat delivers it.
    ///
    /// Refused with [`ManagerError::KeyRotationPending`] while a key waits
    /// to be delivered, and [`ManagerError::InvalidGrace`] above
    /// [`MAX_GRACE`]; nothing is written then.
    pub async fn rotate_node_key(&self, id: NodeId, grace: Duration) -> ManagerResult<KeyRotated> {
        if grace > MAX_GRACE {
            return Err(ManagerError::InvalidGrace(grace.as_secs()));
        }
        let key = NodeKey::random();
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let rotation = self
            .storage
            .request_key_rotation(id, &key, grace, Timestamp::now())
            .await?;
        let grace_until = match self.deliver_locked(&rotation).await {
            Ok(()) => self
                .storage
                .key_rotation(id)
                .await?
                .and_then(|r| r.previous.map(|(_, until)| until)),
            Err(e) => {
                tracing::warn!(node = %id, error = %e, "new node key not delivered yet; the heartbeat retries");
                None
            }
        };
        tracing::info!(node = %id, grace_secs = grace.as_secs(), delivered = grace_until.is_some(), "node key rotated");
        Ok(KeyRotated {
            node: id,
            key,
            grace,
            grace_until,
        })
    }

    /// Delivers each pending rotation of `nodes` (the heartbeat's nodes);
    /// one that fails stays pending for the next beat.
    pub(super) async fn deliver_pending_keys(&self, nodes: &[Node]) {
        let pending = match self.storage.pending_key_rotations().await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat: cannot read pending key rotations");
                return;
            }
        };
        for rotation in pending {
            if !nodes.iter().any(|n| n.id == rotation.node) {
                continue;
            }
            let lock = self.locks.get(rotation.node);
            let _guard = lock.lock().await;
            if let Err(e) = self.deliver_locked(&rotation).await {
                tracing::warn!(node = %rotation.node, error = %e, "cannot deliver the new node key; next beat retries");
            }
        }
    }

    /// Sends the pending key of `rotation` to the node's agent and, once it
    /// took it, makes it the node's key. Under the node's key first; a key
    /// mismatch is tried again under the pending key (the agent may hold it
    /// already). The caller holds the node's lock.
    async fn deliver_locked(&self, rotation: &KeyRotation) -> ManagerResult<()> {
        let Some(new) = &rotation.pending else {
            return Ok(());
        };
        let node = self.storage.get_node(rotation.node).await?;
        let delivered = match self.transport.rotate_key(&node, new, rotation.grace).await {
            Err(TransportError::KeyMismatch(first)) => {
                let under_new = Node {
                    key: new.clone(),
                    ..node.clone()
                };
                self.transport
                    .rotate_key(&under_new, new, rotation.grace)
                    .await
                    .map_err(|_| TransportError::KeyMismatch(first))
            }
            other => other,
        };
        delivered?;
        // `None`: another replica confirmed it first.
        self.storage
            .confirm_key_rotation(node.id, new, Timestamp::now())
            .await?;
        Ok(())
    }

    /// The node's agent refused its key: when the key it replaced is still
    /// in its grace and opens the agent, the agent lost the rotation (its
    /// state wiped); give it the node's key again under the old one, for
    /// what is left of the grace. Answers whether it did.
    pub(super) async fn redeliver_key(&self, node: &Node) -> bool {
        let now = Timestamp::now();
        let Ok(Some(rotation)) = self.storage.key_rotation(node.id).await else {
            return false;
        };
        let Some((previous, until)) = rotation.previous.as_ref() else {
            return false;
        };
        if rotation.previous_at(now).is_none() {
            return false;
        }
        let under_old = Node {
            key: previous.clone(),
            ..node.clone()
        };
        let left = Duration::from_millis(u64::try_from(until.0 - now.0).unwrap_or(0));
        match self.transport.rotate_key(&under_old, &node.key, left).await {
            Ok(()) => {
                tracing::warn!(node = %node.id, "the node's agent had lost its rotated key; delivered it again");
                true
            }
            Err(_) => false,
        }
    }
}
