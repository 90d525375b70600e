//! The plans part of the `Storage` conformance suite: limits that block and
//! unblock users, invalid plans, expiry through `enforce_time`, holds,
//! resets at period boundaries, and blocked users left off starts and counts.

use crate::domain::usage::{DAY_MS, UsageCursor};
use crate::domain::{
    BlockReason, FieldEdit, NewUser, Operation, Plan, PlanEdit, ResetEdit, ResetStrategy,
    Timestamp, UserId, UserState, UserStatus,
};
use crate::storage::{Entity, Storage, StorageError};

use super::usage::{batch, enabled_user, limit, page, pending_for, plan, used, utc};
use super::{assert_not_found, drain, node, running_node, user, user_node_ids};

pub async fn usage_limit_crossed_blocks_once_and_raising_it_unblocks(s: &dyn Storage) {
    let n = running_node(s, "http://10.9.0.5:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(1000), now).await;
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, u).await, [n.id]);
    let fleet = s.fleet_state().await.unwrap();
    let p = page(
        "j",
        vec![batch(1, now, &[(u, 600, 0)]), batch(2, now, &[(u, 0, 400)])],
    );
    let out = s
        .ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    assert_eq!(out.newly_blocked, [u]);
    let blocked = s.get_user(u).await.unwrap();
    assert_eq!(blocked.blocked, Some(BlockReason::Limited));
    assert_eq!(blocked.state(), UserState::Limited);
    assert_eq!(blocked.status, UserStatus::Enabled);
    assert!(user_node_ids(s, u).await.is_empty());
    let after = s.fleet_state().await.unwrap();
    assert_eq!(after.last_seq, fleet.last_seq + 1, "one change");
    assert_eq!(after.enabled_users, fleet.enabled_users - 1);
    assert_eq!(pending_for(s, n.id, u).await, Some(Operation::Delete));
    // More bytes while blocked: counted, no second change.
    let more = page("j", vec![batch(3, now, &[(u, 50, 0)])]);
    let out = s.ingest_usage(n.id, &out.cursor, &more, now).await.unwrap();
    assert!(out.newly_blocked.is_empty());
    assert_eq!(s.fleet_state().await.unwrap().last_seq, after.last_seq);
    assert_eq!(used(s, u).await, (650, 400));
    // Setting the same limit again changes nothing.
    plan(s, u, limit(1000), now).await;
    assert_eq!(s.fleet_state().await.unwrap().last_seq, after.last_seq);
    // A raised limit brings the user back.
    let back = plan(s, u, limit(10_000), now).await;
    assert_eq!(back.blocked, None);
    assert_eq!(back.state(), UserState::Active);
    assert_eq!(pending_for(s, n.id, u).await, Some(Operation::Add));
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, u).await, [n.id]);
    assert_eq!(
        s.fleet_state().await.unwrap().enabled_users,
        fleet.enabled_users
    );
    // Blocked again by a lowered limit, then back by a reset.
    assert_eq!(
        plan(s, u, limit(1000), now).await.blocked,
        Some(BlockReason::Limited)
    );
    let reset = s.reset_user_usage(u, now).await.unwrap();
    assert_eq!(
        (reset.used_up, reset.used_down, reset.blocked),
        (0, 0, None)
    );
    assert_eq!(reset.last_reset_at, Some(now));
    assert_eq!(pending_for(s, n.id, u).await, Some(Operation::Add));
    assert_not_found(
        s.reset_user_usage(UserId::random(), now).await,
        Entity::User,
    );
}

pub async fn invalid_plans_are_refused_and_change_nothing(s: &dyn Storage) {
    let u = user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let before = s.get_user(u).await.unwrap();
    for bad in [
        limit(0),
        Plan {
            reset: ResetStrategy::Month { day: 31 },
            ..Plan::default()
        },
        Plan {
            on_hold: Some(60),
            expire_at: Some(now),
            ..Plan::default()
        },
    ] {
        assert!(matches!(
            s.edit_user_plan(u, bad.into(), now).await,
            Err(StorageError::Invalid(_))
        ));
    }
    assert_eq!(s.get_user(u).await.unwrap(), before);
    assert_not_found(
        s.edit_user_plan(UserId::random(), limit(5).into(), now)
            .await,
        Entity::User,
    );
    let bad_new = NewUser {
        plan: limit(0),
        ..NewUser::new("bad").unwrap()
    };
    let id = bad_new.id;
    assert!(matches!(
        s.create_user(bad_new).await,
        Err(StorageError::Invalid(_))
    ));
    assert_not_found(s.get_user(id).await, Entity::User);
    // A plan given at creation is kept.
    let planned = NewUser {
        plan: limit(77),
        ..NewUser::new("planned").unwrap()
    };
    let created = s.create_user(planned).await.unwrap();
    assert_eq!(created.plan, limit(77));
    assert_eq!(s.get_user(created.id).await.unwrap().plan, limit(77));
}

pub async fn expiry_blocks_through_enforce_time_and_extending_unblocks(s: &dyn Storage) {
    let n = running_node(s, "http://10.9.0.6:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let until = Timestamp(now.0 + 60_000);
    let expiring = Plan {
        expire_at: Some(until),
        ..Plan::default()
    };
    plan(s, u, expiring, now).await;
    drain(s, n.id).await;
    let seq = s.fleet_state().await.unwrap().last_seq;
    assert_eq!(
        s.enforce_time(now).await.unwrap().expired,
        Vec::<UserId>::new()
    );
    assert_eq!(s.fleet_state().await.unwrap().last_seq, seq);
    let out = s.enforce_time(until).await.unwrap();
    assert_eq!(out.expired, [u]);
    let expired = s.get_user(u).await.unwrap();
    assert_eq!(expired.state(), UserState::Expired);
    assert!(user_node_ids(s, u).await.is_empty());
    assert_eq!(pending_for(s, n.id, u).await, Some(Operation::Delete));
    assert_eq!(s.fleet_state().await.unwrap().last_seq, seq + 1);
    // Once only.
    assert!(s.enforce_time(until).await.unwrap().expired.is_empty());
    assert_eq!(s.fleet_state().await.unwrap().last_seq, seq + 1);
    // Extended into the future: back on the nodes.
    let later = Plan {
        expire_at: Some(Timestamp(until.0 + DAY_MS)),
        ..Plan::default()
    };
    assert_eq!(plan(s, u, later, until).await.blocked, None);
    assert_eq!(pending_for(s, n.id, u).await, Some(Operation::Add));
    // A plan set with a past expiry blocks at once.
    let past = Plan {
        expire_at: Some(now),
        ..Plan::default()
    };
    assert_eq!(
        plan(s, u, past, until).await.blocked,
        Some(BlockReason::Expired)
    );
}

pub async fn on_hold_starts_the_expiry_at_the_first_byte(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.7:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let hold = Plan {
        on_hold: Some(3600),
        ..Plan::default()
    };
    let held = plan(s, u, hold, now).await;
    assert_eq!(held.state(), UserState::OnHold);
    assert!(held.on_nodes());
    let first = Timestamp(now.0 + 5000);
    let p = page("j", vec![batch(1, first, &[(u, 1, 0)])]);
    s.ingest_usage(n.id, &UsageCursor::default(), &p, first)
        .await
        .unwrap();
    let started = s.get_user(u).await.unwrap();
    assert_eq!(started.plan.on_hold, None);
    assert_eq!(started.plan.expire_at, Some(Timestamp(first.0 + 3_600_000)));
    assert_eq!(started.state(), UserState::Active);
}

pub async fn resets_happen_at_period_boundaries(s: &dyn Storage) {
    let n = node(s, "http://10.9.0.8:1").await;
    // Wednesday 28 February 2024, 13:00 UTC (a leap year).
    let now = utc(2024, 2, 28, 13);
    let cases = [
        (ResetStrategy::Day, utc(2024, 2, 29, 0), utc(2024, 3, 1, 0)),
        (ResetStrategy::Week, utc(2024, 3, 4, 0), utc(2024, 3, 11, 0)),
        (
            ResetStrategy::Month { day: 28 },
            utc(2024, 3, 28, 0),
            utc(2024, 4, 28, 0),
        ),
        (ResetStrategy::Year, utc(2025, 1, 1, 0), utc(2026, 1, 1, 0)),
    ];
    let mut users = Vec::new();
    for (i, (reset, first, _)) in cases.iter().enumerate() {
        let u = enabled_user(s, &format!("u{i}")).await;
        let p = Plan {
            data_limit: Some(10),
            reset: *reset,
            ..Plan::default()
        };
        let set = plan(s, u, p, now).await;
        assert_eq!(set.next_reset_at, Some(*first), "{reset:?}");
        users.push(u);
    }
    let none = enabled_user(s, "never").await;
    assert_eq!(plan(s, none, limit(10), now).await.next_reset_at, None);
    // Reset daily but under its limit: reset, never unblocked.
    let under = enabled_user(s, "under").await;
    let daily = Plan {
        data_limit: Some(1000),
        reset: ResetStrategy::Day,
        ..Plan::default()
    };
    plan(s, under, daily, now).await;
    // Everyone crosses the limit.
    let entries: Vec<_> = users.iter().chain([&none]).map(|u| (*u, 20, 0)).collect();
    let p = page("j", vec![batch(1, now, &entries)]);
    let out = s
        .ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    assert_eq!(out.newly_blocked.len(), 5);
    for ((reset, first, second), u) in cases.iter().zip(&users) {
        let before = Timestamp(first.0 - 1);
        assert!(
            !s.enforce_time(before).await.unwrap().reset.contains(u),
            "{reset:?} reset early"
        );
        let out = s.enforce_time(*first).await.unwrap();
        assert!(out.reset.contains(u), "{reset:?}");
        assert!(
            out.unblocked.contains(u),
            "{reset:?}: its limit no longer blocks it"
        );
        if *reset == ResetStrategy::Day {
            assert!(out.reset.contains(&under) && !out.unblocked.contains(&under));
        }
        let after = s.get_user(*u).await.unwrap();
        assert_eq!((after.used_up, after.used_down), (0, 0), "{reset:?}");
        assert_eq!(after.blocked, None, "{reset:?}");
        assert_eq!(after.last_reset_at, Some(*first));
        assert_eq!(after.next_reset_at, Some(*second), "{reset:?}");
        let again = s.enforce_time(*first).await.unwrap();
        assert!(!again.reset.contains(u) && !again.unblocked.contains(u));
    }
    // No strategy: still limited, never reset.
    let never = s.get_user(none).await.unwrap();
    assert_eq!(
        (never.used_up, never.blocked),
        (20, Some(BlockReason::Limited))
    );
}

pub async fn blocked_users_stay_off_starts_and_counts(s: &dyn Storage) {
    let u = enabled_user(s, "limited").await;
    let other = enabled_user(s, "other").await;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(1), now).await;
    let n = node(s, "http://10.9.2.1:1").await;
    let p = page("j", vec![batch(1, now, &[(u, 1, 0)])]);
    s.ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    s.set_required_status(n.id, crate::domain::RequiredStatus::Running)
        .await
        .unwrap();
    let start = s.begin_start(n.id).await.unwrap();
    let ids: Vec<_> = start.users.iter().map(|c| c.id).collect();
    assert_eq!(ids, [other]);
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 1);
    // Disabling and enabling a blocked user keeps it off the nodes.
    s.set_user_status(u, UserStatus::Disabled).await.unwrap();
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 1);
    let batch = s.changes_after(start.seq, 100).await.unwrap();
    let last = batch.operations.last().unwrap();
    assert_eq!((last.user.id, last.operation), (u, Operation::Delete));
    // Deleting it does not count it twice.
    s.delete_user(u).await.unwrap();
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 1);
}

pub async fn plan_edits_set_clear_and_leave_fields(s: &dyn Storage) {
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let day = |n: i64| Timestamp(now.0 + n * DAY_MS);
    let stored = Plan {
        data_limit: Some(1000),
        expire_at: Some(day(1)),
        reset: ResetStrategy::Month { day: 5 },
        on_hold: None,
    };
    plan(s, u, stored, now).await;
    let edit = PlanEdit {
        data_limit: FieldEdit::Clear,
        expire_at: FieldEdit::Set(day(2)),
        reset: ResetEdit::MonthDay(20),
        on_hold: FieldEdit::Leave,
    };
    let edited = s.edit_user_plan(u, edit, now).await.unwrap();
    let want = Plan {
        data_limit: None,
        expire_at: Some(day(2)),
        reset: ResetStrategy::Month { day: 20 },
        on_hold: None,
    };
    assert_eq!(edited.plan, want);
    assert_eq!(edited.next_reset_at, Some(utc(2025, 3, 20, 0)));
    assert_eq!(s.get_user(u).await.unwrap().plan, want);
    // One field set, the others left.
    let limit_only = PlanEdit {
        data_limit: FieldEdit::Set(50),
        ..PlanEdit::default()
    };
    let edited = s.edit_user_plan(u, limit_only, now).await.unwrap();
    assert_eq!(
        edited.plan,
        Plan {
            data_limit: Some(50),
            ..want
        }
    );
    // Refused on the merged plan (a hold next to the stored expiry, a day
    // the month lacks): nothing written, no change taken.
    let before = s.get_user(u).await.unwrap();
    let seq = s.fleet_state().await.unwrap().last_seq;
    for bad in [
        PlanEdit {
            on_hold: FieldEdit::Set(60),
            ..PlanEdit::default()
        },
        PlanEdit {
            data_limit: FieldEdit::Set(1),
            reset: ResetEdit::MonthDay(31),
            ..PlanEdit::default()
        },
        PlanEdit {
            data_limit: FieldEdit::Set(0),
            ..PlanEdit::default()
        },
    ] {
        assert!(
            matches!(
                s.edit_user_plan(u, bad, now).await,
                Err(StorageError::Invalid(_))
            ),
            "{bad:?} accepted"
        );
    }
    assert_eq!(s.get_user(u).await.unwrap(), before);
    assert_eq!(s.fleet_state().await.unwrap().last_seq, seq);
    // The same hold with the expiry cleared is a plan.
    let hold = PlanEdit {
        expire_at: FieldEdit::Clear,
        on_hold: FieldEdit::Set(60),
        ..PlanEdit::default()
    };
    let held = s.edit_user_plan(u, hold, now).await.unwrap();
    assert_eq!(held.state(), UserState::OnHold);
    assert_eq!(
        (held.plan.data_limit, held.plan.expire_at),
        (Some(50), None)
    );
    // A day alone keeps a period that is not monthly.
    plan(
        s,
        u,
        Plan {
            reset: ResetStrategy::Week,
            ..Plan::default()
        },
        now,
    )
    .await;
    let day_only = PlanEdit {
        reset: ResetEdit::MonthDay(9),
        ..PlanEdit::default()
    };
    let weekly = s.edit_user_plan(u, day_only, now).await.unwrap();
    assert_eq!(weekly.plan.reset, ResetStrategy::Week);
    assert_not_found(
        s.edit_user_plan(UserId::random(), limit_only, now).await,
        Entity::User,
    );
}

pub async fn concurrent_edits_of_different_fields_both_land(s: &dyn Storage) {
    const ROUNDS: u64 = 60;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let expiry = |i: u64| Timestamp(now.0 + DAY_MS + i as i64);
    // Each side owns one field: after its own edit that field must read as
    // it set it, whatever the other side's edits of the other field did
    // meanwhile. A read-modify-write across two transactions loses some.
    let limits = async {
        let mut lost = 0;
        for i in 1..=ROUNDS {
            let edit = PlanEdit {
                data_limit: FieldEdit::Set(1000 + i),
                ..PlanEdit::default()
            };
            s.edit_user_plan(u, edit, now).await.unwrap();
            if s.get_user(u).await.unwrap().plan.data_limit != Some(1000 + i) {
                lost += 1;
            }
        }
        lost
    };
    let expiries = async {
        let mut lost = 0;
        for i in 1..=ROUNDS {
            let edit = PlanEdit {
                expire_at: FieldEdit::Set(expiry(i)),
                ..PlanEdit::default()
            };
            s.edit_user_plan(u, edit, now).await.unwrap();
            if s.get_user(u).await.unwrap().plan.expire_at != Some(expiry(i)) {
                lost += 1;
            }
        }
        lost
    };
    let (lost_limits, lost_expiries) = tokio::join!(limits, expiries);
    assert_eq!(
        (lost_limits, lost_expiries),
        (0, 0),
        "edits lost (limit, expiry)"
    );
    let last = s.get_user(u).await.unwrap().plan;
    assert_eq!(last.data_limit, Some(1000 + ROUNDS));
    assert_eq!(last.expire_at, Some(expiry(ROUNDS)));
}
