//! The fleet push engine: a node's pending operations sent to it in
//! `/users/edit` batches and acknowledged, one node at a time
//! ([`Manager::push_pending`]) or to many nodes from one read of the change
//! log ([`Manager::push_pending_many`]), their last acknowledgements stored
//! together by one writer.

use std::collections::{HashMap, HashSet};

use super::{Manager, ManagerError, ManagerResult};
use crate::domain::{
    ActualStatus, Node, NodeId, Operation, PageRequest, PendingBatch, RequiredStatus, Seq,
    UserCredentials, UserId,
};
use crate::storage::StorageError;
use crate::transport::UserPorts;

impl Manager {
    /// Pushes a running node's pending operations now (the fast path after a
    /// user change). Does nothing for a node that is not serving.
    pub async fn push_pending(&self, id: NodeId) -> ManagerResult<usize> {
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let node = self.storage.get_node(id).await?;
        if !is_serving(&node) {
            return Ok(0);
        }
        self.push_locked(&node).await
    }

    /// Pushes pending operations to every serving node among `ids`, at most
    /// `concurrency` at a time, reading the change log once for all of them
    /// ([`Storage::changes_after`](crate::storage::Storage::changes_after) from the smallest cursor) instead of once
    /// per node: after a burst of changes on a large fleet, every node needs
    /// the same operations. Each node is still pushed under its lock from its
    /// own cursor, read under that lock. Answers each node's result (nodes
    /// that are not serving are left out).
    pub async fn push_pending_many(
        &self,
        ids: &[NodeId],
        concurrency: usize,
    ) -> ManagerResult<HashMap<NodeId, ManagerResult<usize>>> {
        use futures::StreamExt as _;
        let mut wanted: HashSet<NodeId> = ids.iter().copied().collect();
        let mut results: HashMap<NodeId, ManagerResult<usize>> = HashMap::new();
        while !wanted.is_empty() {
            let nodes = self.serving_among(&wanted).await?;
            let Some(base) = nodes.iter().map(|n| n.applied_seq).min() else {
                break;
            };
            let log = ChangeLog::new(
                self.storage
                    .changes_after(base, PageRequest::MAX_LIMIT)
                    .await?,
                base,
            );
            if log.seqs.is_empty() {
                break;
            }
            // Each node's last acknowledgement goes to one writer that stores
            // whatever has come in by then in one statement, while the
            // pushes go on (a slow node delays nobody's acknowledgement).
            let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(NodeId, Seq)>();
            let pushes = async move {
                let log = &log;
                let round: Vec<(NodeId, ManagerResult<usize>)> = futures::stream::iter(nodes)
                    .map(|node| {
                        let acks = acks.clone();
                        async move { (node.id, self.push_from_log(node.id, log, &acks).await) }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .collect()
                    .await;
                (round, log.more)
            };
            let store_acks = async {
                let mut failed: HashMap<NodeId, String> = HashMap::new();
                let mut taken = Vec::with_capacity(1024);
                while acked.recv_many(&mut taken, 1024).await > 0 {
                    if let Err(e) = self.storage.ack_operations_many(&taken).await {
                        failed.extend(taken.iter().map(|(id, _)| (*id, e.to_string())));
                    }
                    taken.clear();
                }
                failed
            };
            let ((round, more), ack_failed) = tokio::join!(pushes, store_acks);
            let mut progressed = false;
            for (id, mut result) in round {
                if let (Ok(_), Some(e)) = (&result, ack_failed.get(&id)) {
                    // Applied but not recorded: still pending, sent again
                    // by the next push (harmless).
                    result = Err(ManagerError::Storage(StorageError::Unavailable(
                        e.clone().into(),
                    )));
                }
                match &result {
                    Ok(n) => progressed |= *n > 0,
                    Err(_) => {
                        wanted.remove(&id);
                    }
                }
                let total = match (results.remove(&id), result) {
                    (Some(Ok(before)), Ok(now)) => Ok(before + now),
                    (_, result) => result,
                };
                results.insert(id, total);
            }
            // Another round only when the log was cut short and this one
            // moved something (a PostgreSQL change still settling is left to
            // the next push).
            if !more || !progressed {
                break;
            }
        }
        Ok(results)
    }

    /// The nodes among `ids` that are serving and should be, in one read of
    /// the node table.
    async fn serving_among(&self, ids: &HashSet<NodeId>) -> ManagerResult<Vec<Node>> {
        let nodes = crate::storage::all_nodes(self.storage.as_ref()).await?;
        Ok(nodes
            .into_iter()
            .filter(|n| ids.contains(&n.id) && is_serving(n))
            .collect())
    }

    /// One node's share of a change log read for many nodes. Every
    /// acknowledgement but the last goes to the storage at once; the
    /// last goes to `acks`, stored by the caller with the other nodes'.
    async fn push_from_log(
        &self,
        id: NodeId,
        log: &ChangeLog,
        acks: &tokio::sync::mpsc::UnboundedSender<(NodeId, Seq)>,
    ) -> ManagerResult<usize> {
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        // The cursor as it is now, under the lock: a start or another push
        // may have moved it since the node list was read.
        let node = self.storage.get_node(id).await?;
        if !is_serving(&node) {
            return Ok(0);
        }
        if node.applied_seq < log.after {
            // Older than the log (cannot happen with the cursor only moving
            // forward, but never skip a change): the node's own batches.
            return self.push_locked(&node).await;
        }
        let mut from = log.seqs.partition_point(|&seq| seq <= node.applied_seq);
        let mut applied = 0;
        while from < log.seqs.len() {
            let to = (from + self.settings.edit_batch.max(1) as usize).min(log.seqs.len());
            let (add, del) = log.slices(log.seqs[from], log.seqs[to - 1]);
            let add = self.settings.credentials.node_users(node.id, add);
            let ports = self.transport.edit_users(&node, &add, del).await?;
            self.note_user_ports(&node, &ports).await?;
            // Every change up to this number is in the log up to `to`.
            let up_to = log.seqs[to - 1];
            if to == log.seqs.len() {
                // Stored after the lock is released: until then a push sees
                // the older cursor and sends these again, which is harmless.
                let _ = acks.send((node.id, up_to));
            } else {
                self.storage.ack_operations(node.id, up_to).await?;
            }
            applied += to - from;
            from = to;
        }
        Ok(applied)
    }

    /// Stores the ports a `/users/edit` answer reported (a node with a port
    /// per user), before the edit is acknowledged: a failure here sends the
    /// edit again, and its answer again.
    async fn note_user_ports(&self, node: &Node, ports: &UserPorts) -> ManagerResult<()> {
        if !ports.is_empty() {
            self.storage.note_user_ports(node.id, ports).await?;
        }
        Ok(())
    }

    async fn push_locked(&self, node: &Node) -> ManagerResult<usize> {
        let mut applied = 0;
        loop {
            let batch = self
                .storage
                .pending_operations(node.id, self.settings.edit_batch)
                .await?;
            if batch.operations.is_empty() {
                return Ok(applied);
            }
            let mut add = Vec::new();
            let mut del = Vec::new();
            for op in &batch.operations {
                match op.operation {
                    Operation::Add => {
                        add.push(self.settings.credentials.node_user(node.id, &op.user))
                    }
                    Operation::Delete => del.push(op.user.id),
                }
            }
            let ports = self.transport.edit_users(node, &add, &del).await?;
            self.note_user_ports(node, &ports).await?;
            self.storage
                .ack_operations(node.id, batch.up_to_seq)
                .await?;
            applied += batch.operations.len();
            if !batch.more {
                return Ok(applied);
            }
        }
    }
}

/// Running, meant to run, and its stored state up to date: a node pending
/// operations can be pushed to.
fn is_serving(node: &Node) -> bool {
    node.actual_status == ActualStatus::Running
        && node.required_status == RequiredStatus::Running
        && node.state_up_to_date
}

/// A change log read once for many nodes, split for `/users/edit`: the adds
/// and the deletes each in change order, so any node's share (the changes
/// above its cursor) is a pair of slices, never a copy.
struct ChangeLog {
    /// The cursor the log was read after.
    after: Seq,
    /// Every operation's number, ascending.
    seqs: Vec<Seq>,
    add_seqs: Vec<Seq>,
    adds: Vec<UserCredentials>,
    del_seqs: Vec<Seq>,
    dels: Vec<UserId>,
    more: bool,
}

impl ChangeLog {
    fn new(batch: PendingBatch, after: Seq) -> Self {
        let mut log = Self {
            after,
            seqs: Vec::with_capacity(batch.operations.len()),
            add_seqs: Vec::new(),
            adds: Vec::new(),
            del_seqs: Vec::new(),
            dels: Vec::new(),
            more: batch.more,
        };
        for op in batch.operations {
            log.seqs.push(op.seq);
            match op.operation {
                Operation::Add => {
                    log.add_seqs.push(op.seq);
                    log.adds.push(op.user);
                }
                Operation::Delete => {
                    log.del_seqs.push(op.seq);
                    log.dels.push(op.user.id);
                }
            }
        }
        log
    }

    /// The adds and deletes numbered `lo..=hi`.
    fn slices(&self, lo: Seq, hi: Seq) -> (&[UserCredentials], &[UserId]) {
        let range =
            |seqs: &[Seq]| seqs.partition_point(|&s| s < lo)..seqs.partition_point(|&s| s <= hi);
        (
            &self.adds[range(&self.add_seqs)],
            &self.dels[range(&self.del_seqs)],
        )
    }
}
