//! Containment through the manager's real router: with per-node credentials
//! every node is told its own credentials for each user (never the user's
//! secret or name), and the node list and the subscription give the user
//! exactly those; with the defaults everything is the SPEC's; the id-name
//! node list can be turned off (404 in the error shape).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use manager_lib::domain::usage::{UsageCursor, UsagePage};
use manager_lib::domain::*;
use manager_lib::manager::{Manager, ManagerError, ManagerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::transport::{NodeReport, NodeTransport, StartResponse, TransportError, UserPorts};
use serde_json::{Value, json};

const TOKEN: &str = "containment-test-admin-token-0123456789";
/// Every credential placeholder, so a node list shows what it filled.
const TEMPLATE: &str = "{{.NodeUserID}}|{{.Secret}}|{{.UserID}}|{{.UserName}}";

/// The simulated fleet, recording every user each node was told of (by
/// endpoint) as the node would keep it: `/start` replaces, edits add and
/// remove. Its template is [`TEMPLATE`].
#[derive(Debug, Default)]
struct Recording {
    fleet: SimulatedFleet,
    told: Mutex<HashMap<String, HashMap<UserId, NodeUser>>>,
}

impl Recording {
    fn told(&self, endpoint: &str, user: UserId) -> NodeUser {
        self.told.lock().unwrap()[endpoint][&user].clone()
    }
}

#[async_trait]
impl NodeTransport for Recording {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<StartResponse, TransportError> {
        let mut answer = self.fleet.start(node, users).await?;
        answer.user_config_template = TEMPLATE.to_owned();
        let users = users.iter().map(|u| (u.id, u.clone())).collect();
        self.told
            .lock()
            .unwrap()
            .insert(node.endpoint.clone(), users);
        Ok(answer)
    }
    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.fleet.stop(node).await
    }
    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        self.fleet.status(node).await
    }
    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<UserPorts, TransportError> {
        let ports = self.fleet.edit_users(node, add, del).await?;
        let mut told = self.told.lock().unwrap();
        let users = told.entry(node.endpoint.clone()).or_default();
        users.extend(add.iter().map(|u| (u.id, u.clone())));
        for id in del {
            users.remove(id);
        }
        Ok(ports)
    }
    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.fleet.usage(node, cursor, max_batches).await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &manager_lib::domain::NodeKey,
        grace: std::time::Duration,
    ) -> Result<(), TransportError> {
        self.fleet.rotate_key(node, new, grace).await
    }
}

struct Fixture {
    router: Router,
    manager: Arc<Manager>,
    transport: Arc<Recording>,
}

impl Fixture {
    fn new(manager: ManagerSettings) -> Self {
        let transport = Arc::new(Recording::default());
        let settings = ServerSettings {
            manager,
            admin_failure_limit: None,
            push_on_change: false,
            node_list_limit: None,
            ..ServerSettings::new(TOKEN)
        };
        let server = Server::build(
            Backends::new(Arc::new(MemoryStorage::new()), transport.clone()),
            settings,
        );
        Self {
            router: server.router,
            manager: server.manager,
            transport,
        }
    }

    fn per_node() -> Self {
        Self::new(ManagerSettings {
            credentials: CredentialScope::PerNode,
            ..ManagerSettings::default()
        })
    }

    async fn node(&self, endpoint: &str) -> NodeId {
        self.transport.fleet.add_node(endpoint);
        common::running_node(&self.router, TOKEN, &self.transport.fleet, endpoint)
            .await
            .parse()
            .unwrap()
    }

    /// A user enabled and pushed to `nodes`.
    async fn enabled_user(&self, name: &str, nodes: &[NodeId]) -> User {
        let id = common::new_user(&self.router, TOKEN, name).await;
        let (status, _) = common::admin(
            &self.router,
            TOKEN,
            "POST",
            "/user/enable",
            json!({"userID": id}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        for node in nodes {
            self.manager.push_pending(*node).await.unwrap();
        }
        self.manager.get_user(id.parse().unwrap()).await.unwrap()
    }

    async fn node_list(&self, user: &User) -> (StatusCode, Value) {
        let path = format!("/user/{}-{}/nodes", user.id, user.name);
        let (status, body) = common::send(&self.router, "GET", &path, "", None).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn subscription_links(&self, user: &User) -> String {
        let (_, sub) = common::admin(
            &self.router,
            TOKEN,
            "GET",
            &format!("/users/{}/subscription", user.id),
            Value::Null,
        )
        .await;
        let path = format!(
            "{}?format=links",
            sub["subscription"]["url"].as_str().unwrap()
        );
        let (status, body) = common::send(&self.router, "GET", &path, "", None).await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body).unwrap()
    }
}

const A: &str = "http://10.0.0.1:9000";
const B: &str = "http://10.0.0.2:9000";
const C: &str = "http://10.0.0.3:9000";

#[tokio::test]
async fn each_node_is_told_its_own_credentials_and_never_the_secret_or_the_name() {
    let f = Fixture::per_node();
    let (a, b) = (f.node(A).await, f.node(B).await);
    let alice = f.enabled_user("alice", &[a, b]).await;
    // A node started after the user was enabled gets the user on `/start`.
    let c = f.node(C).await;
    let mut seen = Vec::new();
    for (endpoint, node) in [(A, a), (B, b), (C, c)] {
        let told = f.transport.told(endpoint, alice.id);
        let expected = CredentialScope::PerNode.credential(alice.id, &alice.secret, node);
        assert_eq!(told.id, alice.id, "the core's key is the user id");
        assert_eq!(told.name, "", "{endpoint} is told no name");
        assert_eq!(
            (told.proxy_id, &told.secret),
            (expected.id, &expected.secret)
        );
        assert_ne!(told.secret, alice.secret);
        assert_ne!(told.proxy_id, alice.id.as_uuid());
        seen.push(told);
    }
    assert_ne!(seen[0].proxy_id, seen[1].proxy_id);
    assert_ne!(seen[1].secret, seen[2].secret);
    // A second user: different credentials on the same node.
    let bob = f.enabled_user("bob", &[a, b, c]).await;
    assert_ne!(f.transport.told(A, bob.id).proxy_id, seen[0].proxy_id);
}

#[tokio::test]
async fn the_node_list_and_the_subscription_give_what_each_node_was_told() {
    let f = Fixture::per_node();
    let nodes = [f.node(A).await, f.node(B).await];
    let alice = f.enabled_user("alice", &nodes).await;
    let (status, list) = f.node_list(&alice).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list: Vec<String> = serde_json::from_value(list).unwrap();
    let subscription = f.subscription_links(&alice).await;
    assert_eq!(list.len(), 2);
    for endpoint in [A, B] {
        let told = f.transport.told(endpoint, alice.id);
        let filled = format!(
            "{}|{}|{}|alice",
            told.proxy_id,
            told.secret.expose(),
            alice.id
        );
        assert!(list.contains(&filled), "{list:?} lacks {filled}");
        assert!(
            subscription.contains(&format!("vless://{}@", told.proxy_id)),
            "{subscription}"
        );
    }
    for text in list.iter().chain([&subscription]) {
        assert!(
            !text.contains(alice.secret.expose()),
            "the secret left the manager"
        );
    }
}

#[tokio::test]
async fn shared_credentials_are_the_specs_by_default() {
    let f = Fixture::new(ManagerSettings::default());
    let a = f.node(A).await;
    let alice = f.enabled_user("alice", &[a]).await;
    let told = f.transport.told(A, alice.id);
    assert_eq!(told.name, "alice");
    assert_eq!(
        (told.proxy_id, &told.secret),
        (alice.id.as_uuid(), &alice.secret)
    );
    let (status, list) = f.node_list(&alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!([format!(
            "{}|{}|{}|alice",
            alice.id,
            alice.secret.expose(),
            alice.id
        )])
    );
    assert!(
        f.subscription_links(&alice)
            .await
            .contains(&format!("vless://{}@", alice.id))
    );
}

#[tokio::test]
async fn the_id_name_node_list_turned_off_is_not_found_for_everyone() {
    let f = Fixture::new(ManagerSettings {
        id_name_node_list: false,
        ..ManagerSettings::default()
    });
    let a = f.node(A).await;
    let alice = f.enabled_user("alice", &[a]).await;
    let (status, body) = f.node_list(&alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "not found"}));
    // A wrong name answers the same: nothing is read.
    let stranger = User {
        name: "mallory".into(),
        ..alice.clone()
    };
    assert_eq!(f.node_list(&stranger).await, (StatusCode::NOT_FOUND, body));
    assert!(matches!(
        f.manager
            .user_node_list(&format!("{}-alice", alice.id))
            .await,
        Err(ManagerError::NodeListOff)
    ));
    // The subscription still lists the node.
    assert!(f.subscription_links(&alice).await.starts_with("vless://"));
}
