//! What only the SQLite backend has to show: a file that outlives the
//! process, migrations, many writers on one file, and errors from the file
//! system.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fresh_storage, url_in};
use manager_lib::domain::{NewNode, NewUser, Operation, PageRequest, RequiredStatus, UserStatus};
use manager_lib::storage::{Storage, StorageError};
use storage_sqlite::SqliteStorage;

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let f = fresh_storage().await;
    let s = &f.storage;
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:8080").unwrap())
        .await
        .unwrap();
    s.set_required_status(node.id, RequiredStatus::Running)
        .await
        .unwrap();
    let user = s.create_user(NewUser::new("alice").unwrap()).await.unwrap();
    let user = s
        .set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    let node = s.get_node(node.id).await.unwrap();
    let fleet = s.fleet_state().await.unwrap();
    s.close().await;

    let reopened = SqliteStorage::connect(&f.url()).await.unwrap();
    assert_eq!(reopened.get_node(node.id).await.unwrap(), node);
    assert_eq!(reopened.get_user(user.id).await.unwrap(), user);
    assert_eq!(reopened.fleet_state().await.unwrap(), fleet);
    let pending = reopened.pending_operations(node.id, 10).await.unwrap();
    assert_eq!(pending.operations.len(), 1);
    assert_eq!(pending.operations[0].operation, Operation::Add);
    assert_eq!(pending.operations[0].user, user.credentials());
}

#[tokio::test]
async fn closed_storage_is_unavailable() {
    let f = fresh_storage().await;
    f.storage.close().await;
    let err = f.storage.fleet_state().await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    let err = f
        .storage
        .create_user(NewUser::new("bob").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn migrations_run_twice_are_harmless() {
    let f = fresh_storage().await;
    let user = f
        .storage
        .create_user(NewUser::new("alice").unwrap())
        .await
        .unwrap();
    // A second process opening the same file runs the migrator again.
    let second = SqliteStorage::connect(&f.url()).await.unwrap();
    assert_eq!(second.get_user(user.id).await.unwrap(), user);
    let third = SqliteStorage::connect(&f.url()).await.unwrap();
    assert_eq!(third.fleet_state().await.unwrap().last_seq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_never_see_busy() {
    let f = fresh_storage().await;
    // Two handles on one file act as two processes: they only agree through
    // SQLite's own locks (BEGIN IMMEDIATE and busy_timeout).
    let other = Arc::new(SqliteStorage::connect(&f.url()).await.unwrap());
    let handles: [Arc<SqliteStorage>; 2] = [f.storage.clone(), other];
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..16 {
        let s = handles[task % 2].clone();
        tasks.spawn(async move {
            for i in 0..50 {
                let user = s
                    .create_user(NewUser::new(format!("user-{task}-{i}")).unwrap())
                    .await?;
                s.set_user_status(user.id, UserStatus::Enabled).await?;
            }
            Ok::<_, StorageError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("no writer fails");
    }
    let fleet = f.storage.fleet_state().await.unwrap();
    assert_eq!(fleet.enabled_users, 16 * 50);
    assert_eq!(fleet.last_seq, 16 * 50);
    // Every enable took its own sequence number.
    let node = f
        .storage
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    f.storage.ack_operations(node.id, 0).await.unwrap();
    assert_eq!(f.storage.get_node(node.id).await.unwrap().applied_seq, 800);
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let url = format!("sqlite://{}", file.join("sub").join("manager.db").display());
    let err = SqliteStorage::connect(&url).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");

    let url = format!(
        "sqlite://{}",
        dir.path().join("missing").join("manager.db").display()
    );
    let err = SqliteStorage::connect(&url).await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manager.db"), vec![b'x'; 8192]).unwrap();
    let err = SqliteStorage::connect(&url_in(&dir)).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn long_and_unicode_names_round_trip() {
    let f = fresh_storage().await;
    let names = [
        "Вася-🚀 ½ 中文 \u{200d} 'quoted' \"double\" ; DROP TABLE users; --".to_owned(),
        "é".repeat(manager_lib::domain::MAX_USER_NAME_BYTES / 2),
        "x".repeat(manager_lib::domain::MAX_USER_NAME_BYTES),
    ];
    for name in names {
        let created = f
            .storage
            .create_user(NewUser::new(name.clone()).unwrap())
            .await
            .unwrap();
        assert_eq!(created.name, name);
        let read = f.storage.get_user(created.id).await.unwrap();
        assert_eq!(read, created);
        let listed = f.storage.user_nodes(created.id).await.unwrap().user;
        assert_eq!(listed.name, name);
    }
}

#[tokio::test]
async fn in_memory_database_keeps_its_data_across_calls() {
    let s = SqliteStorage::connect("sqlite::memory:").await.unwrap();
    let user = s.create_user(NewUser::new("alice").unwrap()).await.unwrap();
    s.set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 1);
    assert_eq!(
        s.get_user(user.id).await.unwrap().status,
        UserStatus::Enabled
    );
}

#[tokio::test]
async fn debug_shows_no_secrets() {
    let f = fresh_storage().await;
    let node = f
        .storage
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let shown = format!("{:?} {:?}", f.storage, node);
    assert!(shown.contains("manager.db"), "{shown}");
    assert!(!shown.contains(&node.key.expose_base64url()), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_half_change_behind() {
    let f = fresh_storage().await;
    let s = &f.storage;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            s.create_user(NewUser::new(format!("u{i}")).unwrap())
                .await
                .unwrap()
                .id,
        );
    }
    // Dropped at different points: before, inside or after the transaction.
    for (i, id) in ids.iter().enumerate() {
        let wait = Duration::from_micros((i as u64 % 20) * 40);
        let _ = tokio::time::timeout(wait, s.set_user_status(*id, UserStatus::Enabled)).await;
    }
    // A call given up on may still be running in the writer. The writer takes
    // its queue in order: once a later write is answered, every earlier one
    // has ended, and the reads below see one settled state.
    s.create_user(NewUser::new("after-the-cancelled").unwrap())
        .await
        .unwrap();
    let users = s.list_users(&PageRequest::first(1000)).await.unwrap().items;
    let mut seqs: Vec<i64> = users
        .iter()
        .filter(|u| u.status == UserStatus::Enabled)
        .map(|u| u.change_seq)
        .collect();
    seqs.sort_unstable();
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!(fleet.enabled_users, seqs.len() as u64);
    assert_eq!(seqs, (1..=fleet.last_seq).collect::<Vec<_>>());
    // The writer is not left inside an abandoned transaction.
    for id in &ids {
        s.set_user_status(*id, UserStatus::Enabled).await.unwrap();
    }
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 100);
}

#[tokio::test]
async fn a_stored_value_that_does_not_parse_is_corrupt() {
    let f = fresh_storage().await;
    let pool = sqlx::SqlitePool::connect(&f.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at) \
         VALUES ('not-a-uuid', 'x', 'Disabled', 's', 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = f
        .storage
        .list_users(&PageRequest::first(10))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_stored_node_key_that_does_not_parse_is_corrupt_and_not_echoed() {
    let f = fresh_storage().await;
    let node = f
        .storage
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&f.url()).await.unwrap();
    sqlx::query("UPDATE nodes SET key = 'not-a-key' WHERE id = ?1")
        .bind(node.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    match f.storage.get_node(node.id).await {
        Err(StorageError::Corrupt(text)) => assert!(!text.contains("not-a-key"), "{text}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn from_pool_migrates_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("pooled.db"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let s = SqliteStorage::from_pool(pool).await.unwrap();
    let user = s.create_user(NewUser::new("alice").unwrap()).await.unwrap();
    assert_eq!(
        s.set_user_status(user.id, UserStatus::Enabled)
            .await
            .unwrap()
            .change_seq,
        1
    );
    assert_eq!(s.user_nodes(user.id).await.unwrap().user.id, user.id);
}

/// Holds the database's write lock from another connection, as a second
/// process would, so that writes queue up behind the writer's `BEGIN`.
struct WriteLock(sqlx::pool::PoolConnection<sqlx::Sqlite>, sqlx::SqlitePool);

impl WriteLock {
    async fn take(url: &str) -> Self {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .unwrap();
        Self(conn, pool)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut *self.0).await.unwrap();
        drop(self.0);
        self.1.close().await;
    }
}

/// Polls until `done(stats)` holds.
async fn wait_for(s: &SqliteStorage, done: impl Fn(storage_sqlite::WriteStats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(s.write_stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            s.write_stats()
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_in_a_batch_is_undone_alone() {
    let f = fresh_storage().await;
    let s = f.storage.clone();
    let taken = NewUser::new("taken").unwrap();
    s.create_user(taken.clone()).await.unwrap();
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();

    let lock = WriteLock::take(&f.url()).await;
    let before = s.write_stats();
    // Blocks the writer on the lock; everything after it queues.
    let first = tokio::spawn({
        let s = s.clone();
        async move { s.create_user(NewUser::new("first").unwrap()).await }
    });
    wait_for(&s, |now| now.batches > before.batches).await;
    let mut fresh = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let new = if i == 7 {
            taken.clone()
        } else {
            let new = NewUser::new(format!("u{i}")).unwrap();
            fresh.push(new.clone());
            new
        };
        tasks.push(tokio::spawn(async move {
            let user = s.create_user(new).await?;
            s.set_user_status(user.id, UserStatus::Enabled).await
        }));
    }
    // Queued while the writer waits too: a duplicate endpoint and a missing node.
    let dup_node = tokio::spawn({
        let s = s.clone();
        async move {
            s.create_node(NewNode::new("http://10.0.0.1:80").unwrap())
                .await
        }
    });
    let missing = tokio::spawn({
        let s = s.clone();
        async move {
            s.ack_operations(manager_lib::domain::NodeId::random(), 5)
                .await
        }
    });
    wait_for(&s, |now| now.queued == 22).await;
    lock.release().await;

    first.await.unwrap().unwrap();
    let mut enabled = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 7 {
            assert!(
                matches!(
                    result,
                    Err(StorageError::AlreadyExists(
                        manager_lib::storage::Entity::User
                    ))
                ),
                "{result:?}"
            );
        } else {
            enabled.push(result.unwrap());
        }
    }
    assert!(matches!(
        dup_node.await.unwrap(),
        Err(StorageError::AlreadyExists(
            manager_lib::storage::Entity::Node
        ))
    ));
    assert!(matches!(
        missing.await.unwrap(),
        Err(StorageError::NotFound(manager_lib::storage::Entity::Node))
    ));

    // The first write alone, then the 22 queued creates in one transaction
    // (the enables follow in later ones).
    let after = s.write_stats();
    assert!(after.commits >= before.commits + 2, "{before:?} {after:?}");
    assert!(
        after.commits - before.commits < after.writes - before.writes,
        "writes shared commits: {before:?} {after:?}"
    );
    for new in &fresh {
        assert_eq!(
            s.get_user(new.id).await.unwrap().status,
            UserStatus::Enabled
        );
    }
    assert_eq!(s.get_user(taken.id).await.unwrap().name, "taken");
    let mut seqs: Vec<i64> = enabled.iter().map(|u| u.change_seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=19).collect::<Vec<_>>());
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (19, 19));
    assert_eq!(
        s.pending_operations(node.id, 100)
            .await
            .unwrap()
            .operations
            .len(),
        19
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_share_commits_and_keep_sequence_order() {
    let f = fresh_storage().await;
    let s = f.storage.clone();
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let before = s.write_stats();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64 {
        let s = s.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let user = s
                    .create_user(NewUser::new(format!("user-{task}-{i}")).unwrap())
                    .await?;
                seqs.push(
                    s.set_user_status(user.id, UserStatus::Enabled)
                        .await?
                        .change_seq,
                );
            }
            Ok::<_, StorageError>(seqs)
        });
    }
    let mut seqs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let mine = done.unwrap().expect("no writer fails");
        // One caller's changes take increasing numbers.
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64 * 20).collect::<Vec<_>>());
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (1280, 1280));
    let after = s.write_stats();
    assert_eq!(after.writes - before.writes, 2 * 64 * 20);
    assert!(
        after.commits - before.commits < after.writes - before.writes,
        "{before:?} {after:?}"
    );
    // The log, read in order, holds every change once.
    let batch = s.pending_operations(node.id, 10_000).await.unwrap();
    let logged: Vec<i64> = batch.operations.iter().map(|o| o.seq).collect();
    assert_eq!(logged, (1..=1280).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_wedge_the_writer() {
    let f = fresh_storage().await;
    let s = f.storage.clone();
    let lock = WriteLock::take(&f.url()).await;
    let before = s.write_stats();
    let running = NewUser::new("running").unwrap();
    let queued = NewUser::new("queued").unwrap();
    let kept = NewUser::new("kept").unwrap();
    // Taken by the writer, which then waits on the lock.
    let first = tokio::spawn({
        let (s, new) = (s.clone(), running.clone());
        async move { s.create_user(new).await }
    });
    wait_for(&s, |now| now.batches > before.batches).await;
    let second = tokio::spawn({
        let (s, new) = (s.clone(), queued.clone());
        async move { s.create_user(new).await }
    });
    wait_for(&s, |now| now.queued == 1).await;
    let third = tokio::spawn({
        let (s, new) = (s.clone(), kept.clone());
        async move { s.create_user(new).await }
    });
    wait_for(&s, |now| now.queued == 2).await;
    // Both callers give up while their writes wait.
    first.abort();
    second.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert!(second.await.unwrap_err().is_cancelled());
    lock.release().await;

    assert_eq!(third.await.unwrap().unwrap().id, kept.id);
    // The write already running was committed, as after a lost connection;
    // the one still queued was skipped.
    assert_eq!(s.get_user(running.id).await.unwrap().name, "running");
    assert!(matches!(
        s.get_user(queued.id).await,
        Err(StorageError::NotFound(_))
    ));
    // The writer goes on.
    let user = s.create_user(NewUser::new("after").unwrap()).await.unwrap();
    s.set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 1);
}

/// Many concurrent point reads go out in groups: each caller still gets its
/// own user, a deleted or unknown id is not found, the same id asked twice
/// at once answers both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_point_reads_each_get_their_own_answer() {
    use manager_lib::domain::UserId;
    let f = fresh_storage().await;
    let s = f.storage.clone();
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(
            s.create_user(NewUser::new(format!("user {i}")).unwrap())
                .await
                .unwrap(),
        );
    }
    s.delete_user(users[7].id).await.unwrap();
    let mut asks: Vec<(UserId, Option<String>)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id, (i != 7).then(|| u.name.clone())))
        .collect();
    asks.push((UserId::random(), None));
    asks.push((users[3].id, Some("user 3".into())));
    for _ in 0..20 {
        let mut tasks = tokio::task::JoinSet::new();
        for (id, expected) in asks.clone() {
            let s = s.clone();
            tasks.spawn(async move { (s.get_user(id).await, expected) });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (Ok(user), Some(name)) => assert_eq!(user.name, name),
                (Err(StorageError::NotFound(_)), None) => {}
                (got, expected) => panic!("got {got:?}, expected {expected:?}"),
            }
        }
    }
}

/// A database made by the first schema migrates to usage accounting: its
/// users get the default plan and no usage, the on-node count is kept, and
/// blocking then takes a change through the replaced trigger.
#[tokio::test]
async fn a_database_on_the_first_schema_gains_usage_accounting() {
    use manager_lib::domain::usage::{UsageBatch, UsageCursor, UsagePage, UserUsage};
    use manager_lib::domain::{BlockReason, Plan, Timestamp};

    let dir = tempfile::tempdir().unwrap();
    let only_first = dir.path().join("migrations");
    std::fs::create_dir_all(&only_first).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/0001_initial.sql"),
        only_first.join("0001_initial.sql"),
    )
    .unwrap();
    let url = format!("{}?mode=rwc", url_in(&dir));
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(only_first.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let (a, b) = (
        manager_lib::domain::UserId::random(),
        manager_lib::domain::UserId::random(),
    );
    // Two users enabled by the old code (changes 1 and 2).
    for (id, seq) in [(a, 1), (b, 2)] {
        sqlx::query(
            "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at) \
             VALUES (?1, 'old', 'Disabled', 's', 0, 0, 0)",
        )
        .bind(id.to_string())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE users SET status = 'Enabled', change_seq = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let s = SqliteStorage::connect(&url_in(&dir)).await.unwrap();
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (2, 2));
    let old = s.get_user(a).await.unwrap();
    assert_eq!(
        (old.plan, old.used_up, old.blocked),
        (Plan::default(), 0, None)
    );
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    assert_eq!(node.traffic_multiplier, 1.0);
    assert_eq!(node.usage_cursor, UsageCursor::default());
    let now = Timestamp::now();
    let limited = Plan {
        data_limit: Some(10),
        ..Plan::default()
    };
    s.edit_user_plan(a, limited.into(), now).await.unwrap();
    let page = UsagePage {
        journal: "j".into(),
        batches: vec![UsageBatch {
            first_seq: 1,
            seq: 1,
            from: now,
            to: now,
            users: vec![UserUsage {
                user: a,
                up: 10,
                down: 0,
            }],
        }],
        more: false,
    };
    let out = s
        .ingest_usage(node.id, &UsageCursor::default(), &page, now)
        .await
        .unwrap();
    assert_eq!(out.newly_blocked, [a]);
    let blocked = s.get_user(a).await.unwrap();
    assert_eq!(blocked.blocked, Some(BlockReason::Limited));
    assert_eq!(blocked.change_seq, 3);
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (3, 1));
}

/// Commits reach the database file without a checkpoint in any commit: a
/// few writes (far below SQLite's automatic checkpoint of 1,000 WAL pages,
/// and the writer's backstop) are copied from the WAL into the file by the
/// checkpoint task, while the storage stays open (nothing else copies
/// them before the last connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_checkpointed_off_the_write_path() {
    let f = fresh_storage().await;
    let file = f.dir.path().join("manager.db");
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let before = size();
    for i in 0..20 {
        let user = f
            .storage
            .create_user(NewUser::new(format!("u{i}")).unwrap())
            .await
            .unwrap();
        f.storage
            .set_user_status(user.id, UserStatus::Enabled)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while size() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was checkpointed into the database file ({} bytes)",
            size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.storage.fleet_state().await.unwrap().enabled_users, 20);
}
