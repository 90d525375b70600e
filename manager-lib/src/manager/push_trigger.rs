//! The push on change: a user change pulls the trigger, and the task of
//! [`Manager::spawn`] pushes the pending operations to the held nodes
//! ([`Manager::push_held`]), coalescing the changes made meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Manager, ManagerSettings};
use crate::storage::Storage;
use crate::transport::NodeTransport;

/// Pulled by every user change; closed when the manager is dropped.
#[derive(Debug, Default)]
pub(super) struct PushTrigger {
    pulled: tokio::sync::Notify,
    closed: AtomicBool,
}

impl PushTrigger {
    pub(super) fn pull(&self) {
        self.pulled.notify_one();
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pulled.notify_one();
    }
}

impl Manager {
    /// A manager that pushes each user change to the nodes by itself, on a
    /// task of the current tokio runtime (call it inside one) that ends when
    /// the manager is dropped. The nodes pushed to are those whose leases
    /// this replica holds once a heartbeat has claimed them (the last
    /// [`Manager::claim_nodes`]); until then, or with no heartbeat at all,
    /// every serving node: right for a program that runs the only manager of
    /// its fleet, and for a replica only until its first heartbeat (which
    /// the composition root runs as soon as it serves).
    ///
    /// A push starts at once, but no sooner after the previous push ended
    /// than that push took (at most `max_push_gap` later): the changes made
    /// meanwhile share one push. A push costs about the same for one change
    /// as for hundreds (each node's cursor read and acknowledged), so on a
    /// large fleet pushes would otherwise run back to back and take the
    /// database's time from the changes themselves; pushing at most half of
    /// the time bounds that, while a change on an idle manager still goes
    /// out at once.
    pub fn spawn(
        storage: Arc<dyn Storage>,
        transport: Arc<dyn NodeTransport>,
        settings: ManagerSettings,
    ) -> Arc<Self> {
        let max_gap = settings.max_push_gap;
        let manager = Arc::new(Self::new(storage, transport, settings));
        tokio::spawn(push_on_change(
            Arc::downgrade(&manager),
            manager.trigger.clone(),
            max_gap,
        ));
        manager
    }

    /// Pushes pending operations now to the nodes this replica holds (every
    /// serving node until a heartbeat claims leases). Failures are left to
    /// the heartbeat, which retries.
    pub async fn push_held(&self) {
        let _pass = self.fleet_pass.lock().await;
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ids = match held {
            Some(ids) => ids,
            None => match crate::storage::all_nodes(self.storage.as_ref()).await {
                Ok(nodes) => nodes.into_iter().map(|n| n.id).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "push failed; the heartbeat retries");
                    return;
                }
            },
        };
        match self
            .push_pending_many(&ids, self.settings.concurrency)
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
}

/// The task of [`Manager::spawn`]; holds the manager only while pushing.
async fn push_on_change(manager: Weak<Manager>, trigger: Arc<PushTrigger>, max_gap: Duration) {
    let mut next_push = tokio::time::Instant::now();
    loop {
        trigger.pulled.notified().await;
        if trigger.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::time::sleep_until(next_push).await;
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let started = tokio::time::Instant::now();
        manager.push_held().await;
        drop(manager);
        next_push = tokio::time::Instant::now() + started.elapsed().min(max_gap);
    }
}
