//! The agent's loose end: a core left running by an agent killed with
//! SIGKILL is stopped when the agent starts again, so exactly one core —
//! the new agent's own — serves. The real `xray-node-agent` binary with a
//! real v2ray core (process backend).

use std::time::Duration;

use node_agent_lib::wire::{NodeStatus, WireUser};
use node_agent_lib::{NodeClient, NodeKey};
use tests::fleet::AgentProcess;
use tests::wait_for;
use xray_core_client::testing::v2ray_binary;

const DEADLINE: Duration = Duration::from_secs(30);

/// `/start`, as the manager sends it: again until the agent takes it (the
/// harness sees the agent's port open a moment before the agent accepts
/// requests: it refuses those sealed before it started).
async fn start(client: &NodeClient, users: &[WireUser]) {
    wait_for("the agent to take /start", DEADLINE, || async {
        client.start(users).await.ok()
    })
    .await;
}

#[tokio::test]
async fn a_core_orphaned_by_a_killed_agent_is_stopped_when_the_agent_starts_again() {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let key = NodeKey::random().expose_base64url();
    let mut agent = AgentProcess::start(&key, &core).await;
    let client = NodeClient::new(&agent.endpoint, key.parse().unwrap(), DEADLINE).unwrap();
    let users = [WireUser {
        id: "0e5f3c1a-7b2d-4e8f-9a6c-1d2e3f4a5b6c".into(),
        name: "alice".into(),
        secret: "alice-secret".into(),
        proxy_id: None,
    }];
    start(&client, &users).await;
    let first = agent.cores();
    assert_eq!(first.len(), 1, "one core before the kill: {first:?}");

    agent.kill_agent_only().await;
    // The core outlives its agent: this is what the next agent must handle.
    assert_eq!(agent.cores(), first, "the core died with its agent");

    agent.restart().await;
    wait_for("the orphaned core to be stopped", DEADLINE, || {
        let left = agent.cores().contains(&first[0]);
        async move { (!left).then_some(()) }
    })
    .await;

    // The manager's next /start gets a core of the new agent's own.
    start(&client, &users).await;
    let serving = wait_for("the new core to serve", DEADLINE, || {
        let client = client.clone();
        async move {
            let status = client.status().await.ok()?;
            (status.node_status == NodeStatus::Running).then_some(status)
        }
    })
    .await;
    assert_eq!(serving.users, 1);
    let cores = agent.cores();
    assert_eq!(cores.len(), 1, "exactly one core serves: {cores:?}");
    assert_ne!(cores, first);
    assert_eq!(agent.core_pids(), cores, "and it is the new agent's child");
}
