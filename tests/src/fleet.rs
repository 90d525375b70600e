//! The real binaries as child processes: `xray-manager` and `xray-node-agent`
//! (process backend, a real v2ray core each), all on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use xray_core_client::testing::{ServerPorts, free_port, server_config};

use crate::wait_for;

/// A binary of this workspace, built next to the running test
/// (`cargo nextest run --workspace` builds them all).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p bins` (or the workspace's tests)",
        path.display()
    );
    path
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// A running `xray-manager`.
#[derive(Debug)]
pub struct ManagerProcess {
    child: Child,
    pub url: String,
    pub token: String,
    http: reqwest::Client,
    data: PathBuf,
    heartbeat_ms: u64,
    env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl ManagerProcess {
    /// Starts the manager with `env` on top of: listen on 127.0.0.1:0, a data
    /// directory of its own (the default SQLite file lives there), a known
    /// admin token, a heartbeat of `heartbeat_ms`.
    pub async fn start(heartbeat_ms: u64, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        Self::start_in(&path, heartbeat_ms, env, Some(dir)).await
    }

    /// Like [`ManagerProcess::start`], with the data directory at `data`
    /// (kept across restarts by the caller).
    pub async fn start_in(
        data: &Path,
        heartbeat_ms: u64,
        env: &[(&str, &str)],
        owned: Option<tempfile::TempDir>,
    ) -> Self {
        let token = "whole-system-admin-token-6d1f0a9c".to_owned();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, url) = spawn_manager(data, heartbeat_ms, &env, &token).await;
        Self {
            child,
            url,
            token,
            http: reqwest::Client::new(),
            data: data.to_owned(),
            heartbeat_ms,
            env,
            _dir: owned,
        }
    }

    /// Starts the manager again on the same data directory and settings
    /// (SIGKILLing it first if it still runs); it listens on a new port, so
    /// `url` changes.
    pub async fn restart(&mut self) {
        self.kill().await;
        let (child, url) =
            spawn_manager(&self.data, self.heartbeat_ms, &self.env, &self.token).await;
        self.child = child;
        self.url = url;
    }

    /// SIGKILL: no clean shutdown, leases stay until they expire.
    pub async fn kill(&mut self) {
        signal(&self.child, Signal::SIGKILL);
        let _ = self.child.wait().await;
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("manager answers");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.url)).json(&body))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    /// Registers a node; answers (id, key).
    pub async fn new_node(&self, endpoint: &str) -> (String, String) {
        let (status, body) = self.post("/node/new", json!({"endpoint": endpoint})).await;
        assert_eq!(status, 200, "{body}");
        (
            body["nodeID"].as_str().unwrap().to_owned(),
            body["nodeKey"].as_str().unwrap().to_owned(),
        )
    }

    /// The links a user gets, or the status when not 200.
    pub async fn user_links(&self, id: &str, name: &str) -> Result<Vec<String>, u16> {
        let resp = self
            .http
            .get(format!("{}/user/{id}-{name}/nodes", self.url))
            .send()
            .await
            .expect("manager answers");
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        Ok(resp.json().await.expect("a JSON list"))
    }

    /// A node's actual status as `GET /nodes` shows it.
    pub async fn node_status(&self, id: &str) -> String {
        let (_, body) = self.get("/nodes").await;
        body["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == id))
            .map(|n| n["actualStatus"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }
}

/// A random master key (base64), the same for every manager this test
/// process starts.
pub fn shared_master_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })
}

/// Spawns `xray-manager` and waits for the address it listens on.
async fn spawn_manager(
    data: &Path,
    heartbeat_ms: u64,
    env: &[(String, String)],
    token: &str,
) -> (Child, String) {
    let mut cmd = Command::new(workspace_binary("xray-manager"));
    cmd.env("XM_LISTEN", "127.0.0.1:0")
        .env("XM_DATA_DIR", data)
        .env("XM_ADMIN_TOKEN", token)
        .env("XM_HEARTBEAT_MS", heartbeat_ms.to_string())
        .env("XM_NODE_TIMEOUT_MS", "5000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // Managers on one shared database need one master key (a key file is
    // generated only for the embedded SQLite storage): this test process's.
    let shared_db = env
        .iter()
        .any(|(k, v)| k == "XM_STORAGE_URL" && v.starts_with("postgres"));
    let keyed = env
        .iter()
        .any(|(k, _)| k == "XM_MASTER_KEY" || k == "XM_SECRETS_MASTER_KEY_FILE");
    if shared_db && !keyed {
        cmd.env("XM_MASTER_KEY", shared_master_key());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn xray-manager");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("xray-manager listening on ") {
                return addr.to_owned();
            }
        }
        panic!("xray-manager exited before listening");
    })
    .await
    .expect("xray-manager did not start listening in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

/// A running `xray-node-agent` with its own v2ray core (process backend).
#[derive(Debug)]
pub struct AgentProcess {
    /// Given in `XNA_NODE_KEY`, as a container would get it.
    key: String,
    child: Option<Child>,
    pub endpoint: String,
    pub ports: ServerPorts,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Writes the agent's settings (a v2ray base config with VLESS and VMess
    /// inbounds) and starts it with `key`.
    pub async fn start(key: &str, core: &Path) -> Self {
        Self::start_at(key, core, free_port()).await
    }

    /// Like [`AgentProcess::start`], listening on `listen` (a port the caller
    /// registered with the manager before the key existed).
    pub async fn start_at(key: &str, core: &Path, listen: u16) -> Self {
        Self::start_flushing(key, core, listen, 50).await
    }

    /// Like [`AgentProcess::start_at`], with the agent's generated-config
    /// writer waiting `flush_ms` after edits (the agent's default is 500).
    pub async fn start_flushing(key: &str, core: &Path, listen: u16, flush_ms: u64) -> Self {
        Self::start_with_base(key, core, listen, flush_ms, |_| {}).await
    }

    /// Like [`AgentProcess::start_flushing`], with the operator's base config
    /// (the test server config: API, stats, VLESS and VMess inbounds) changed
    /// by `edit` first.
    pub async fn start_with_base(
        key: &str,
        core: &Path,
        listen: u16,
        flush_ms: u64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = ServerPorts::free();
        let base = dir.path().join("base.json");
        let mut base_config = server_config(&ports, &[]);
        edit(&mut base_config);
        std::fs::write(&base, base_config.to_string()).unwrap();
        let flavor = xray_core_client::testing::binary_flavor(core);
        let settings = format!(
            r#"listen = "127.0.0.1:{listen}"
flavor = "{flavor}"
user_config_template = "vless://{{{{.UserID}}}}@127.0.0.1:{vless}?encryption=none&type=tcp#{{{{.UserName}}}}"
config_flush_ms = {flush_ms}
monitor_interval_secs = 1
state_dir = "{state}"
stats_interval_secs = 1

[core]
binary = "{core}"
base_config = "{base}"
generated_config = "{generated}"
api_address = "127.0.0.1:{api}"
start_timeout_secs = 20

[service]
backend = "process"
"#,
            vless = ports.vless,
            core = core.display(),
            base = base.display(),
            generated = dir.path().join("core.json").display(),
            state = dir.path().join("state").display(),
            api = ports.api,
        );
        Self::launch(key, listen, ports, dir, &settings).await
    }

    /// An agent running shadowsocks-libev's `ss-manager` (`ss_manager`, the
    /// binary) on 127.0.0.1 with the users' ports in `range`; `ports.api` is
    /// ss-manager's manager port (UDP). Its template is the user's secret
    /// alone (`ss-secret:{{.Secret}}`), so a test learns it from the links.
    pub async fn start_ss_manager(key: &str, ss_manager: &Path, listen: u16, range: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = ServerPorts {
            api: free_port(),
            vless: 0,
            vmess: 0,
        };
        let settings = format!(
            r#"listen = "127.0.0.1:{listen}"
flavor = "ss-manager"
user_config_template = "ss-secret:{{{{.Secret}}}}"
config_flush_ms = 50
monitor_interval_secs = 1
state_dir = "{state}"
stats_interval_secs = 1

[core]
binary = "{binary}"
generated_config = "{generated}"
api_address = "127.0.0.1:{api}"
start_timeout_secs = 20

[ss_manager]
ports = "{range}"
server = "127.0.0.1"

[service]
backend = "process"
"#,
            binary = ss_manager.display(),
            // `kill` finds an orphaned core by this path.
            generated = dir.path().join("core.json").display(),
            state = dir.path().join("state").display(),
            api = ports.api,
        );
        Self::launch(key, listen, ports, dir, &settings).await
    }

    /// Writes `settings` as the agent's file in `dir` and starts the agent.
    async fn launch(
        key: &str,
        listen: u16,
        ports: ServerPorts,
        dir: tempfile::TempDir,
        settings: &str,
    ) -> Self {
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, settings).unwrap();
        let mut agent = Self {
            key: key.to_owned(),
            child: None,
            endpoint: format!("http://127.0.0.1:{listen}"),
            ports,
            config,
            _dir: dir,
        };
        agent.restart().await;
        agent
    }

    /// Starts the agent process again (same settings, ports and key).
    pub async fn restart(&mut self) {
        let child = Command::new(workspace_binary("xray-node-agent"))
            .arg("--config")
            .arg(&self.config)
            .env("XNA_NODE_KEY", &self.key)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn xray-node-agent");
        self.child = Some(child);
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        wait_for("the agent to listen", Duration::from_secs(30), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok() }
        })
        .await;
    }

    /// SIGTERM: the agent stops its core and exits.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGTERM);
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }

    /// SIGKILL of the agent and then of its core: the node's processes die
    /// at once, as in a crash of the machine. (The core alone would survive
    /// its agent and keep the API port, which the next agent could not bind.)
    pub async fn kill(&mut self) {
        self.kill_agent_only().await;
        for pid in self.cores() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// SIGKILL of the agent alone: its core lives on, orphaned.
    pub async fn kill_agent_only(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }

    /// Every live core of this agent, its child or an orphan: found in /proc
    /// by its generated config, unique to this agent.
    pub fn cores(&self) -> Vec<u32> {
        let generated = self._dir.path().join("core.json");
        let needle = generated.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&pid| is_alive(pid))
            .filter(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    cmdline
                        .split(|b| *b == 0)
                        .any(|arg| arg == needle.as_bytes())
                })
            })
            .collect()
    }

    /// Everything the node keeps on disk: its settings, the base and the
    /// generated core config, its state directory (journal, pid file).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The agent's state directory (its usage journal), kept across restarts.
    pub fn state_dir(&self) -> PathBuf {
        self._dir.path().join("state")
    }

    /// Whether the agent process was started and not stopped or killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The agent's child processes (its core), found in /proc.
    pub fn core_pids(&self) -> Vec<u32> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&child| proc_stat(child).is_some_and(|(_, ppid)| ppid == pid))
            .collect()
    }

    /// SIGKILL of the agent's core (its child process); the agent's
    /// supervisor restarts it.
    pub fn kill_core(&self) -> bool {
        let mut killed = false;
        for child in self.core_pids() {
            killed |= kill(Pid::from_raw(child as i32), Signal::SIGKILL).is_ok();
        }
        killed
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // kill_on_drop kills the agent; its core is its child and would be
        // orphaned, so end the agent politely first.
        if let Some(child) = &self.child {
            signal(child, Signal::SIGTERM);
            if let Some(pid) = child.id() {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline && is_alive(pid) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Whether `pid` still runs (an exited child not yet reaped is a zombie).
fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// A process's state letter and parent pid, from `/proc/PID/stat`
/// ("pid (comm) state ppid ...", where comm may itself hold spaces or parentheses).
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit(')').next()?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}
