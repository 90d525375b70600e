//! The real `xmctl` binary against a real manager (in-memory storage,
//! simulated fleet) served in-process on 127.0.0.1:0, shared by the xmctl
//! test files.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::Value;
use tempfile::TempDir;

pub const TOKEN: &str = "TOKEN-for-xmctl-tests";

/// A manager on a free port, and a clean `$HOME` so no real config file of
/// the machine leaks into a test.
pub struct Harness {
    pub url: String,
    pub fleet: Arc<SimulatedFleet>,
    pub home: TempDir,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        self
    }
}

pub async fn start_manager() -> Harness {
    start_manager_with(|r| r).await
}

pub async fn start_manager_with(wrap: impl FnOnce(Router) -> Router) -> Harness {
    start_manager_custom(SimulatedFleet::new(), |_| {}, wrap).await
}

/// A manager over `fleet`, with the tests' settings changed by `configure`
/// and its router wrapped by `wrap`.
pub async fn start_manager_custom(
    fleet: SimulatedFleet,
    configure: impl FnOnce(&mut ServerSettings),
    wrap: impl FnOnce(Router) -> Router,
) -> Harness {
    let fleet = Arc::new(fleet);
    // Every xmctl run comes from 127.0.0.1 and would share one budget of
    // failed admin calls: the wrong-token tests would throttle the rest.
    let mut settings = ServerSettings {
        admin_failure_limit: None,
        ..ServerSettings::new(TOKEN)
    };
    // Usage reaches the totals at the heartbeat: keep it quick.
    settings.reconciler.interval = Duration::from_millis(100);
    configure(&mut settings);
    let tls = settings.tls.is_some();
    let mut server = Server::build(
        Backends::new(Arc::new(MemoryStorage::new()), fleet.clone()),
        settings,
    );
    server.router = wrap(server.router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(server.serve(listener, std::future::pending()));
    Harness {
        // The test certificates name localhost.
        url: if tls {
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        },
        fleet,
        home: tempfile::tempdir().expect("temp home"),
    }
}

/// Runs the binary with only the given variables (plus a clean `HOME`).
pub async fn run_xmctl(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xmctl"));
    cmd.args(args).env_clear().env("HOME", home);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run xmctl");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

impl Harness {
    /// `xmctl` with this manager's URL and the right token in the environment.
    pub async fn xmctl(&self, args: &[&str]) -> Run {
        run_xmctl(
            self.home.path(),
            args,
            &[("XMCTL_URL", &self.url), ("XMCTL_TOKEN", TOKEN)],
        )
        .await
    }

    pub async fn add_node(&self, endpoint: &str) -> String {
        let run = self.xmctl(&["node", "add", endpoint, "--json"]).await;
        run.assert_code(0);
        run.json()["nodeID"].as_str().expect("nodeID").to_owned()
    }

    pub async fn add_user(&self, name: &str) -> String {
        let run = self.xmctl(&["user", "add", name, "--json"]).await;
        run.assert_code(0);
        let v = run.json();
        assert_eq!(v["user"]["name"], name);
        v["user"]["id"].as_str().expect("user id").to_owned()
    }

    pub async fn users(&self) -> Vec<Value> {
        let run = self.xmctl(&["user", "list", "--json"]).await;
        run.assert_code(0);
        run.json()["users"].as_array().expect("users array").clone()
    }

    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.home.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// A port nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}
