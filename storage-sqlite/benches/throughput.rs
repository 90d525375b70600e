//! Run with: cargo bench -p storage-sqlite --bench throughput
//!
//! Throughput of the SQLite backend on the hot paths: creating and enabling
//! users (target: more than 5,000 users/s with 64 callers; writes share
//! commits, see `write_stats`), `user_nodes` (an index lookup
//! whatever the number of users) and reading a node's pending operations.
//! `XM_BENCH_USERS` sets how many users (default 20,000).

use std::time::Instant;

use manager_lib::domain::{NewNode, NewUser, PageRequest, RequiredStatus, UserId, UserStatus};
use manager_lib::storage::Storage;
use storage_sqlite::SqliteStorage;

fn rate(what: &str, n: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<40} {n:>8} in {secs:>7.3} s = {:>9.0}/s",
        n as f64 / secs
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let users: usize = std::env::var("XM_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let s = SqliteStorage::connect(&url).await.expect("open");

    for i in 0..10 {
        let node = s
            .create_node(NewNode::new(format!("http://10.0.0.{i}:80")).unwrap())
            .await
            .unwrap();
        s.set_required_status(node.id, RequiredStatus::Running)
            .await
            .unwrap();
        let plan = s.begin_start(node.id).await.unwrap();
        s.finish_start(node.id, plan.seq, "vless://{{.UserID}}@h", &[])
            .await
            .unwrap();
    }

    let started = Instant::now();
    let mut ids: Vec<UserId> = Vec::with_capacity(users);
    for i in 0..users {
        let user = s
            .create_user(NewUser::new(format!("user-{i}")).unwrap())
            .await
            .unwrap();
        s.set_user_status(user.id, UserStatus::Enabled)
            .await
            .unwrap();
        ids.push(user.id);
    }
    rate("create + enable, one task", users, started);

    let s = std::sync::Arc::new(s);
    for tasks in [8, 64] {
        let before = s.write_stats();
        let started = Instant::now();
        let per_task = users / tasks;
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let s = s.clone();
            set.spawn(async move {
                for i in 0..per_task {
                    let user = s
                        .create_user(NewUser::new(format!("c{tasks}-{t}-{i}")).unwrap())
                        .await
                        .unwrap();
                    s.set_user_status(user.id, UserStatus::Enabled)
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        rate(
            &format!("create + enable, {tasks} tasks"),
            per_task * tasks,
            started,
        );
        let after = s.write_stats();
        let commits = after.commits - before.commits;
        println!(
            "{:<40} {commits:>8} commits, {:.1} writes each",
            "",
            (after.writes - before.writes) as f64 / commits.max(1) as f64
        );
    }

    let started = Instant::now();
    for id in &ids {
        s.user_nodes(*id).await.unwrap();
    }
    rate("user_nodes (10 nodes), one task", ids.len(), started);

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8)) {
        let (s, chunk) = (s.clone(), chunk.to_vec());
        set.spawn(async move {
            for id in chunk {
                s.user_nodes(id).await.unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    rate("user_nodes (10 nodes), 8 tasks", ids.len(), started);

    let node = s.list_nodes(&PageRequest::first(1)).await.unwrap().items[0].id;
    let started = Instant::now();
    let mut read = 0;
    let mut batch = s.pending_operations(node, 10_000).await.unwrap();
    // Read the whole log without acknowledging: the pending query at every depth.
    read += batch.operations.len();
    while batch.more {
        s.ack_operations(node, batch.up_to_seq).await.unwrap();
        batch = s.pending_operations(node, 10_000).await.unwrap();
        read += batch.operations.len();
    }
    rate("pending operations read (batches of 10k)", read, started);
}
