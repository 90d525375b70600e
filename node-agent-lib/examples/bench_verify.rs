//! Run with: cargo run --release -p node-agent-lib --example bench_verify -- [users] [period_secs]
//!
//! What the agent's background verification costs on a real v2ray core
//! (`$V2RAY_BIN` or `/usr/bin/v2ray`), and how fast it re-applies every user
//! after a restart it did not order. An agent in this process runs the core
//! with `users` users (default 10,000) and `verify_period` = `period_secs`
//! (default 20); it prints, per verification pass, the agent's and the
//! core's CPU seconds (utime + stime from /proc, averaged over three passes),
//! then SIGKILLs the core and prints the time until the agent saw the restart
//! and re-applied every user.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use node_agent_lib::settings::{Backend, Secret, Settings};
use node_agent_lib::wire::WireUser;
use node_agent_lib::{Node, NodeClient, NodeKey};
use xray_core_client::testing::{ServerPorts, binary_flavor, server_config, v2ray_binary};

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After "pid (comm)": state is field 0, utime field 11, stime field 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, 100 per second on Linux whatever the kernel's HZ.
    ticks as f64 / 100.0
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let begun = Instant::now();
    while !check() {
        assert!(begun.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    begun.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(10_000, |a| a.parse().expect("users"));
    let period: u64 = args.next().map_or(20, |a| a.parse().expect("period_secs"));
    let binary = v2ray_binary().expect("a v2ray binary (V2RAY_BIN)");
    let dir = tempfile::tempdir().unwrap();
    let ports = ServerPorts::free();
    let base = dir.path().join("base.json");
    std::fs::write(&base, server_config(&ports, &[]).to_string()).unwrap();
    let key = NodeKey::random();
    let mut settings = Settings {
        node_key: Some(Secret::new(key.expose_base64url())),
        flavor: binary_flavor(&binary).to_string(),
        verify_period_secs: period,
        ..Settings::default()
    };
    settings.core.binary = binary;
    settings.core.base_config = base;
    settings.core.generated_config = dir.path().join("core.json");
    settings.state_dir = dir.path().join("state");
    settings.core.api_address = format!("127.0.0.1:{}", ports.api);
    settings.service.backend = Backend::Process;
    let node = Node::build(&settings).unwrap();
    let (agent, process) = (node.agent.clone(), node.process.clone().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = {
        let settings = settings.clone();
        tokio::spawn(async move {
            node.serve(&settings, listener, std::future::pending())
                .await
        })
    };
    let client = NodeClient::new(&endpoint, key.clone(), Duration::from_secs(120)).unwrap();
    let wire: Vec<WireUser> = (0..users)
        .map(|i| WireUser {
            id: format!("00000000-0000-4000-8000-{i:012x}"),
            name: format!("user{i}"),
            secret: format!("secret-{i}"),
            proxy_id: None,
        })
        .collect();
    client.start(&wire).await.unwrap();
    println!(
        "{users} users, verify_period {period} s, v2ray pid {}",
        process.pid().unwrap()
    );

    let limit = Duration::from_secs(period * 3 + 60);
    let first = agent.verification_passes();
    wait_until("a first pass", limit, || {
        agent.verification_passes() > first
    })
    .await;
    let core_pid = process.pid().unwrap().to_string();
    let (agent0, core0, at0) = (cpu_secs("self"), cpu_secs(&core_pid), Instant::now());
    let start = agent.verification_passes();
    const PASSES: u64 = 3;
    wait_until("three passes", limit * 3, || {
        agent.verification_passes() >= start + PASSES
    })
    .await;
    let (agent1, core1) = (cpu_secs("self"), cpu_secs(&core_pid));
    let n = PASSES as f64;
    println!(
        "per pass: {:.1} s wall, agent {:.3} CPU s, core {:.3} CPU s ({} core calls)",
        at0.elapsed().as_secs_f64() / n,
        (agent1 - agent0) / n,
        (core1 - core0) / n,
        users * 2
    );
    assert_eq!(agent.users_readded(), 0, "a right core needed repairs");

    // After a start it did not order, the agent re-applies every user at
    // once: one unpaced pass, counted with the others.
    let (restarts, passes) = (agent.core_restarts(), agent.verification_passes());
    let pid = process.pid().unwrap();
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    let seen = wait_until("the restart seen", limit, || {
        agent.core_restarts() > restarts
    })
    .await;
    let applied = wait_until("every user re-applied", limit, || {
        agent.verification_passes() > passes
    })
    .await;
    println!(
        "after a SIGKILL of the core: restart seen after {:.2} s, every user re-applied {:.2} s later",
        seen.as_secs_f64(),
        applied.as_secs_f64()
    );
    served.abort();
}
