//! The heartbeat: every `interval`, this replica takes or renews the leases
//! of its nodes and reconciles each of them ([`Manager::reconcile_node`]),
//! with bounded concurrency and a per-node backoff for nodes that keep
//! failing. Between beats, a user change wakes it to push pending operations
//! to the nodes it holds at once.
//!
//! Several replicas may share one database: a node's lease (in storage, on
//! the database's clock) gives it to one replica at a time. Leases last 1.5
//! heartbeats and are renewed every heartbeat, so the nodes of a replica that
//! died are taken by another within about two heartbeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::domain::{Node, NodeId};
use crate::manager::{Manager, ManagerError, NodeOutcome};
use crate::metrics::ManagerMetrics;

#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Time between heartbeats (the SPEC allows 3–10 s; default 5 s).
    pub interval: Duration,
    /// Nodes reconciled at the same time.
    pub concurrency: usize,
    /// A node that keeps failing is retried after 1, 2, 4… heartbeats, at most this long apart.
    pub max_backoff: Duration,
    /// This replica's name in node leases; unique per running replica.
    pub owner: String,
    /// The longest a change waits for its push because the previous push
    /// was recent (see [`Reconciler::run`]).
    pub max_push_gap: Duration,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            concurrency: 32,
            max_backoff: Duration::from_secs(60),
            owner: format!("manager-{}", uuid::Uuid::new_v4()),
            max_push_gap: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
}

/// A summary of one heartbeat, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub held: usize,
    pub reconciled: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug)]
pub struct Reconciler {
    manager: Arc<Manager>,
    settings: ReconcilerSettings,
    backoff: Mutex<HashMap<NodeId, Backoff>>,
    held: Mutex<Vec<NodeId>>,
    metrics: Option<Arc<ManagerMetrics>>,
}

impl Reconciler {
    pub fn new(manager: Arc<Manager>, settings: ReconcilerSettings) -> Self {
        Self {
            manager,
            settings,
            backoff: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            metrics: None,
        }
    }

    /// Records each node's reconciliation (duration, failures) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<ManagerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn lease_ttl(&self) -> Duration {
        self.settings.interval * 3 / 2
    }

    /// Runs heartbeats until `shutdown` resolves, then gives up this
    /// replica's leases so another replica takes its nodes at once.
    ///
    /// Between beats, a change's nudge starts a push of the held nodes, but
    /// no sooner after the previous push ended than that push took (at most
    /// `max_push_gap` later): the changes made meanwhile share one push. A push
    /// costs about the same for one change as for hundreds (each node's
    /// cursor read and acknowledged), so on a large fleet pushes would
    /// otherwise run back to back and take the database's time from the
    /// changes themselves; pushing at most half of the time bounds that,
    /// while a change on an idle manager still goes out at once.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_push = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    let report = self.heartbeat().await;
                    tracing::debug!(?report, "heartbeat");
                }
                _ = self.manager.nudged() => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep_until(next_push) => {}
                    }
                    let started = tokio::time::Instant::now();
                    self.push_held().await;
                    next_push = tokio::time::Instant::now()
                        + started.elapsed().min(self.settings.max_push_gap);
                }
            }
        }
        if let Err(e) = self
            .manager
            .storage()
            .release_nodes(&self.settings.owner)
            .await
        {
            tracing::warn!(error = %e, "could not release node leases");
        }
    }

    /// One heartbeat over the nodes this replica holds.
    #[tracing::instrument(name = "heartbeat", skip(self), fields(owner = %self.settings.owner))]
    pub async fn heartbeat(&self) -> PassReport {
        let nodes = match self
            .manager
            .claim_nodes(&self.settings.owner, self.lease_ttl())
            .await
        {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat: cannot claim nodes");
                return PassReport::default();
            }
        };
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = nodes.iter().map(|n| n.id).collect();
        let now = Instant::now();
        let due: Vec<Node> = {
            let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            nodes
                .iter()
                .filter(|n| {
                    backoff
                        .get(&n.id)
                        .and_then(|b| b.next_try)
                        .is_none_or(|t| t <= now)
                })
                .cloned()
                .collect()
        };
        let mut report = PassReport {
            held: nodes.len(),
            skipped: nodes.len() - due.len(),
            ..PassReport::default()
        };
        let results: Vec<(NodeId, Result<NodeOutcome, ManagerError>)> = futures::stream::iter(due)
            .map(|node| {
                let span = tracing::info_span!("reconcile", node = %node.id);
                async move {
                    let started = Instant::now();
                    let result = self.manager.check_node(&node).await;
                    if let Some(metrics) = &self.metrics {
                        let id = node.id.to_string();
                        metrics.record_heartbeat(&id, started.elapsed(), result.is_ok());
                    }
                    (node.id, result)
                }
                .instrument(span)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        // The nodes in sync get their pending operations in one fleet-wide
        // push (the change log read once, not once per node).
        let in_sync: Vec<NodeId> = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(NodeOutcome::InSync)))
            .map(|(id, _)| *id)
            .collect();
        let mut pushed = match self
            .manager
            .push_pending_many(&in_sync, self.settings.concurrency)
            .await
        {
            Ok(pushed) => pushed,
            Err(e) => {
                // The node list or the log could not be read: the database's
                // trouble, not the nodes' (no backoff); the next beat retries.
                tracing::warn!(error = %e, "heartbeat: cannot push pending operations");
                HashMap::new()
            }
        };
        let results = results.into_iter().map(|(id, result)| match result {
            Ok(NodeOutcome::InSync) => (
                id,
                pushed
                    .remove(&id)
                    .unwrap_or(Ok(0))
                    .map(|applied| NodeOutcome::Synced { applied }),
            ),
            other => (id, other),
        });
        for (id, result) in results {
            match result {
                Ok(outcome) => {
                    report.reconciled += 1;
                    self.backoff_clear(id);
                    if !matches!(
                        outcome,
                        NodeOutcome::Synced { applied: 0 } | NodeOutcome::Idle
                    ) {
                        tracing::info!(node = %id, ?outcome, "reconciled");
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    let failures = self.backoff_fail(id);
                    tracing::warn!(node = %id, error = %e, failures, "reconcile failed");
                }
            }
        }
        if let Err(e) = self.manager.purge_tombstones().await {
            tracing::debug!(error = %e, "purge of tombstones failed");
        }
        report
    }

    /// Pushes pending operations to every node this replica holds, now.
    pub async fn push_held(&self) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match self
            .manager
            .push_pending_many(&held, self.settings.concurrency)
            .await
        {
            Ok(results) => {
                for (id, result) in results {
                    if let Err(e) = result {
                        tracing::debug!(node = %id, error = %e, "push failed; the heartbeat retries");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "push failed; the heartbeat retries"),
        }
    }

    fn backoff_clear(&self, id: NodeId) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn backoff_fail(&self, id: NodeId) -> u32 {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let b = map.entry(id).or_default();
        b.failures = b.failures.saturating_add(1);
        // The first failures retry at the next beat; then 2, 4, 8… beats apart.
        let beats = 1u32 << b.failures.saturating_sub(2).min(16);
        let wait = (self.settings.interval * beats).min(self.settings.max_backoff);
        b.next_try = Some(Instant::now() + wait - self.settings.interval.min(wait));
        b.failures
    }
}
