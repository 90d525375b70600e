//! The agent's secrets stay out of its core's environment: the
//! `xray-node-agent` binary, given its node key in `XNA_NODE_KEY` (as a
//! container gets it), runs a real v2ray core whose `/proc/<pid>/environ`
//! holds no `XNA_*` variable.

use std::time::Duration;

use node_agent_lib::wire::WireUser;
use node_agent_lib::{NodeClient, NodeKey};
use tests::fleet::AgentProcess;
use xray_core_client::testing::v2ray_binary;

/// The `NAME=value` entries of a process's environment.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

#[tokio::test]
async fn the_core_does_not_inherit_the_node_key() {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let key = NodeKey::random().expose_base64url();
    let agent = AgentProcess::start(&key, &core).await;
    let client = NodeClient::new(
        &agent.endpoint,
        key.parse().unwrap(),
        Duration::from_secs(30),
    )
    .unwrap();
    let user = WireUser {
        id: "5f0c6a35-1d2b-4c6e-9a1f-0b7d3e2c4a11".into(),
        name: "alice".into(),
        secret: "alice-secret".into(),
        proxy_id: None,
    };
    client.start(&[user]).await.unwrap();

    // The agent has it (so its absence below means something)...
    let agent_env = environ(agent.pid().unwrap());
    assert!(agent_env.contains(&format!("XNA_NODE_KEY={key}")));
    // ...and its core, the agent's only child, does not.
    let cores = agent.core_pids();
    assert_eq!(cores.len(), 1, "one core: {cores:?}");
    let core_env = environ(cores[0]);
    let leaked: Vec<&String> = core_env.iter().filter(|e| e.starts_with("XNA_")).collect();
    assert!(
        leaked.is_empty(),
        "the core inherited {} XNA_* variables",
        leaked.len()
    );
    assert!(
        core_env.iter().any(|e| e.starts_with("PATH=")),
        "the rest of the environment is passed on"
    );
}
