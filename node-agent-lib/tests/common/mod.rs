//! Helpers shared by the router tests: an agent over mocked ports, and
//! sealed requests/answers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use node_agent_lib::agent::{Agent, AgentOptions};
use node_agent_lib::api::{AppState, router};
use node_agent_lib::config::CoreConfig;
use node_agent_lib::core::{CoreApi, Flavor, MockCoreApi};
use node_agent_lib::envelope::{self, NodeKey, SealedRequest};
use node_agent_lib::service::{MockServiceControl, ServiceControl, ServiceStatus};
use node_agent_lib::wire::WireUser;
use serde_json::Value;
use tower::ServiceExt as _;

pub const TEMPLATE: &str = "vless://{{.UserID}}@node.test:443#{{.UserName}}";

/// A base config with the API, one VLESS and one VMess inbound.
pub fn base_config(api_port: u16) -> String {
    serde_json::json!({
        "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
        "stats": {},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api_port, "protocol": "dokodemo-door",
             "settings": {"address": "127.0.0.1"}},
            {"tag": "vless-in", "listen": "127.0.0.1", "port": 1, "protocol": "vless",
             "settings": {"decryption": "none"}},
            {"tag": "vmess-in", "listen": "127.0.0.1", "port": 2, "protocol": "vmess", "settings": {}}
        ],
        "outbounds": [{"protocol": "freedom"}]
    })
    .to_string()
}

pub struct TestNode {
    pub router: Router,
    pub agent: Arc<Agent>,
    pub key: NodeKey,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub fn generated(&self) -> std::path::PathBuf {
        self.dir.path().join("core.json")
    }
}

pub fn options(dir: &tempfile::TempDir) -> AgentOptions {
    let mut options = AgentOptions::new(dir.path().join("core.json"));
    options.user_config_template = TEMPLATE.into();
    options.start_timeout = Duration::from_secs(2);
    options.flush_delay = Duration::from_millis(10);
    options
}

pub fn node(service: Arc<dyn ServiceControl>, core: Arc<dyn CoreApi>) -> TestNode {
    node_with(service, core, |_| {})
}

/// A node whose ports must never be called (the mocks have no
/// expectations, so any call panics).
pub fn untouchable() -> TestNode {
    node(
        Arc::new(MockServiceControl::new()),
        Arc::new(MockCoreApi::new()),
    )
}

/// A node whose service answers one status call, `Stopped`, and nothing else.
pub fn answering_one_status() -> TestNode {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .times(1)
        .returning(|| Ok(ServiceStatus::Stopped));
    node(Arc::new(service), Arc::new(MockCoreApi::new()))
}

/// A single-threaded runtime for property tests, which are not async.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn node_with(
    service: Arc<dyn ServiceControl>,
    core: Arc<dyn CoreApi>,
    tweak: impl FnOnce(&mut AgentOptions),
) -> TestNode {
    node_in(tempfile::tempdir().unwrap(), service, core, tweak)
}

/// A node whose generated config goes in `dir`.
pub fn node_in(
    dir: tempfile::TempDir,
    service: Arc<dyn ServiceControl>,
    core: Arc<dyn CoreApi>,
    tweak: impl FnOnce(&mut AgentOptions),
) -> TestNode {
    let (config, _) = CoreConfig::parse(&base_config(9), Flavor::Xray, "").unwrap();
    let mut options = options(&dir);
    tweak(&mut options);
    let agent = Arc::new(Agent::new(service, core, config, options));
    let key = NodeKey::random();
    let router = router(Arc::new(AppState::new(agent.clone(), key.clone())));
    TestNode {
        router,
        agent,
        key,
        dir,
    }
}

/// A node with usage accounting: its journal in the node's dir (`state/`).
pub fn node_with_journal(service: Arc<dyn ServiceControl>, core: Arc<dyn CoreApi>) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = CoreConfig::parse(&base_config(9), Flavor::Xray, "").unwrap();
    let journal = node_agent_lib::usage::Journal::open(&dir.path().join("state"), 720).unwrap();
    let usage = Arc::new(node_agent_lib::usage::Usage::new(core.clone(), journal));
    let agent = Arc::new(Agent::new(service, core, config, options(&dir)).with_usage(usage));
    let key = NodeKey::random();
    let router = router(Arc::new(AppState::new(agent.clone(), key.clone())));
    TestNode {
        router,
        agent,
        key,
        dir,
    }
}

pub fn user(n: u32) -> WireUser {
    WireUser {
        id: uuid::Uuid::from_u128(0x1000 + u128::from(n)).to_string(),
        name: format!("user {n}"),
        secret: format!("secret-{n}"),
        proxy_id: None,
    }
}

/// A request carrying `token` in `Authorization: JWE <token>`, and no body.
pub fn request_with_token(method: &str, path: &str, token: &str) -> Request<Body> {
    request_with_body(method, path, token, Vec::new())
}

/// A request carrying `token` in its header and `body` with its
/// `Content-Length` (as hyper gives it to the router).
pub fn request_with_body(method: &str, path: &str, token: &str, body: Vec<u8>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("JWE {token}"));
    if !body.is_empty() {
        builder = builder
            .header(header::CONTENT_TYPE, "application/jose")
            .header(header::CONTENT_LENGTH, body.len());
    }
    builder.body(Body::from(body)).unwrap()
}

/// `payload` sealed under `key` for `method` on `path`, as of now.
pub fn seal_now(key: &NodeKey, method: &str, path: &str, payload: &[u8]) -> SealedRequest {
    envelope::seal_request(key, method, path, payload, SystemTime::now()).unwrap()
}

/// A correctly sealed request; gives it with its jti.
pub fn sealed(key: &NodeKey, method: &str, path: &str, payload: &[u8]) -> (Request<Body>, String) {
    let s = seal_now(key, method, path, payload);
    (request_with_body(method, path, &s.token, s.body), s.jti)
}

pub struct Answer {
    pub status: StatusCode,
    pub raw: Vec<u8>,
    /// The opened payload, as JSON when it is not empty.
    pub json: Option<Value>,
}

pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// Sends a sealed request and opens the sealed answer (checking rid/status).
pub async fn call(node: &TestNode, method: &str, path: &str, payload: &Value) -> Answer {
    let payload = if payload.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(payload).unwrap()
    };
    call_raw(node, method, path, &payload).await
}

pub async fn call_raw(node: &TestNode, method: &str, path: &str, payload: &[u8]) -> Answer {
    let (request, jti) = sealed(&node.key, method, path, payload);
    let (status, raw) = send(&node.router, request).await;
    let opened = envelope::open_response(
        &node.key,
        std::str::from_utf8(&raw).unwrap(),
        &jti,
        status.as_u16(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "answer {status} not sealed for us: {e}: {}",
            String::from_utf8_lossy(&raw)
        )
    });
    let json = (!opened.is_empty()).then(|| serde_json::from_slice(&opened).unwrap());
    Answer {
        status,
        raw: opened,
        json,
    }
}

/// Asserts a documented error answer.
pub fn assert_error(answer: &Answer, status: u16, text: &str) {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.json);
    assert_eq!(answer.json.as_ref().unwrap()["error"], text);
}
