//! The agent's logic around its two ports, with mockall mocks: start writes
//! the config and (re)starts the core, edits are idempotent and reach the
//! config, and a core that restarted or was changed behind the agent's back
//! is put right (against a fake core that keeps its users and restarts from
//! the generated config, as a real one does).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use node_agent_lib::agent::AgentOptions;
use node_agent_lib::core::{CoreApi, CoreError, CoreUser, MockCoreApi};
use node_agent_lib::service::{CoreInstance, MockServiceControl, ServiceStatus};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A service mock that is always Running and counts restarts (each one a
/// new instance of the core).
fn running_service(restarts: Arc<AtomicUsize>) -> MockServiceControl {
    let mut service = MockServiceControl::new();
    let count = restarts.clone();
    service.expect_restart().returning(move || {
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    service.expect_instance().returning(move || {
        let run = restarts.load(Ordering::SeqCst);
        Ok(Some(CoreInstance::new(run.to_string())))
    });
    service
}

/// A core mock whose uptime is `uptime`, that cannot count users (V2Ray-like),
/// and that records every add/remove per email.
#[derive(Clone, Default)]
struct CoreLog {
    adds: Arc<Mutex<HashMap<String, usize>>>,
    removes: Arc<Mutex<HashMap<String, usize>>>,
}

impl CoreLog {
    fn adds(&self, email: &str) -> usize {
        self.adds.lock().unwrap().get(email).copied().unwrap_or(0)
    }
    fn removes(&self, email: &str) -> usize {
        self.removes
            .lock()
            .unwrap()
            .get(email)
            .copied()
            .unwrap_or(0)
    }
}

fn core(uptime: Arc<AtomicU32>, log: CoreLog) -> MockCoreApi {
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs()
        .returning(move || Ok(uptime.load(Ordering::SeqCst)));
    core.expect_users_count().returning(|_| Ok(None));
    let adds = log.adds.clone();
    core.expect_add_user().returning(move |_, user| {
        *adds.lock().unwrap().entry(user.email.clone()).or_default() += 1;
        Ok(())
    });
    let removes = log.removes.clone();
    core.expect_remove_user().returning(move |_, email| {
        *removes.lock().unwrap().entry(email.to_owned()).or_default() += 1;
        Ok(())
    });
    core
}

fn clients(config: &Value, inbound: usize) -> Vec<String> {
    config["inbounds"][inbound]["settings"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_owned())
        .collect()
}

fn read_config(node: &TestNode) -> Value {
    serde_json::from_slice(&std::fs::read(node.generated()).unwrap()).unwrap()
}

async fn get_status(node: &TestNode) -> Value {
    let answer = call(node, "GET", "/status", &Value::Null).await;
    assert_eq!(answer.status.as_u16(), 200, "{:?}", answer.json);
    answer.json.unwrap()
}

#[tokio::test]
async fn start_writes_a_private_config_with_the_users_and_restarts_the_core() {
    let restarts = Arc::new(AtomicUsize::new(0));
    let node = node(
        Arc::new(running_service(restarts.clone())),
        Arc::new(core(Arc::new(AtomicU32::new(1)), CoreLog::default())),
    );
    let answer = call(
        &node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2)]}),
    )
    .await;
    assert_eq!(answer.status.as_u16(), 200);
    // The template, and how clients dial each managed inbound of the base config.
    assert_eq!(
        answer.json.unwrap(),
        json!({"userConfigTemplate": TEMPLATE, "inbounds": [
            {"tag": "vless-in", "protocol": "vless", "port": 1, "network": "tcp", "security": "none"},
            {"tag": "vmess-in", "protocol": "vmess", "port": 2, "network": "tcp", "security": "none"},
        ]})
    );
    assert_eq!(restarts.load(Ordering::SeqCst), 1);

    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(node.generated())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = read_config(&node);
    let mut expected = vec![user(1).id, user(2).id];
    expected.sort();
    for inbound in [1, 2] {
        let mut got = clients(&config, inbound);
        got.sort();
        assert_eq!(got, expected);
    }
    assert_eq!(
        config["inbounds"][2]["settings"]["clients"][0]["alterId"],
        0
    );
}

#[tokio::test]
async fn start_again_runs_exactly_the_new_users() {
    let restarts = Arc::new(AtomicUsize::new(0));
    let node = node(
        Arc::new(running_service(restarts.clone())),
        Arc::new(core(Arc::new(AtomicU32::new(1)), CoreLog::default())),
    );
    for users in [json!([user(1), user(2)]), json!([user(3)])] {
        let answer = call(&node, "POST", "/start", &json!({ "users": users })).await;
        assert_eq!(answer.status.as_u16(), 200);
    }
    assert_eq!(restarts.load(Ordering::SeqCst), 2);
    assert_eq!(clients(&read_config(&node), 1), vec![user(3).id]);
    assert_eq!(get_status(&node).await["users"], 1);
}

#[tokio::test]
async fn stop_stops_the_service_and_status_says_stopped() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let mut service = MockServiceControl::new();
    let count = stopped.clone();
    service.expect_stop().returning(move || {
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Stopped));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    for _ in 0..2 {
        let answer = call(&node, "POST", "/stop", &Value::Null).await;
        assert_eq!(answer.status.as_u16(), 200);
        assert!(answer.raw.is_empty());
    }
    assert_eq!(stopped.load(Ordering::SeqCst), 2);
    let status = get_status(&node).await;
    assert_eq!(status["nodeStatus"], "Stopped");
    assert_eq!(status["users"], 0);
}

#[tokio::test]
async fn adding_an_existing_user_and_removing_a_missing_one_succeed() {
    let mut core = MockCoreApi::new();
    core.expect_add_user().times(2).returning(|_, u| {
        Err(CoreError::UserExists {
            email: u.email.clone(),
        })
    });
    core.expect_remove_user().times(2).returning(|_, email| {
        Err(CoreError::UserNotFound {
            email: email.to_owned(),
        })
    });
    let node = node(Arc::new(MockServiceControl::new()), Arc::new(core));
    let edit = json!({"addUsers": [user(1)], "delUsers": [user(2).id]});
    let answer = call(&node, "POST", "/users/edit", &edit).await;
    assert_eq!(answer.status.as_u16(), 200, "{:?}", answer.json);
}

#[tokio::test]
async fn edit_accepts_snake_case_fields() {
    let log = CoreLog::default();
    let node = node(
        Arc::new(MockServiceControl::new()),
        Arc::new(core(Arc::new(AtomicU32::new(1)), log.clone())),
    );
    let edit = json!({"add_users": [user(1)], "del_users": [user(2).id]});
    assert_eq!(
        call(&node, "POST", "/users/edit", &edit)
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(log.adds(&user(1).id), 2, "one add per managed inbound");
    assert_eq!(log.removes(&user(2).id), 2);
}

#[tokio::test]
async fn edits_reach_the_generated_config() {
    let node = node(
        Arc::new(running_service(Arc::default())),
        Arc::new(core(Arc::new(AtomicU32::new(1)), CoreLog::default())),
    );
    let shutdown = CancellationToken::new();
    let background = node.agent.spawn_background(shutdown.clone());
    call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    let edit = json!({"addUsers": [user(2), user(3)], "delUsers": [user(1).id]});
    assert_eq!(
        call(&node, "POST", "/users/edit", &edit)
            .await
            .status
            .as_u16(),
        200
    );

    let mut expected = vec![user(2).id, user(3).id];
    expected.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut got = clients(&read_config(&node), 1);
        got.sort();
        if got == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "config still has {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    background.await.unwrap();
}

#[tokio::test]
async fn status_counts_the_users_an_xray_core_really_has() {
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs().returning(|| Ok(100));
    core.expect_users_count().returning(|_| Ok(Some(7)));
    let node = node(Arc::new(running_service(Arc::default())), Arc::new(core));
    let status = get_status(&node).await;
    assert_eq!(status["nodeStatus"], "Running");
    assert_eq!(status["users"], 7);
    assert_eq!(status["coreUptimeSecs"], 100);
}

/// A core that keeps its users per inbound as a real one does (answering
/// "exists"/"not found"), and a service around it whose restart, ordered or
/// not, loads the users of the generated config, as a real core reads it.
#[derive(Debug)]
struct FakeCore {
    config: std::path::PathBuf,
    users: Mutex<HashSet<(String, String)>>,
    runs: AtomicU32,
}

impl FakeCore {
    fn new(config: std::path::PathBuf) -> Arc<Self> {
        Arc::new(Self {
            config,
            users: Mutex::default(),
            runs: AtomicU32::new(0),
        })
    }

    /// A new run of the core, on what the generated config holds now.
    fn restart(&self) {
        let config: Value = serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        let mut users = HashSet::new();
        for inbound in config["inbounds"].as_array().unwrap() {
            let tag = inbound["tag"].as_str().unwrap_or_default();
            for client in inbound["settings"]["clients"]
                .as_array()
                .into_iter()
                .flatten()
            {
                users.insert((tag.to_owned(), client["email"].as_str().unwrap().to_owned()));
            }
        }
        *self.users.lock().unwrap() = users;
        self.runs.fetch_add(1, Ordering::SeqCst);
    }

    /// The emails each managed inbound holds, if both hold the same.
    fn emails(&self) -> Option<Vec<String>> {
        let users = self.users.lock().unwrap();
        let per_tag = |tag: &str| {
            let mut emails: Vec<String> = users
                .iter()
                .filter(|(t, _)| t == tag)
                .map(|(_, e)| e.clone())
                .collect();
            emails.sort();
            emails
        };
        let vless = per_tag("vless-in");
        (vless == per_tag("vmess-in")).then_some(vless)
    }

    fn behind_the_back_add(&self, email: &str) {
        let mut users = self.users.lock().unwrap();
        for tag in ["vless-in", "vmess-in"] {
            users.insert((tag.to_owned(), email.to_owned()));
        }
    }

    fn behind_the_back_remove(&self, email: &str) {
        let mut users = self.users.lock().unwrap();
        for tag in ["vless-in", "vmess-in"] {
            users.remove(&(tag.to_owned(), email.to_owned()));
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl CoreApi for FakeCore {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        let key = (inbound_tag.to_owned(), user.email.clone());
        if self.users.lock().unwrap().insert(key) {
            Ok(())
        } else {
            Err(CoreError::UserExists {
                email: user.email.clone(),
            })
        }
    }

    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        let key = (inbound_tag.to_owned(), email.to_owned());
        if self.users.lock().unwrap().remove(&key) {
            Ok(())
        } else {
            Err(CoreError::UserNotFound {
                email: email.to_owned(),
            })
        }
    }

    async fn users_count(&self, _: &str) -> Result<Option<u64>, CoreError> {
        Ok(None)
    }

    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        // Whole seconds: every run in these tests is younger than one.
        Ok(0)
    }

    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        Ok(Vec::new())
    }
}

/// A service over a [`FakeCore`]: each restart is a new run of it.
fn service_of(core: &Arc<FakeCore>) -> MockServiceControl {
    let mut service = MockServiceControl::new();
    let restarted = core.clone();
    service.expect_restart().returning(move || {
        restarted.restart();
        Ok(())
    });
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    let named = core.clone();
    service.expect_instance().returning(move || {
        let run = named.runs.load(Ordering::SeqCst);
        Ok(Some(CoreInstance::new(run.to_string())))
    });
    service
}

/// A node over a fake core, with its background tasks running (the config
/// writer held back for an hour unless `tweak` says otherwise).
struct Healing {
    node: TestNode,
    core: Arc<FakeCore>,
    shutdown: CancellationToken,
    background: tokio::task::JoinHandle<()>,
}

impl Healing {
    fn new(tweak: impl FnOnce(&mut AgentOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let core = FakeCore::new(dir.path().join("core.json"));
        let node = node_in(dir, Arc::new(service_of(&core)), core.clone(), |o| {
            o.flush_delay = Duration::from_secs(3600);
            o.monitor_interval = Duration::from_millis(20);
            o.verify_period = Duration::ZERO;
            tweak(o);
        });
        let shutdown = CancellationToken::new();
        let background = node.agent.spawn_background(shutdown.clone());
        Self {
            node,
            core,
            shutdown,
            background,
        }
    }

    async fn edit(&self, edit: Value) {
        let answer = call(&self.node, "POST", "/users/edit", &edit).await;
        assert_eq!(answer.status.as_u16(), 200, "{:?}", answer.json);
    }

    /// Waits until both inbounds of the core hold exactly `users`.
    async fn wait_for_core(&self, users: &[u32]) {
        let mut want: Vec<String> = users.iter().map(|&n| user(n).id).collect();
        want.sort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.core.emails();
            if got.as_ref() == Some(&want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the core holds {got:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) {
        self.shutdown.cancel();
        self.background.await.unwrap();
    }
}

#[tokio::test]
async fn a_core_restarted_within_a_second_of_its_start_gets_every_acknowledged_edit_back() {
    let h = Healing::new(|_| {});
    let answer = call(
        &h.node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2)]}),
    )
    .await;
    assert_eq!(answer.status.as_u16(), 200);
    h.edit(json!({"addUsers": [user(3)], "delUsers": [user(1).id]}))
        .await;
    h.wait_for_core(&[2, 3]).await;

    // Killed and brought back by the supervisor at once: the same whole-second
    // uptime, and the config on disk still the one written at start.
    h.core.restart();
    assert_eq!(h.core.emails().unwrap().len(), 2, "the core lost the edits");
    h.wait_for_core(&[2, 3]).await;
    assert_eq!(h.node.agent.core_restarts(), 1);
    assert_eq!(h.node.agent.users_readded(), 1);
    assert_eq!(h.node.agent.users_removed_as_stray(), 1);
    h.finish().await;
}

#[tokio::test]
async fn status_notices_a_start_it_did_not_order() {
    let h = Healing::new(|o| o.monitor_interval = Duration::from_secs(3600));
    call(&h.node, "POST", "/start", &json!({"users": [user(1)]})).await;
    h.edit(json!({"addUsers": [user(2)]})).await;
    h.core.restart();
    assert_eq!(get_status(&h.node).await["coreRestarts"], 1);
    h.wait_for_core(&[1, 2]).await;
    h.finish().await;
}

#[tokio::test]
async fn the_verifier_repairs_users_changed_behind_the_agents_back() {
    let h = Healing::new(|o| o.verify_period = Duration::from_millis(50));
    call(
        &h.node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2), user(3)]}),
    )
    .await;
    h.edit(json!({"delUsers": [user(3).id]})).await;
    h.wait_for_core(&[1, 2]).await;

    h.core.behind_the_back_remove(&user(1).id);
    h.core.behind_the_back_add(&user(3).id);
    h.wait_for_core(&[1, 2]).await;
    assert_eq!(h.node.agent.users_readded(), 1);
    assert_eq!(h.node.agent.users_removed_as_stray(), 1);
    assert_eq!(h.node.agent.core_restarts(), 0, "no restart involved");
    h.finish().await;
}

#[tokio::test]
async fn the_verifier_leaves_a_right_core_alone() {
    let h = Healing::new(|o| o.verify_period = Duration::from_millis(20));
    call(
        &h.node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2)]}),
    )
    .await;
    h.edit(json!({"addUsers": [user(3)], "delUsers": [user(2).id]}))
        .await;
    let passes = h.node.agent.verification_passes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.node.agent.verification_passes() < passes + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verification pass"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.node.agent.users_readded(), 0);
    assert_eq!(h.node.agent.users_removed_as_stray(), 0);
    h.wait_for_core(&[1, 3]).await;
    h.finish().await;
}

#[tokio::test]
async fn stopped_agent_does_not_heal() {
    let runs = Arc::new(AtomicUsize::new(0));
    let log = CoreLog::default();
    let mut service = MockServiceControl::new();
    service.expect_restart().never();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    let run = runs.clone();
    service.expect_instance().returning(move || {
        Ok(Some(CoreInstance::new(
            run.load(Ordering::SeqCst).to_string(),
        )))
    });
    let node = node(
        Arc::new(service),
        Arc::new(core(Arc::new(AtomicU32::new(1000)), log.clone())),
    );
    get_status(&node).await;
    runs.fetch_add(1, Ordering::SeqCst);
    let status = get_status(&node).await;
    assert_eq!(status["coreRestarts"], 1, "still counted");
    assert_eq!(status["users"], 0);
    assert_eq!(log.adds(&user(1).id), 0);
}
