//! Node key rotation for real: the `xray-manager` binary and an
//! `xray-node-agent` binary running a real v2ray core. After
//! `POST /node/key/rotate` the node keeps working (user edits, stop and
//! start), a call under the old key is refused once the grace is over, and
//! the agent restarted with its settings still naming the old key serves
//! under the new one (it kept the new key in its state directory).

use std::time::Duration;

use node_agent_lib::NodeKey;
use node_agent_lib::client::{ClientError, NodeClient};
use serde_json::json;
use tests::fleet::{AgentProcess, ManagerProcess};
use tests::wait_for;
use xray_core_client::testing::v2ray_binary;

const HEARTBEAT_MS: u64 = 500;
const LONG: Duration = Duration::from_secs(30);
const GRACE_SECS: u64 = 2;

/// The node's `/status` called directly under `key`.
async fn status_under(endpoint: &str, key: &str) -> Result<(), ClientError> {
    let key: NodeKey = key.parse().unwrap();
    let client = NodeClient::new(endpoint, key, Duration::from_secs(10)).unwrap();
    client.status().await.map(drop)
}

async fn links_of(manager: &ManagerProcess, id: &str, name: &str) -> usize {
    manager.user_links(id, name).await.map_or(0, |l| l.len())
}

/// A user made and enabled; waits until the node serves it.
async fn user_on_the_node(manager: &ManagerProcess, name: &str) -> String {
    let (status, body) = manager.post("/user/new", json!({"userName": name})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = manager.post("/user/enable", json!({"userID": id})).await;
    assert_eq!(status, 200);
    wait_for(&format!("{name} on the node"), LONG, || async {
        (links_of(manager, &id, name).await == 1).then_some(())
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_node_keeps_working_refuses_the_old_key_after_the_grace_and_survives_a_restart() {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let manager = ManagerProcess::start(HEARTBEAT_MS, &[]).await;
    let port = xray_core_client::testing::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (node, old_key) = manager.new_node(&endpoint).await;
    let mut agent = AgentProcess::start_at(&old_key, &core, port).await;
    let (status, body) = manager.post("/node/start", json!({"nodeID": node})).await;
    assert_eq!(status, 200, "{body}");
    let alice = user_on_the_node(&manager, "alice").await;

    let (status, rotated) = manager
        .post(
            "/node/key/rotate",
            json!({"nodeID": node, "graceSecs": GRACE_SECS}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["delivered"], true, "{rotated}");
    let new_key = rotated["nodeKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    let state_file = agent.state_dir().join("node-key");
    assert_eq!(
        std::fs::read_to_string(&state_file).unwrap().trim(),
        new_key,
        "the agent persisted the new key"
    );

    // The node keeps working under the new key: user edits, stop, start.
    let bob = user_on_the_node(&manager, "bob").await;
    let (status, _) = manager.post("/user/disable", json!({"userID": bob})).await;
    assert_eq!(status, 200);
    assert_eq!(links_of(&manager, &bob, "bob").await, 0);
    for call in ["/node/stop", "/node/start"] {
        let (status, body) = manager.post(call, json!({"nodeID": node})).await;
        assert_eq!(status, 200, "{call}: {body}");
    }
    assert_eq!(manager.node_status(&node).await, "Running");

    // Once the grace is over, only the new key opens the agent.
    wait_for(
        "the old key refused",
        Duration::from_secs(GRACE_SECS + 20),
        || async {
            matches!(
                status_under(&endpoint, &old_key).await,
                Err(ClientError::Unauthorized)
            )
            .then_some(())
        },
    )
    .await;
    status_under(&endpoint, &new_key)
        .await
        .expect("the new key opens the agent");

    // Restarted with its settings still naming the old key: the state
    // directory's key takes precedence.
    agent.stop().await;
    agent.restart().await;
    wait_for("the restarted agent under the new key", LONG, || async {
        status_under(&endpoint, &new_key).await.ok()
    })
    .await;
    assert!(matches!(
        status_under(&endpoint, &old_key).await,
        Err(ClientError::Unauthorized)
    ));
    wait_for("the node Running with alice again", LONG, || async {
        let running = manager.node_status(&node).await == "Running";
        (running && links_of(&manager, &alice, "alice").await == 1).then_some(())
    })
    .await;
    let carol = user_on_the_node(&manager, "carol").await;
    assert_eq!(links_of(&manager, &carol, "carol").await, 1);
}
