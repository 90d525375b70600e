//! Migration 0014 (users' used bytes in a table of their own) on a database
//! that already counted usage: the totals are carried over, the usage order
//! reads them, and ingest and resets go on from them.

mod common;

use common::url_in;
use manager_lib::domain::usage::{UsageBatch, UsageCursor, UsagePage, UserUsage};
use manager_lib::domain::{NewNode, Timestamp, UserId, UserQuery, UserSort};
use manager_lib::storage::{Storage, StorageError, UserDirectory};
use storage_sqlite::SqliteStorage;

/// Every migration before 0014, run on a fresh file at `url`.
async fn migrate_before_totals(dir: &tempfile::TempDir, url: &str) -> sqlx::SqlitePool {
    let older = dir.path().join("migrations");
    std::fs::create_dir_all(&older).unwrap();
    let all = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0014" {
            std::fs::copy(&path, older.join(&name)).unwrap();
        }
    }
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

#[tokio::test]
async fn totals_counted_before_the_totals_table_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?mode=rwc", url_in(&dir));
    let pool = migrate_before_totals(&dir, &url).await;
    // Three live users with usage (one near the top of i64) and a deleted one.
    let (a, b, c, gone) = (
        UserId::random(),
        UserId::random(),
        UserId::random(),
        UserId::random(),
    );
    let max = i64::MAX;
    for (id, up, down, deleted) in [
        (a, 300, 700, 0),
        (b, 5, 0, 0),
        (c, max - 1, 1, 0),
        (gone, 9, 9, 1),
    ] {
        sqlx::query(
            "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at, \
                 used_up, used_down, subscription_key) \
             VALUES (?1, ?1, 'Disabled', 's', 0, ?4, 0, ?2, ?3, lower(hex(randomblob(16))))",
        )
        .bind(id.to_string())
        .bind(up)
        .bind(down)
        .bind(deleted)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let s = SqliteStorage::connect(&url_in(&dir)).await.unwrap();
    let used = |u: manager_lib::domain::User| (u.used_up, u.used_down);
    assert_eq!(used(s.get_user(a).await.unwrap()), (300, 700));
    assert_eq!(used(s.get_user(b).await.unwrap()), (5, 0));
    assert_eq!(used(s.get_user(c).await.unwrap()), (max as u64 - 1, 1));
    assert!(matches!(
        s.get_user(gone).await,
        Err(StorageError::NotFound(_))
    ));

    // The usage order reads the carried-over totals, deleted users left out.
    let by_usage = |descending| UserQuery {
        sort: UserSort::Usage,
        descending,
        limit: 10,
        ..UserQuery::default()
    };
    let ids = |page: manager_lib::domain::Page<manager_lib::domain::User>| {
        page.items.iter().map(|u| u.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.find_users(&by_usage(false)).await.unwrap()),
        [b, a, c]
    );

    // Ingest adds to the kept totals (saturating), and the order follows.
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let now = Timestamp::now();
    let entry = |user, up, down| UserUsage { user, up, down };
    let page = UsagePage {
        journal: "j".into(),
        batches: vec![UsageBatch {
            first_seq: 1,
            seq: 1,
            from: now,
            to: now,
            users: vec![entry(a, 1, 1), entry(b, 2000, 0), entry(c, 10, 10)],
        }],
        more: false,
    };
    let out = s
        .ingest_usage(node.id, &UsageCursor::default(), &page, now)
        .await
        .unwrap();
    assert_eq!(out.user_deltas, 3);
    assert_eq!(used(s.get_user(a).await.unwrap()), (301, 701));
    assert_eq!(used(s.get_user(b).await.unwrap()), (2005, 0));
    assert_eq!(used(s.get_user(c).await.unwrap()), (max as u64, 11));
    assert_eq!(ids(s.find_users(&by_usage(true)).await.unwrap()), [c, b, a]);

    // A reset zeroes the totals; a deleted user's go with it.
    let reset = s.reset_user_usage(b, now).await.unwrap();
    assert_eq!(used(reset), (0, 0));
    assert_eq!(
        ids(s.find_users(&by_usage(false)).await.unwrap()),
        [b, a, c]
    );
    s.delete_user(a).await.unwrap();
    assert_eq!(ids(s.find_users(&by_usage(false)).await.unwrap()), [b, c]);
}
