//! Run with: cargo run --release -p xray-core-client --features testing --example bench_query_stats -- [users] [calls]
//!
//! Where the time of a read of every user's traffic counters goes: a real
//! core (Debian's v2ray or `$V2RAY_BIN`) with `users` VLESS users (default
//! 100,000), each of whom made one connection through it (raw VLESS to a
//! local sink), so it holds two counters per user. Then `calls` times
//! (default 7), interleaved, it reads them all without reset:
//! - one `QueryStats` call with the pattern `user>>>`;
//! - sixteen calls, `user>>>0` … `user>>>f`, one after another;
//! - the same sixteen calls at once (the agent's users are UUIDs, so every
//!   user counter is in exactly one of them);
//!
//! and prints for each the median wall time, the core's CPU time and this
//! process's CPU time per read (from `/proc/PID/stat`), and the counters read.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use xray_core_client::testing::{
    TestCore, VLESS_TAG, serve_exchange, vless_exchange, vless_user_with_id,
};
use xray_core_client::{CoreClient, StatSink};

/// Counts what a read answered.
#[derive(Debug, Default)]
struct Count {
    counters: usize,
    bytes: i64,
}

impl StatSink for Count {
    fn stat(&mut self, _name: &str, value: i64) {
        self.counters += 1;
        self.bytes += value;
    }
}

/// User `i`, its id spread over the id space as the manager's random ids are.
fn id(i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128((i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

/// CPU seconds (user + system, all threads) of process `pid` ("self" too).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}

/// The pid of this process's child (the core).
fn core_pid() -> String {
    let me = std::process::id();
    std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .next()
        .expect("the core is this process's child")
}

const SHARDS: &str = "0123456789abcdef";

async fn one(api: &CoreClient) -> Count {
    let mut count = Count::default();
    api.query_stats_into("user>>>", false, &mut count)
        .await
        .expect("query");
    count
}

async fn sequential(api: &CoreClient) -> Count {
    let mut count = Count::default();
    for first in SHARDS.chars() {
        api.query_stats_into(&format!("user>>>{first}"), false, &mut count)
            .await
            .expect("query");
    }
    count
}

async fn parallel(api: &CoreClient) -> Count {
    let parts = futures::future::join_all(SHARDS.chars().map(|first| async move {
        let mut count = Count::default();
        api.query_stats_into(&format!("user>>>{first}"), false, &mut count)
            .await
            .expect("query");
        count
    }))
    .await;
    parts.into_iter().fold(Count::default(), |a, b| Count {
        counters: a.counters + b.counters,
        bytes: a.bytes + b.bytes,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("users"));
    let calls: usize = args.next().map_or(7, |a| a.parse().expect("calls"));
    let core_users: Vec<_> = (0..users)
        .map(|i| vless_user_with_id(&id(i).to_string()))
        .collect();
    let Some(core) = TestCore::start(&core_users).await else {
        std::process::exit(2);
    };
    drop(core_users);
    let pid = core_pid();
    let (target, _sink) = serve_exchange(64, 1024).await;
    let began = Instant::now();
    let vless = core.vless_port();
    let failed = futures::stream::iter((0..users).map(id))
        .map(|id| async move { vless_exchange(vless, &id, target, 64, 1024).await })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    println!(
        "{users} users, one connection each through {VLESS_TAG} in {:.1} s ({failed} failed)",
        began.elapsed().as_secs_f64()
    );
    let api = CoreClient::new(&core.api_addr(), core.flavor(), Duration::from_secs(60)).unwrap();
    // Warm: the connection, and the core's first answer.
    let warm = one(&api).await;
    println!("counters: {}", warm.counters);

    // Per way of reading: its name, then per read the wall, core CPU and
    // own CPU milliseconds, and the counters it read.
    type Figures = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut results: Vec<(&str, Figures, usize)> = ["one call", "16 in turn", "16 at once"]
        .into_iter()
        .map(|name| (name, (Vec::new(), Vec::new(), Vec::new()), 0))
        .collect();
    for _ in 0..calls {
        for (kind, result) in results.iter_mut().enumerate() {
            let (core_cpu, own_cpu, t) = (cpu_secs(&pid), cpu_secs("self"), Instant::now());
            let count = match kind {
                0 => one(&api).await,
                1 => sequential(&api).await,
                _ => parallel(&api).await,
            };
            let figures = &mut result.1;
            figures.0.push(t.elapsed().as_secs_f64() * 1000.0);
            figures.1.push((cpu_secs(&pid) - core_cpu) * 1000.0);
            figures.2.push((cpu_secs("self") - own_cpu) * 1000.0);
            result.2 = count.counters;
        }
    }
    for (name, (wall, core_cpu, own_cpu), counters) in results {
        println!(
            "{name:>10}: wall median {:.0} ms (min {:.0}); core CPU {:.0} ms; this process's CPU {:.0} ms; {counters} counters",
            median(wall.clone()),
            wall.iter().copied().fold(f64::INFINITY, f64::min),
            median(core_cpu),
            median(own_cpu),
        );
    }
}
