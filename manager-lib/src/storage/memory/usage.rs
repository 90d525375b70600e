//! The reference backend's traffic accounting: ingest, time enforcement and
//! history reads, on the same state as everything else.

use super::State;
use crate::domain::usage::{
    EnforceOutcome, IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow,
    add_stored,
};
use crate::domain::{BlockReason, NodeId, Timestamp, UserId};
use crate::storage::StorageResult;
use crate::storage::kit::usage::{
    Bytes, block_after_reset, group_node_days, group_node_rows, group_user_rows, over_limit,
    start_hold, sum_page,
};

impl State {
    pub(super) fn ingest(
        &mut self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
    ) -> StorageResult<IngestOutcome> {
        let n = self.node_mut(node)?;
        if n.usage_cursor != *pulled_with {
            return Ok(IngestOutcome {
                stored: false,
                cursor: n.usage_cursor.clone(),
                user_deltas: 0,
                newly_blocked: Vec::new(),
            });
        }
        let sums = sum_page(page, pulled_with, n.traffic_multiplier);
        n.usage_cursor = page.cursor_after(pulled_with);
        add(&mut n.used_up, &mut n.used_down, &sums.node);
        let cursor = n.usage_cursor.clone();
        for (hour, b) in &sums.node_hours {
            let at = self.node_hours.entry((node, *hour)).or_default();
            add(&mut at.up, &mut at.down, b);
        }
        let mut newly_blocked = Vec::new();
        for (id, b) in &sums.users {
            let Ok(before) = self.live_user(*id).map(|u| u.blocked) else {
                continue; // deleted meanwhile
            };
            let moved = b.up > 0 || b.down > 0;
            let user = self.change_user(*id, |u| {
                add(&mut u.used_up, &mut u.used_down, b);
                if moved {
                    u.plan = start_hold(&u.plan, now);
                }
                if u.blocked.is_none() && over_limit(&u.plan, u.used()) {
                    u.blocked = Some(BlockReason::Limited);
                }
            })?;
            if before.is_none() && user.blocked.is_some() {
                newly_blocked.push(*id);
            }
        }
        for ((id, day), b) in &sums.user_days {
            if self.live_user(*id).is_ok() {
                let at = self.user_days.entry((*id, *day, node)).or_default();
                add(&mut at.up, &mut at.down, b);
            }
        }
        Ok(IngestOutcome {
            stored: true,
            cursor,
            user_deltas: sums.user_deltas,
            newly_blocked,
        })
    }

    pub(super) fn enforce_time(&mut self, now: Timestamp) -> EnforceOutcome {
        let live = |st: &State, due: &dyn Fn(&crate::domain::User) -> bool| -> Vec<UserId> {
            st.users
                .values()
                .filter(|(u, deleted)| !deleted && due(u))
                .map(|(u, _)| u.id)
                .collect()
        };
        let expired = live(self, &|u| {
            u.plan.expire_at.is_some_and(|at| at <= now) && u.blocked != Some(BlockReason::Expired)
        });
        for id in &expired {
            self.change_user(*id, |u| u.blocked = Some(BlockReason::Expired))
                .expect("a live user");
        }
        let reset = live(self, &|u| u.next_reset_at.is_some_and(|at| at <= now));
        let unblocked = live(self, &|u| {
            u.next_reset_at.is_some_and(|at| at <= now)
                && u.blocked.is_some()
                && block_after_reset(u.blocked).is_none()
        });
        for id in &reset {
            self.change_user(*id, |u| {
                u.used_up = 0;
                u.used_down = 0;
                u.last_reset_at = Some(now);
                u.next_reset_at = u.plan.reset.next_reset_after(now);
                u.blocked = block_after_reset(u.blocked);
            })
            .expect("a live user");
        }
        EnforceOutcome {
            expired,
            reset,
            unblocked,
        }
    }

    pub(super) fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> StorageResult<Vec<UsageRow>> {
        self.live_user(id)?;
        let rows = self
            .user_days
            .iter()
            .filter(|((user, day, _), _)| *user == id && *day >= from && *day < to)
            .map(|((_, day, node), b)| (*day, *node, b.up, b.down));
        Ok(group_user_rows(rows, group))
    }

    pub(super) fn node_days(&self, id: NodeId, from: Timestamp, to: Timestamp) -> Vec<UsageRow> {
        if from >= to {
            return Vec::new();
        }
        let hours = self
            .node_hours
            .range((id, from)..(id, to))
            .map(|((_, hour), b)| (*hour, b.up, b.down));
        group_node_days(id, hours)
    }

    pub(super) fn node_usage(&self, from: Timestamp, to: Timestamp) -> Vec<NodeUsage> {
        group_node_rows(
            self.node_hours
                .iter()
                .filter(|((_, hour), _)| *hour >= from && *hour < to)
                .map(|((node, _), b)| (*node, b.up, b.down)),
        )
    }
}

fn add(up: &mut u64, down: &mut u64, b: &Bytes) {
    *up = add_stored(*up, b.up);
    *down = add_stored(*down, b.down);
}
