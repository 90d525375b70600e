//! Run with: cargo run --profile production -p tests --example bench_manager -- <scenario> [options]
//!
//! (`production` is the profile operators ship: `release` with fat LTO.)
//!
//! The manager's benchmarks (figures, not pass/fail tests), on a simulated
//! fleet so 1,000 nodes fit on one machine:
//!
//! - `writes --nodes N --users U`: user creation + enable through the
//!   manager's scenarios, 64 at a time; a change's cost must not grow with N.
//! - `enable-latency --nodes 10 --samples S`: from `enable_user` returning to
//!   the user being on every node's core (the nudged push), p50/p99.
//! - `burst --nodes 1000 --users 10000 [--parallel P]`: 10,000 enables (P at
//!   a time, default 1), time until every node's core has every user.
//! - `node-list --users 1000000 --nodes 1000 --serving K`: seeds (once, kept in
//!   the storage file/database), serves the manager's API on 127.0.0.1, and
//!   loads `GET /user/{id}-{name}/nodes` with `wrk` (64 connections, random
//!   users); prints wrk's figures and the process's resident memory.
//!
//! `node-list --sub FORMAT` loads `GET /sub/{token}?format=FORMAT`
//! instead (base64, links, xray, sing-box, clash, html) on its own fleet
//! whose nodes each describe three inbounds (VLESS REALITY, VMess ws TLS,
//! Trojan TLS): the subscription benchmark is `--sub base64 --users 1000000
//! --nodes 10`.
//!
//! `node-list --baseline 1` runs the same load on `GET /health`;
//! `--warm 1` first reads every user's list once through the cache (the
//! steady state of polling clients); `--hot K` requests only the first K
//! users; `--user-ttl S` sets how long user rows stay cached. wrk sends
//! requests formatted once per user in a random order per thread;
//! `--format-each 1` formats a random user's request for every request.
//!
//! Common options: `--storage URL` (default an SQLite file under target/),
//! `--master-key FILE` (secrets sealed at rest under it, as in production),
//! `--cache memory|redis://…|none|off` (none: the decorator over a cache that
//! keeps nothing; off: node-list without the decorator).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manager_lib::cache::{Cache, CachedStorageSettings, MemoryCache};
use manager_lib::domain::{NewUser, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::reconcile::ReconcilerSettings;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;
use nix::sys::resource::{UsageWho, getrusage};

use tests::bench::Opts;

mod common;
#[path = "common/subscription_fleet.rs"]
mod subscription_fleet;
use common::Result;

#[tokio::main]
async fn main() -> Result<()> {
    let (scenario, opts) = Opts::from_args();
    match scenario.as_str() {
        "writes" => writes(&opts).await,
        "enable-latency" => enable_latency(&opts).await,
        "burst" => burst(&opts).await,
        "node-list" => node_list(&opts).await,
        _ => {
            eprintln!(
                "scenarios: writes | enable-latency | burst | node-list (see the file's doc)"
            );
            std::process::exit(1);
        }
    }
}

async fn open_storage(opts: &Opts, name: &str) -> Result<Arc<dyn Storage>> {
    let default = format!("sqlite://target/bench-{name}.db");
    let url = opts.get("storage", &default);
    let seal = sealer(opts)?;
    Ok(if url.starts_with("sqlite://") {
        Arc::new(storage_sqlite::SqliteStorage::connect_sealed(&url, seal).await?)
    } else {
        Arc::new(storage_postgres::PgStorage::connect_sealed(&url, seal).await?)
    })
}

/// `--master-key FILE` (`openssl rand -base64 32 > FILE`): secrets sealed
/// at rest under it, in the storage and the cache, as an operator's manager
/// runs. Without it, nothing is sealed.
fn sealer(opts: &Opts) -> Result<manager_lib::seal::Sealer> {
    use manager_lib::seal::{MasterKey, Sealer};
    let Some(path) = opts.0.get("master-key") else {
        return Ok(Sealer::clear());
    };
    let key = MasterKey::read_file(std::path::Path::new(path))?;
    Ok(Sealer::new(key, Vec::new()))
}

/// `--warm 1`: reads every user's list once through the cache, 64 at a time,
/// before the load: the steady state of a fleet whose clients poll, where
/// every row is cached (user rows stay cached until they change).
async fn warm(cached: &Arc<dyn Storage>, paths_file: &str) -> Result<()> {
    let ids: Vec<manager_lib::domain::UserId> = std::fs::read_to_string(paths_file)?
        .lines()
        .map(|p| p["/user/".len()..][..36].parse())
        .collect::<std::result::Result<_, _>>()?;
    let started = Instant::now();
    let ids = Arc::new(ids);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (cached, ids, next) = (cached.clone(), ids.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                cached.user_nodes(*id).await.expect("user_nodes");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    eprintln!(
        "warmed {} users' lists in {:.1?}",
        ids.len(),
        started.elapsed()
    );
    Ok(())
}

/// A cache that keeps nothing: the decorator's cost without the cache's.
#[derive(Debug)]
struct NoCache;

#[async_trait::async_trait]
impl Cache for NoCache {
    async fn get(&self, _: &str) -> manager_lib::cache::CacheResult<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: Vec<u8>, _: Duration) -> manager_lib::cache::CacheResult<()> {
        Ok(())
    }
    async fn invalidate(&self, _: &str) -> manager_lib::cache::CacheResult<()> {
        Ok(())
    }
    async fn put_versioned(
        &self,
        _: &str,
        _: Vec<u8>,
        _: i64,
        _: Duration,
    ) -> manager_lib::cache::CacheResult<()> {
        Ok(())
    }
    async fn mark_changed(
        &self,
        _: &str,
        _: i64,
        _: Duration,
    ) -> manager_lib::cache::CacheResult<()> {
        Ok(())
    }
}

async fn open_cache(opts: &Opts) -> Result<Arc<dyn Cache>> {
    let url = opts.get("cache", "memory");
    Ok(if url == "none" {
        Arc::new(NoCache)
    } else if url == "memory" {
        Arc::new(MemoryCache::new())
    } else {
        Arc::new(cache_redis::RedisCache::connect(&url).await?)
    })
}

fn fresh_sqlite(name: &str) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("target/bench-{name}.db{ext}"));
    }
}

/// A fleet of `n` simulated nodes, registered and started.
async fn fleet(
    manager: &Manager,
    fleet: &SimulatedFleet,
    n: usize,
) -> Result<Vec<manager_lib::domain::Node>> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let endpoint = format!("http://sim-{i}.bench:9000");
        fleet.add_node(&endpoint);
        let node = manager.new_node(&endpoint).await?;
        manager.start_node(node.id).await?;
        nodes.push(node);
    }
    Ok(nodes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn writes(opts: &Opts) -> Result<()> {
    let nodes = opts.num("nodes", 10);
    let users = opts.num("users", 20_000);
    let name = format!("writes-{nodes}");
    fresh_sqlite(&name);
    let storage = open_storage(opts, &name).await?;
    let sim = Arc::new(SimulatedFleet::new());
    let manager = Arc::new(Manager::new(
        storage,
        sim.clone(),
        ManagerSettings::default(),
    ));
    fleet(&manager, &sim, nodes).await?;
    let start = Instant::now();
    let per_task = users / 64;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..64 {
        let manager = manager.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                let user = manager.new_user(&format!("user-{t}-{i}")).await.unwrap();
                manager.enable_user(user.id).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let took = start.elapsed();
    let done = per_task * 64;
    println!(
        "writes: {done} users created+enabled with {nodes} nodes in {:.2?}: {:.0} users/s",
        took,
        done as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn running_manager(
    opts: &Opts,
    name: &str,
    nodes: usize,
) -> Result<(
    Arc<Manager>,
    Arc<SimulatedFleet>,
    Vec<manager_lib::domain::Node>,
)> {
    fresh_sqlite(name);
    let storage = open_storage(opts, name).await?;
    let sim = Arc::new(SimulatedFleet::new());
    let settings = ServerSettings {
        manager: ManagerSettings {
            concurrency: 64,
            ..ManagerSettings::default()
        },
        reconciler: ReconcilerSettings {
            interval: Duration::from_secs(5),
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("bench")
    };
    let server = Server::build(Backends::new(storage, sim.clone()), settings);
    let manager = server.manager.clone();
    let nodes = fleet(&manager, &sim, nodes).await?;
    // The first heartbeat claims the nodes; after that, the manager pushes
    // each change to them by itself.
    server.reconciler.heartbeat().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tokio::spawn(server.serve(listener, std::future::pending()));
    Ok((manager, sim, nodes))
}

async fn enable_latency(opts: &Opts) -> Result<()> {
    let nodes_n = opts.num("nodes", 10);
    let samples = opts.num("samples", 500);
    let (manager, sim, nodes) = running_manager(opts, "latency", nodes_n).await?;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let user = manager.new_user(&format!("u{i}")).await?;
        let start = Instant::now();
        manager.enable_user(user.id).await?;
        while !nodes
            .iter()
            .all(|n| sim.users(&n.endpoint).contains(&user.id))
        {
            tokio::task::yield_now().await;
        }
        lat.push(start.elapsed());
    }
    lat.sort();
    println!(
        "enable-to-applied on {nodes_n} nodes, {samples} samples: p50 {:.2?} p99 {:.2?} max {:.2?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    Ok(())
}

async fn burst(opts: &Opts) -> Result<()> {
    let nodes_n = opts.num("nodes", 1000);
    let users = opts.num("users", 10_000);
    let (manager, sim, nodes) = running_manager(opts, "burst", nodes_n).await?;
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        ids.push(manager.new_user(&format!("u{i}")).await?.id);
    }
    // `--parallel P`: enables in flight at once (1: one after another, as
    // one script would; more: as many admin clients or `xmctl import` would).
    let parallel = opts.num("parallel", 1).max(1);
    let start = Instant::now();
    let chunks: Vec<Vec<_>> = ids
        .chunks(ids.len().div_ceil(parallel))
        .map(<[_]>::to_vec)
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let manager = manager.clone();
        tasks.spawn(async move {
            for id in chunk {
                manager.enable_user(id).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let stored = start.elapsed();
    while !nodes.iter().all(|n| sim.users(&n.endpoint).len() == users) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "burst: {users} enables ({parallel} in flight) stored in {stored:.2?}, applied on all {nodes_n} nodes after {:.2?}",
        start.elapsed()
    );
    Ok(())
}

/// User and system CPU seconds of this process, or of its children that
/// were waited for (here: wrk).
fn cpu_secs(who: UsageWho) -> f64 {
    let usage = getrusage(who).expect("getrusage on this process cannot fail");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

/// The request count of wrk's "N requests in …" line.
fn wrk_requests(report: &str) -> Option<u64> {
    report
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn node_list(opts: &Opts) -> Result<()> {
    let users_n = opts.num("users", 1_000_000);
    let nodes_n = opts.num("nodes", 1000);
    let serving = opts.num("serving", nodes_n);
    let sub = opts.0.get("sub").cloned();
    let name = match sub {
        Some(_) => format!("sub-{users_n}-{nodes_n}"),
        None => format!("nodelist-{users_n}-{nodes_n}"),
    };
    let storage = open_storage(opts, &name).await?;
    let sim = Arc::new(match sub {
        Some(_) => SimulatedFleet::new().with_inbounds(subscription_fleet::three_inbounds()),
        None => SimulatedFleet::new(),
    });
    // One paths file per storage: the users differ.
    let backend = if opts.get("storage", "sqlite").starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let paths_file = format!("target/bench-{name}-{backend}.paths");
    let fleet_state = storage.fleet_state().await?;
    if fleet_state.enabled_users < users_n as u64 {
        eprintln!("seeding {users_n} users and {nodes_n} nodes (once)…");
        let manager = Manager::new(storage.clone(), sim.clone(), ManagerSettings::default());
        common::seed_nodes(&manager, &sim, nodes_n, serving).await?;
        let mut paths = std::io::BufWriter::new(std::fs::File::create(&paths_file)?);
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
        let per_task = users_n / 64;
        for t in 0..64 {
            let storage = storage.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let user = storage
                        .create_user(NewUser::new(format!("user-{t}-{i}")).unwrap())
                        .await
                        .unwrap();
                    storage
                        .set_user_status(user.id, UserStatus::Enabled)
                        .await
                        .unwrap();
                    tx.send(format!("/user/{}-{}/nodes", user.id, user.name))
                        .await
                        .unwrap();
                }
            });
        }
        drop(tx);
        let mut n = 0;
        while let Some(p) = rx.recv().await {
            writeln!(paths, "{p}")?;
            n += 1;
            if n % 100_000 == 0 {
                eprintln!(
                    "  {n} users ({:.0}/s)",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        paths.flush()?;
        common::ack_running_nodes(storage.as_ref()).await?;
        eprintln!("seeded in {:.1?}", started.elapsed());
    }
    if !std::path::Path::new(&paths_file).exists() {
        // Seeded earlier but the paths are gone: list them again.
        let mut paths = std::io::BufWriter::new(std::fs::File::create(&paths_file)?);
        let mut req = manager_lib::domain::PageRequest::first(10_000);
        loop {
            let page = storage.list_users(&req).await?;
            for user in &page.items {
                writeln!(paths, "/user/{}-{}/nodes", user.id, user.name)?;
            }
            match page.next {
                Some(next) => req.after = Some(next),
                None => break,
            }
        }
        paths.flush()?;
    }
    // What wrk requests; `--warm` reads the user ids of the node-list paths.
    let load_paths = match &sub {
        Some(format) => {
            subscription_fleet::subscription_paths(storage.as_ref(), &name, backend, format).await?
        }
        None => paths_file.clone(),
    };
    if opts.0.contains_key("seed-only") {
        return Ok(());
    }
    // `--trim K`: only the first K nodes keep serving (the others are marked
    // as being stopped), for answers of K links instead of one per node.
    if let Some(keep) = opts.0.get("trim").and_then(|k| k.parse::<usize>().ok()) {
        let nodes = storage
            .list_nodes(&manager_lib::domain::PageRequest::first(10_000))
            .await?;
        for node in nodes.items.iter().skip(keep) {
            storage.begin_stop(node.id).await?;
        }
    }
    // `--cache off`: the storage alone, to see what the cache adds.
    let mut backends = Backends::new(storage, sim).with_sealer(sealer(opts)?);
    if opts.get("cache", "memory") != "off" {
        backends = backends.with_cache(open_cache(opts).await?);
    }
    let settings = ServerSettings {
        cache: match opts.0.get("user-ttl") {
            Some(secs) => CachedStorageSettings {
                user_ttl: Duration::from_secs(secs.parse()?),
                ..CachedStorageSettings::default()
            },
            None => CachedStorageSettings::default(),
        },
        // Nothing changes during the load: no pushes to trigger.
        push_on_change: false,
        node_list_limit: None,
        ..ServerSettings::new("bench")
    };
    let server = Server::build(backends, settings);
    if opts.0.contains_key("warm") {
        warm(server.manager.storage(), &paths_file).await?;
    }
    // The API alone, as it always was measured: no heartbeat beside the
    // load, served by plain `axum::serve`.
    let app = server.router;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (rss0, _) = rss_kib();
    eprintln!(
        "serving on {addr}; resident memory before load: {} MiB",
        rss0 / 1024
    );

    let script = format!("target/bench-{name}.lua");
    // `--baseline 1`: the same load on `GET /health` (no storage, no cache),
    // for what the machine and the load generator allow at all.
    let paths_source = if opts.0.contains_key("baseline") {
        "paths[1] = \"/health\"".to_owned()
    } else {
        let hot = opts.num("hot", usize::MAX);
        format!(
            r#"for line in io.lines("{load_paths}") do
    if #paths >= {hot} then break end
    paths[#paths + 1] = line
  end"#
        )
    };
    // Every request is formatted once, in `init` (each wrk thread walks its
    // own random permutation of the users): the load generator then spends
    // its share of the two cores sending, not building strings.
    // `--format-each 1`: the former script, a random user formatted per
    // request.
    let (prepare, pick) = if opts.0.contains_key("format-each") {
        (
            "",
            r#"return wrk.format("GET", paths[math.random(#paths)])"#,
        )
    } else {
        (
            r#"for k = #paths, 2, -1 do
    local j = math.random(k)
    paths[k], paths[j] = paths[j], paths[k]
  end
  for k = 1, #paths do
    paths[k] = wrk.format("GET", paths[k])
  end"#,
            "i = i % #paths + 1\n  return paths[i]",
        )
    };
    let body = format!(
        r#"local paths = {{}}
local i = 0
init = function(args)
  {paths_source}
  math.randomseed(os.time() + tonumber(tostring({{}}):match("0x(%x+)"), 16) % 100000)
  {prepare}
end
request = function()
  {pick}
end
"#
    );
    std::fs::write(&script, body)?;
    let duration = opts.get("duration", "20s");
    let connections = opts.get("connections", "64");
    let cpu_before = cpu_secs(UsageWho::RUSAGE_SELF);
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            "-c",
            &connections,
            "-d",
            &duration,
            "--latency",
            "-s",
            &script,
        ])
        .arg(format!("http://{addr}"))
        .output()
        .await?;
    let server_cpu = cpu_secs(UsageWho::RUSAGE_SELF) - cpu_before;
    let wrk_cpu = cpu_secs(UsageWho::RUSAGE_CHILDREN);
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    // CPU per request tells the server's cost apart from the load
    // generator's on two shared cores, and holds on a busy machine.
    if let Some(requests) = wrk_requests(&report).filter(|&n| n > 0) {
        let per = |secs: f64| secs * 1e6 / requests as f64;
        println!(
            "CPU per request: server {:.1} µs, wrk {:.1} µs ({requests} requests)",
            per(server_cpu),
            per(wrk_cpu)
        );
    }
    let (rss, hwm) = rss_kib();
    println!(
        "manager resident memory: now {} MiB, peak {} MiB (this process also holds the bench's seeding data)",
        rss / 1024,
        hwm / 1024
    );
    Ok(())
}
