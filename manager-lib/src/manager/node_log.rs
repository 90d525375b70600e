//! Writes the heartbeat's findings to each node's event log
//! ([`crate::storage::NodeEventLog`]) for the dashboard: failures,
//! recoveries, restarts and re-syncs. Like webhooks, a log write never
//! fails the heartbeat that caused it (logged and dropped).

use super::Manager;
use crate::domain::{NodeEvent, NodeEventKind, NodeId, Timestamp};

impl Manager {
    /// Records `kind` with `detail` on node `id`'s log.
    pub(crate) async fn log_node_event(&self, id: NodeId, kind: NodeEventKind, detail: &str) {
        let event = NodeEvent::new(Timestamp::now(), kind, detail);
        if let Err(e) = self
            .storage
            .record_node_event(id, &event, NodeEvent::KEEP)
            .await
        {
            tracing::warn!(node = %id, error = %e, event = kind.as_str(), "cannot log a node event");
        }
    }

    /// Records a failed check: always when the node was not in error, else
    /// only when the error reads differently from the last one logged (a
    /// node down for an hour fills its log with one line, not hundreds).
    pub(crate) async fn log_node_failure(&self, id: NodeId, was_in_error: bool, error: &str) {
        if was_in_error {
            let same = NodeEvent::new(Timestamp(0), NodeEventKind::Failed, error).detail;
            match self.storage.node_events(id, 1).await {
                Ok(last)
                    if last
                        .first()
                        .is_some_and(|e| e.kind == NodeEventKind::Failed && e.detail == same) =>
                {
                    return;
                }
                _ => {}
            }
        }
        self.log_node_event(id, NodeEventKind::Failed, error).await;
    }
}
