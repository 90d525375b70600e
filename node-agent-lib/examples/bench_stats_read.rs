//! Run with: cargo run --release -p node-agent-lib --example bench_stats_read -- [users] [reads]
//!
//! What the agent's usage accounting costs with `users` active users
//! (default 100,000) on a node, without a core: the counters the core would
//! answer (`user>>>ID>>>traffic>>>uplink|downlink`, two per user) are made
//! in memory, so this measures the agent's side of a read: summing per user,
//! the journal append (JSON, CRC, write, fsync), a pull of the page, and a
//! merge when the journal is full. Prints milliseconds per step, the
//! journal's bytes per batch and the process's peak RSS and RSS after the
//! reads (what the allocator kept).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use node_agent_lib::CoreApi;
use node_agent_lib::core::{CoreError, CoreUser, Stat, sum_user_traffic};
use node_agent_lib::usage::{Journal, Usage};
use node_agent_lib::wire::UsageRequest;

/// A core whose every read answers `users` users' two counters.
#[derive(Debug)]
struct Counters {
    users: usize,
}

#[async_trait]
impl CoreApi for Counters {
    async fn add_user(&self, _: &str, _: &CoreUser) -> Result<(), CoreError> {
        Ok(())
    }
    async fn remove_user(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Ok(())
    }
    async fn users_count(&self, _: &str) -> Result<Option<u64>, CoreError> {
        Ok(None)
    }
    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        Ok(1)
    }
    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        let stats = (0..self.users as u128).flat_map(|i| {
            let id = uuid::Uuid::from_u128(i);
            [
                Stat {
                    name: format!("user>>>{id}>>>traffic>>>uplink"),
                    value: 12_345,
                },
                Stat {
                    name: format!("user>>>{id}>>>traffic>>>downlink"),
                    value: 1_234_567_890,
                },
            ]
        });
        Ok(sum_user_traffic(stats.collect()))
    }
}

/// A `/proc/self/status` figure in KiB (`VmHWM:` peak, `VmRSS:` now).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("users"));
    let reads: usize = args.next().map_or(5, |a| a.parse().expect("reads"));
    let dir = tempfile::tempdir().unwrap();
    let max_batches = 4;
    let journal = Journal::open(dir.path(), max_batches).unwrap();
    let core = Arc::new(Counters { users });
    let usage = Usage::new(core.clone(), journal);
    println!("users {users}, journal cap {max_batches} batches (merges after {max_batches})");

    let began = Instant::now();
    let read = core.take_user_traffic().await.unwrap();
    println!(
        "building + summing the core's counters: {:.0} ms ({} users)",
        ms(began),
        read.len()
    );
    drop(read);

    for i in 1..=reads {
        let began = Instant::now();
        let seq = usage.collect().await.unwrap();
        let c = usage.counters();
        println!(
            "read {i}: read + append {:.0} ms (seq {seq:?}); journal {} batches, {:.1} MiB",
            ms(began),
            c.journal_batches.load(std::sync::atomic::Ordering::Relaxed),
            c.journal_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0
        );
    }
    let began = Instant::now();
    let page = usage.pull(UsageRequest::default()).await.unwrap();
    let json = serde_json::to_vec(&page).unwrap();
    println!(
        "pull: {} batches, {:.1} MiB of JSON, {:.0} ms (read + parse + serialise)",
        page.batches.len(),
        json.len() as f64 / 1048576.0,
        ms(began)
    );
    drop((page, json));
    println!(
        "RSS peak {:.1} MiB, after the reads {:.1} MiB",
        status_kib("VmHWM:") as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0
    );
}
