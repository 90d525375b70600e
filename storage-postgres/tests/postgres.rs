//! What only the PostgreSQL backend has to show: several replicas on one
//! database, a database that is not there, and the test-database helper.
//! Run with:
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo nextest run -p storage-postgres`

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use manager_lib::domain::{
    NewNode, NewUser, NodeId, Operation, RequiredStatus, Seq, UserId, UserStatus,
};
use manager_lib::storage::{Entity, Storage, StorageError};
use sqlx::postgres::PgPoolOptions;
use storage_postgres::PgStorage;
use storage_postgres::testing::{PgFixture, TestDatabase};

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Generous: the point is "answers instead of hanging", not a timing target.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

async fn users(s: &dyn Storage, n: usize) -> Vec<UserId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let user = s
            .create_user(NewUser::new(format!("user-{i}")).unwrap())
            .await
            .unwrap();
        ids.push(user.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_enabling_users_concurrently_get_distinct_gap_free_numbers() {
    let db = TestDatabase::new().await;
    let replicas = [Arc::new(db.storage().await), Arc::new(db.storage().await)];
    let ids = users(replicas[0].as_ref(), 60).await;

    let mut tasks = Vec::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let storage = replicas[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            storage
                .set_user_status(id, UserStatus::Enabled)
                .await
                .unwrap()
                .change_seq
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    let expected: Vec<Seq> = (1..=ids.len() as Seq).collect();
    assert_eq!(seqs, expected, "numbers must be distinct and gap-free");

    let fleet = replicas[1].fleet_state().await.unwrap();
    assert_eq!(fleet.last_seq, ids.len() as Seq);
    assert_eq!(fleet.enabled_users, ids.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replicas_never_hold_the_same_node() {
    let db = TestDatabase::new().await;
    let setup = db.storage().await;
    let mut all = BTreeSet::new();
    for i in 0..30 {
        let node = setup
            .create_node(NewNode::new(format!("http://10.0.0.{i}:80")).unwrap())
            .await
            .unwrap();
        all.insert(node.id);
    }

    // Four replicas claim a few nodes at a time, all at once, until every
    // node is taken; long leases, so nothing expires during the test.
    let mut tasks = Vec::new();
    for r in 0..4 {
        let storage = db.storage().await;
        let total = all.len();
        tasks.push(tokio::spawn(async move {
            let owner = format!("replica-{r}");
            let mut held = Vec::new();
            for _ in 0..total {
                held = storage
                    .claim_nodes(&owner, Duration::from_secs(300), 3)
                    .await
                    .unwrap();
                let free = storage
                    .claim_nodes("probe-that-takes-nothing", Duration::from_secs(300), 0)
                    .await
                    .unwrap();
                assert!(free.is_empty());
                tokio::task::yield_now().await;
            }
            held.into_iter().map(|n| n.id).collect::<Vec<NodeId>>()
        }));
    }
    let mut seen = HashSet::new();
    let mut union = BTreeSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "node {id} held by two replicas");
            union.insert(id);
        }
    }
    assert_eq!(union, all, "every node is held by some replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_plan_is_one_snapshot_while_another_replica_changes_users() {
    let db = TestDatabase::new().await;
    let manager = Arc::new(db.storage().await);
    let other = Arc::new(db.storage().await);
    let ids = users(manager.as_ref(), 20).await;
    let node = manager
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    manager
        .set_required_status(node.id, RequiredStatus::Running)
        .await
        .unwrap();

    let toggler = {
        let ids = ids.clone();
        let other = other.clone();
        tokio::spawn(async move {
            for round in 0..5 {
                for (i, id) in ids.iter().enumerate() {
                    let status = if (i + round) % 2 == 0 {
                        UserStatus::Enabled
                    } else {
                        UserStatus::Disabled
                    };
                    other.set_user_status(*id, status).await.unwrap();
                }
            }
        })
    };
    // Start while the other replica writes; the plan plus what stays pending
    // after it must give exactly the enabled users in the end.
    let plan = manager.begin_start(node.id).await.unwrap();
    manager
        .finish_start(node.id, plan.seq, "vless://{{.UserID}}")
        .await
        .unwrap();
    toggler.await.unwrap();
    let mut on: HashSet<UserId> = plan.users.iter().map(|u| u.id).collect();
    loop {
        let batch = manager.pending_operations(node.id, 7).await.unwrap();
        for op in &batch.operations {
            match op.operation {
                Operation::Add => on.insert(op.user.id),
                Operation::Delete => on.remove(&op.user.id),
            };
        }
        manager
            .ack_operations(node.id, batch.up_to_seq)
            .await
            .unwrap();
        if !batch.more {
            break;
        }
    }
    let mut enabled = HashSet::new();
    for id in &ids {
        if manager.get_user(*id).await.unwrap().status == UserStatus::Enabled {
            enabled.insert(*id);
        }
    }
    assert_eq!(on, enabled);
}

#[tokio::test]
async fn unreachable_database_is_unavailable_quickly() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let result = tokio::time::timeout(ANSWER_WITHIN, PgStorage::connect(&url))
        .await
        .expect("connect must answer, not hang");
    match result {
        Err(e @ StorageError::Unavailable(_)) => assert!(e.is_temporary()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_on_a_pool_whose_database_is_gone_are_unavailable() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let pool = PgStorage::pool_options().connect_lazy(&url).unwrap();
    let storage = PgStorage::from_pool(pool);
    let result = tokio::time::timeout(ANSWER_WITHIN, storage.get_node(NodeId::random()))
        .await
        .expect("a call must answer, not hang");
    assert!(
        matches!(result, Err(StorageError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_closed_storage_is_unavailable() {
    let fixture = PgFixture::new().await;
    fixture.storage().close().await;
    let result = fixture.storage().fleet_state().await;
    assert!(
        matches!(result, Err(StorageError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn debug_never_shows_the_password() {
    let pool = PgPoolOptions::new()
        .connect_lazy("postgres://manager:hunter2-secret@127.0.0.1:5432/xm")
        .unwrap();
    let text = format!("{:?}", PgStorage::from_pool(pool));
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[tokio::test]
async fn unique_violations_are_already_exists() {
    let fixture = PgFixture::new().await;
    let s = fixture.storage();
    let node = NewNode::new("http://10.0.0.1:80").unwrap();
    s.create_node(node.clone()).await.unwrap();
    let mut same_endpoint = NewNode::new("http://10.0.0.1:80").unwrap();
    same_endpoint.id = NodeId::random();
    assert!(matches!(
        s.create_node(same_endpoint).await,
        Err(StorageError::AlreadyExists(Entity::Node))
    ));
    let user = NewUser::new("alice").unwrap();
    s.create_user(user.clone()).await.unwrap();
    assert!(matches!(
        s.create_user(user).await,
        Err(StorageError::AlreadyExists(Entity::User))
    ));
}

#[tokio::test]
async fn a_stored_value_in_a_bad_form_is_corrupt() {
    let fixture = PgFixture::new().await;
    let s = fixture.storage();
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    sqlx::query("UPDATE nodes SET node_key = 'not-a-key' WHERE id = $1::uuid")
        .bind(node.id.to_string())
        .execute(s.pool())
        .await
        .unwrap();
    match s.get_node(node.id).await {
        Err(StorageError::Corrupt(text)) => assert!(!text.contains("not-a-key"), "{text}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managers_starting_at_once_migrate_once() {
    let db = TestDatabase::new().await;
    let url = db.url().to_owned();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStorage::connect(&url).await })
        })
        .collect();
    let mut storages = Vec::new();
    for start in starts {
        storages.push(start.await.unwrap().expect("every manager starts"));
    }
    let user = storages[0]
        .create_user(NewUser::new("alice").unwrap())
        .await
        .unwrap();
    assert_eq!(storages[3].get_user(user.id).await.unwrap(), user);
}

#[tokio::test]
async fn the_test_database_is_dropped_with_its_helper() {
    let db = TestDatabase::new().await;
    let (admin, name) = (db.admin_url().to_owned(), db.name().to_owned());
    assert!(name.starts_with(storage_postgres::testing::DATABASE_PREFIX));
    // An open pool must not keep the database alive.
    let storage = db.storage().await;
    storage.fleet_state().await.unwrap();
    assert!(TestDatabase::exists_on_server(&admin, &name).await.unwrap());
    drop(db);
    assert!(!TestDatabase::exists_on_server(&admin, &name).await.unwrap());
    drop(storage);
}

#[tokio::test]
async fn two_test_databases_are_separate() {
    let (a, b) = (PgFixture::new().await, PgFixture::new().await);
    assert_ne!(a.database().url(), b.database().url());
    a.storage()
        .create_user(NewUser::new("only-in-a").unwrap())
        .await
        .unwrap();
    assert_eq!(b.storage().fleet_state().await.unwrap().enabled_users, 0);
    let page = b
        .storage()
        .list_users(&manager_lib::domain::PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

/// Not a test of its own: `without_a_database_the_helper_fails_loudly` runs
/// it in a child process with no reachable database.
#[tokio::test]
#[ignore = "run in a child process by without_a_database_the_helper_fails_loudly"]
async fn child_asks_for_a_database() {
    TestDatabase::new().await;
}

#[test]
fn without_a_database_the_helper_fails_loudly() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_asks_for_a_database",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CI", "true")
        .env(
            storage_postgres::testing::TEST_DATABASE_URL,
            format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port()),
        )
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the child passed:\n{text}");
    assert!(text.contains("no PostgreSQL for the tests"), "{text}");
    assert!(text.contains("CI=true"), "{text}");
    assert!(text.contains("1 failed"), "the child never ran:\n{text}");
}
