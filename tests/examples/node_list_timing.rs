//! Run with: cargo run --release -p tests --example node_list_timing [-- SAMPLES]
//!
//! The node-list call's two refusals, timed in process through the
//! manager over SQLite and the in-memory cache (as `xray-manager` runs by
//! default): a known id with a wrong name, and an unknown id asked again
//! (as a prober samples it). Prints the median and the 10th/90th
//! percentiles of each, interleaved so both see the same machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use manager_lib::cache::{CachedStorage, CachedStorageSettings, MemoryCache};
use manager_lib::domain::UserId;
use manager_lib::manager::{Manager, ManagerError, ManagerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;

#[tokio::main]
async fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .map_or(2000, |s| s.parse().expect("SAMPLES is a number"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("manager.db").display());
    let sqlite: Arc<dyn Storage> =
        Arc::new(storage_sqlite::SqliteStorage::connect(&url).await.unwrap());
    let cached = Arc::new(CachedStorage::new(
        sqlite,
        Arc::new(MemoryCache::new()),
        CachedStorageSettings::default(),
    ));
    let fleet = Arc::new(SimulatedFleet::new());
    let manager = Manager::new(cached, fleet, ManagerSettings::default());
    let mut known = Vec::new();
    for i in 0..1000 {
        known.push(manager.new_user(&format!("user{i}")).await.unwrap().id);
    }
    let unknown = UserId::random();
    let wrong_name = format!("{}-nobody", known[500]);
    let unknown_id = format!("{unknown}-nobody");

    let time = |path: &str| {
        let path = path.to_owned();
        let manager = &manager;
        async move {
            let started = Instant::now();
            let answer = manager.user_node_links(&path).await;
            let took = started.elapsed();
            assert!(matches!(answer, Err(ManagerError::UserMismatch)));
            took
        }
    };
    // Warm both paths (the known row and, when cached, the absence).
    for _ in 0..100 {
        time(&wrong_name).await;
        time(&unknown_id).await;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        a.push(time(&wrong_name).await);
        b.push(time(&unknown_id).await);
    }
    report("known id, wrong name", &mut a);
    report("unknown id (repeated)", &mut b);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{what:>24}: median {:>6.1} µs  p10 {:>6.1} µs  p90 {:>6.1} µs  ({} samples)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.1).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        samples.len()
    );
}
