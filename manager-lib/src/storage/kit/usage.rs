//! Traffic accounting's shared arithmetic: what a pulled page adds to each
//! total and bucket, and what a plan makes of a user's used bytes, so that
//! every backend stores the same numbers.

use std::collections::BTreeMap;

use crate::domain::usage::{
    DAY_MS, HOUR_MS, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow, add_stored,
    bucket, multiplied,
};
use crate::domain::{BlockReason, NodeId, Plan, Timestamp, UserId};

/// SQL for `$col + $add` (both non-negative), saturating at `i64::MAX`
/// (PostgreSQL's BIGINT and SQLite's INTEGER alike): the addition itself
/// would overflow, so the test comes first. Both arguments are string
/// literals (column names, parameters); the expansion is one literal.
#[macro_export]
macro_rules! sql_saturating_add {
    ($col:literal, $add:literal) => {
        concat!(
            "CASE WHEN ",
            $col,
            " > 9223372036854775807 - ",
            $add,
            " THEN 9223372036854775807 ELSE ",
            $col,
            " + ",
            $add,
            " END"
        )
    };
}

/// Up and down bytes, each saturating at `i64::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub up: u64,
    pub down: u64,
}

impl Bytes {
    fn add(&mut self, up: u64, down: u64) {
        self.up = add_stored(self.up, up);
        self.down = add_stored(self.down, down);
    }
}

/// A page's new batches (after the cursor it was pulled with), summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSums {
    /// Per user, after the multiplier, in id order (so backends lock rows
    /// in one order and cannot deadlock each other).
    pub users: BTreeMap<UserId, Bytes>,
    /// Per user per UTC day (of each batch's `to`), after the multiplier.
    pub user_days: BTreeMap<(UserId, Timestamp), Bytes>,
    /// Per UTC hour (of each batch's `to`), raw.
    pub node_hours: BTreeMap<Timestamp, Bytes>,
    /// Everything, raw: what the node's totals grow by.
    pub node: Bytes,
    /// How many user entries the new batches hold.
    pub user_deltas: u64,
}

/// Sums the batches of `page` not yet stored under `pulled_with`, each
/// entry multiplied (and rounded) once, so totals and history agree.
pub fn sum_page(page: &UsagePage, pulled_with: &UsageCursor, multiplier: f64) -> PageSums {
    let mut sums = PageSums::default();
    for batch in page.new_batches(pulled_with) {
        let day = bucket(batch.to, DAY_MS);
        let hour = bucket(batch.to, HOUR_MS);
        for u in &batch.users {
            let (up, down) = (multiplied(u.up, multiplier), multiplied(u.down, multiplier));
            sums.users.entry(u.user).or_default().add(up, down);
            sums.user_days
                .entry((u.user, day))
                .or_default()
                .add(up, down);
            sums.node_hours.entry(hour).or_default().add(u.up, u.down);
            sums.node.add(u.up, u.down);
            sums.user_deltas += 1;
        }
    }
    sums
}

/// A user's history rows (day, node, up, down) summed as `group` asks:
/// by day in day order, or by node in node id order; sums saturate.
pub fn group_user_rows(
    rows: impl IntoIterator<Item = (Timestamp, NodeId, u64, u64)>,
    group: UsageGrouping,
) -> Vec<UsageRow> {
    let mut by_day: BTreeMap<Timestamp, Bytes> = BTreeMap::new();
    let mut by_node: BTreeMap<NodeId, Bytes> = BTreeMap::new();
    for (day, node, up, down) in rows {
        match group {
            UsageGrouping::Day => by_day.entry(day).or_default().add(up, down),
            UsageGrouping::Node => by_node.entry(node).or_default().add(up, down),
        }
    }
    let row = |day, node, b: Bytes| UsageRow {
        day,
        node,
        up: b.up,
        down: b.down,
    };
    match group {
        UsageGrouping::Day => by_day
            .into_iter()
            .map(|(d, b)| row(Some(d), None, b))
            .collect(),
        UsageGrouping::Node => by_node
            .into_iter()
            .map(|(n, b)| row(None, Some(n), b))
            .collect(),
    }
}

/// Node history rows (node, up, down) summed per node, in node id order.
pub fn group_node_rows(rows: impl IntoIterator<Item = (NodeId, u64, u64)>) -> Vec<NodeUsage> {
    let mut sums: BTreeMap<NodeId, Bytes> = BTreeMap::new();
    for (node, up, down) in rows {
        sums.entry(node).or_default().add(up, down);
    }
    sums.into_iter()
        .map(|(node, b)| NodeUsage {
            node,
            up: b.up,
            down: b.down,
        })
        .collect()
}

/// One node's hour rows (hour, up, down) summed per UTC day, in day order:
/// [`NodeEventLog::node_usage_by_day`](crate::storage::NodeEventLog::node_usage_by_day)'s rows.
pub fn group_node_days(
    node: NodeId,
    rows: impl IntoIterator<Item = (Timestamp, u64, u64)>,
) -> Vec<UsageRow> {
    let mut sums: BTreeMap<Timestamp, Bytes> = BTreeMap::new();
    for (hour, up, down) in rows {
        sums.entry(bucket(hour, DAY_MS)).or_default().add(up, down);
    }
    sums.into_iter()
        .map(|(day, b)| UsageRow {
            day: Some(day),
            node: Some(node),
            up: b.up,
            down: b.down,
        })
        .collect()
}

/// Whether `used` bytes reach the plan's limit.
pub fn over_limit(plan: &Plan, used: u64) -> bool {
    plan.data_limit.is_some_and(|limit| used >= limit)
}

/// The block a plan puts on a user with `used` bytes at `now`: expired
/// first, then limited.
pub fn plan_block(plan: &Plan, used: u64, now: Timestamp) -> Option<BlockReason> {
    if plan.expire_at.is_some_and(|at| at <= now) {
        Some(BlockReason::Expired)
    } else if over_limit(plan, used) {
        Some(BlockReason::Limited)
    } else {
        None
    }
}

/// The block after a reset of the used bytes: a limit no longer holds.
pub fn block_after_reset(blocked: Option<BlockReason>) -> Option<BlockReason> {
    blocked.filter(|b| *b != BlockReason::Limited)
}

/// The plan once the user's first bytes arrive: a hold becomes an expiry
/// `hold` seconds from `now`.
pub fn start_hold(plan: &Plan, now: Timestamp) -> Plan {
    match plan.on_hold {
        Some(secs) => Plan {
            expire_at: Some(Timestamp(now.0.saturating_add(
                i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000),
            ))),
            on_hold: None,
            ..*plan
        },
        None => *plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::usage::{UsageBatch, UserUsage};

    #[test]
    fn a_page_is_summed_per_user_day_and_hour() {
        let (a, b) = (UserId::random(), UserId::random());
        let entry = |user, up, down| UserUsage { user, up, down };
        let batch = |seq, to, users| UsageBatch {
            first_seq: seq,
            seq,
            from: Timestamp(0),
            to: Timestamp(to),
            users,
        };
        let page = UsagePage {
            journal: "j".into(),
            batches: vec![
                batch(1, 10, vec![entry(a, 1, 3)]),
                batch(2, DAY_MS + 1, vec![entry(a, 2, 0), entry(b, 5, 5)]),
            ],
            more: false,
        };
        let sums = sum_page(&page, &UsageCursor::default(), 2.0);
        assert_eq!(sums.users[&a], Bytes { up: 6, down: 6 });
        assert_eq!(sums.user_days[&(a, Timestamp(0))], Bytes { up: 2, down: 6 });
        assert_eq!(
            sums.user_days[&(a, Timestamp(DAY_MS))],
            Bytes { up: 4, down: 0 }
        );
        assert_eq!(sums.node, Bytes { up: 8, down: 8 });
        assert_eq!(sums.node_hours.len(), 2);
        assert_eq!(sums.user_deltas, 3);
        let stored = UsageCursor {
            journal: Some("j".into()),
            seq: 1,
        };
        assert_eq!(sum_page(&page, &stored, 1.0).user_deltas, 2);
    }

    #[test]
    fn plans_block_expired_before_limited() {
        let now = Timestamp(1000);
        let plan = Plan {
            data_limit: Some(10),
            expire_at: Some(now),
            ..Plan::default()
        };
        assert_eq!(plan_block(&plan, 10, now), Some(BlockReason::Expired));
        let later = Plan {
            expire_at: Some(Timestamp(1001)),
            ..plan
        };
        assert_eq!(plan_block(&later, 10, now), Some(BlockReason::Limited));
        assert_eq!(plan_block(&later, 9, now), None);
        assert_eq!(block_after_reset(Some(BlockReason::Limited)), None);
        let hold = Plan {
            on_hold: Some(60),
            ..Plan::default()
        };
        let started = start_hold(&hold, now);
        assert_eq!(
            (started.expire_at, started.on_hold),
            (Some(Timestamp(61_000)), None)
        );
    }
}
