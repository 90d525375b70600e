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

/// One storage, many callers at once, so creations and status changes go
/// in groups (one statement for many callers): each caller still gets its
/// own answer. Two creations with one id: one is created, the other is
/// `AlreadyExists`. The same user asked by several callers at once ends in
/// one of the asked statuses and each answer shows its caller's status; an
/// unknown or deleted user is `NotFound`; the enabled count is the users'.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_at_once_each_get_their_own_answer() {
    let db = TestDatabase::new().await;
    let storage = Arc::new(db.storage().await);

    let new: Vec<NewUser> = (0..120)
        .map(|i| NewUser::new(format!("grouped-{i}")).unwrap())
        .collect();
    let mut creating = tokio::task::JoinSet::new();
    for user in new.iter().cloned().chain([new[7].clone(), new[42].clone()]) {
        let storage = storage.clone();
        creating.spawn(async move { (user.id, storage.create_user(user).await) });
    }
    let mut created = HashSet::new();
    let mut taken = Vec::new();
    while let Some(joined) = creating.join_next().await {
        match joined.unwrap() {
            (id, Ok(user)) => {
                assert_eq!(user.id, id);
                assert_eq!(user.status, UserStatus::Disabled);
                assert!(created.insert(id), "{id} created twice");
            }
            (id, Err(StorageError::AlreadyExists(Entity::User))) => taken.push(id),
            (id, other) => panic!("{id}: {other:?}"),
        }
    }
    taken.sort_unstable();
    let mut twice = vec![new[7].id, new[42].id];
    twice.sort_unstable();
    assert_eq!(taken, twice);
    assert_eq!(created.len(), new.len());
    for user in &new {
        let stored = storage.get_user(user.id).await.unwrap();
        assert_eq!(
            (stored.name.as_str(), stored.secret.expose()),
            (user.name.as_str(), user.secret.expose())
        );
    }

    let ids: Vec<UserId> = new.iter().map(|u| u.id).collect();
    let deleted = ids[0];
    storage.delete_user(deleted).await.unwrap();
    let unknown = UserId::random();
    let mut changing = tokio::task::JoinSet::new();
    for round in 0..4 {
        for (i, id) in ids.iter().copied().chain([deleted, unknown]).enumerate() {
            let status = if (i + round) % 3 == 0 {
                UserStatus::Disabled
            } else {
                UserStatus::Enabled
            };
            let storage = storage.clone();
            changing.spawn(async move { (id, status, storage.set_user_status(id, status).await) });
        }
    }
    let mut asked: std::collections::HashMap<UserId, HashSet<UserStatus>> = Default::default();
    while let Some(joined) = changing.join_next().await {
        match joined.unwrap() {
            (id, status, Ok(user)) => {
                assert_eq!(user.id, id);
                assert_eq!(user.status, status, "the answer shows the caller's change");
                asked.entry(id).or_default().insert(status);
            }
            (id, _, Err(StorageError::NotFound(Entity::User))) => {
                assert!(id == deleted || id == unknown, "{id} not found")
            }
            (id, _, other) => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(asked.len(), ids.len() - 1);
    let mut enabled = 0;
    for (id, statuses) in &asked {
        let user = storage.get_user(*id).await.unwrap();
        assert!(
            statuses.contains(&user.status),
            "{id} ended in a status nobody asked for"
        );
        enabled += u64::from(user.status == UserStatus::Enabled);
    }
    let fleet = storage.fleet_state().await.unwrap();
    assert_eq!(fleet.enabled_users, enabled);
}

/// Node reads made at once (a push to the whole fleet reads every node's
/// cursor, many at a time) go in groups: each caller still gets its own
/// node, a node asked by several callers is each one's answer, and an
/// unknown node is `NotFound` without failing the others of its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_node_reads_at_once_each_get_their_own_node() {
    let db = TestDatabase::new().await;
    let storage = Arc::new(db.storage().await);
    let mut nodes = Vec::new();
    for i in 0..40 {
        let new = NewNode::new(format!("http://10.1.0.{i}:80")).unwrap();
        nodes.push(storage.create_node(new).await.unwrap());
    }
    let unknown = NodeId::random();
    let mut reading = tokio::task::JoinSet::new();
    for round in 0..5 {
        for id in nodes.iter().map(|n| n.id).chain([unknown]) {
            let storage = storage.clone();
            reading.spawn(async move { (round, id, storage.get_node(id).await) });
        }
    }
    let mut answered = 0;
    while let Some(joined) = reading.join_next().await {
        match joined.unwrap() {
            (_, id, Ok(node)) => {
                let want = nodes.iter().find(|n| n.id == id).expect("a known node");
                assert_eq!((node.id, &node.endpoint), (id, &want.endpoint));
                answered += 1;
            }
            (_, id, Err(StorageError::NotFound(Entity::Node))) => assert_eq!(id, unknown),
            (round, id, other) => panic!("round {round}, {id}: {other:?}"),
        }
    }
    assert_eq!(answered, 5 * nodes.len());
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
        .finish_start(node.id, plan.seq, "vless://{{.UserID}}", &[])
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

/// A simulated node: what it would hold after applying `batch`.
fn apply(on: &mut HashSet<UserId>, batch: &manager_lib::domain::PendingBatch) {
    for op in &batch.operations {
        match op.operation {
            Operation::Add => on.insert(op.user.id),
            Operation::Delete => on.remove(&op.user.id),
        };
    }
}

/// A node that is Running with every current user applied.
async fn started_node(s: &dyn Storage, endpoint: &str) -> NodeId {
    let node = s
        .create_node(NewNode::new(endpoint).unwrap())
        .await
        .unwrap();
    s.set_required_status(node.id, RequiredStatus::Running)
        .await
        .unwrap();
    let plan = s.begin_start(node.id).await.unwrap();
    s.finish_start(node.id, plan.seq, "vless://{{.UserID}}", &[])
        .await
        .unwrap();
    node.id
}

/// Reads a batch, applies it, acknowledges it; until nothing is pending.
async fn drain(s: &dyn Storage, node: NodeId, on: &mut HashSet<UserId>) {
    loop {
        let batch = s.pending_operations(node, 25).await.unwrap();
        apply(on, &batch);
        s.ack_operations(node, batch.up_to_seq).await.unwrap();
        if batch.operations.is_empty() && !batch.more {
            return;
        }
    }
}

/// The users that are enabled now, read one by one.
async fn enabled_users(s: &dyn Storage, ids: &[UserId]) -> HashSet<UserId> {
    let mut enabled = HashSet::new();
    for id in ids {
        match s.get_user(*id).await {
            Ok(u) if u.status == UserStatus::Enabled => {
                enabled.insert(*id);
            }
            Ok(_) | Err(StorageError::NotFound(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    enabled
}

/// The model is the conformance suite's
/// `concurrent_toggles_and_acks_end_in_the_newest_intent`, much bigger:
/// three replicas (pools) with eight writers each enable, disable and delete
/// users while two nodes, each read and acknowledged through its own pool,
/// apply every batch as it comes. A cursor that jumped over a change still in
/// flight would leave a node with a wrong user set at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_changing_users_while_nodes_apply_batches_end_in_the_enabled_users() {
    const REPLICAS: usize = 3;
    const WRITERS_PER_REPLICA: usize = 8;
    const USERS: usize = 160;
    const ROUNDS: usize = 40;

    let db = TestDatabase::new().await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Arc::new(db.storage().await));
    }
    let ids = Arc::new(users(replicas[0].as_ref(), USERS).await);
    let node_storages = [Arc::new(db.storage().await), Arc::new(db.storage().await)];
    let mut nodes = Vec::new();
    for (i, s) in node_storages.iter().enumerate() {
        nodes.push(started_node(s.as_ref(), &format!("http://10.0.1.{i}:80")).await);
    }

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut appliers = Vec::new();
    for (s, node) in node_storages.iter().cloned().zip(nodes.iter().copied()) {
        let done = done.clone();
        appliers.push(tokio::spawn(async move {
            let mut on = HashSet::new();
            let mut acked: Seq = 0;
            let mut batches = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let batch = s.pending_operations(node, 7).await.unwrap();
                assert!(batch.up_to_seq >= acked, "a batch went backwards");
                acked = batch.up_to_seq;
                apply(&mut on, &batch);
                s.ack_operations(node, batch.up_to_seq).await.unwrap();
                batches += 1;
                tokio::task::yield_now().await;
            }
            drain(s.as_ref(), node, &mut on).await;
            (on, batches)
        }));
    }

    let mut writers = Vec::new();
    for w in 0..REPLICAS * WRITERS_PER_REPLICA {
        let s = replicas[w % REPLICAS].clone();
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Writers overlap on users, so the same user is changed from
                // several replicas at once.
                let id = ids[(w * 7 + round * 13) % ids.len()];
                let result = match (w + round) % 11 {
                    0 => s.delete_user(id).await,
                    r if r % 2 == 0 => s.set_user_status(id, UserStatus::Enabled).await.map(drop),
                    _ => s.set_user_status(id, UserStatus::Disabled).await.map(drop),
                };
                match result {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);

    let enabled = enabled_users(replicas[0].as_ref(), &ids).await;
    assert!(
        !enabled.is_empty() && enabled.len() < USERS,
        "the workload toggles both ways"
    );
    for applier in appliers {
        let (on, batches) = applier.await.unwrap();
        assert!(batches > 1, "the node read while the writers wrote");
        assert_eq!(
            on, enabled,
            "a node must end with exactly the enabled users"
        );
    }
    let fleet = replicas[1].fleet_state().await.unwrap();
    assert_eq!(fleet.enabled_users, enabled.len() as u64);
    for node in nodes {
        let node = replicas[2].get_node(node).await.unwrap();
        assert_eq!(
            node.applied_seq, fleet.last_seq,
            "every node applied everything"
        );
    }
    for id in enabled {
        assert_eq!(replicas[2].user_nodes(id).await.unwrap().nodes.len(), 2);
    }
}

/// Polls `condition` until it holds or `ANSWER_WITHIN` passes.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sessions waiting for an advisory lock (the change lock is the only one
/// the storage takes).
async fn advisory_waiters(s: &PgStorage) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(s.pool())
    .await
    .unwrap()
}

/// The invariant itself, step by step: a change that took its number but has
/// not committed keeps readers from handing out a batch, even when a change
/// with a larger number has already committed; once it commits, the batch
/// holds both, so the acknowledged cursor skips neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_in_flight_holds_back_readers_until_it_commits() {
    let fixture = PgFixture::new().await;
    let s = fixture.storage().clone();
    let node = started_node(s.as_ref(), "http://10.0.0.1:80").await;
    let slow = s.create_user(NewUser::new("slow").unwrap()).await.unwrap();
    let fast = s.create_user(NewUser::new("fast").unwrap()).await.unwrap();

    // Another session changes `slow` the way the storage does (shared change
    // lock, next number, count) and stays in its transaction.
    let mut in_flight = s.pool().begin().await.unwrap();
    let slow_seq: Seq = sqlx::query_scalar(
        "UPDATE users SET status = 'Enabled', change_seq = xm_next_change_seq() \
         WHERE id = $1::uuid AND xm_change_lock() RETURNING change_seq",
    )
    .bind(slow.id.to_string())
    .fetch_one(&mut *in_flight)
    .await
    .unwrap();
    sqlx::query("UPDATE enabled_stripes SET enabled = enabled + 1 WHERE stripe = 0")
        .execute(&mut *in_flight)
        .await
        .unwrap();

    // Writers are not blocked by it: `fast` gets a larger number and commits.
    let fast_seq = s
        .set_user_status(fast.id, UserStatus::Enabled)
        .await
        .unwrap()
        .change_seq;
    assert!(fast_seq > slow_seq);

    // A reader waits, instead of answering a batch with `fast` alone.
    let reader = {
        let s = s.clone();
        tokio::spawn(async move { s.pending_operations(node, 100).await.unwrap() })
    };
    wait_until("the reader waits for the change lock", || async {
        advisory_waiters(&s).await == 1
    })
    .await;
    assert!(!reader.is_finished());

    in_flight.commit().await.unwrap();
    let batch = tokio::time::timeout(ANSWER_WITHIN, reader)
        .await
        .expect("the reader answers once the change committed")
        .unwrap();
    let seen: Vec<(UserId, Seq)> = batch
        .operations
        .iter()
        .map(|op| (op.user.id, op.seq))
        .collect();
    assert_eq!(seen, vec![(slow.id, slow_seq), (fast.id, fast_seq)]);
    assert_eq!(batch.up_to_seq, fast_seq);
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (fast_seq, 2));
}

/// A change that took a number and rolled back leaves a gap; readers pass it.
#[tokio::test]
async fn a_rolled_back_change_leaves_a_gap_readers_pass() {
    let fixture = PgFixture::new().await;
    let s = fixture.storage();
    let node = started_node(s.as_ref(), "http://10.0.0.1:80").await;
    let u = s.create_user(NewUser::new("u").unwrap()).await.unwrap();
    let mut tx = s.pool().begin().await.unwrap();
    let lost: Seq = sqlx::query_scalar("SELECT xm_next_change_seq()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let user = s.set_user_status(u.id, UserStatus::Enabled).await.unwrap();
    assert!(user.change_seq > lost);
    let batch = s.pending_operations(node, 10).await.unwrap();
    assert_eq!(batch.operations.len(), 1);
    assert_eq!(batch.up_to_seq, user.change_seq);
    assert_eq!(s.fleet_state().await.unwrap().last_seq, user.change_seq);
}

/// The newest change never moves backwards when purge removes its tombstone.
#[tokio::test]
async fn purging_the_newest_tombstone_keeps_the_newest_change() {
    let fixture = PgFixture::new().await;
    let s = fixture.storage();
    let u = s.create_user(NewUser::new("u").unwrap()).await.unwrap();
    s.set_user_status(u.id, UserStatus::Enabled).await.unwrap();
    s.delete_user(u.id).await.unwrap();
    let before = s.fleet_state().await.unwrap();
    assert_eq!((before.last_seq, before.enabled_users), (2, 0));
    // No node can hold the user: the tombstone goes.
    assert_eq!(s.purge_tombstones().await.unwrap(), 1);
    assert_eq!(s.fleet_state().await.unwrap(), before);
    let node = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    assert_eq!(node.applied_seq, before.last_seq);
    let v = s.create_user(NewUser::new("v").unwrap()).await.unwrap();
    let v = s.set_user_status(v.id, UserStatus::Enabled).await.unwrap();
    assert_eq!(v.change_seq, before.last_seq + 1);
}

/// A database made by the first schema (numbers from `meta.last_seq`)
/// migrates: numbering continues after the old counter, the count starts
/// from the users, and what was pending stays pending.
#[tokio::test]
async fn a_database_on_the_first_schema_migrates_and_keeps_counting() {
    let db = TestDatabase::new().await;
    let only_first = std::env::temp_dir().join(format!("{}-migrations", db.name()));
    std::fs::create_dir_all(&only_first).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/20250101000000_initial.sql"
        ),
        only_first.join("20250101000000_initial.sql"),
    )
    .unwrap();
    let pool = PgPoolOptions::new().connect(db.url()).await.unwrap();
    sqlx::migrate::Migrator::new(only_first.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(&only_first).unwrap();
    // The old code's state: five changes made (the newest, 5, on a purged
    // tombstone), two users enabled, a node that applied up to 3.
    let (a, b, c) = (UserId::random(), UserId::random(), UserId::random());
    sqlx::query(
        "INSERT INTO users (id, name, status, secret, change_seq, created_at) VALUES \
         ($1::uuid, 'a', 'Enabled', 's', 2, 0), ($2::uuid, 'b', 'Enabled', 's', 4, 0), \
         ($3::uuid, 'c', 'Disabled', 's', 0, 0)",
    )
    .bind(a.to_string())
    .bind(b.to_string())
    .bind(c.to_string())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE meta SET last_seq = 5, enabled_users = 2")
        .execute(&pool)
        .await
        .unwrap();
    let node = NodeId::random();
    sqlx::query(
        "INSERT INTO nodes (id, endpoint, node_key, actual_status, required_status, \
         user_config_template, state_up_to_date, applied_seq, created_at, updated_at) \
         VALUES ($1::uuid, 'http://10.0.0.1:80', $2, 'Running', 'Running', 't', TRUE, 3, 0, 0)",
    )
    .bind(node.to_string())
    .bind(manager_lib::domain::NodeKey::random().expose_base64url())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let s = db.storage().await;
    let fleet = s.fleet_state().await.unwrap();
    assert_eq!((fleet.last_seq, fleet.enabled_users), (5, 2));
    let batch = s.pending_operations(node, 10).await.unwrap();
    let pending: Vec<(UserId, Seq)> = batch
        .operations
        .iter()
        .map(|op| (op.user.id, op.seq))
        .collect();
    assert_eq!(pending, vec![(b, 4)]);
    let c = s.set_user_status(c, UserStatus::Enabled).await.unwrap();
    assert_eq!(c.change_seq, 6);
    assert_eq!(s.fleet_state().await.unwrap().enabled_users, 3);
    let old_columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'meta' AND column_name IN ('last_seq', 'enabled_users')",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        old_columns, 0,
        "an old binary must fail instead of numbering on its own"
    );
}

#[tokio::test]
async fn a_pg_dump_holds_no_form_of_a_tokens_secret() {
    use base64::Engine as _;
    use manager_lib::domain::{IssuedToken, NewToken, Role, Timestamp};
    use manager_lib::storage::AccessStore as _;

    let db = TestDatabase::new().await;
    let storage = db.storage().await;
    let issued = IssuedToken::issue(
        NewToken::new("dump-check", Role::Admin, None).unwrap(),
        Timestamp(1_800_000_000_000),
    );
    storage
        .create_token(&issued.token, &issued.verifier)
        .await
        .unwrap();
    let text = issued.text();
    let secret_b64 = &text[37..];
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret_b64)
        .unwrap();
    let hex_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--table=api_tokens", db.url()])
        .output()
        .expect("pg_dump runs (install the PostgreSQL client tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    assert!(
        dump.contains("dump-check"),
        "the dump holds the token's row: {dump}"
    );
    let digest: String = issued
        .verifier
        .digest_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(dump.contains(&digest), "only the salted digest is stored");
    for needle in [text.as_str(), secret_b64, hex_secret.as_str()] {
        assert!(!dump.contains(needle), "the dump holds the token's secret");
    }
}
