//! Real shadowsocks-libev processes for tests: [`TestSsManager`] runs
//! `ss-manager` (the second kind of core the node agent drives) on
//! 127.0.0.1 with its manager port and working directory of its own, and
//! [`TestSsLocal`] runs `ss-local`, the real Shadowsocks client, as a socks5
//! proxy towards one port of it, for [`super::fetch_via_socks`].
//!
//! ```no_run
//! # async fn demo() {
//! use xray_core_client::testing::ssmanager::TestSsManager;
//! let Some(manager) = TestSsManager::start().await else { return }; // no binary: skip
//! let address = manager.manager_address(); // 127.0.0.1:PORT, UDP
//! # }
//! ```

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{POLL_INTERVAL, START_DEADLINE, accepts_tcp, free_port, on_path};

/// The method the harness's processes default to.
pub const TEST_METHOD: &str = "chacha20-ietf-poly1305";

/// `ss-manager` to test with: `$SS_MANAGER_BIN`, else `ss-manager` on
/// `PATH`. `None` lets tests skip on a machine without it — except with
/// `CI=true`, where a missing binary is a setup error (`scripts/setup.sh`
/// installs Debian's `shadowsocks-libev`).
pub fn ss_manager_binary() -> Option<PathBuf> {
    binary("SS_MANAGER_BIN", "ss-manager")
}

/// `ss-local`: `$SS_LOCAL_BIN`, else on `PATH`; as [`ss_manager_binary`].
pub fn ss_local_binary() -> Option<PathBuf> {
    binary("SS_LOCAL_BIN", "ss-local")
}

fn binary(variable: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(variable)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| on_path(name));
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but no {name} found: run scripts/setup.sh (Debian's shadowsocks-libev) \
             or set {variable}"
        );
    }
    found
}

/// Asks the `ss-manager` at `address` one command over UDP; its answer, or
/// `None` when none came within a second.
pub fn ask(address: &str, command: &str) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    socket.send_to(command.as_bytes(), address).ok()?;
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A running `ss-manager` on 127.0.0.1 (its servers too), with a working
/// directory of its own; stopped with SIGTERM on drop, so it stops its
/// `ss-server`s.
#[derive(Debug)]
pub struct TestSsManager {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl TestSsManager {
    /// Starts `ss-manager` from [`ss_manager_binary`] and waits until it
    /// answers `ping`. `None` (after a note on stderr) without the binary.
    ///
    /// # Panics
    /// If it does not start; the message includes its output.
    pub async fn start() -> Option<TestSsManager> {
        let Some(binary) = ss_manager_binary() else {
            eprintln!("skipping: no ss-manager (run scripts/setup.sh or set SS_MANAGER_BIN)");
            return None;
        };
        Some(Self::start_with(&binary).await)
    }

    /// Like [`TestSsManager::start`] with an explicit binary.
    pub async fn start_with(binary: &Path) -> TestSsManager {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let address = format!("127.0.0.1:{}", free_port());
        let work = dir.path().join("work");
        let log = std::fs::File::create(dir.path().join("ss-manager.log")).expect("create log");
        let child = Command::new(binary)
            .args(["--manager-address", &address, "-s", "127.0.0.1", "-u"])
            .args(["-m", TEST_METHOD, "-D"])
            .arg(&work)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut manager = TestSsManager {
            child,
            address,
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = manager.child.try_wait() {
                panic!("ss-manager exited with {status}: {}", manager.log());
            }
            let address = manager.address.clone();
            let answer = tokio::task::spawn_blocking(move || ask(&address, "ping"))
                .await
                .expect("ping task");
            if answer.is_some_and(|a| a.starts_with("stat:")) {
                return manager;
            }
            assert!(
                Instant::now() < deadline,
                "ss-manager not answering within {START_DEADLINE:?}: {}",
                manager.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Its manager address, `127.0.0.1:PORT` (UDP).
    pub fn manager_address(&self) -> &str {
        &self.address
    }

    /// What it has printed so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ss-manager.log")).unwrap_or_default()
    }
}

impl Drop for TestSsManager {
    fn drop(&mut self) {
        // SIGTERM: ss-manager stops its ss-servers (daemons, not its
        // children) only when it is asked to end; SIGKILL would leave them.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ss-local`: socks5 on 127.0.0.1 → Shadowsocks to one server
/// port on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct TestSsLocal {
    child: Child,
    socks_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestSsLocal {
    /// Starts `ss-local` towards 127.0.0.1:`server_port` with `password`
    /// and `method`, and waits until its socks port accepts connections.
    /// `None` without the binary.
    ///
    /// # Panics
    /// If it does not start; the message includes its output.
    pub async fn start(server_port: u16, password: &str, method: &str) -> Option<TestSsLocal> {
        let binary = ss_local_binary()?;
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let socks_port = free_port();
        // The password goes in a file, not on a command line others can read.
        let config = dir.path().join("local.json");
        let body = serde_json::json!({
            "server": "127.0.0.1", "server_port": server_port,
            "local_address": "127.0.0.1", "local_port": socks_port,
            "password": password, "method": method, "timeout": 10,
        });
        std::fs::write(&config, body.to_string()).expect("write the ss-local config");
        let log = dir.path().join("ss-local.log");
        let out = std::fs::File::create(&log).expect("create log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut local = TestSsLocal {
            child,
            socks_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        while !accepts_tcp(socks_port).await {
            if let Ok(Some(status)) = local.child.try_wait() {
                panic!("ss-local exited with {status}: {}", local.log());
            }
            assert!(
                Instant::now() < deadline,
                "ss-local not listening within {START_DEADLINE:?}: {}",
                local.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Some(local)
    }

    pub fn socks_port(&self) -> u16 {
        self.socks_port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestSsLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
