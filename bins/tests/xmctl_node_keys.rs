//! `xmctl node rotate-key`: the real binary against a real manager
//! (in-memory storage, simulated agents that hold their keys).

mod common;

use common::start_manager;
use manager_lib::domain::NodeKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_prints_the_new_key_once_and_the_agent_holds_it() {
    let h = start_manager().await;
    let endpoint = "http://node-a.test:9000";
    let added = h.xmctl(&["node", "add", endpoint, "--json"]).await;
    added.assert_code(0);
    let id = added.json()["nodeID"].as_str().unwrap().to_owned();
    let old: NodeKey = added.json()["nodeKey"].as_str().unwrap().parse().unwrap();
    h.fleet.add_node_with_key(endpoint, &old);

    let rotated = h
        .xmctl(&["node", "rotate-key", &id, "--grace", "600", "--json"])
        .await;
    rotated.assert_code(0);
    let v = rotated.json();
    assert_eq!(v["delivered"], true);
    assert_eq!(v["graceSecs"], 600);
    let new: NodeKey = v["nodeKey"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, old);
    assert_eq!(h.fleet.key(endpoint), Some(new));

    let human = h.xmctl(&["node", "rotate-key", &id]).await;
    human.assert_code(0);
    assert!(human.stdout.contains("new node key:"), "{human:?}");
    assert!(
        human.stdout.contains("accepts the old key until"),
        "{human:?}"
    );
    let newest = h.fleet.key(endpoint).unwrap().expose_base64url();
    assert!(human.stdout.contains(&newest), "{human:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_with_a_grace_above_thirty_days_is_refused() {
    let h = start_manager().await;
    let endpoint = "http://node-a.test:9000";
    h.fleet.add_node(endpoint);
    let id = h.add_node(endpoint).await;
    let refused = h
        .xmctl(&["node", "rotate-key", &id, "--grace", "2592001"])
        .await;
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("invalid grace period"),
        "{refused:?}"
    );
}
