//! What the agent benchmarks share: the real agent binary started with a
//! real core (the process backend) in a temporary directory, and readings
//! of its process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use node_agent_lib::NodeClient;
use node_agent_lib::envelope::NodeKey;
use xray_core_client::testing::{
    ServerPorts, binary_flavor, free_port, server_config, v2ray_binary,
};

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/PID/status` figure in MiB (`VmRSS:` now, `VmHWM:` peak).
pub fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The CPU time (user + system, all threads) the process `pid` has used,
/// in seconds (`/proc/PID/stat`, at the kernel's 100 ticks a second).
#[allow(dead_code, reason = "not every benchmark reads the CPU time")]
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// The agent process, answering on its JWE API, and what it runs with.
pub struct Agent {
    pub process: tokio::process::Child,
    pub pid: u32,
    pub client: NodeClient,
    pub core_binary: PathBuf,
    pub ports: ServerPorts,
    /// The directory of its configs and state (removed when dropped).
    pub dir: tempfile::TempDir,
}

/// Starts the agent binary (`XNA_BIN`, default `target/release/xray-node-agent`)
/// over the core (Debian's v2ray or `$V2RAY_BIN`; exits with 2 when there is
/// none), with the harness's base config (its VMess inbound only when
/// `vmess`) and `env` added, and waits until its API answers.
pub async fn start(vmess: bool, env: &[(&str, String)]) -> Agent {
    let Some(core_binary) = v2ray_binary() else {
        eprintln!("no v2ray/xray binary: install v2ray or set V2RAY_BIN");
        std::process::exit(2);
    };
    let agent_binary = std::env::var_os("XNA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/xray-node-agent")
        });
    assert!(
        agent_binary.is_file(),
        "{} missing: cargo build --release -p bins --bin xray-node-agent",
        agent_binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let ports = ServerPorts::free();
    let base = dir.path().join("base.json");
    let mut config = server_config(&ports, &[]);
    if !vmess {
        config["inbounds"]
            .as_array_mut()
            .unwrap()
            .retain(|i| i["protocol"] != "vmess");
    }
    std::fs::write(&base, config.to_string()).unwrap();
    let key = NodeKey::random();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = tokio::process::Command::new(&agent_binary);
    command
        .env("XNA_LISTEN", &listen)
        .env("XNA_NODE_KEY", key.expose_base64url())
        .env("XNA_FLAVOR", binary_flavor(&core_binary).to_string())
        .env("XNA_CORE_BINARY", &core_binary)
        .env("XNA_BASE_CONFIG", &base)
        .env("XNA_GENERATED_CONFIG", dir.path().join("core.json"))
        .env("XNA_STATE_DIR", dir.path().join("state"))
        .env("XNA_API_ADDRESS", format!("127.0.0.1:{}", ports.api))
        .env("XNA_SERVICE_BACKEND", "process")
        .env(
            "RUST_LOG",
            std::env::var("BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        );
    for (name, value) in env {
        command.env(name, value);
    }
    let process = command
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent");
    let pid = process.id().unwrap();
    let client =
        NodeClient::new(&format!("http://{listen}"), key, Duration::from_secs(120)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.status().await.is_err() {
        assert!(Instant::now() < deadline, "the agent never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Agent {
        process,
        pid,
        client,
        core_binary,
        ports,
        dir,
    }
}
