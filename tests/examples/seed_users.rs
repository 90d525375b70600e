//! Seeds many users straight into a manager's SQLite storage, through the
//! storage's own API (group commit, many writes in flight), for the browser
//! suite's "search among 100,000 users" (tests/browser): creating them
//! through `POST /user/new` one by one takes minutes, this a few seconds.
//!
//! `seed_users --storage sqlite://FILE --users N [--prefix bulk-]
//! [--enable-below M] [--enable-every K]`: users `<prefix>000000` … in
//! order; those whose number is below M and a multiple of K (defaults 0 and
//! 1: none) are enabled. Run it before the manager starts on FILE (the
//! migrations run here). Prints one line: how many, and how long it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use manager_lib::domain::{NewUser, UserStatus};
use manager_lib::storage::Storage;
use storage_sqlite::SqliteStorage;
use tests::bench::Opts;

/// Writes in flight at once: enough to fill the writer's batches.
const TASKS: usize = 256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `--key value` pairs (no scenario word, unlike the benchmarks).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts(
        args.chunks(2)
            .map(|kv| {
                let value = kv.get(1).cloned().unwrap_or_default();
                (kv[0].trim_start_matches("--").to_owned(), value)
            })
            .collect(),
    );
    let url = opts.get("storage", "");
    if !url.starts_with("sqlite://") {
        return Err("--storage sqlite://FILE is required".into());
    }
    let users = opts.num("users", 0);
    let prefix = opts.get("prefix", "bulk-");
    let enable_below = opts.num("enable-below", 0);
    let enable_every = opts.num("enable-every", 1).max(1);

    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::connect(&url).await?);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let enabled = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (storage, next, enabled, prefix) = (
            storage.clone(),
            next.clone(),
            enabled.clone(),
            prefix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    return Ok::<_, String>(());
                }
                let name = format!("{prefix}{i:06}");
                let new = NewUser::new(name.as_str()).map_err(|e| format!("{name}: {e}"))?;
                let user = storage
                    .create_user(new)
                    .await
                    .map_err(|e| format!("create {name}: {e}"))?;
                if i < enable_below && i % enable_every == 0 {
                    storage
                        .set_user_status(user.id, UserStatus::Enabled)
                        .await
                        .map_err(|e| format!("enable {name}: {e}"))?;
                    enabled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "seeded {users} users ({} enabled) in {:.1?}",
        enabled.load(Ordering::Relaxed),
        started.elapsed()
    );
    Ok(())
}
