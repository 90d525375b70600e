//! The usage-ingest benchmark every `Storage` backend runs on itself
//! (`cargo bench -p storage-sqlite --bench ingest`, and the same for
//! storage-postgres): `XM_BENCH_NODES` nodes (default 100) each store a page
//! of one batch of `XM_BENCH_USERS` user-deltas (default 1,000, each node
//! its own users) per round, `XM_BENCH_CALLERS` nodes at once (default 8),
//! for `XM_BENCH_ROUNDS` rounds (default 3). Prints the stored user-deltas
//! per second of each round (the target: over 100,000 per second).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;

use crate::domain::usage::{UsageBatch, UsageCursor, UsagePage, UserUsage};
use crate::domain::{NewNode, NewUser, NodeId, Plan, Timestamp, UserId};
use crate::storage::Storage;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the benchmark on `s` (a fresh, empty backend) with the sizes of the
/// `XM_BENCH_*` variables, printing each round's rate.
pub async fn ingest_rounds(s: Arc<dyn Storage>) {
    let (nodes, users, callers, rounds) = (
        env("XM_BENCH_NODES", 100),
        env("XM_BENCH_USERS", 1000),
        env("XM_BENCH_CALLERS", 8),
        env("XM_BENCH_ROUNDS", 3),
    );
    let fleet = setup(&s, nodes, users).await;
    run(&s, &fleet, callers, rounds).await;
}

/// Nodes, each with its own users (half of them with a data limit).
async fn setup(s: &Arc<dyn Storage>, nodes: usize, users: usize) -> Vec<(NodeId, Vec<UserId>)> {
    let started = Instant::now();
    let mut fleet = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let node = s
            .create_node(NewNode::new(format!("http://10.{}.{}.1:80", n / 250, n % 250)).unwrap())
            .await
            .unwrap();
        let ids: Vec<UserId> = futures::stream::iter(0..users)
            .map(|i| {
                let s = s.clone();
                async move {
                    let plan = Plan {
                        data_limit: (i % 2 == 0).then_some(1 << 40),
                        ..Plan::default()
                    };
                    let new = NewUser {
                        plan,
                        ..NewUser::new(format!("u{n}-{i}")).unwrap()
                    };
                    s.create_user(new).await.unwrap().id
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        fleet.push((node.id, ids));
    }
    println!(
        "setup: {nodes} nodes × {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    fleet
}

async fn run(s: &Arc<dyn Storage>, fleet: &[(NodeId, Vec<UserId>)], callers: usize, rounds: usize) {
    for round in 1..=rounds as u64 {
        let started = Instant::now();
        let deltas: u64 = futures::stream::iter(fleet)
            .map(|(node, ids)| {
                let s = s.clone();
                async move {
                    let page = UsagePage {
                        journal: format!("j-{node}"),
                        batches: vec![UsageBatch {
                            first_seq: round,
                            seq: round,
                            from: Timestamp::now(),
                            to: Timestamp::now(),
                            users: ids
                                .iter()
                                .map(|&user| UserUsage {
                                    user,
                                    up: 1000 + round,
                                    down: 50_000,
                                })
                                .collect(),
                        }],
                        more: false,
                    };
                    let pulled_with = UsageCursor {
                        journal: (round > 1).then(|| page.journal.clone()),
                        seq: round - 1,
                    };
                    let out = s
                        .ingest_usage(*node, &pulled_with, &page, Timestamp::now())
                        .await
                        .unwrap();
                    assert!(out.stored);
                    out.user_deltas
                }
            })
            .buffer_unordered(callers)
            .fold(0, |a, b| async move { a + b })
            .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {deltas} user-deltas in {secs:.2} s = {:.0}/s",
            deltas as f64 / secs
        );
    }
}
