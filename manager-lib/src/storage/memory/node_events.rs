//! The reference backend's node event logs, on a state of their own; a
//! node's log is read only while the node exists.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;

use super::MemoryStorage;
use crate::domain::usage::UsageRow;
use crate::domain::{NodeEvent, NodeId, NodeSummary, Timestamp};
use crate::storage::{Entity, NodeEventLog, StorageError, StorageResult};

#[derive(Debug, Default)]
pub(super) struct EventState {
    logs: HashMap<NodeId, VecDeque<NodeEvent>>,
}

impl MemoryStorage {
    fn node_exists(&self, id: NodeId) -> StorageResult<()> {
        match self.lock().nodes.contains_key(&id) {
            true => Ok(()),
            false => Err(StorageError::NotFound(Entity::Node)),
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl NodeEventLog for MemoryStorage {
    async fn record_node_event(
        &self,
        id: NodeId,
        event: &NodeEvent,
        keep: u32,
    ) -> StorageResult<()> {
        // The fleet's lock first, as every call that takes both.
        let fleet = self.lock();
        if !fleet.nodes.contains_key(&id) {
            return Err(StorageError::NotFound(Entity::Node));
        }
        let mut st = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let log = st.logs.entry(id).or_default();
        log.push_back(event.clone());
        while log.len() > keep.max(1) as usize {
            log.pop_front();
        }
        Ok(())
    }

    async fn node_events(&self, id: NodeId, limit: u32) -> StorageResult<Vec<NodeEvent>> {
        self.node_exists(id)?;
        let st = self.events.lock().unwrap_or_else(|e| e.into_inner());
        Ok(st
            .logs
            .get(&id)
            .map(|log| log.iter().rev().take(limit as usize).cloned().collect())
            .unwrap_or_default())
    }

    async fn node_summaries(&self) -> StorageResult<Vec<NodeSummary>> {
        Ok(self.lock().nodes.values().map(NodeSummary::of).collect())
    }

    async fn node_usage_by_day(
        &self,
        id: NodeId,
        from: Timestamp,
        to: Timestamp,
    ) -> StorageResult<Vec<UsageRow>> {
        Ok(self.lock().node_days(id, from, to))
    }
}
