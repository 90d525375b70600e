//! Run with: cargo run --release -p tests --example bench_dashboard -- pages [--users 1000000] [--nodes 1000] [--storage URL] [--samples 200]
//!
//! The dashboard's server time (figures, not pass/fail): seeds (once, kept
//! in the storage file/database) `--users` users, one in ten enabled, one
//! in a thousand expired, one in a hundred on hold, and `--nodes` simulated
//! nodes; then requests each page through the manager's real router
//! (`oneshot`: routing, the session check, the storage query and the HTML,
//! no network) `--samples` times and prints p50/p99 and the answer's size:
//! the user table's first, a middle and the last page, a search, filters,
//! the other orders, and the overview. Then the bytes a first visit
//! transfers (login page, style, script, icon, overview): the bodies as
//! sent to a browser that accepts `gzip, deflate, br, zstd` (Chromium's
//! header; the dashboard answers brotli), and uncompressed. Headers are
//! not counted (a few hundred bytes per answer).
//!
//! Last, the overview's read of the nodes before and after issue 18's
//! summary read, interleaved (A B A B…): every whole node
//! (`storage::all_nodes`: profiles parsed, each sealed key opened) against
//! `NodeEventLog::node_summaries` (plain columns).
//!
//! `--storage` defaults to an SQLite file under target/; give a
//! `postgres://…` URL for PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use manager_lib::domain::{NewUser, Plan, Timestamp, UserId, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::Storage;
use manager_lib::storage::kit::directory::{Cursor, Key};
use manager_lib::transport::simulated::SimulatedFleet;
use tower::ServiceExt as _;

use tests::bench::Opts;

// Shared with bench_manager, which uses all of it.
#[allow(dead_code)]
mod common;
use common::Result;

const BOOT: &str = "9b1f0c2e7d4a6b8c3e5f7a9d1c3b5e7f";
const TASKS: usize = 64;

async fn open_storage(url: &str) -> Result<Arc<dyn Storage>> {
    Ok(if url.starts_with("sqlite://") {
        Arc::new(storage_sqlite::SqliteStorage::connect(url).await?)
    } else {
        Arc::new(storage_postgres::PgStorage::connect(url).await?)
    })
}

fn name(t: usize, i: usize) -> String {
    format!("user-{t:02}-{i:06}")
}

async fn seed(
    storage: &Arc<dyn Storage>,
    sim: &Arc<SimulatedFleet>,
    users: usize,
    nodes: usize,
) -> Result<()> {
    let have = storage
        .list_users(&manager_lib::domain::PageRequest::first(1))
        .await?;
    if !have.items.is_empty() {
        return Ok(());
    }
    eprintln!("seeding {users} users and {nodes} nodes (once)…");
    let started = Instant::now();
    let manager = Manager::new(storage.clone(), sim.clone(), ManagerSettings::default());
    common::seed_nodes(&manager, sim, nodes, 0).await?;
    let per_task = users / TASKS;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let storage = storage.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                let mut new = NewUser::new(name(t, i)).unwrap();
                let n = t * per_task + i;
                if n % 1000 == 7 {
                    new.plan = Plan {
                        expire_at: Some(Timestamp(Timestamp::now().0 - 1000)),
                        ..Plan::default()
                    };
                } else if n % 100 == 3 {
                    new.plan = Plan {
                        on_hold: Some(86_400),
                        ..Plan::default()
                    };
                }
                let user = storage.create_user(new).await.unwrap();
                if n % 10 == 0 || n % 1000 == 7 {
                    storage
                        .set_user_status(user.id, UserStatus::Enabled)
                        .await
                        .unwrap();
                }
                if t == 0 && i % 10_000 == 0 {
                    eprintln!("  task 0 at {i}");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    eprintln!("seeded in {:.1?}", started.elapsed());
    Ok(())
}

async fn get(router: &axum::Router, path: &str, cookie: &str) -> (StatusCode, usize, Duration) {
    get_as(router, path, cookie, "identity").await
}

/// `get` from a browser that accepts `encoding`: the body's size as sent.
async fn get_as(
    router: &axum::Router,
    path: &str,
    cookie: &str,
    encoding: &str,
) -> (StatusCode, usize, Duration) {
    let req = Request::builder()
        .uri(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT_ENCODING, encoding)
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.len(), started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn cursor(name: &str) -> String {
    let c = Cursor {
        key: Key::Text(name.to_owned()),
        id: UserId::from_uuid(uuid::Uuid::nil()),
    };
    c.encode()
}

#[tokio::main]
async fn main() -> Result<()> {
    let (_, opts) = Opts::from_args();
    let users = opts.num("users", 1_000_000);
    let nodes = opts.num("nodes", 1000);
    let samples = opts.num("samples", 200);
    let default = format!("sqlite://target/bench-dashboard-{users}-{nodes}.db");
    let url = opts.get("storage", &default);
    let storage = open_storage(&url).await?;
    let sim = Arc::new(SimulatedFleet::new());
    seed(&storage, &sim, users, nodes).await?;
    let settings = ServerSettings {
        push_on_change: false,
        admin_failure_limit: None,
        ..ServerSettings::new(BOOT)
    };
    let router = Server::build(Backends::new(storage.clone(), sim.clone()), settings).router;
    let login = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={BOOT}")))
        .unwrap();
    let resp = router.clone().oneshot(login).await?;
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let per_task = users / TASKS;
    let pages = [
        ("users: first page".to_owned(), "/ui/users".to_owned()),
        (
            "users: middle page".to_owned(),
            format!("/ui/users?after={}", cursor(&name(TASKS / 2, 0))),
        ),
        (
            "users: last page".to_owned(),
            format!(
                "/ui/users?after={}",
                cursor(&name(TASKS - 1, per_task.saturating_sub(30)))
            ),
        ),
        (
            "users: search name prefix".to_owned(),
            "/ui/users?q=user-42-0150".to_owned(),
        ),
        (
            "users: status enabled (1 in 10)".to_owned(),
            "/ui/users?status=enabled".to_owned(),
        ),
        (
            "users: state expired (1 in 1000)".to_owned(),
            "/ui/users?state=expired".to_owned(),
        ),
        (
            "users: sort by creation, newest".to_owned(),
            "/ui/users?sort=created&order=desc".to_owned(),
        ),
        (
            "users: sort by usage, most".to_owned(),
            "/ui/users?sort=usage&order=desc".to_owned(),
        ),
        ("overview".to_owned(), "/ui/".to_owned()),
        (
            "overview fragment".to_owned(),
            "/ui/overview/fragment".to_owned(),
        ),
    ];
    println!(
        "{users} users, {nodes} nodes, {url}; {samples} samples each (server time through the router)"
    );
    for (label, path) in &pages {
        let (status, _, _) = get(&router, path, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{label}: {path}");
        let mut times = Vec::with_capacity(samples);
        let mut size = 0;
        for _ in 0..samples {
            let (_, len, took) = get(&router, path, &cookie).await;
            size = len;
            times.push(took);
        }
        times.sort();
        println!(
            "{label:<36} p50 {:>8.2?}  p99 {:>8.2?}  {size} bytes",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    let (mut whole, mut summaries) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        let all = manager_lib::storage::all_nodes(storage.as_ref()).await?;
        whole.push(started.elapsed());
        let started = Instant::now();
        let brief = storage.node_summaries().await?;
        summaries.push(started.elapsed());
        assert_eq!(all.len(), brief.len());
    }
    for (label, mut times) in [
        ("nodes read: every whole node (before)", whole),
        ("nodes read: node_summaries (after)", summaries),
    ] {
        times.sort();
        println!(
            "{label:<40} p50 {:>8.2?}  p99 {:>8.2?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    use manager_lib::dashboard::assets;
    let visit = [
        ("login", "/ui/login".to_owned(), ""),
        ("style", assets::style_url(), ""),
        ("script", assets::script_url(), ""),
        ("icon", assets::icon_url(), ""),
        ("overview", "/ui/".to_owned(), cookie.as_str()),
    ];
    for encoding in ["gzip, deflate, br, zstd", "identity"] {
        let mut parts = Vec::new();
        let mut total = 0;
        for (label, path, cookie) in &visit {
            let (status, bytes, _) = get_as(&router, path, cookie, encoding).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            parts.push(format!("{label} {bytes}"));
            total += bytes;
        }
        println!(
            "first visit, Accept-Encoding {encoding:?}: {} = {total} bytes",
            parts.join(" + ")
        );
    }
    Ok(())
}
