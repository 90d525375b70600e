//! The agent's logic around its two ports, with mockall mocks: start writes
//! the config and (re)starts the core, edits are idempotent and reach the
//! config, and a core that restarted behind the agent's back is healed.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use node_agent_lib::core::{CoreError, MockCoreApi};
use node_agent_lib::service::{MockServiceControl, ServiceStatus};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A service mock that is always Running and counts restarts.
fn running_service(restarts: Arc<AtomicUsize>) -> MockServiceControl {
    let mut service = MockServiceControl::new();
    service.expect_restart().returning(move || {
        restarts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
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
    assert_eq!(
        answer.json.unwrap(),
        json!({"userConfigTemplate": TEMPLATE})
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

#[tokio::test]
async fn a_restart_behind_our_back_is_detected_and_runtime_users_are_put_back() {
    let uptime = Arc::new(AtomicU32::new(1000));
    let restarts = Arc::new(AtomicUsize::new(0));
    let log = CoreLog::default();
    let node = node(
        Arc::new(running_service(restarts.clone())),
        Arc::new(core(uptime.clone(), log.clone())),
    );
    call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(10)).await;
    uptime.store(1010, Ordering::SeqCst);
    assert_eq!(get_status(&node).await["coreRestarts"], 0);

    // A runtime edit the background writer has not written yet.
    let edit = json!({"addUsers": [user(2)]});
    assert_eq!(
        call(&node, "POST", "/users/edit", &edit)
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(log.adds(&user(2).id), 2);

    // The core restarted 3 s ago, from the config written at start.
    uptime.store(3, Ordering::SeqCst);
    let status = get_status(&node).await;
    assert_eq!(status["coreRestarts"], 1);
    assert_eq!(status["users"], 2);
    assert_eq!(log.adds(&user(2).id), 4, "re-added in both inbounds");
    assert_eq!(
        log.adds(&user(1).id),
        0,
        "users from the config are not re-sent"
    );
    assert_eq!(
        restarts.load(Ordering::SeqCst),
        1,
        "healed through the API, not by restarting"
    );

    // Nothing more to do on the next look.
    tokio::time::advance(Duration::from_secs(5)).await;
    uptime.store(8, Ordering::SeqCst);
    assert_eq!(get_status(&node).await["coreRestarts"], 1);
    assert_eq!(log.adds(&user(2).id), 4);
}

#[tokio::test]
async fn a_removed_user_is_removed_again_after_a_restart() {
    let uptime = Arc::new(AtomicU32::new(1000));
    let log = CoreLog::default();
    let node = node(
        Arc::new(running_service(Arc::default())),
        Arc::new(core(uptime.clone(), log.clone())),
    );
    call(
        &node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2)]}),
    )
    .await;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(10)).await;
    uptime.store(1010, Ordering::SeqCst);
    get_status(&node).await;
    let edit = json!({"delUsers": [user(1).id]});
    assert_eq!(
        call(&node, "POST", "/users/edit", &edit)
            .await
            .status
            .as_u16(),
        200
    );
    uptime.store(2, Ordering::SeqCst);
    let status = get_status(&node).await;
    assert_eq!(status["users"], 1);
    assert_eq!(log.removes(&user(1).id), 4);
}

#[tokio::test]
async fn a_restart_right_after_start_is_healed_by_restarting_on_a_fresh_config() {
    let uptime = Arc::new(AtomicU32::new(1000));
    let restarts = Arc::new(AtomicUsize::new(0));
    let node = node(
        Arc::new(running_service(restarts.clone())),
        Arc::new(core(uptime.clone(), CoreLog::default())),
    );
    call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    // Too soon to know which config the new core read: the agent restarts it.
    uptime.store(0, Ordering::SeqCst);
    let status = get_status(&node).await;
    assert_eq!(status["coreRestarts"], 1);
    assert_eq!(restarts.load(Ordering::SeqCst), 2);
    assert_eq!(status["users"], 1);
}

#[tokio::test]
async fn the_monitor_heals_without_being_asked() {
    let uptime = Arc::new(AtomicU32::new(1000));
    let restarts = Arc::new(AtomicUsize::new(0));
    let node = node_with(
        Arc::new(running_service(restarts.clone())),
        Arc::new(core(uptime.clone(), CoreLog::default())),
        |o| o.monitor_interval = Duration::from_millis(20),
    );
    let shutdown = CancellationToken::new();
    let background = node.agent.spawn_background(shutdown.clone());
    call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    uptime.store(0, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while restarts.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "monitor never healed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.agent.core_restarts(), 1);
    shutdown.cancel();
    background.await.unwrap();
}

#[tokio::test]
async fn stopped_agent_does_not_heal() {
    let uptime = Arc::new(AtomicU32::new(1000));
    let log = CoreLog::default();
    let mut service = MockServiceControl::new();
    service.expect_restart().never();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    let node = node(
        Arc::new(service),
        Arc::new(core(uptime.clone(), log.clone())),
    );
    get_status(&node).await;
    uptime.store(0, Ordering::SeqCst);
    let status = get_status(&node).await;
    assert_eq!(status["coreRestarts"], 1, "still counted");
    assert_eq!(status["users"], 0);
}
