//! A harness that runs real cores for tests (feature `testing`).
//!
//! [`TestCore`] starts a v2ray/xray server with the API, stats, a VLESS and a
//! VMess inbound; [`TestClientCore`] starts a second one as a client (socks
//! in, VLESS/VMess out) so tests can push real traffic through a user with
//! [`fetch_via_socks`] from a local [`serve_bytes`] server. [`ssmanager`]
//! does the same for shadowsocks-libev: a real `ss-manager` and `ss-local`.
//!
//! ```no_run
//! # async fn demo() {
//! use xray_core_client::testing::{TestCore, vless_user, VLESS_TAG};
//! let Some(core) = TestCore::start(&[]).await else { return }; // no binary: skip
//! core.client().add_user(VLESS_TAG, &vless_user("u1")).await.unwrap();
//! # }
//! ```

use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::{Account, CoreClient, CoreUser, Flavor};

mod exchange;
pub mod ssmanager;
pub use exchange::{serve_exchange, vless_exchange};

/// Tag of the VLESS inbound in [`server_config`].
pub const VLESS_TAG: &str = "vless-in";
/// Tag of the VMess inbound in [`server_config`].
pub const VMESS_TAG: &str = "vmess-in";

/// How long a core gets to start answering.
const START_DEADLINE: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A port that was free a moment ago on 127.0.0.1, for a server the test
/// starts next.
///
/// Taken from 20000–31999, below Linux's default ephemeral range
/// (32768–60999): a port from `bind(0)` can be taken by any process's next
/// outgoing connection before the server binds it (seen in the chaos suite
/// as a core that never came up). Never the same port twice in one process;
/// each process starts at its own offset, so parallel test binaries rarely
/// meet. Falls back to `bind(0)` when the range is exhausted.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `len` consecutive ports that were all free a moment ago on
/// 127.0.0.1, none of them handed out before by this process nor handed
/// out later by [`free_port`]: for a server that binds ports of a range
/// over time (ss-manager's one port per user), from the same pool as
/// [`free_port`]. Falls back to `bind(0)` for `len == 1` only.
///
/// # Panics
/// If `len` is 0 or no such block is left in the pool.
pub fn free_ports(len: u16) -> u16 {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    assert!(len > 0, "a block of no ports");
    let len32 = u32::from(len);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(2_654_435_761)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(len32, Ordering::SeqCst) % SPAN;
        if offset + len32 > SPAN {
            continue; // a block does not wrap around the pool's end
        }
        let first = (LOW + offset) as u16;
        let block = first..=first + (len - 1);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if block.clone().any(|port| handed_out.contains(&port)) {
            continue;
        }
        if block
            .clone()
            .all(|port| StdTcpListener::bind(("127.0.0.1", port)).is_ok())
        {
            handed_out.extend(block);
            return first;
        }
    }
    assert_eq!(len, 1, "no block of {len} free ports left");
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The core binary to test with: `$V2RAY_BIN`, else `/usr/bin/v2ray`, else
/// `v2ray` or `xray` on `PATH`. `None` lets tests skip on a machine without
/// one — except with `CI=true`, where a missing core is a setup error.
pub fn v2ray_binary() -> Option<PathBuf> {
    let found = std::env::var_os("V2RAY_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from("/usr/bin/v2ray")).filter(|p| p.is_file()))
        .or_else(|| on_path("v2ray"))
        .or_else(|| on_path("xray"));
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but no proxy core found: install Debian's `v2ray` (/usr/bin/v2ray), \
             put v2ray or xray on PATH, or set V2RAY_BIN"
        );
    }
    found
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The flavor a core binary speaks, guessed from its file name.
pub fn binary_flavor(binary: &Path) -> Flavor {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.contains("xray") {
        Flavor::Xray
    } else {
        Flavor::V2ray
    }
}

/// A VLESS user with a fresh random id and `email` as its key.
pub fn vless_user(email: &str) -> CoreUser {
    CoreUser {
        email: email.to_owned(),
        level: 0,
        account: Account::Vless {
            id: uuid::Uuid::new_v4().to_string(),
            flow: String::new(),
        },
    }
}

/// A VLESS user as the node agent adds one: `id` is both the account id
/// and the core's key (`email`), as it is for the manager's users.
pub fn vless_user_with_id(id: &str) -> CoreUser {
    CoreUser {
        email: id.to_owned(),
        level: 0,
        account: Account::Vless {
            id: id.to_owned(),
            flow: String::new(),
        },
    }
}

/// A VMess user with a fresh random id and `email` as its key.
pub fn vmess_user(email: &str) -> CoreUser {
    CoreUser {
        email: email.to_owned(),
        level: 0,
        account: Account::Vmess {
            id: uuid::Uuid::new_v4().to_string(),
        },
    }
}

/// Ports of a [`server_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPorts {
    /// The gRPC API (a dokodemo-door inbound tagged `api`).
    pub api: u16,
    pub vless: u16,
    pub vmess: u16,
}

impl ServerPorts {
    /// Three ports free at the time of the call.
    pub fn free() -> Self {
        ServerPorts {
            api: free_port(),
            vless: free_port(),
            vmess: free_port(),
        }
    }
}

/// A server config for V2Ray 4.34 and Xray alike: the API on a dokodemo-door
/// inbound tagged `api` (V2Ray 4.34 has no `api.listen`), stats with per-user
/// counters at level 0, a VLESS inbound [`VLESS_TAG`] and a VMess inbound
/// [`VMESS_TAG`], all on 127.0.0.1, and a direct outbound.
///
/// Each of `users` goes to the inbound of its protocol.
///
/// # Panics
/// On a Trojan or Shadowsocks user: this config has no such inbound.
pub fn server_config(ports: &ServerPorts, users: &[CoreUser]) -> Value {
    let mut vless_clients = Vec::new();
    let mut vmess_clients = Vec::new();
    for user in users {
        match &user.account {
            Account::Vless { id, flow } => vless_clients.push(json!({
                "id": id, "email": user.email, "level": user.level, "flow": flow,
            })),
            Account::Vmess { id } => vmess_clients.push(json!({
                "id": id, "email": user.email, "level": user.level, "alterId": 0,
            })),
            other => panic!("server_config has only VLESS and VMess inbounds, got {other:?}"),
        }
    }
    json!({
        "log": { "loglevel": "warning" },
        "api": { "tag": "api", "services": ["HandlerService", "StatsService"] },
        "stats": {},
        "policy": {
            "levels": { "0": {
                "statsUserUplink": true,
                "statsUserDownlink": true,
                "statsUserOnline": true,
            } },
            "system": { "statsInboundUplink": true, "statsInboundDownlink": true },
        },
        "inbounds": [
            {
                "tag": "api",
                "listen": "127.0.0.1",
                "port": ports.api,
                "protocol": "dokodemo-door",
                "settings": { "address": "127.0.0.1" },
            },
            {
                "tag": VLESS_TAG,
                "listen": "127.0.0.1",
                "port": ports.vless,
                "protocol": "vless",
                "settings": { "clients": vless_clients, "decryption": "none" },
            },
            {
                "tag": VMESS_TAG,
                "listen": "127.0.0.1",
                "port": ports.vmess,
                "protocol": "vmess",
                "settings": { "clients": vmess_clients },
            },
        ],
        "outbounds": [ { "tag": "direct", "protocol": "freedom", "settings": {} } ],
        "routing": {
            "rules": [ { "type": "field", "inboundTag": ["api"], "outboundTag": "api" } ],
        },
    })
}

/// A client config: a socks inbound (no auth) on 127.0.0.1:`socks_port`
/// whose traffic leaves through a VLESS or VMess outbound (by `user`'s
/// account) to 127.0.0.1:`server_port`.
///
/// # Panics
/// On a Trojan or Shadowsocks user.
pub fn client_config(socks_port: u16, server_port: u16, user: &CoreUser) -> Value {
    let (protocol, server_user) = match &user.account {
        Account::Vless { id, flow } => (
            "vless",
            json!({ "id": id, "encryption": "none", "flow": flow, "level": 0 }),
        ),
        Account::Vmess { id } => (
            "vmess",
            json!({ "id": id, "alterId": 0, "security": "auto", "level": 0 }),
        ),
        other => panic!("client_config supports VLESS and VMess only, got {other:?}"),
    };
    json!({
        "log": { "loglevel": "warning" },
        "inbounds": [ {
            "tag": "socks-in",
            "listen": "127.0.0.1",
            "port": socks_port,
            "protocol": "socks",
            "settings": { "auth": "noauth", "udp": false },
        } ],
        "outbounds": [ {
            "tag": "proxy",
            "protocol": protocol,
            "settings": { "vnext": [ {
                "address": "127.0.0.1",
                "port": server_port,
                "users": [server_user],
            } ] },
        } ],
    })
}

/// A running core process with its config and log in a temporary directory;
/// killed on drop.
#[derive(Debug)]
struct CoreProcess {
    child: Child,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl CoreProcess {
    fn spawn(binary: &Path, config: &Value) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        // V2Ray picks the config format from the extension.
        let config_path = dir.path().join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(config).expect("serialize config"),
        )
        .expect("write the core config");
        let log_path = dir.path().join("core.log");
        let log = File::create(&log_path).expect("create the core log");
        let mut command = Command::new(binary);
        if binary_flavor(binary) == Flavor::Xray {
            command.arg("run");
        }
        command
            .arg("-config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        CoreProcess {
            child,
            log_path,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics with the core's output if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the core exited with {status} during start-up; its output:\n{}",
                self.log()
            );
        }
    }

    /// Polls `ready` until it returns true, panicking (with the core's
    /// output) if the core exits or the deadline passes.
    async fn wait_until<F, Fut>(&mut self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            self.assert_running();
            if ready().await {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what} not ready within {START_DEADLINE:?}; core output:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for CoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn accepts_tcp(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// A real core acting as the server, with the API, a VLESS inbound
/// ([`VLESS_TAG`]) and a VMess inbound ([`VMESS_TAG`]) on 127.0.0.1.
#[derive(Debug)]
pub struct TestCore {
    process: CoreProcess,
    ports: ServerPorts,
    flavor: Flavor,
    client: CoreClient,
}

impl TestCore {
    /// Starts the core from [`v2ray_binary`] with [`server_config`] and
    /// `users`, and waits until its API answers. `None` (after a note on
    /// stderr) when there is no core binary, so tests can skip.
    ///
    /// # Panics
    /// If the core does not start; the message includes its output.
    pub async fn start(users: &[CoreUser]) -> Option<TestCore> {
        let Some(binary) = v2ray_binary() else {
            eprintln!("skipping: no v2ray/xray binary (install v2ray or set V2RAY_BIN)");
            return None;
        };
        Some(Self::start_with(&binary, users).await)
    }

    /// Like [`TestCore::start`] with an explicit binary.
    pub async fn start_with(binary: &Path, users: &[CoreUser]) -> TestCore {
        let ports = ServerPorts::free();
        let flavor = binary_flavor(binary);
        let mut process = CoreProcess::spawn(binary, &server_config(&ports, users));
        let client = CoreClient::new(
            &format!("127.0.0.1:{}", ports.api),
            flavor,
            Duration::from_secs(5),
        )
        .expect("build the core client");
        let probe = client.clone();
        process
            .wait_until("the core API", || {
                let probe = probe.clone();
                async move { probe.sys_stats().await.is_ok() }
            })
            .await;
        for port in [ports.vless, ports.vmess] {
            process.wait_until("an inbound", || accepts_tcp(port)).await;
        }
        TestCore {
            process,
            ports,
            flavor,
            client,
        }
    }

    /// A client of this core's API (flavor from the binary's name).
    pub fn client(&self) -> &CoreClient {
        &self.client
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub fn ports(&self) -> ServerPorts {
        self.ports
    }

    /// `127.0.0.1:PORT` of the API.
    pub fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.api)
    }

    pub fn api_port(&self) -> u16 {
        self.ports.api
    }

    pub fn vless_port(&self) -> u16 {
        self.ports.vless
    }

    pub fn vmess_port(&self) -> u16 {
        self.ports.vmess
    }

    /// The port of the inbound serving `user`'s protocol (VLESS or VMess).
    pub fn port_for(&self, user: &CoreUser) -> u16 {
        match user.account {
            Account::Vless { .. } => self.ports.vless,
            Account::Vmess { .. } => self.ports.vmess,
            _ => panic!("TestCore has only VLESS and VMess inbounds"),
        }
    }

    /// What the core has printed so far (for assertion messages).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A second core acting as a client: socks on 127.0.0.1 → VLESS/VMess to a
/// server as one user.
#[derive(Debug)]
pub struct TestClientCore {
    _process: CoreProcess,
    socks_port: u16,
}

impl TestClientCore {
    /// Starts a client core that proxies through `server_port` as `user`, and
    /// waits until its socks port accepts connections. `None` without a core
    /// binary.
    pub async fn start(server_port: u16, user: &CoreUser) -> Option<TestClientCore> {
        let binary = v2ray_binary()?;
        let socks_port = free_port();
        let mut process =
            CoreProcess::spawn(&binary, &client_config(socks_port, server_port, user));
        process
            .wait_until("the client core's socks inbound", || {
                accepts_tcp(socks_port)
            })
            .await;
        Some(TestClientCore {
            _process: process,
            socks_port,
        })
    }

    /// Starts a client core towards `server`'s inbound for `user`'s protocol.
    pub async fn for_user(server: &TestCore, user: &CoreUser) -> Option<TestClientCore> {
        Self::start(server.port_for(user), user).await
    }

    pub fn socks_port(&self) -> u16 {
        self.socks_port
    }
}

/// GETs `url` through the socks5 proxy on 127.0.0.1:`socks_port` on a fresh
/// connection, with a short timeout; the body on a 2xx answer.
pub async fn fetch_via_socks(socks_port: u16, url: &str) -> Result<Vec<u8>, String> {
    let proxy = reqwest::Proxy::all(format!("socks5h://127.0.0.1:{socks_port}"))
        .map_err(|e| format!("proxy: {e}"))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .proxy(proxy)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url} via socks {socks_port}: {e:?}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: status {status}"));
    }
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| format!("GET {url} body: {e:?}"))
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0 answering every request with `n`
/// bytes (`200 OK`, `Connection: close`). Abort the handle to stop it.
pub async fn serve_bytes(n: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let handle = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buf[..read]),
                    }
                    if request.len() > 64 * 1024 {
                        return;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {n}\r\nConnection: close\r\n\r\n"
                );
                let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                if stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.write_all(&body).await.is_ok()
                {
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, handle)
}
