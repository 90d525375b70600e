//! Run with: cargo run --profile production -p tests --example bench_usage -- <scenario> [options]
//!
//! Traffic accounting's benchmarks (figures, not pass/fail tests), on a
//! simulated fleet so 1,000 nodes fit on one machine:
//!
//! - `ingest --nodes 1000 --per-node 1000 --users 1000000 --rounds 3
//!   --assign fixed`: every round each node's journal gets one batch of
//!   `per-node` users' deltas, then the manager pulls and stores every node
//!   (`Manager::pull_usage`, `--concurrency` nodes at once, as the
//!   heartbeat does): stored user-deltas per second. Meanwhile 16 clients
//!   call the user-node-list over HTTP at `--load-rate` requests a second
//!   in all (default 1000; 0: none): its p50/p99 during ingest and without.
//!   `--assign fixed` (default): node `i` reports the same `per-node` users
//!   every round (users `i * per-node ..`, wrapping around `users`), as a
//!   fleet whose users stay on their node does; `random`: each node draws
//!   its users afresh every round (every round then writes new history
//!   rows: the worst case); `scattered`: as `fixed`, but a node's users
//!   are drawn once at random, so their ids are spread over the whole id
//!   space as a real node's are (with `fixed`, a node's users are
//!   neighbours in id order, which a table keyed by user id rewards).
//! - `enforce --nodes 1000 --samples 30 --heartbeat-ms 1000`: a served
//!   manager with its heartbeat; each sample journals a batch that takes a
//!   user over a 1,000-byte limit on one node, and measures until the user
//!   is off all nodes (p50/p99, against the heartbeat interval).
//!
//! Common option: `--storage URL` (default a fresh SQLite file under target/).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use manager_lib::cache::MemoryCache;
use manager_lib::domain::plan::Plan;
use manager_lib::domain::{NewUser, Node, PageRequest, UserId, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::reconcile::ReconcilerSettings;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;
use rand::seq::IndexedRandom as _;

use tests::bench::Opts;

mod common;
use common::Result;

#[tokio::main]
async fn main() -> Result<()> {
    let (scenario, opts) = Opts::from_args();
    match scenario.as_str() {
        "ingest" => ingest(&opts).await,
        "enforce" => enforce(&opts).await,
        _ => {
            eprintln!("scenarios: ingest | enforce (see the file's doc)");
            std::process::exit(1);
        }
    }
}

async fn open_storage(opts: &Opts, name: &str) -> Result<Arc<dyn Storage>> {
    let url = opts.get("storage", &format!("sqlite://target/bench-{name}.db"));
    Ok(if url.starts_with("sqlite://") {
        let file = url.trim_start_matches("sqlite://");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{file}{ext}"));
        }
        Arc::new(storage_sqlite::SqliteStorage::connect(&url).await?)
    } else {
        Arc::new(storage_postgres::PgStorage::connect(&url).await?)
    })
}

/// The storage at `--storage` (default an SQLite file named after `name`
/// under target/), kept from an earlier run unless `--fresh 1`.
async fn open_kept_storage(opts: &Opts, name: &str) -> Result<Arc<dyn Storage>> {
    let url = opts.get("storage", &format!("sqlite://target/bench-{name}.db"));
    if opts.0.contains_key("fresh") && url.starts_with("sqlite://") {
        let file = url.trim_start_matches("sqlite://");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{file}{ext}"));
        }
    }
    Ok(if url.starts_with("sqlite://") {
        Arc::new(storage_sqlite::SqliteStorage::connect(&url).await?)
    } else {
        Arc::new(storage_postgres::PgStorage::connect(&url).await?)
    })
}

/// `nodes_n` simulated nodes of which the first `serving` run, and
/// `users_n` enabled users, applied on the serving nodes (their cursors
/// acknowledged straight in the storage, as the node-list benchmark does);
/// kept in the storage, so a later run only reads them back.
async fn seed_fleet(
    manager: &Manager,
    storage: &Arc<dyn Storage>,
    sim: &SimulatedFleet,
    nodes_n: usize,
    serving: usize,
    users_n: usize,
) -> Result<(Vec<Node>, Vec<(UserId, String)>)> {
    let mut nodes = manager_lib::storage::all_nodes(storage.as_ref()).await?;
    if nodes.len() != nodes_n || storage.fleet_state().await?.enabled_users != users_n as u64 {
        if !nodes.is_empty() {
            return Err("the kept database holds another fleet: pass --fresh 1".into());
        }
        eprintln!("seeding {nodes_n} nodes and {users_n} users (kept for later runs)…");
        common::seed_nodes(manager, sim, nodes_n, serving).await?;
        users(storage, users_n, Plan::default()).await?;
        common::ack_running_nodes(storage.as_ref()).await?;
        nodes = manager_lib::storage::all_nodes(storage.as_ref()).await?;
    } else {
        for node in &nodes {
            sim.add_node(&node.endpoint);
        }
    }
    let mut users = Vec::with_capacity(users_n);
    let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let page = storage.list_users(&req).await?;
        users.extend(page.items.into_iter().map(|u| (u.id, u.name)));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    Ok((nodes, users))
}

/// `n` users created straight in the storage (64 at a time), enabled.
async fn users(storage: &Arc<dyn Storage>, n: usize, plan: Plan) -> Result<Vec<(UserId, String)>> {
    let made = futures::stream::iter(0..n)
        .map(|i| {
            let storage = storage.clone();
            async move {
                let mut new = NewUser::new(format!("u{i}")).unwrap();
                new.plan = plan;
                let user = storage.create_user(new).await.unwrap();
                storage
                    .set_user_status(user.id, UserStatus::Enabled)
                    .await
                    .unwrap();
                (user.id, user.name)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    Ok(made)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 16 clients loading the node-list call until `stop`, `rate` requests a
/// second in all (0: none), each request on its schedule; the latencies.
/// A fixed rate measures the call's latency beside the ingest instead of
/// a load generator taking the CPU from it.
fn load_node_list(
    url: String,
    paths: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    rate: usize,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        let clients = if rate == 0 { 0 } else { 16 };
        let gap = Duration::from_secs_f64(16.0 / rate.max(1) as f64);
        for t in 0..clients {
            let (http, url, paths, stop) = (http.clone(), url.clone(), paths.clone(), stop.clone());
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut i = t;
                // Staggered: 16 clients on one schedule would send in
                // bursts of 16 and measure their own queue.
                let start = tokio::time::Instant::now() + gap.mul_f64(t as f64 / 16.0);
                let mut tick = tokio::time::interval_at(start, gap);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let path = &paths[i % paths.len()];
                    i += 16;
                    let started = Instant::now();
                    let resp = http.get(format!("{url}{path}")).send().await.unwrap();
                    assert!(resp.status().is_success());
                    resp.bytes().await.unwrap();
                    lat.push(started.elapsed());
                }
                lat
            });
        }
        let mut all = Vec::new();
        while let Some(lat) = tasks.join_next().await {
            all.extend(lat.unwrap());
        }
        all.sort();
        all
    })
}

async fn ingest(opts: &Opts) -> Result<()> {
    let nodes_n = opts.num("nodes", 1000);
    let serving = opts.num("serving", nodes_n).min(nodes_n);
    let per_node = opts.num("per-node", 1000);
    let users_n = opts.num("users", 1_000_000).max(per_node);
    let assign = opts.get("assign", "fixed");
    let (fixed, scattered) = match assign.as_str() {
        "fixed" => (true, false),
        "scattered" => (true, true),
        "random" => (false, false),
        other => return Err(format!("--assign fixed|scattered|random, not {other}").into()),
    };
    let rounds = opts.num("rounds", 3);
    let concurrency = opts.num("concurrency", 32);
    let rate = opts.num("load-rate", 1000);
    // Seeding a million users takes minutes: the database is kept and
    // reused by later runs with the same fleet (`--fresh 1` starts over).
    let name = format!("ingest-{users_n}-{nodes_n}-{serving}");
    let storage = open_kept_storage(opts, &name).await?;
    let sim = Arc::new(SimulatedFleet::new());
    let settings = ServerSettings {
        manager: ManagerSettings {
            concurrency,
            ..ManagerSettings::default()
        },
        push_on_change: false,
        node_list_limit: None,
        ..ServerSettings::new("bench")
    };
    // The memory cache, as the xray-manager binary runs by default: without
    // it every node-list call reads the whole fleet from the database.
    let backends =
        Backends::new(storage.clone(), sim.clone()).with_cache(Arc::new(MemoryCache::new()));
    let server = Server::build(backends, settings);
    let manager = server.manager.clone();
    let (nodes, users) = seed_fleet(&manager, &storage, &sim, nodes_n, serving, users_n).await?;
    // The API alone, as the node-list benchmark serves it: no heartbeat
    // beside the figures (the bench pulls by itself, as the heartbeat
    // would; a first heartbeat would push every user to every node).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = server.router;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let paths: Arc<Vec<String>> = Arc::new(
        users
            .iter()
            .map(|(id, name)| format!("/user/{id}-{name}/nodes"))
            .collect(),
    );
    let probe = reqwest::get(format!("{url}{}", paths[0])).await?;
    let links: Vec<String> = probe.json().await?;
    eprintln!("a user's node list has {} links", links.len());

    // One cold user at a time, in process (the storage, the cache and the
    // JSON the handler writes) and over HTTP: the call's own cost.
    let mut inproc = Vec::new();
    let mut http = Vec::new();
    let client = reqwest::Client::new();
    for (k, path) in paths.iter().rev().take(400).enumerate() {
        let id_name = path.trim_start_matches("/user/").trim_end_matches("/nodes");
        let started = Instant::now();
        if k % 2 == 0 {
            let links = manager.user_node_links(id_name).await?;
            let body = serde_json::to_vec(&links)?;
            std::hint::black_box(body);
            inproc.push(started.elapsed());
        } else {
            let body = client
                .get(format!("{url}{path}"))
                .send()
                .await?
                .bytes()
                .await?;
            std::hint::black_box(body);
            http.push(started.elapsed());
        }
    }
    inproc.sort();
    http.sort();
    println!(
        "node-list, one cold user at a time: in process p50 {:.2?} p99 {:.2?}; over HTTP p50 {:.2?} p99 {:.2?}",
        percentile(&inproc, 0.5),
        percentile(&inproc, 0.99),
        percentile(&http, 0.5),
        percentile(&http, 0.99)
    );

    // The node-list call without ingest, for comparison.
    let stop = Arc::new(AtomicBool::new(false));
    let idle = load_node_list(url.clone(), paths.clone(), stop.clone(), rate);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await?;

    let mut ids: Vec<UserId> = users.iter().map(|(id, _)| *id).collect();
    if scattered {
        rand::seq::SliceRandom::shuffle(ids.as_mut_slice(), &mut rand::rng());
    }
    let mut rates = Vec::new();
    let mut during = Vec::new();
    for round in 0..rounds {
        for (i, node) in nodes.iter().enumerate() {
            let deltas: Vec<(UserId, u64, u64)> = if fixed {
                (0..per_node)
                    .map(|k| (ids[(i * per_node + k) % ids.len()], 1_000, 50_000))
                    .collect()
            } else {
                ids.choose_multiple(&mut rand::rng(), per_node)
                    .map(|id| (*id, 1_000, 50_000))
                    .collect()
            };
            sim.record_usage(&node.endpoint, &deltas);
        }
        let fresh = manager_lib::storage::all_nodes(storage.as_ref()).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let load = load_node_list(url.clone(), paths.clone(), stop.clone(), rate);
        let started = Instant::now();
        let stored: u64 = futures::stream::iter(fresh.iter())
            .map(|node| {
                let manager = manager.clone();
                async move { manager.pull_usage(node).await.unwrap().user_deltas }
            })
            .buffer_unordered(concurrency)
            .fold(0, |a, b| async move { a + b })
            .await;
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        during.extend(load.await?);
        let rate = stored as f64 / took.as_secs_f64();
        println!(
            "ingest round {round}: {stored} user-deltas from {nodes_n} nodes stored in {took:.2?}: {rate:.0} user-deltas/s"
        );
        rates.push(rate);
    }
    during.sort();
    rates.sort_by(f64::total_cmp);
    println!(
        "ingest: median {:.0} user-deltas/s over {rounds} rounds ({nodes_n} nodes x {per_node} of {users_n} users, {} assignment)",
        rates[rates.len() / 2],
        assign
    );
    println!(
        "node-list while ingesting: p50 {:.2?} p99 {:.2?} ({} requests); idle: p50 {:.2?} p99 {:.2?} ({} requests)",
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.len(),
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.len()
    );
    Ok(())
}

async fn enforce(opts: &Opts) -> Result<()> {
    let nodes_n = opts.num("nodes", 1000);
    let samples = opts.num("samples", 30);
    let heartbeat = Duration::from_millis(opts.num("heartbeat-ms", 1000) as u64);
    let storage = open_storage(opts, "enforce").await?;
    let sim = Arc::new(SimulatedFleet::new());
    let settings = ServerSettings {
        manager: ManagerSettings {
            concurrency: 64,
            ..ManagerSettings::default()
        },
        reconciler: ReconcilerSettings {
            interval: heartbeat,
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("bench")
    };
    let server = Server::build(Backends::new(storage.clone(), sim.clone()), settings);
    let manager = server.manager.clone();
    common::seed_nodes(&manager, &sim, nodes_n, nodes_n).await?;
    let nodes = manager_lib::storage::all_nodes(storage.as_ref()).await?;
    let limited = Plan {
        data_limit: Some(1_000),
        ..Plan::default()
    };
    let users = users(&storage, samples, limited).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tokio::spawn(server.serve(listener, std::future::pending()));
    eprintln!("waiting for {samples} users on all {nodes_n} nodes…");
    while !nodes
        .iter()
        .all(|n| sim.users(&n.endpoint).len() == samples)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = Vec::with_capacity(samples);
    for (i, (id, _)) in users.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        let started = Instant::now();
        sim.record_usage(&node.endpoint, &[(*id, 600, 600)]);
        while nodes.iter().any(|n| sim.users(&n.endpoint).contains(id)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(started.elapsed());
    }
    lat.sort();
    println!(
        "enforce: limit crossed on one node to the user off all {nodes_n} nodes, {samples} samples, heartbeat {heartbeat:?}: p50 {:.2?} p99 {:.2?} max {:.2?} (p99 / heartbeat = {:.2})",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        percentile(&lat, 0.99).as_secs_f64() / heartbeat.as_secs_f64()
    );
    Ok(())
}
