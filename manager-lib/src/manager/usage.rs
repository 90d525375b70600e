//! Traffic accounting, the manager's side: each node's usage journal pulled
//! and stored exactly once, and the plans' clock (expiry, periodic resets).
//!
//! Exactly once rests on the storage, not on this code: `ingest_usage`
//! stores a page only if the node's cursor is still the one the pull named,
//! and skips batches at or below it. So a pull repeated after a failure, a
//! manager killed between storing and its next pull, or two replicas racing
//! for one node all count each batch once. The agent forgets batches only
//! when a later pull names a cursor past them.

use super::{Manager, ManagerResult};
use crate::domain::usage::EnforceOutcome;
use crate::domain::{Node, Timestamp};

/// What one node's pull stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsagePulled {
    /// Pages stored.
    pub pages: u32,
    /// User-deltas stored (a user on one batch).
    pub user_deltas: u64,
    /// Users who crossed their data limit with these bytes (now off every node).
    pub newly_blocked: u64,
}

impl Manager {
    /// Pulls `node`'s new usage batches from its agent and stores them, page
    /// by page (at most `usage_pages_per_pull` pages of `usage_page_batches`
    /// batches), each page in one transaction with the node's new cursor.
    /// Stops early when another replica stored first (its cursor is then the
    /// truth, and the next pull starts from it). Users who crossed their
    /// limit are pushed off the nodes at once (the push on change), each
    /// with its `user.limited` event written with the page.
    pub async fn pull_usage(&self, node: &Node) -> ManagerResult<UsagePulled> {
        let mut cursor = node.usage_cursor.clone();
        let mut pulled = UsagePulled::default();
        for _ in 0..self.settings.usage_pages_per_pull.max(1) {
            let page = self
                .transport
                .usage(node, &cursor, self.settings.usage_page_batches)
                .await?;
            let outcome = self.store_usage(node.id, &cursor, &page).await?;
            if !outcome.stored {
                tracing::debug!(node = %node.id, "usage stored by another replica meanwhile");
                break;
            }
            pulled.pages += 1;
            pulled.user_deltas += outcome.user_deltas;
            pulled.newly_blocked += outcome.newly_blocked.len() as u64;
            cursor = outcome.cursor;
            if !page.more {
                break;
            }
        }
        if pulled.newly_blocked > 0 {
            self.trigger.pull();
        }
        Ok(pulled)
    }

    /// Forgets usage history older than the retention of the settings (per
    /// user per day: `usage_days_kept`; per node per hour:
    /// `usage_node_hours_kept`). Users' and nodes' totals are kept.
    pub async fn purge_usage_history(&self) -> ManagerResult<u64> {
        const DAY_MS: i64 = 86_400_000;
        const HOUR_MS: i64 = 3_600_000;
        let now = Timestamp::now().0;
        let days = i64::from(self.settings.usage_days_kept);
        let hours = i64::from(self.settings.usage_node_hours_kept);
        Ok(self
            .storage
            .purge_usage_history(
                Timestamp(now.saturating_sub(days * DAY_MS)),
                Timestamp(now.saturating_sub(hours * HOUR_MS)),
            )
            .await?)
    }

    /// The plans' clock: users whose expiry has come are taken off the
    /// nodes, users whose reset period ended get their usage zeroed (and
    /// come back if their limit had blocked them). Idempotent, so every
    /// replica may run it on every heartbeat.
    pub async fn enforce_plans(&self) -> ManagerResult<EnforceOutcome> {
        let outcome = self.apply_time().await?;
        if !outcome.expired.is_empty() || !outcome.reset.is_empty() {
            self.trigger.pull();
        }
        Ok(outcome)
    }
}
