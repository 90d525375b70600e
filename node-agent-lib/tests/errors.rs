//! The documented error answers, provoked for real where possible (a closed
//! API port, a service backend whose program does not exist) and with mocks
//! for the rest.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use node_agent_lib::core::{CoreClient, CoreError, Flavor, MockCoreApi};
use node_agent_lib::service::{
    CoreInstance, MockServiceControl, ProcessService, ProcessSettings, ServiceStatus,
    SystemdService,
};
use serde_json::json;

fn closed_port() -> u16 {
    // Bound then dropped: nothing listens there afterwards.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn core_at_closed_port() -> Arc<CoreClient> {
    let address = format!("127.0.0.1:{}", closed_port());
    Arc::new(CoreClient::new(&address, Flavor::Xray, Duration::from_millis(500)).unwrap())
}

fn missing_systemctl() -> Arc<SystemdService> {
    Arc::new(SystemdService::new("xray.service").with_systemctl("/nonexistent/systemctl"))
}

#[tokio::test]
async fn body_that_is_not_json_is_bad_request() {
    let node = node(
        Arc::new(MockServiceControl::new()),
        Arc::new(MockCoreApi::new()),
    );
    let answer = call_raw(&node, "POST", "/start", b"users: all of them").await;
    assert_error(&answer, 400, "bad request");
    let answer = call_raw(&node, "POST", "/users/edit", b"[1, 2]").await;
    assert_error(&answer, 400, "bad request");
}

#[tokio::test]
async fn wrong_fields_are_bad_request() {
    let node = node(
        Arc::new(MockServiceControl::new()),
        Arc::new(MockCoreApi::new()),
    );
    let answer = call(&node, "POST", "/start", &json!({"users": [{"id": 5}]})).await;
    assert_error(&answer, 400, "bad request");
    let answer = call(&node, "POST", "/users/edit", &json!({"addUsers": "nobody"})).await;
    assert_error(&answer, 400, "bad request");
}

#[tokio::test]
async fn user_id_that_is_not_a_uuid_is_bad_request() {
    let node = node(
        Arc::new(MockServiceControl::new()),
        Arc::new(MockCoreApi::new()),
    );
    let users = json!({"users": [{"id": "alice", "name": "alice", "secret": "s"}]});
    assert_error(
        &call(&node, "POST", "/start", &users).await,
        400,
        "bad request",
    );
    // A per-node VLESS/VMess id is checked the same way.
    let id = user(1).id;
    for proxy_id in ["alice", ""] {
        let users = json!({"users": [{"id": id, "name": "", "secret": "s", "proxyId": proxy_id}]});
        assert_error(
            &call(&node, "POST", "/start", &users).await,
            400,
            "bad request",
        );
        let edit =
            json!({"addUsers": [{"id": id, "name": "", "secret": "s", "proxyId": proxy_id}]});
        assert_error(
            &call(&node, "POST", "/users/edit", &edit).await,
            400,
            "bad request",
        );
    }
}

#[tokio::test]
async fn edit_when_the_core_api_does_not_answer_is_service_unavailable() {
    let node = node(Arc::new(MockServiceControl::new()), core_at_closed_port());
    let edit = json!({"addUsers": [user(1)], "delUsers": []});
    let answer = call(&node, "POST", "/users/edit", &edit).await;
    assert_error(&answer, 500, "xray service unavailable");
    let answer = call(
        &node,
        "POST",
        "/users/edit",
        &json!({"delUsers": [user(1).id]}),
    )
    .await;
    assert_error(&answer, 500, "xray service unavailable");
}

#[tokio::test]
async fn edit_the_core_refuses_is_service_error() {
    let mut core = MockCoreApi::new();
    core.expect_add_user().returning(|tag, _| {
        Err(CoreError::InboundNotFound {
            tag: tag.to_owned(),
        })
    });
    let node = node(Arc::new(MockServiceControl::new()), Arc::new(core));
    let answer = call(
        &node,
        "POST",
        "/users/edit",
        &json!({"addUsers": [user(1)]}),
    )
    .await;
    assert_error(&answer, 500, "xray service error");
}

#[tokio::test]
async fn start_with_a_missing_systemctl_is_service_error() {
    let node = node(missing_systemctl(), core_at_closed_port());
    let answer = call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    assert_error(&answer, 500, "xray service error");
    let answer = call(&node, "POST", "/stop", &serde_json::Value::Null).await;
    assert_error(&answer, 500, "xray service error");
}

#[tokio::test]
async fn start_with_a_missing_core_binary_is_service_error() {
    let process = ProcessService::new(ProcessSettings::new("/nonexistent/xray", vec![]));
    let node = node(Arc::new(process), core_at_closed_port());
    let answer = call(&node, "POST", "/start", &json!({"users": []})).await;
    assert_error(&answer, 500, "xray service error");
}

#[tokio::test]
async fn start_of_a_core_that_exits_at_once_is_service_error() {
    // `false` runs and exits 1: the supervisor keeps restarting it, the API
    // never answers, and the start ends with an error rather than hanging.
    let process = ProcessService::new(ProcessSettings::new("false", vec![]));
    let node = node(Arc::new(process), core_at_closed_port());
    let answer = call(&node, "POST", "/start", &json!({"users": []})).await;
    assert!(
        answer.status.as_u16() == 500 || answer.status.as_u16() == 503,
        "{:?}",
        answer.json
    );
    let text = answer.json.unwrap()["error"].as_str().unwrap().to_owned();
    assert!(
        ["xray service error", "xray service initializing"].contains(&text.as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn status_with_a_missing_systemctl_is_status_error() {
    let node = node(missing_systemctl(), core_at_closed_port());
    let answer = call(&node, "GET", "/status", &serde_json::Value::Null).await;
    assert_error(&answer, 500, "xray service status error");
}

#[tokio::test]
async fn status_while_the_core_starts_is_initializing() {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Initializing));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    let answer = call(&node, "GET", "/status", &serde_json::Value::Null).await;
    assert_error(&answer, 503, "xray service initializing");
}

#[tokio::test]
async fn status_of_a_running_core_whose_api_is_closed_is_initializing() {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    let node = node(Arc::new(service), core_at_closed_port());
    let answer = call(&node, "GET", "/status", &serde_json::Value::Null).await;
    assert_error(&answer, 503, "xray service initializing");
}

#[tokio::test]
async fn start_whose_core_stays_initializing_is_initializing() {
    let mut service = MockServiceControl::new();
    service.expect_restart().returning(|| Ok(()));
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Initializing));
    let node = node_with(Arc::new(service), core_at_closed_port(), |o| {
        o.start_timeout = Duration::from_millis(300);
    });
    let answer = call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    assert_error(&answer, 503, "xray service initializing");
}

#[tokio::test]
async fn start_during_another_start_is_initializing() {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut service = MockServiceControl::new();
    // The first start's restart blocks (its own thread) until released.
    service.expect_restart().times(1).returning(move || {
        entered_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    service
        .expect_instance()
        .returning(|| Ok(Some(CoreInstance::new("1"))));
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs().returning(|| Ok(5));
    let node = Arc::new(node(Arc::new(service), Arc::new(core)));
    let first = {
        let node = node.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                call(&node, "POST", "/start", &json!({"users": []}))
                    .await
                    .status
            })
        })
    };
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first start reached the service");
    let second = call(&node, "POST", "/start", &json!({"users": []})).await;
    assert_error(&second, 503, "xray service initializing");
    let status = call(&node, "GET", "/status", &serde_json::Value::Null).await;
    assert_error(&status, 503, "xray service initializing");
    release_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap().as_u16(), 200);
}

#[tokio::test]
async fn unwritable_generated_config_is_internal_error() {
    let mut service = MockServiceControl::new();
    service.expect_restart().never();
    let node = node_with(Arc::new(service), Arc::new(MockCoreApi::new()), |o| {
        o.generated_config = "/nonexistent/dir/core.json".into();
    });
    let answer = call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    assert_error(&answer, 500, "internal server error");
}
