//! Run with: cargo build --release -p bins --bin xray-node-agent && cargo run --release -p node-agent-lib --example bench_agent_usage
//!
//! The agent's usage accounting on a node with 100,000 users, measured on
//! the real process: the agent binary (`XNA_BIN`, default
//! `target/release/xray-node-agent`) runs a real core (Debian's v2ray or
//! `$V2RAY_BIN`) with the process backend. After `/start` with every user,
//! each user opens VLESS connections (raw VLESS, no client core) through
//! the core to a local sink that answers a few bytes, so the core holds both
//! traffic counters of every user; the agent reads and zeroes them every
//! `BENCH_INTERVAL_SECS` (default 1) and journals them, and a manager-like
//! loop pulls and confirms the journal. Then, with the traffic stopped (the
//! counters stay, at zero, so every read still decodes 200,000 of them):
//! - ms per read of the core (the agent's `usage_read_seconds` per read),
//!   median over the reads seen while the traffic ran and while idle;
//! - the agent's VmRSS idle (between reads, after reads have happened):
//!   median of `BENCH_SAMPLES` (default 5) samples, one half an interval
//!   after each read; and its peak (VmHWM);
//! - the agent's CPU time (all threads) per read while idle: its CPU time
//!   over the samples' reads, divided by their number (it includes the
//!   background verification unless `XNA_VERIFY_PERIOD_SECS=0` is set for
//!   the agent, which inherits this process's environment).
//!
//! `BENCH_USERS` (default 100,000), `BENCH_ROUNDS` (traffic rounds over all
//! users, default 2) and `BENCH_CONNS` (connections in flight, default 64)
//! change the sizes.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use node_agent_lib::NodeClient;
use node_agent_lib::wire::{UsageRequest, WireUser};
use xray_core_client::testing::{binary_flavor, free_port, serve_exchange, vless_exchange};

mod common;
use common::{cpu_secs, env_usize, status_mib};

/// Bytes each connection sends (the users' uplink) and gets back (downlink).
const SENT: usize = 64;
const ANSWERED: usize = 1024;

/// User `i`, its id spread over the id space as the manager's random ids
/// are (the agent reads counters by the id's first character).
fn user(i: usize) -> WireUser {
    let spread = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    WireUser {
        id: uuid::Uuid::from_u128(spread).to_string(),
        name: format!("user-{i}"),
        secret: format!("secret-{i:08}-abcdefghijklmnopqrstuv"),
        proxy_id: None,
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `usage_reads` and `usage_read_seconds` from the agent's metrics.
async fn read_metrics(http: &reqwest::Client, url: &str) -> Option<(u64, f64)> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split_whitespace().next().is_some_and(|n| n == name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    };
    Some((
        value("xray_agent_usage_reads_total")? as u64,
        value("xray_agent_usage_read_seconds_total")?,
    ))
}

/// Pulls and confirms everything the journal holds, as the manager does.
async fn pull_all(client: &NodeClient, cursor: &mut (Option<String>, u64)) -> (usize, usize) {
    let (mut batches, mut deltas) = (0, 0);
    loop {
        let page = client
            .usage(&UsageRequest {
                journal: cursor.0.clone(),
                after: cursor.1,
                max_batches: None,
            })
            .await
            .expect("pull");
        if cursor.0.as_deref() != Some(page.journal.as_str()) {
            *cursor = (Some(page.journal.clone()), 0);
        }
        batches += page.batches.len();
        deltas += page.batches.iter().map(|b| b.users.len()).sum::<usize>();
        if let Some(last) = page.batches.last() {
            cursor.1 = last.seq;
        }
        if !page.more {
            return (batches, deltas);
        }
    }
}

#[tokio::main]
async fn main() {
    let users_n = env_usize("BENCH_USERS", 100_000);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let conns = env_usize("BENCH_CONNS", 64);
    let samples = env_usize("BENCH_SAMPLES", 5);
    let interval_secs = env_usize("BENCH_INTERVAL_SECS", 1) as u64;
    let pulls = env_usize("BENCH_PULL", 1) != 0;
    let metrics_url = format!("http://127.0.0.1:{}/metrics", free_port());
    let metrics_listen = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let common::Agent {
        process: mut agent,
        pid,
        client,
        core_binary,
        ports,
        dir: _dir,
    } = common::start(
        false,
        &[
            ("XNA_STATS_INTERVAL_SECS", interval_secs.to_string()),
            ("XNA_METRICS_LISTEN", metrics_listen),
        ],
    )
    .await;
    let rss_before_start = status_mib(pid, "VmRSS:");

    let users: Vec<WireUser> = (0..users_n).map(user).collect();
    client.start(&users).await.expect("start");
    let ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id.parse().unwrap()).collect();
    drop(users);
    let rss_after_start = status_mib(pid, "VmRSS:");
    let peak_after_start = status_mib(pid, "VmHWM:");

    // Every read the agent makes, timed by its own metric.
    let http = reqwest::Client::new();
    let stop_watch = tokio_util::sync::CancellationToken::new();
    let watch = {
        let (http, url, stop) = (http.clone(), metrics_url.clone(), stop_watch.clone());
        tokio::spawn(async move {
            let mut last = read_metrics(&http, &url).await.expect("metrics");
            let mut per_read = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Some(now) = read_metrics(&http, &url).await else {
                    continue;
                };
                if now.0 > last.0 {
                    let ms = (now.1 - last.1) * 1000.0 / (now.0 - last.0) as f64;
                    per_read.push((Instant::now(), ms));
                }
                last = now;
                if stop.is_cancelled() {
                    return per_read;
                }
            }
        })
    };

    let (target, _sink) = serve_exchange(SENT, ANSWERED).await;
    let mut cursor = (None, 0);
    let (mut pulled_batches, mut pulled_deltas) = (0, 0);
    let traffic_began = Instant::now();
    for round in 1..=rounds {
        let began = Instant::now();
        let failed = futures::stream::iter(ids.iter().copied())
            .map(|id| async move { vless_exchange(ports.vless, &id, target, SENT, ANSWERED).await })
            .buffer_unordered(conns)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await;
        let (b, d) = if pulls {
            pull_all(&client, &mut cursor).await
        } else {
            (0, 0)
        };
        pulled_batches += b;
        pulled_deltas += d;
        println!(
            "traffic round {round}: {users_n} users x 1 connection in {:.1} s ({failed} failed); pulled {b} batches, {d} user-deltas",
            began.elapsed().as_secs_f64()
        );
    }
    let traffic_ended = Instant::now();

    // Idle: the traffic stopped, the reads go on (200,000 zero counters each).
    let settle = Duration::from_secs(interval_secs * 2 + 1);
    tokio::time::sleep(settle).await;
    if pulls {
        let (b, d) = pull_all(&client, &mut cursor).await;
        pulled_batches += b;
        pulled_deltas += d;
        // One more pull confirms the last batch (the journal then forgets it).
        let _ = pull_all(&client, &mut cursor).await;
    }
    let mut rss = Vec::new();
    let mut reads_seen = read_metrics(&http, &metrics_url).await.expect("metrics").0;
    let (cpu_began, reads_began) = (cpu_secs(pid), reads_seen);
    while rss.len() < samples {
        let deadline = Instant::now() + Duration::from_secs(interval_secs * 4 + 10);
        loop {
            let now = read_metrics(&http, &metrics_url).await.expect("metrics").0;
            if now > reads_seen {
                reads_seen = now;
                break;
            }
            assert!(Instant::now() < deadline, "the agent stopped reading");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(interval_secs * 500)).await;
        rss.push(status_mib(pid, "VmRSS:"));
    }
    let peak = status_mib(pid, "VmHWM:");
    let cpu_per_read_ms =
        (cpu_secs(pid) - cpu_began) * 1000.0 / (reads_seen - reads_began).max(1) as f64;
    stop_watch.cancel();
    let per_read = watch.await.expect("the read watcher");
    let ms_of = |from: Instant, to: Instant| {
        let mut ms: Vec<f64> = per_read
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, ms)| *ms)
            .collect();
        (
            ms.len(),
            median(&mut ms),
            ms.iter().copied().fold(0.0, f64::max),
        )
    };
    let busy = ms_of(traffic_began, traffic_ended);
    let idle = ms_of(traffic_ended + settle, Instant::now());
    let status = client.status().await.expect("status");

    // The core's own answer, from this process (no reset: the agent's
    // reads are not disturbed): one call, and sixteen by first character.
    let api = xray_core_client::CoreClient::new(
        &format!("127.0.0.1:{}", ports.api),
        binary_flavor(&core_binary),
        Duration::from_secs(30),
    )
    .unwrap();
    let mut one = Vec::new();
    let mut sixteen = Vec::new();
    let mut counters = 0;
    for _ in 0..5 {
        let t = Instant::now();
        counters = api
            .query_stats("user>>>", false)
            .await
            .expect("query")
            .len();
        one.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        for first in "0123456789abcdef".chars() {
            api.query_stats(&format!("user>>>{first}"), false)
                .await
                .expect("query");
        }
        sixteen.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "QueryStats from outside the agent ({counters} counters, no reset): one call median {:.0} ms, sixteen calls median {:.0} ms",
        median(&mut one),
        median(&mut sixteen)
    );

    println!("core: {}", core_binary.display());
    println!(
        "users {users_n}; traffic {:.1} s; pulled {pulled_batches} batches, {pulled_deltas} user-deltas; journal {:?}",
        (traffic_ended - traffic_began).as_secs_f64(),
        status.usage_journal
    );
    println!(
        "ms per read of the core: with traffic median {:.0} (max {:.0}) over {} reads; idle median {:.0} (max {:.0}) over {} reads",
        busy.1, busy.2, busy.0, idle.1, idle.2, idle.0
    );
    println!("agent CPU per read while idle (all threads): {cpu_per_read_ms:.0} ms");
    println!(
        "agent RSS: before /start {rss_before_start:.1} MiB; after /start {rss_after_start:.1} MiB (peak {peak_after_start:.1})"
    );
    println!(
        "agent RSS idle (median of {samples}, between reads): {:.1} MiB, samples {:?}; peak (VmHWM) {peak:.1} MiB",
        median(&mut rss.clone()),
        rss.iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );

    client.stop().await.expect("stop");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
}
