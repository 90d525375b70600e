//! `POST /node/key/rotate` through the real router (`oneshot`), in-memory
//! storage and simulated agents that hold their keys: the new key is shown
//! once and used from then on; an agent that cannot be reached gets it from
//! the heartbeat; a rotation interrupted halfway converges on the next
//! heartbeat; an agent that lost its new key during the grace gets it
//! again; one rotation at a time; bad input changes nothing.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use manager_lib::domain::{ActualStatus, NodeId, NodeKey, PageRequest, Timestamp};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{KeyRotationStore as _, Storage};
use manager_lib::transport::NodeTransport as _;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";
const ENDPOINT: &str = "http://10.0.0.1:9000";

struct Api {
    router: axum::Router,
    fleet: Arc<SimulatedFleet>,
    manager: Arc<Manager>,
    storage: Arc<MemoryStorage>,
}

impl Api {
    fn new() -> Self {
        let fleet = Arc::new(SimulatedFleet::new());
        let storage = Arc::new(MemoryStorage::new());
        let settings = ServerSettings {
            manager: ManagerSettings::default(),
            admin_failure_limit: None,
            push_on_change: false,
            ..ServerSettings::new(TOKEN)
        };
        let server = Server::build(Backends::new(storage.clone(), fleet.clone()), settings);
        Self {
            router: server.router,
            fleet,
            manager: server.manager,
            storage,
        }
    }

    async fn admin(&self, path: &str, body: Value) -> (StatusCode, Value) {
        common::admin(&self.router, TOKEN, "POST", path, body).await
    }

    /// A running node whose agent holds the key the manager gave it.
    async fn node(&self) -> NodeId {
        let (status, body) = self.admin("/node/new", json!({"endpoint": ENDPOINT})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let key: NodeKey = body["nodeKey"].as_str().unwrap().parse().unwrap();
        self.fleet.add_node_with_key(ENDPOINT, &key);
        let id = body["nodeID"].as_str().unwrap().to_owned();
        let (status, body) = self.admin("/node/start", json!({"nodeID": id})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id.parse().unwrap()
    }

    async fn rotate(&self, node: NodeId, body: Value) -> (StatusCode, Value) {
        let mut body = body;
        body["nodeID"] = json!(node.to_string());
        self.admin("/node/key/rotate", body).await
    }

    async fn stored_key(&self, node: NodeId) -> NodeKey {
        self.storage.get_node(node).await.unwrap().key
    }

    async fn heartbeat(&self) {
        let nodes = self
            .storage
            .list_nodes(&PageRequest {
                after: None,
                limit: 100,
            })
            .await
            .unwrap()
            .items;
        self.manager.heartbeat_step(nodes, |_, _, _| {}).await;
    }

    /// The node's agent answers a status call under the manager's key.
    async fn answers(&self, node: NodeId) -> bool {
        let node = self.storage.get_node(node).await.unwrap();
        self.fleet.status(&node).await.is_ok()
    }
}

#[tokio::test]
async fn a_rotation_answers_the_new_key_once_and_the_manager_uses_it() {
    let api = Api::new();
    let node = api.node().await;
    let old = api.stored_key(node).await;
    let (status, body) = api.rotate(node, json!({"graceSecs": 600})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new: NodeKey = body["nodeKey"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, old);
    assert_eq!(body["delivered"], true);
    assert_eq!(body["graceSecs"], 600);
    let until = body["graceUntil"].as_i64().unwrap();
    let now = Timestamp::now().0 / 1000;
    assert!((now + 590..=now + 610).contains(&until), "{until} vs {now}");
    assert_eq!(api.fleet.key(ENDPOINT), Some(new.clone()));
    assert_eq!(api.stored_key(node).await, new);
    // The node keeps working under the new key: users reach it.
    let user = common::new_user(&api.router, TOKEN, "alice").await;
    let (status, _) = api.admin("/user/enable", json!({"userID": user})).await;
    assert_eq!(status, StatusCode::OK);
    api.heartbeat().await;
    assert_eq!(api.fleet.users(ENDPOINT).len(), 1);
    // No read answers the key again.
    let (_, nodes) = common::admin(&api.router, TOKEN, "GET", "/nodes", Value::Null).await;
    assert!(!nodes.to_string().contains(&new.expose_base64url()));
}

#[tokio::test]
async fn an_unreachable_node_gets_its_new_key_from_the_heartbeat() {
    let api = Api::new();
    let node = api.node().await;
    let old = api.stored_key(node).await;
    api.fleet.set_unreachable(ENDPOINT, true);
    let (status, body) = api.rotate(node, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivered"], false);
    assert_eq!(body["graceSecs"], 86_400, "a day by default");
    assert!(body.get("graceUntil").is_none());
    let new: NodeKey = body["nodeKey"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        api.stored_key(node).await,
        old,
        "in use until the agent has the new one"
    );

    api.heartbeat().await;
    assert_eq!(api.stored_key(node).await, old, "still unreachable");
    api.fleet.set_unreachable(ENDPOINT, false);
    api.heartbeat().await;
    assert_eq!(api.fleet.key(ENDPOINT), Some(new.clone()));
    assert_eq!(api.stored_key(node).await, new);
    let stored = api.storage.get_node(node).await.unwrap();
    assert_eq!(stored.actual_status, ActualStatus::Running);
}

#[tokio::test]
async fn a_rotation_whose_confirmation_was_lost_converges_on_the_next_heartbeat() {
    let api = Api::new();
    let node = api.node().await;
    let stored = api.storage.get_node(node).await.unwrap();
    // The manager stored the pending key and the agent took it, but the
    // answer was lost before the switch was stored; the grace is over.
    let new = NodeKey::random();
    let grace = std::time::Duration::ZERO;
    api.storage
        .request_key_rotation(node, &new, grace, Timestamp::now())
        .await
        .unwrap();
    api.fleet.rotate_key(&stored, &new, grace).await.unwrap();
    assert!(!api.answers(node).await, "the old key is refused now");

    api.heartbeat().await;
    assert_eq!(api.stored_key(node).await, new);
    assert!(api.answers(node).await);
    let rotation = api.storage.key_rotation(node).await.unwrap().unwrap();
    assert_eq!(rotation.pending, None);
    let after = api.storage.get_node(node).await.unwrap();
    assert_eq!(after.actual_status, ActualStatus::Running);
}

#[tokio::test]
async fn an_agent_that_lost_its_new_key_during_the_grace_gets_it_again() {
    let api = Api::new();
    let node = api.node().await;
    let old = api.stored_key(node).await;
    let (status, body) = api.rotate(node, json!({"graceSecs": 3600})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = api.stored_key(node).await;
    // Its state directory wiped: back to the key its settings name.
    api.fleet.reset_key(ENDPOINT, &old);
    assert!(!api.answers(node).await);

    api.heartbeat().await;
    assert_eq!(api.fleet.key(ENDPOINT), Some(new));
    assert!(api.answers(node).await);
    let after = api.storage.get_node(node).await.unwrap();
    assert_eq!(
        after.actual_status,
        ActualStatus::Running,
        "never marked down"
    );
}

#[tokio::test]
async fn a_second_rotation_while_a_key_is_pending_is_a_409_and_changes_nothing() {
    let api = Api::new();
    let node = api.node().await;
    api.fleet.set_unreachable(ENDPOINT, true);
    let (status, first) = api.rotate(node, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.rotate(node, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "key rotation pending");
    let pending = api.storage.key_rotation(node).await.unwrap().unwrap();
    assert_eq!(
        pending.pending.unwrap().expose_base64url(),
        first["nodeKey"].as_str().unwrap()
    );
    // Once delivered, the next rotation may start.
    api.fleet.set_unreachable(ENDPOINT, false);
    api.heartbeat().await;
    let (status, body) = api.rotate(node, json!({"graceSecs": 0})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivered"], true);
}

#[tokio::test]
async fn bad_rotations_are_400s_and_change_nothing() {
    let api = Api::new();
    let node = api.node().await;
    let key = api.stored_key(node).await;
    for (body, error) in [
        (
            json!({"nodeID": node.to_string(), "graceSecs": 2_592_001}),
            "invalid grace period",
        ),
        (
            json!({"nodeID": node.to_string(), "graceSecs": -1}),
            "bad request",
        ),
        (
            json!({"nodeID": node.to_string(), "graceSecs": "soon"}),
            "bad request",
        ),
        (json!({"graceSecs": 60}), "bad request"),
        (json!({"nodeID": "not-a-node"}), "node not exists"),
        (
            json!({"nodeID": NodeId::random().to_string()}),
            "node not exists",
        ),
    ] {
        let (status, answer) = api.admin("/node/key/rotate", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"], error, "{body}");
    }
    assert_eq!(api.stored_key(node).await, key);
    assert_eq!(api.storage.key_rotation(node).await.unwrap(), None);
    assert!(api.answers(node).await);
}
