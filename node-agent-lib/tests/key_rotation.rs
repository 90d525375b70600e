//! `POST /key`: the node takes a new key from the manager, accepts the old
//! and the new one for the grace period (answering each call under the key
//! it came in), then only the new one; the rotation is persisted in the
//! state directory, so a restarted agent keeps the new key.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use common::*;
use node_agent_lib::api::{AppState, router};
use node_agent_lib::core::MockCoreApi;
use node_agent_lib::envelope::{self, NodeKey};
use node_agent_lib::keyring::{KEY_FILE, KeyRing};
use node_agent_lib::service::{MockServiceControl, ServiceStatus};
use serde_json::{Value, json};

/// A node whose service always says Stopped, its keys persisted in `state/`
/// of its directory.
fn persisted_node() -> (TestNode, Arc<AppState>) {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Stopped));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    let state = restarted(&node);
    (node, state)
}

/// The node's agent as it would come back after a restart: the settings
/// still name the node's first key; the state directory may hold a newer one.
fn restarted(node: &TestNode) -> Arc<AppState> {
    let dir = node.dir.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = KeyRing::load(&dir, node.key.clone()).unwrap();
    Arc::new(AppState::new(node.agent.clone(), node.key.clone()).with_key_ring(Arc::new(keys)))
}

/// Sends `payload` sealed under `key`; gives the status and, when the answer
/// is sealed under `key` for this request, its JSON (`None` for a bare 401).
async fn call_under(
    app: &Router,
    key: &NodeKey,
    method: &str,
    path: &str,
    payload: &Value,
) -> (StatusCode, Option<Value>) {
    let payload = if payload.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(payload).unwrap()
    };
    let (request, jti) = sealed(key, method, path, &payload);
    let (status, raw) = send(app, request).await;
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(raw, br#"{"error":"unauthorized"}"#);
        return (status, None);
    }
    let opened = envelope::open_response(
        key,
        std::str::from_utf8(&raw).unwrap(),
        &jti,
        status.as_u16(),
    )
    .unwrap_or_else(|e| panic!("answer {status} not sealed under the request's key: {e}"));
    let json = (!opened.is_empty()).then(|| serde_json::from_slice(&opened).unwrap());
    (status, json)
}

fn rotate_body(key: &NodeKey, grace_secs: u64) -> Value {
    json!({"key": key.expose_base64url(), "graceSecs": grace_secs})
}

#[tokio::test]
async fn both_keys_are_accepted_during_the_grace_period_each_answered_under_its_own() {
    let (node, state) = persisted_node();
    let app = router(state);
    let new = NodeKey::random();
    let (status, answer) =
        call_under(&app, &node.key, "POST", "/key", &rotate_body(&new, 3600)).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let answer = answer.unwrap();
    assert_eq!(answer["rotated"], true);
    assert!(answer["graceUntil"].as_u64().unwrap() > 0);
    for key in [&new, &node.key] {
        let (status, answer) = call_under(&app, key, "GET", "/status", &Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.unwrap()["nodeStatus"], "Stopped");
    }
}

#[tokio::test]
async fn the_old_key_is_refused_once_the_grace_period_is_over() {
    let (node, state) = persisted_node();
    let app = router(state);
    let new = NodeKey::random();
    let (status, _) = call_under(&app, &node.key, "POST", "/key", &rotate_body(&new, 0)).await;
    assert_eq!(status, StatusCode::OK);
    let (old, _) = call_under(&app, &node.key, "GET", "/status", &Value::Null).await;
    assert_eq!(old, StatusCode::UNAUTHORIZED);
    let (fresh, _) = call_under(&app, &new, "GET", "/status", &Value::Null).await;
    assert_eq!(fresh, StatusCode::OK);
}

#[tokio::test]
async fn the_new_key_is_persisted_and_a_restarted_agent_serves_under_it() {
    let (node, state) = persisted_node();
    let new = NodeKey::random();
    let (status, _) = call_under(
        &router(state),
        &node.key,
        "POST",
        "/key",
        &rotate_body(&new, 0),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let file = std::fs::read_to_string(node.dir.path().join("state").join(KEY_FILE)).unwrap();
    assert_eq!(file.trim(), new.expose_base64url());

    let app = router(restarted(&node));
    let (fresh, _) = call_under(&app, &new, "GET", "/status", &Value::Null).await;
    assert_eq!(fresh, StatusCode::OK);
    let (old, _) = call_under(&app, &node.key, "GET", "/status", &Value::Null).await;
    assert_eq!(old, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_agent_restarted_during_the_grace_period_still_accepts_both_keys() {
    let (node, state) = persisted_node();
    let new = NodeKey::random();
    let (status, _) = call_under(
        &router(state),
        &node.key,
        "POST",
        "/key",
        &rotate_body(&new, 3600),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let app = router(restarted(&node));
    for key in [&new, &node.key] {
        let (status, _) = call_under(&app, key, "GET", "/status", &Value::Null).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn delivering_the_same_key_again_under_either_key_changes_nothing() {
    let (node, state) = persisted_node();
    let app = router(state);
    let new = NodeKey::random();
    let (_, first) = call_under(&app, &node.key, "POST", "/key", &rotate_body(&new, 3600)).await;
    let grace_until = first.unwrap()["graceUntil"].clone();
    for key in [&node.key, &new] {
        let (status, again) = call_under(&app, key, "POST", "/key", &rotate_body(&new, 60)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            again.unwrap(),
            json!({"rotated": false, "graceUntil": grace_until})
        );
    }
    let (old, _) = call_under(&app, &node.key, "GET", "/status", &Value::Null).await;
    assert_eq!(old, StatusCode::OK, "the grace period was not shortened");
}

#[tokio::test]
async fn a_bad_rotation_is_a_sealed_400_and_changes_nothing() {
    let (node, state) = persisted_node();
    let app = router(state);
    for body in [
        json!({"key": "too-short", "graceSecs": 60}),
        json!({"graceSecs": 60}),
        rotate_body(&NodeKey::random(), 31 * 24 * 3600),
    ] {
        let (status, answer) = call_under(&app, &node.key, "POST", "/key", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.unwrap()["error"], "bad request");
    }
    assert!(!node.dir.path().join("state").join(KEY_FILE).exists());
    let (still, _) = call_under(&app, &node.key, "GET", "/status", &Value::Null).await;
    assert_eq!(still, StatusCode::OK);
}

#[tokio::test]
async fn a_rotation_sealed_under_an_unknown_key_is_refused() {
    let (_node, state) = persisted_node();
    let app = router(state);
    let stranger = NodeKey::random();
    let (status, _) = call_under(
        &app,
        &stranger,
        "POST",
        "/key",
        &rotate_body(&NodeKey::random(), 60),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_old_key_cannot_rotate_to_a_key_of_its_own_during_the_grace() {
    let (node, state) = persisted_node();
    let app = router(state);
    let new = NodeKey::random();
    let (status, _) = call_under(&app, &node.key, "POST", "/key", &rotate_body(&new, 3600)).await;
    assert_eq!(status, StatusCode::OK);
    let theirs = NodeKey::random();
    let (status, answer) =
        call_under(&app, &node.key, "POST", "/key", &rotate_body(&theirs, 3600)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.unwrap()["error"], "bad request");
    let (refused, _) = call_under(&app, &theirs, "GET", "/status", &Value::Null).await;
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    let file = std::fs::read_to_string(node.dir.path().join("state").join(KEY_FILE)).unwrap();
    assert_eq!(file.trim(), new.expose_base64url());
}
