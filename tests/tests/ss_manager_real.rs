//! An ss-manager node for real: the `xray-manager` binary and an
//! `xray-node-agent` running shadowsocks-libev's `ss-manager`. Users added
//! and enabled through the manager fetch bytes through their own port with
//! a real `ss-local`; a disabled user's fetch fails; ss-manager SIGKILLed
//! comes back (the agent's supervisor) with every enabled user's port; the
//! manager's usage totals match the bytes fetched within the HTTP heads.
//! The manager is unchanged for this kind of node.

use std::time::Duration;

use node_agent_lib::core::ports::{PortMap, PortRange};
use serde_json::{Value, json};
use tests::fleet::{AgentProcess, ManagerProcess};
use tests::wait_for;
use xray_core_client::testing::ssmanager::{TestSsLocal, ask, ss_local_binary, ss_manager_binary};
use xray_core_client::testing::{fetch_via_socks, free_port, serve_bytes};

const HEARTBEAT_MS: u64 = 500;
const MIB: u64 = 1024 * 1024;
/// What a fetch adds to the payload in ss-manager's count: the HTTP
/// request and answer heads (it counts the relayed stream, both ways).
const OVERHEAD: u64 = 4 * 1024;
const LONG: Duration = Duration::from_secs(40);
/// The node's method (the agent's default).
const METHOD: &str = "chacha20-ietf-poly1305";

/// Users' ports above Linux's ephemeral range, one block per test process.
fn range() -> PortRange {
    let start = 64_000 + u16::try_from(std::process::id() % 30).unwrap() * 40;
    PortRange::new(start, start + 39).unwrap()
}

async fn new_user(manager: &ManagerProcess, name: &str) -> String {
    let (status, body) = manager.post("/user/new", json!({ "userName": name })).await;
    assert_eq!(status, 200, "{body}");
    let id = body["user"]["id"].as_str().unwrap().to_owned();
    let (status, body) = manager.post("/user/enable", json!({ "userID": id })).await;
    assert_eq!(status, 200, "{body}");
    id
}

async fn used(manager: &ManagerProcess, id: &str) -> u64 {
    let (status, body): (u16, Value) = manager.get(&format!("/users/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["user"]["usedUp"].as_u64().unwrap() + body["user"]["usedDown"].as_u64().unwrap()
}

/// The user's `ss-local`, once the manager lists the node for them (the
/// link is the secret) and the agent gave them a port.
async fn local_for(
    manager: &ManagerProcess,
    agent: &AgentProcess,
    id: &str,
    name: &str,
) -> TestSsLocal {
    let links = wait_for("the user on the node", LONG, || async {
        manager
            .user_links(id, name)
            .await
            .ok()
            .filter(|l| l.len() == 1)
    })
    .await;
    let secret = links[0]
        .strip_prefix("ss-secret:")
        .expect("the template")
        .to_owned();
    let port = wait_for("the user's port", LONG, || async {
        PortMap::open(range(), &agent.state_dir()).ok()?.get(id)
    })
    .await;
    TestSsLocal::start(port, &secret, METHOD)
        .await
        .expect("ss-local")
}

async fn fetch(local: &TestSsLocal, url: &str) -> bool {
    fetch_via_socks(local.socks_port(), url)
        .await
        .is_ok_and(|b| b.len() as u64 == MIB)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_the_manager_fetch_through_their_ss_manager_ports_and_are_counted() {
    let (Some(ss_manager), Some(_)) = (ss_manager_binary(), ss_local_binary()) else {
        eprintln!("skipping: no shadowsocks-libev (CI=true fails instead)");
        return;
    };
    let manager = ManagerProcess::start(HEARTBEAT_MS, &[]).await;
    let listen = free_port();
    let (node, key) = manager
        .new_node(&format!("http://127.0.0.1:{listen}"))
        .await;
    let agent =
        AgentProcess::start_ss_manager(&key, &ss_manager, listen, &range().to_string()).await;
    let (status, body) = manager.post("/node/start", json!({ "nodeID": node })).await;
    assert_eq!(status, 200, "{body}");
    let (http, _server) = serve_bytes(MIB as usize).await;
    let url = format!("http://{http}/file");

    // Two users of the manager, each on their own port.
    let alice = new_user(&manager, "alice").await;
    let bob = new_user(&manager, "bob").await;
    let alice_local = local_for(&manager, &agent, &alice, "alice").await;
    let bob_local = local_for(&manager, &agent, &bob, "bob").await;
    for (name, local) in [("alice", &alice_local), ("bob", &bob_local)] {
        wait_for(&format!("a 1 MiB fetch as {name}"), LONG, || async {
            fetch(local, &url).await.then_some(())
        })
        .await;
    }
    // Counted by the manager: the payload and the heads.
    for (name, id) in [("alice", &alice), ("bob", &bob)] {
        let used = wait_for(&format!("{name}'s MiB counted"), LONG, || async {
            let used = used(&manager, id).await;
            (used >= MIB).then_some(used)
        })
        .await;
        eprintln!("{name}: {used} bytes counted for a {MIB}-byte fetch");
        assert!(used <= MIB + OVERHEAD, "{name}: {used} bytes for {MIB}");
    }

    // Bob disabled: his port refuses, alice still fetches.
    let (status, body) = manager
        .post("/user/disable", json!({ "userID": bob }))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for("bob refused", LONG, || async {
        (!fetch(&bob_local, &url).await).then_some(())
    })
    .await;
    assert!(fetch(&alice_local, &url).await);

    // SIGKILL ss-manager: it comes back with alice's port, not bob's. (Its
    // servers outlive it until the new one stops them, so a fetch right
    // after the kill may still pass through the old server: the new
    // ss-manager and alice's port in it are awaited first.)
    let killed = agent.core_pids();
    assert!(agent.kill_core(), "ss-manager runs under the agent");
    let alice_port = PortMap::open(range(), &agent.state_dir())
        .unwrap()
        .get(&alice)
        .unwrap();
    let address = format!("127.0.0.1:{}", agent.ports.api);
    wait_for("a new ss-manager with alice's port", LONG, || async {
        let pids = agent.core_pids();
        if pids.is_empty() || pids == killed {
            return None;
        }
        let address = address.clone();
        let ping = tokio::task::spawn_blocking(move || ask(&address, "ping"))
            .await
            .unwrap()?;
        ping.contains(&format!("\"{alice_port}\"")).then_some(())
    })
    .await;
    wait_for("alice fetches after the kill", LONG, || async {
        fetch(&alice_local, &url).await.then_some(())
    })
    .await;
    assert!(!fetch(&bob_local, &url).await, "bob came back");

    // Alice fetched 3 MiB; the one before the kill may have died with it
    // (ss-server reports every few seconds), none is counted twice.
    let used = wait_for("alice's fetches counted", LONG, || async {
        let used = used(&manager, &alice).await;
        (used >= 2 * MIB).then_some(used)
    })
    .await;
    eprintln!("alice: {used} bytes counted for 3 fetches of {MIB}");
    assert!(used <= 3 * (MIB + OVERHEAD), "alice: {used}");
}
