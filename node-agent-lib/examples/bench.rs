//! Run with: cargo build --release -p bins --bin xray-node-agent && cargo run --release -p node-agent-lib --example bench
//!
//! Benchmarks the real agent binary (`XNA_BIN`, default
//! `target/release/xray-node-agent`) running a real core (Debian's v2ray or
//! `$V2RAY_BIN`) with the process backend, driven over its JWE API:
//! - `/start` with 100,000 users, until the core answers (target < 3 s);
//! - 1,000 single-user `/users/edit` calls, one at a time and 32 in flight
//!   (target > 2,000 calls/s);
//! - the agent's resident memory idle and its peak (VmHWM) after the start.
//!
//! `BENCH_USERS` and `BENCH_EDITS` change the sizes. The base config has one
//! VLESS inbound; `BENCH_VMESS=1` keeps the harness's VMess inbound too
//! (V2Ray 4.34 precomputes time-based hashes per VMess user, which dominates
//! its start with 100,000 users).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use node_agent_lib::wire::{UsersEditRequest, WireUser};
use xray_core_client::testing::binary_flavor;

mod common;
use common::{env_usize, status_mib};

fn user(i: usize) -> WireUser {
    WireUser {
        id: uuid::Uuid::from_u128(0x5eed_0000_0000 + i as u128).to_string(),
        name: format!("user-{i}"),
        secret: format!("secret-{i:08}-abcdefghijklmnopqrstuv"),
        proxy_id: None,
    }
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    (status_mib(pid, "VmRSS:"), status_mib(pid, "VmHWM:"))
}

#[tokio::main]
async fn main() {
    let users_n = env_usize("BENCH_USERS", 100_000);
    let edits_n = env_usize("BENCH_EDITS", 1_000);
    let common::Agent {
        process: mut agent,
        pid,
        client,
        core_binary,
        ports,
        dir: _dir,
    } = common::start(std::env::var("BENCH_VMESS").is_ok(), &[]).await;
    let (idle_rss, _) = memory(pid);

    let users: Vec<WireUser> = (0..users_n).map(user).collect();
    let started = Instant::now();
    client.start(&users).await.expect("start");
    let start_time = started.elapsed();
    let status = client.status().await.expect("status");
    assert_eq!(status.users, users_n as u64);
    let (after_start_rss, peak) = memory(pid);

    let edit = |i: usize| UsersEditRequest {
        add_users: vec![user(i)],
        del_users: vec![],
    };
    let t = Instant::now();
    for i in 0..edits_n {
        client.edit_users(&edit(users_n + i)).await.expect("edit");
    }
    let sequential = edits_n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    futures::stream::iter(0..edits_n)
        .map(|i| {
            let client = client.clone();
            async move { client.edit_users(&edit(users_n + edits_n + i)).await }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("edit");
        })
        .await;
    let concurrent = edits_n as f64 / t.elapsed().as_secs_f64();
    let status = client.status().await.expect("status");
    assert_eq!(status.users, (users_n + 2 * edits_n) as u64);

    // The core's own rate, for comparison: AddUser straight to its API.
    let flavor = binary_flavor(&core_binary);
    let api = xray_core_client::CoreClient::new(
        &format!("127.0.0.1:{}", ports.api),
        flavor,
        Duration::from_secs(5),
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..edits_n {
        api.add_user(
            xray_core_client::testing::VLESS_TAG,
            &vless_user(users_n + 2 * edits_n + i),
        )
        .await
        .expect("core add");
    }
    let core_rate = edits_n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    futures::stream::iter(0..edits_n)
        .map(|i| {
            let api = api.clone();
            let core_user = vless_user(users_n + 3 * edits_n + i);
            async move {
                api.add_user(xray_core_client::testing::VLESS_TAG, &core_user)
                    .await
            }
        })
        .buffer_unordered(32)
        .for_each(|r| async move { r.expect("core add") })
        .await;
    let core_concurrent = edits_n as f64 / t.elapsed().as_secs_f64();
    let (end_rss, end_peak) = memory(pid);

    println!("core: {}", core_binary.display());
    println!(
        "/start with {users_n} users until the core answers: {:.2} s",
        start_time.as_secs_f64()
    );
    println!("/users/edit x{edits_n}, one at a time: {sequential:.0} calls/s");
    println!("/users/edit x{edits_n}, 32 in flight:  {concurrent:.0} calls/s");
    println!(
        "AddUser straight to the core's API: one at a time {core_rate:.0} calls/s, 32 in flight {core_concurrent:.0} calls/s"
    );
    println!(
        "agent memory: idle {idle_rss:.1} MiB; after start {after_start_rss:.1} MiB (peak {peak:.1} MiB); after edits {end_rss:.1} MiB (peak {end_peak:.1} MiB)"
    );

    client.stop().await.expect("stop");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
}

/// User `n` as the core's API takes it, on the VLESS inbound.
fn vless_user(n: usize) -> xray_core_client::CoreUser {
    let u = user(n);
    xray_core_client::CoreUser {
        email: u.id.clone(),
        level: 0,
        account: xray_core_client::Account::Vless {
            id: u.id,
            flow: String::new(),
        },
    }
}
