//! The heartbeat loop: every `interval`, this replica takes or renews the
//! leases of its nodes and runs the manager's heartbeat step
//! ([`Manager::heartbeat_step`]) on those due, with a per-node backoff for
//! nodes that keep failing, and records each node's check in the metrics.
//! Pushing a change between beats is the manager's own work
//! ([`Manager::spawn`]); this loop only tells it which nodes it holds.
//!
//! Several replicas may share one database: a node's lease (in storage, on
//! the database's clock) gives it to one replica at a time. Leases last 1.5
//! heartbeats and are renewed every heartbeat, so the nodes of a replica that
//! died are taken by another within about two heartbeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::{Node, NodeId};
use crate::manager::{Manager, NodeOutcome};
use crate::metrics::ManagerMetrics;

#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Time between heartbeats (the SPEC allows 3–10 s; default 5 s).
    pub interval: Duration,
    /// A node that keeps failing is retried after 1, 2, 4… heartbeats, at most this long apart.
    pub max_backoff: Duration,
    /// This replica's name in node leases; unique per running replica.
    pub owner: String,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            owner: format!("manager-{}", uuid::Uuid::new_v4()),
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
    /// When this replica last purged old usage history.
    last_history_purge: Mutex<Option<Instant>>,
    metrics: Option<Arc<ManagerMetrics>>,
}

impl Reconciler {
    /// The heartbeat of `manager`. Once it has claimed leases, the manager
    /// pushes changes only to the nodes they give this replica.
    pub fn new(manager: Arc<Manager>, settings: ReconcilerSettings) -> Self {
        Self {
            manager,
            settings,
            backoff: Mutex::new(HashMap::new()),
            last_history_purge: Mutex::new(None),
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
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    let report = self.heartbeat().await;
                    tracing::debug!(?report, "heartbeat");
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
        let metrics = self.metrics.as_deref();
        let results = self
            .manager
            .heartbeat_step(due, |id, took, ok| {
                if let Some(metrics) = metrics {
                    metrics.record_heartbeat(&id.to_string(), took, ok);
                }
            })
            .await;
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
        self.purge_usage_history_hourly().await;
        report
    }

    /// Old usage history and audit entries go once an hour, and expiring
    /// users are noticed for the webhooks (a delete over an index; no
    /// need to run it every beat).
    async fn purge_usage_history_hourly(&self) {
        let due = {
            let mut last = self
                .last_history_purge
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            match self.manager.purge_usage_history().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "old usage history purged"),
                Err(e) => tracing::warn!(error = %e, "purge of old usage history failed"),
            }
            match self.manager.purge_audit().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "old audit entries purged"),
                Err(e) => tracing::warn!(error = %e, "purge of old audit entries failed"),
            }
            // Hourly is plenty for a notice days ahead; ids derived from
            // the expiry make a repeated scan send nothing twice.
            if let Err(e) = self.manager.notice_expiring_users().await {
                tracing::warn!(error = %e, "webhooks: cannot scan for expiring users");
            }
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
