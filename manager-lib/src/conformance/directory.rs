//! The user directory part of the `Storage` conformance suite: every
//! search, filter and order, walked a small page at a time, gives exactly
//! the users the rule gives, in order, each once.

use crate::domain::{
    Plan, StateCounts, Timestamp, User, UserId, UserQuery, UserSort, UserState, UserStatus,
};
use crate::storage::{Storage, StorageError};

use super::usage::{batch, limit, page, plan};
use super::{node, user};

const NAMES: &[&str] = &[
    "alice",
    "alice",
    "alicia",
    "Al",
    "al",
    "al\u{10FFFF}z",
    "ałb",
    "bob",
    "Ålborg",
    "<script>alert(1)</script>",
    "zed",
    "émile",
    "100% _x",
    "bo",
];

/// Every live user, read back.
async fn everyone(s: &dyn Storage, ids: &[UserId]) -> Vec<User> {
    let mut users = Vec::new();
    for id in ids {
        if let Ok(u) = s.get_user(*id).await {
            users.push(u);
        }
    }
    users
}

/// What the query must answer, by the rule written out plainly.
fn expected(users: &[User], q: &UserQuery) -> Vec<UserId> {
    let mut found: Vec<&User> = users.iter().filter(|u| q.matches(u)).collect();
    found.sort_by(|a, b| {
        let order = match q.sort {
            UserSort::Name => a.name.as_bytes().cmp(b.name.as_bytes()),
            UserSort::Created => a.created_at.cmp(&b.created_at),
            UserSort::Usage => {
                let key = |u: &User| u.used().min(i64::MAX as u64);
                key(a).cmp(&key(b))
            }
        }
        .then(a.id.as_uuid().cmp(&b.id.as_uuid()));
        if q.descending { order.reverse() } else { order }
    });
    found.iter().map(|u| u.id).collect()
}

/// Walks every page of `q` (limit `per_page`); the ids in order.
async fn walk(s: &dyn Storage, q: &UserQuery, per_page: u32) -> Vec<UserId> {
    let mut q = UserQuery {
        limit: per_page,
        ..q.clone()
    };
    let mut got = Vec::new();
    for _ in 0..1000 {
        let page = s.find_users(&q).await.expect("find users");
        assert!(page.items.len() <= per_page as usize);
        got.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return got,
        }
    }
    panic!("paging did not end: {q:?}");
}

pub async fn user_directory_search_filters_orders_and_pages_by_key(s: &dyn Storage) {
    let now = Timestamp::now();
    let n = node(s, "http://dir-node:1").await;
    let mut ids = Vec::new();
    for name in NAMES {
        ids.push(user(s, name).await);
    }
    // States: most enabled; one limited, one expired, one on hold, two
    // disabled, one deleted; usage varied, one at the top.
    for id in &ids[..11] {
        s.set_user_status(*id, UserStatus::Enabled).await.unwrap();
    }
    plan(s, ids[0], limit(100), now).await;
    let expired = Plan {
        expire_at: Some(Timestamp(now.0 - 60_000)),
        ..Plan::default()
    };
    plan(s, ids[2], expired, now).await;
    let hold = Plan {
        on_hold: Some(3600),
        ..Plan::default()
    };
    plan(s, ids[3], hold, now).await;
    let usage: Vec<(UserId, u64, u64)> = vec![
        (ids[0], 150, 0),
        (ids[1], 10, 5),
        (ids[4], 7, 8),
        (ids[5], u64::MAX / 2, u64::MAX / 2),
        (ids[7], 1, 0),
    ];
    s.ingest_usage(
        n.id,
        &Default::default(),
        &page("dir", vec![batch(1, now, &usage)]),
        now,
    )
    .await
    .unwrap();
    s.delete_user(ids[13]).await.unwrap();
    let users = everyone(s, &ids).await;
    assert_eq!(users.len(), NAMES.len() - 1, "the deleted one is gone");
    for state in [
        UserState::Active,
        UserState::Limited,
        UserState::Expired,
        UserState::OnHold,
        UserState::Disabled,
    ] {
        assert!(
            users.iter().any(|u| u.state() == state),
            "the fixture has a {state:?} user"
        );
    }
    let id_prefix = ids[7].to_string()[..6].to_uppercase();
    let searches: Vec<Option<String>> = vec![
        None,
        Some("al".into()),
        Some("ali".into()),
        Some("al\u{10FFFF}".into()),
        Some("<script>".into()),
        Some("100% _".into()),
        Some("nobody".into()),
        Some("  bo ".into()),
        Some(id_prefix),
        Some(ids[9].to_string()),
    ];
    let mut checked = 0;
    for search in &searches {
        for status in [None, Some(UserStatus::Enabled), Some(UserStatus::Disabled)] {
            for state in [
                None,
                Some(UserState::Active),
                Some(UserState::Limited),
                Some(UserState::Expired),
                Some(UserState::OnHold),
                Some(UserState::Disabled),
            ] {
                for sort in UserSort::ALL {
                    for descending in [false, true] {
                        let q = UserQuery {
                            search: search.clone(),
                            status,
                            state,
                            sort,
                            descending,
                            after: None,
                            limit: 0,
                        };
                        let want = expected(&users, &q);
                        assert_eq!(walk(s, &q, 3).await, want, "{q:?}");
                        checked += usize::from(!want.is_empty());
                    }
                }
            }
        }
    }
    assert!(checked > 100, "most queries find someone: {checked}");
    // One page of everything, the whole table at once.
    let all = UserQuery {
        limit: 1000,
        ..UserQuery::default()
    };
    let one = s.find_users(&all).await.unwrap();
    assert_eq!(one.items.len(), users.len());
    assert_eq!(one.next, None);
}

pub async fn user_directory_refuses_a_foreign_cursor(s: &dyn Storage) {
    for name in ["a", "b", "c"] {
        user(s, name).await;
    }
    let by_name = UserQuery {
        limit: 1,
        ..UserQuery::default()
    };
    let next = s.find_users(&by_name).await.unwrap().next.unwrap();
    let by_usage = UserQuery {
        sort: UserSort::Usage,
        after: Some(next),
        ..by_name.clone()
    };
    assert!(matches!(
        s.find_users(&by_usage).await,
        Err(StorageError::Invalid(_))
    ));
    for garbage in ["", "x", "t!!.nope", "i1.6f1c7f3e"] {
        let q = UserQuery {
            after: Some(garbage.into()),
            ..by_name.clone()
        };
        assert!(
            matches!(s.find_users(&q).await, Err(StorageError::Invalid(_))),
            "{garbage:?}"
        );
    }
}

/// The counts by state, as the users themselves say.
async fn counted(s: &dyn Storage, ids: &[UserId]) -> StateCounts {
    let mut counts = StateCounts::default();
    for u in everyone(s, ids).await {
        *counts.of_mut(u.state()) += 1;
    }
    counts
}

pub async fn users_by_state_count_every_live_user_once(s: &dyn Storage) {
    let now = Timestamp::now();
    let n = node(s, "http://states-node:1").await;
    assert_eq!(
        s.count_users_by_state().await.unwrap(),
        StateCounts::default()
    );
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(user(s, &format!("state-{i}")).await);
    }
    let all_disabled = s.count_users_by_state().await.unwrap();
    assert_eq!(all_disabled.disabled, 8);
    assert_eq!(all_disabled.total(), 8);
    for id in &ids[..6] {
        s.set_user_status(*id, UserStatus::Enabled).await.unwrap();
    }
    plan(s, ids[0], limit(100), now).await;
    let expired = Plan {
        expire_at: Some(Timestamp(now.0 - 60_000)),
        ..Plan::default()
    };
    plan(s, ids[1], expired, now).await;
    let hold = Plan {
        on_hold: Some(3600),
        ..Plan::default()
    };
    plan(s, ids[2], hold, now).await;
    plan(s, ids[3], hold, now).await;
    let want = counted(s, &ids).await;
    assert_eq!(
        (
            want.active,
            want.limited,
            want.expired,
            want.on_hold,
            want.disabled
        ),
        (3, 0, 1, 2, 2),
        "the fixture's states"
    );
    assert_eq!(s.count_users_by_state().await.unwrap(), want);
    // Usage: one crosses its limit, one on hold starts; bytes that change
    // no state change no count.
    let usage = [(ids[0], 150, 0), (ids[2], 1, 0), (ids[4], 5, 5)];
    s.ingest_usage(
        n.id,
        &Default::default(),
        &page("states", vec![batch(1, now, &usage)]),
        now,
    )
    .await
    .unwrap();
    let want = counted(s, &ids).await;
    assert_eq!((want.limited, want.on_hold, want.active), (1, 1, 3));
    assert_eq!(s.count_users_by_state().await.unwrap(), want);
    // Disabling a blocked user, deleting one of each kind.
    s.set_user_status(ids[0], UserStatus::Disabled)
        .await
        .unwrap();
    s.delete_user(ids[1]).await.unwrap();
    s.delete_user(ids[7]).await.unwrap();
    s.delete_user(ids[4]).await.unwrap();
    let want = counted(s, &ids).await;
    assert_eq!(want.total(), 5);
    assert_eq!(s.count_users_by_state().await.unwrap(), want);
    // A refused change counts nothing.
    assert!(
        s.set_user_status(ids[1], UserStatus::Enabled)
            .await
            .is_err()
    );
    assert_eq!(s.count_users_by_state().await.unwrap(), want);
}
