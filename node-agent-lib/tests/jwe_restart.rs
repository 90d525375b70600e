//! A restarted agent starts with an empty replay cache: it refuses every
//! request issued before it started, so a captured sealed call cannot be
//! accepted again after a restart (finding 9 of issue 14), while the next
//! call the manager seals works at once.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::StatusCode;
use common::*;
use node_agent_lib::api::{AppState, router};
use node_agent_lib::core::MockCoreApi;
use node_agent_lib::envelope;
use node_agent_lib::service::{MockServiceControl, ServiceStatus};

#[tokio::test]
async fn a_request_accepted_before_a_restart_is_refused_after_it() {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Stopped));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    let captured =
        envelope::seal_request(&node.key, "POST", "/stop", b"", SystemTime::now()).unwrap();
    let status_call =
        envelope::seal_request(&node.key, "GET", "/status", b"", SystemTime::now()).unwrap();
    let (first, _) = send(
        &node.router,
        request_with_token("GET", "/status", &status_call.token),
    )
    .await;
    assert_eq!(first, StatusCode::OK);

    // The agent restarts (same key, fresh state) at least a millisecond
    // after the captured calls were sealed.
    let sealed_ms = envelope::unix_millis(SystemTime::now());
    while envelope::unix_millis(SystemTime::now()) <= sealed_ms {
        std::thread::yield_now();
    }
    let restarted = router(Arc::new(AppState::new(
        node.agent.clone(),
        node.key.clone(),
    )));

    for (method, path, token) in [
        ("GET", "/status", &status_call.token),
        ("POST", "/stop", &captured.token),
    ] {
        let (status, body) = send(&restarted, request_with_token(method, path, token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} replayed");
        assert_eq!(body, br#"{"error":"unauthorized"}"#);
    }

    // The manager's next call, sealed after the restart, is accepted.
    let (request, _) = sealed(&node.key, "GET", "/status", b"");
    let (next, _) = send(&restarted, request).await;
    assert_eq!(next, StatusCode::OK);
}
