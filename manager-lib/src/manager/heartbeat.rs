//! The heartbeat's protocol, in one place: each node checked (status →
//! start, stop or resync as required) and its usage journal pulled unless
//! its status shows nothing after the node's cursor, then the pending
//! operations of every node found in sync pushed in one fleet-wide push
//! ([`Manager::heartbeat_step`]).
//! Which nodes, when, and what a failure costs (leases, backoff, metrics) is
//! the caller's: the heartbeat loop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tracing::Instrument as _;

use super::{Manager, ManagerError, ManagerResult, NodeOutcome};
use crate::domain::{ActualStatus, EventKind, Node, NodeEventKind, NodeId, RequiredStatus};
use crate::transport::{JournalReport, TransportError};

impl Manager {
    /// One heartbeat's work on `nodes`: each checked ([`Manager::check_node`],
    /// at most `concurrency` of the settings at once, each in a `reconcile`
    /// span), then the nodes in sync get their pending operations in one
    /// fleet-wide push (the change log read once, not once per node).
    /// `on_checked(node, took, ok)` sees each check as it ends (for metrics).
    /// Answers each node's outcome.
    pub async fn heartbeat_step(
        &self,
        nodes: Vec<Node>,
        on_checked: impl Fn(NodeId, Duration, bool) + Sync,
    ) -> Vec<(NodeId, ManagerResult<NodeOutcome>)> {
        let _pass = self.fleet_pass.lock().await;
        if let Err(e) = self.enforce_plans().await {
            tracing::warn!(error = %e, "heartbeat: cannot apply the plans' expiry and resets");
        }
        // Before the checks: a node that takes its new key is checked under it.
        self.deliver_pending_keys(&nodes).await;
        let on_checked = &on_checked;
        let concurrency = self.settings.concurrency.max(1);
        let results: Vec<(NodeId, ManagerResult<NodeOutcome>)> = futures::stream::iter(nodes)
            .map(|node| {
                let span = tracing::info_span!("reconcile", node = %node.id);
                async move {
                    let started = Instant::now();
                    let mut journal = None;
                    let result = self.check_node_reporting(&node, &mut journal).await;
                    // A journal with nothing after the cursor costs no pull.
                    let idle = journal
                        .as_ref()
                        .is_some_and(|j| j.nothing_to_pull(&node.usage_cursor));
                    if agent_answers(&result) && !idle {
                        // Before the push below, so a user whose limit these
                        // bytes crossed leaves the nodes in this same step.
                        match self.pull_usage(&node).await {
                            Ok(pulled) if pulled.user_deltas > 0 => {
                                tracing::debug!(deltas = pulled.user_deltas, "usage stored");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot pull usage; next beat retries")
                            }
                        }
                    }
                    on_checked(node.id, started.elapsed(), result.is_ok());
                    (node.id, result)
                }
                .instrument(span)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let in_sync: Vec<NodeId> = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(NodeOutcome::InSync)))
            .map(|(id, _)| *id)
            .collect();
        let mut pushed = match self.push_pending_many(&in_sync, concurrency).await {
            Ok(pushed) => pushed,
            Err(e) => {
                // The node list or the log could not be read: the database's
                // trouble, not the nodes' (no failure for them); the next beat retries.
                tracing::warn!(error = %e, "heartbeat: cannot push pending operations");
                HashMap::new()
            }
        };
        results
            .into_iter()
            .map(|(id, result)| match result {
                Ok(NodeOutcome::InSync) => (
                    id,
                    pushed
                        .remove(&id)
                        .unwrap_or(Ok(0))
                        .map(|applied| NodeOutcome::Synced { applied }),
                ),
                other => (id, other),
            })
            .collect()
    }

    /// Brings one node to what is required: status → actual status; start or
    /// stop it when they differ (or its stored state is not up to date);
    /// otherwise push its pending operations and check that its core still
    /// has every user (anti-entropy).
    pub async fn reconcile_node(&self, node: &Node) -> ManagerResult<NodeOutcome> {
        match self.check_node(node).await? {
            NodeOutcome::InSync => Ok(NodeOutcome::Synced {
                applied: self.push_pending(node.id).await?,
            }),
            outcome => Ok(outcome),
        }
    }

    /// [`Manager::reconcile_node`] but for the push: a node found running,
    /// up to date and with every user its cursor says is `InSync`, and its
    /// pending operations are left to the caller (the heartbeat pushes to
    /// all such nodes at once with [`Manager::push_pending_many`]).
    pub async fn check_node(&self, node: &Node) -> ManagerResult<NodeOutcome> {
        self.check_node_reporting(node, &mut None).await
    }

    /// [`Manager::check_node`], also giving what the node's status said of
    /// its usage journal (`None` when it did not answer or did not say).
    async fn check_node_reporting(
        &self,
        node: &Node,
        journal: &mut Option<JournalReport>,
    ) -> ManagerResult<NodeOutcome> {
        let lock = self.locks.get(node.id);
        let _guard = lock.lock().await;
        // Read after taking the lock: a start may have just finished.
        let node = self.storage.get_node(node.id).await?;
        // Read before the status call: with the lock held nothing else changes
        // the node, so the report's user count matches this cursor.
        let fleet = self.storage.fleet_state().await?;
        let status = match self.transport.status(&node).await {
            Err(TransportError::KeyMismatch(_)) if self.redeliver_key(&node).await => {
                self.transport.status(&node).await
            }
            other => other,
        };
        let report = match status {
            Ok(report) => {
                journal.clone_from(&report.journal);
                report
            }
            Err(e) => {
                // Unreachable, not authentic, or its core in trouble: not
                // usable until it answers well again.
                let down =
                    (node.actual_status != ActualStatus::Error).then_some(EventKind::NodeDown);
                self.observe(&node, ActualStatus::Error, down).await?;
                let in_error = node.actual_status == ActualStatus::Error;
                self.log_node_failure(node.id, in_error, &e.to_string())
                    .await;
                return Err(e.into());
            }
        };
        let actual = if report.running {
            ActualStatus::Running
        } else {
            ActualStatus::Stopped
        };
        if node.actual_status == ActualStatus::Error {
            // Answering well again: recorded at once with its event (the
            // observation or the start or stop below records it again).
            self.observe(&node, actual, Some(EventKind::NodeRecovered))
                .await?;
            self.log_node_event(node.id, NodeEventKind::Recovered, "answers well again")
                .await;
        }
        match (node.required_status, actual) {
            (RequiredStatus::Running, ActualStatus::Stopped) => {
                self.storage.record_observation(node.id, actual).await?;
                self.start_locked(node.id).await?;
                self.log_node_event(
                    node.id,
                    NodeEventKind::Restarted,
                    "found stopped while it should run; started again",
                )
                .await;
                return Ok(NodeOutcome::Started);
            }
            (RequiredStatus::Stopped, ActualStatus::Running) => {
                self.storage.record_observation(node.id, actual).await?;
                self.stop_locked(node.id).await?;
                return Ok(NodeOutcome::Stopped);
            }
            _ => {}
        }
        if !node.state_up_to_date {
            // A start or stop whose result was not stored: do it again.
            return match node.required_status {
                RequiredStatus::Running => {
                    self.start_locked(node.id).await?;
                    Ok(NodeOutcome::Started)
                }
                RequiredStatus::Stopped => {
                    self.stop_locked(node.id).await?;
                    Ok(NodeOutcome::Stopped)
                }
            };
        }
        self.storage.record_observation(node.id, actual).await?;
        if node.required_status == RequiredStatus::Stopped {
            return Ok(NodeOutcome::Idle);
        }
        if node.applied_seq >= fleet.last_seq && report.users != fleet.enabled_users {
            tracing::warn!(
                node = %node.id,
                has = report.users,
                expected = fleet.enabled_users,
                "node's core lost users; sending every user again"
            );
            self.start_locked_resync(&node).await?;
            let detail = format!(
                "its core had {} users, {} expected; every user sent again",
                report.users, fleet.enabled_users
            );
            self.log_node_event(node.id, NodeEventKind::Resynced, &detail)
                .await;
            return Ok(NodeOutcome::Resynced);
        }
        Ok(NodeOutcome::InSync)
    }
}

/// Whether the node's agent answered the check (its journal can be pulled
/// even when its core is in trouble or stopped). Whether there is anything
/// to pull is the status report's ([`JournalReport::nothing_to_pull`]).
fn agent_answers(result: &ManagerResult<NodeOutcome>) -> bool {
    match result {
        Ok(_) | Err(ManagerError::Node(TransportError::Node { .. })) => true,
        Err(_) => false,
    }
}
