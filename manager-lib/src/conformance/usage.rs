//! The usage part of the `Storage` conformance suite: exactly-once ingest,
//! cursors, the multiplier, saturation and history (plans are in `plans`),
//! and the helpers both parts use.

use crate::domain::usage::{HOUR_MS, UsageBatch, UsageCursor, UsageGrouping, UsagePage, UserUsage};
use crate::domain::{NodeId, Operation, Plan, Timestamp, User, UserId, UserStatus};
use crate::storage::{Entity, Storage, StorageError};

use super::{assert_not_found, node, user};

/// Unix ms of a UTC midnight plus `hour` hours.
pub(super) fn utc(y: i32, m: u8, d: u8, hour: i64) -> Timestamp {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    let midnight = date.midnight().assume_utc().unix_timestamp() * 1000;
    Timestamp(midnight + hour * HOUR_MS)
}

pub(super) fn batch(seq: u64, to: Timestamp, users: &[(UserId, u64, u64)]) -> UsageBatch {
    UsageBatch {
        first_seq: seq,
        seq,
        from: Timestamp(to.0 - 5000),
        to,
        users: users
            .iter()
            .map(|&(user, up, down)| UserUsage { user, up, down })
            .collect(),
    }
}

pub(super) fn page(journal: &str, batches: Vec<UsageBatch>) -> UsagePage {
    UsagePage {
        journal: journal.into(),
        batches,
        more: false,
    }
}

pub(super) fn cursor(journal: &str, seq: u64) -> UsageCursor {
    UsageCursor {
        journal: Some(journal.into()),
        seq,
    }
}

pub(super) async fn used(s: &dyn Storage, id: UserId) -> (u64, u64) {
    let u = s.get_user(id).await.unwrap();
    (u.used_up, u.used_down)
}

pub(super) async fn enabled_user(s: &dyn Storage, name: &str) -> UserId {
    let id = user(s, name).await;
    s.set_user_status(id, UserStatus::Enabled).await.unwrap();
    id
}

pub(super) async fn plan(s: &dyn Storage, id: UserId, plan: Plan, now: Timestamp) -> User {
    s.edit_user_plan(id, plan.into(), now).await.unwrap()
}

pub(super) fn limit(bytes: u64) -> Plan {
    Plan {
        data_limit: Some(bytes),
        ..Plan::default()
    }
}

/// The one pending operation of `id` for the node, if any.
pub(super) async fn pending_for(s: &dyn Storage, node: NodeId, id: UserId) -> Option<Operation> {
    let batch = s.pending_operations(node, 10_000).await.unwrap();
    let ops: Vec<_> = batch
        .operations
        .iter()
        .filter(|op| op.user.id == id)
        .collect();
    assert!(ops.len() <= 1, "a user appears once: {ops:?}");
    ops.first().map(|op| op.operation)
}

pub async fn usage_page_applied_twice_counts_once(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.1:1").await;
    let u = user(s, "u").await;
    let ghost = UserId::random();
    let now = utc(2025, 3, 10, 12);
    let p = page(
        "j1",
        vec![
            batch(1, now, &[(u, 10, 100), (ghost, 7, 7)]),
            batch(2, now, &[(u, 1, 2)]),
        ],
    );
    let fresh = UsageCursor::default();
    let first = s.ingest_usage(n.id, &fresh, &p, now).await.unwrap();
    assert!(first.stored);
    assert_eq!(first.cursor, cursor("j1", 2));
    assert_eq!(first.user_deltas, 3);
    assert_eq!(used(s, u).await, (11, 102));
    // The same page with the same cursor: another replica's pull, too late.
    let again = s.ingest_usage(n.id, &fresh, &p, now).await.unwrap();
    assert!(!again.stored);
    assert_eq!(again.cursor, cursor("j1", 2));
    // A pull that answered the same batches again, with the stored cursor.
    let repeat = s.ingest_usage(n.id, &first.cursor, &p, now).await.unwrap();
    assert!(repeat.stored);
    assert_eq!(repeat.user_deltas, 0);
    assert_eq!(used(s, u).await, (11, 102));
    let stored = s.get_node(n.id).await.unwrap();
    assert_eq!(stored.usage_cursor, cursor("j1", 2));
    assert_eq!((stored.used_up, stored.used_down), (18, 109));
    assert_not_found(
        s.ingest_usage(NodeId::random(), &fresh, &p, now).await,
        Entity::Node,
    );
}

pub async fn usage_cursors_move_forward_only(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.2:1").await;
    let u = user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let p = page(
        "j",
        vec![batch(1, now, &[(u, 1, 1)]), batch(2, now, &[(u, 1, 1)])],
    );
    s.ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    // A stale cursor (an older pull) writes nothing, even with new batches.
    let late = page(
        "j",
        vec![batch(2, now, &[(u, 5, 5)]), batch(3, now, &[(u, 5, 5)])],
    );
    let stale = s
        .ingest_usage(n.id, &cursor("j", 1), &late, now)
        .await
        .unwrap();
    assert!(!stale.stored);
    assert_eq!(stale.cursor, cursor("j", 2));
    assert_eq!(used(s, u).await, (2, 2));
    // The right cursor takes only batch 3.
    let next = s
        .ingest_usage(n.id, &cursor("j", 2), &late, now)
        .await
        .unwrap();
    assert!(next.stored);
    assert_eq!(next.cursor, cursor("j", 3));
    assert_eq!(used(s, u).await, (7, 7));
    // An empty page keeps the cursor where it is.
    let empty = s
        .ingest_usage(n.id, &cursor("j", 3), &page("j", vec![]), now)
        .await
        .unwrap();
    assert_eq!(empty.cursor, cursor("j", 3));
    assert_eq!(s.get_node(n.id).await.unwrap().usage_cursor, cursor("j", 3));
}

pub async fn usage_journal_change_restarts_from_seq_zero(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.3:1").await;
    let u = user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let old = page(
        "old",
        (1..=5).map(|i| batch(i, now, &[(u, 1, 0)])).collect(),
    );
    s.ingest_usage(n.id, &UsageCursor::default(), &old, now)
        .await
        .unwrap();
    // The node's state dir was wiped: a new journal starts at 1 again.
    let new = page("new", vec![batch(1, now, &[(u, 100, 0)])]);
    let out = s
        .ingest_usage(n.id, &cursor("old", 5), &new, now)
        .await
        .unwrap();
    assert!(out.stored);
    assert_eq!(out.cursor, cursor("new", 1));
    assert_eq!(used(s, u).await, (105, 0));
}

pub async fn usage_multiplier_is_applied_to_users_only(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.4:1").await;
    assert_eq!(n.traffic_multiplier, 1.0);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            s.set_node_multiplier(n.id, bad).await,
            Err(StorageError::Invalid(_))
        ));
    }
    assert_eq!(s.get_node(n.id).await.unwrap().traffic_multiplier, 1.0);
    assert_eq!(
        s.set_node_multiplier(n.id, 1.5)
            .await
            .unwrap()
            .traffic_multiplier,
        1.5
    );
    assert_not_found(
        s.set_node_multiplier(NodeId::random(), 2.0).await,
        Entity::Node,
    );
    let u = user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let p = page("j", vec![batch(1, now, &[(u, 1000, 3)])]);
    s.ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    // 3 × 1.5 = 4.5 rounds to 5 (half away from zero).
    assert_eq!(used(s, u).await, (1500, 5));
    let stored = s.get_node(n.id).await.unwrap();
    assert_eq!((stored.used_up, stored.used_down), (1000, 3));
}

pub async fn usage_totals_saturate_near_the_limit(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.9:1").await;
    let u = user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let max = i64::MAX as u64;
    let p = page(
        "j",
        vec![
            batch(1, now, &[(u, u64::MAX, max - 1)]),
            batch(2, now, &[(u, 1, 5)]),
        ],
    );
    s.ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    assert_eq!(used(s, u).await, (max, max));
    let more = page("j", vec![batch(3, now, &[(u, max, max)])]);
    s.ingest_usage(n.id, &cursor("j", 2), &more, now)
        .await
        .unwrap();
    assert_eq!(used(s, u).await, (max, max));
    let stored = s.get_node(n.id).await.unwrap();
    assert_eq!((stored.used_up, stored.used_down), (max, max));
    let day = s
        .user_usage(
            u,
            utc(2025, 3, 10, 0),
            utc(2025, 3, 11, 0),
            UsageGrouping::Day,
        )
        .await
        .unwrap();
    assert_eq!((day[0].up, day[0].down), (max, max));
}

pub async fn usage_history_by_day_node_and_hour_and_purge(s: &dyn Storage) {
    let a = node(s, "http://10.9.1.1:1").await;
    let b = node(s, "http://10.9.1.2:1").await;
    let u = user(s, "u").await;
    let day1 = utc(2025, 3, 10, 0);
    let day2 = utc(2025, 3, 11, 0);
    s.set_node_multiplier(b.id, 2.0).await.unwrap();
    let on_a = page(
        "ja",
        vec![
            batch(1, Timestamp(day1.0 + 2 * HOUR_MS + 1), &[(u, 1, 10)]),
            batch(2, Timestamp(day2.0 + 3 * HOUR_MS), &[(u, 2, 20)]),
        ],
    );
    s.ingest_usage(a.id, &UsageCursor::default(), &on_a, day2)
        .await
        .unwrap();
    let on_b = page("jb", vec![batch(1, Timestamp(day2.0 + 1), &[(u, 4, 40)])]);
    s.ingest_usage(b.id, &UsageCursor::default(), &on_b, day2)
        .await
        .unwrap();
    let end = utc(2025, 3, 12, 0);
    let by_day = s
        .user_usage(u, day1, end, UsageGrouping::Day)
        .await
        .unwrap();
    let by_day: Vec<_> = by_day
        .iter()
        .map(|r| (r.day, r.node, r.up, r.down))
        .collect();
    assert_eq!(
        by_day,
        [(Some(day1), None, 1, 10), (Some(day2), None, 10, 100)]
    );
    let by_node = s
        .user_usage(u, day1, end, UsageGrouping::Node)
        .await
        .unwrap();
    let by_node: Vec<_> = by_node
        .iter()
        .map(|r| (r.day, r.node, r.up, r.down))
        .collect();
    let mut expected = vec![(None, Some(a.id), 3, 30), (None, Some(b.id), 8, 80)];
    expected.sort_by_key(|r| r.1);
    assert_eq!(by_node, expected);
    // A range holding day 2 only.
    let only2 = s
        .user_usage(u, day2, end, UsageGrouping::Day)
        .await
        .unwrap();
    assert_eq!(only2.len(), 1);
    assert_not_found(
        s.user_usage(UserId::random(), day1, end, UsageGrouping::Day)
            .await,
        Entity::User,
    );
    // Per node, raw bytes, by hour.
    let nodes = s.node_usage(day1, end).await.unwrap();
    let nodes: Vec<_> = nodes.iter().map(|r| (r.node, r.up, r.down)).collect();
    let mut expected = vec![(a.id, 3, 30), (b.id, 4, 40)];
    expected.sort_by_key(|r| r.0);
    assert_eq!(nodes, expected);
    let hour = s
        .node_usage(
            Timestamp(day1.0 + 2 * HOUR_MS),
            Timestamp(day1.0 + 3 * HOUR_MS),
        )
        .await
        .unwrap();
    assert_eq!(hour.len(), 1);
    assert_eq!((hour[0].node, hour[0].up), (a.id, 1));
    // One node's raw bytes per day (its chart), days in order.
    let days = |rows: Vec<crate::domain::usage::UsageRow>| -> Vec<_> {
        rows.iter().map(|r| (r.day, r.node, r.up, r.down)).collect()
    };
    assert_eq!(
        days(s.node_usage_by_day(a.id, day1, end).await.unwrap()),
        [
            (Some(day1), Some(a.id), 1, 10),
            (Some(day2), Some(a.id), 2, 20)
        ]
    );
    assert_eq!(
        days(s.node_usage_by_day(b.id, day1, end).await.unwrap()),
        [(Some(day2), Some(b.id), 4, 40)],
        "raw bytes, before the multiplier"
    );
    assert_eq!(
        days(s.node_usage_by_day(a.id, day2, end).await.unwrap()),
        [(Some(day2), Some(a.id), 2, 20)]
    );
    assert_eq!(s.node_usage_by_day(a.id, end, day1).await.unwrap(), []);
    assert_eq!(
        s.node_usage_by_day(NodeId::random(), day1, end)
            .await
            .unwrap(),
        []
    );
    // Purge: user days before day 2 (one row), node hours before day 2 (one).
    assert_eq!(s.purge_usage_history(day2, day2).await.unwrap(), 2);
    assert_eq!(
        s.user_usage(u, day1, end, UsageGrouping::Day)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.node_usage(day1, day2).await.unwrap(), []);
    assert_eq!(s.purge_usage_history(day2, day2).await.unwrap(), 0);
    // Totals are not history.
    assert_eq!(used(s, u).await, (11, 110));
}

pub async fn concurrent_ingests_store_a_page_once_and_block_once(s: &dyn Storage) {
    let a = node(s, "http://10.9.3.1:1").await;
    let b = node(s, "http://10.9.3.2:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(100), now).await;
    let seq = s.fleet_state().await.unwrap().last_seq;
    // The same page pulled by eight replicas at once, for each node: each
    // node's page is stored once; the user crosses the limit once.
    let page = page("j", vec![batch(1, now, &[(u, 60, 0)])]);
    let fresh = UsageCursor::default();
    let calls = (0..8).flat_map(|_| [a.id, b.id]).map(|n| {
        let (page, fresh) = (&page, &fresh);
        async move { s.ingest_usage(n, fresh, page, now).await.unwrap() }
    });
    let outcomes = futures::future::join_all(calls).await;
    assert_eq!(outcomes.iter().filter(|o| o.stored).count(), 2);
    let blocked: Vec<_> = outcomes.iter().flat_map(|o| &o.newly_blocked).collect();
    assert_eq!(blocked, [&u]);
    assert_eq!(used(s, u).await, (120, 0));
    assert_eq!(s.fleet_state().await.unwrap().last_seq, seq + 1);
    for n in [a.id, b.id] {
        assert_eq!(s.get_node(n).await.unwrap().usage_cursor, cursor("j", 1));
    }
}

pub async fn usage_of_deleted_or_unknown_users_is_not_kept(s: &dyn Storage) {
    let n = node(s, "http://10.9.3.1:1").await;
    let kept = user(s, "kept").await;
    let gone = user(s, "gone").await;
    s.delete_user(gone).await.unwrap();
    let unknown = UserId::random();
    let now = utc(2025, 3, 10, 12);
    let p = page(
        "j",
        vec![batch(
            1,
            now,
            &[(kept, 10, 20), (gone, 100, 200), (unknown, 1000, 2000)],
        )],
    );
    let outcome = s
        .ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    assert!(outcome.stored);
    assert_eq!(used(s, kept).await, (10, 20));
    // The node's raw totals count every byte its core reported.
    let stored = s.get_node(n.id).await.unwrap();
    assert_eq!((stored.used_up, stored.used_down), (1110, 2220));
    // History: the live user's day and the node's hour, nothing else.
    let purged = s
        .purge_usage_history(Timestamp(i64::MAX), Timestamp(i64::MAX))
        .await
        .unwrap();
    assert_eq!(purged, 2);
}

pub async fn usage_limits_near_the_top_compare_without_overflow(s: &dyn Storage) {
    let n = node(s, "http://10.9.3.2:1").await;
    let u = enabled_user(s, "huge").await;
    let max = i64::MAX as u64;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(max - 10), now).await;
    // Up and down each below the limit, their sum past i64 (2^62 each:
    // exact through the multiplier's f64).
    let half = 1u64 << 62;
    let p = page("j", vec![batch(1, now, &[(u, half, half)])]);
    let outcome = s
        .ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    assert_eq!(outcome.newly_blocked, vec![u]);
    let again = page("j", vec![batch(2, now, &[(u, 1, 1)])]);
    let outcome = s
        .ingest_usage(n.id, &cursor("j", 1), &again, now)
        .await
        .unwrap();
    assert!(outcome.newly_blocked.is_empty(), "blocked once");
    assert_eq!(used(s, u).await, (half + 1, half + 1));
}
