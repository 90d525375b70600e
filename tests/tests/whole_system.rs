//! The whole system for real: the `xray-manager` binary and three
//! `xray-node-agent` binaries, each running a real v2ray core (process
//! backend), all on 127.0.0.1; users proxy real bytes through the nodes.
//! Once on SQLite with the in-memory cache, once on PostgreSQL with Redis.

use std::time::Duration;

use serde_json::json;
use tests::fleet::{AgentProcess, ManagerProcess};
use tests::wait_for;
use xray_core_client::testing::{
    TestClientCore, fetch_via_socks, serve_bytes, v2ray_binary, vless_user_with_id,
};

const HEARTBEAT_MS: u64 = 500;
const BYTES: usize = 32 * 1024;
const LONG: Duration = Duration::from_secs(30);

async fn fetch_ok(socks: u16, url: &str) -> bool {
    fetch_via_socks(socks, url)
        .await
        .is_ok_and(|b| b.len() == BYTES)
}

async fn scenario(env: &[(&str, &str)]) {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let manager = ManagerProcess::start(HEARTBEAT_MS, env).await;

    // Three nodes: register each, start its agent with the key, start it.
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let placeholder = xray_core_client::testing::free_port();
        let endpoint = format!("http://127.0.0.1:{placeholder}");
        let (id, key) = manager.new_node(&endpoint).await;
        let agent = AgentProcess::start_at(&key, &core, placeholder).await;
        let (status, body) = manager.post("/node/start", json!({"nodeID": id})).await;
        assert_eq!(status, 200, "start {endpoint}: {body}");
        agents.push(agent);
        ids.push(id);
    }

    // A user, enabled: on every node, and real bytes flow through node 0.
    let (status, body) = manager
        .post("/user/new", json!({"userName": "alice"}))
        .await;
    assert_eq!(status, 200);
    let alice = body["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(manager.user_links(&alice, "alice").await, Ok(vec![]));
    let (status, _) = manager.post("/user/enable", json!({"userID": alice})).await;
    assert_eq!(status, 200);
    let links = wait_for("alice on all three nodes", LONG, || async {
        manager
            .user_links(&alice, "alice")
            .await
            .ok()
            .filter(|l| l.len() == 3)
    })
    .await;
    assert!(
        links
            .iter()
            .all(|l| l.starts_with(&format!("vless://{alice}@127.0.0.1:")))
    );
    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");
    let client = TestClientCore::start(agents[0].ports.vless, &vless_user_with_id(&alice))
        .await
        .expect("client core");
    wait_for("a proxied fetch as alice", LONG, || async {
        fetch_ok(client.socks_port(), &url).await.then_some(())
    })
    .await;

    // Disabled: off the lists at once, refused by the core within a heartbeat or so.
    let (status, _) = manager
        .post("/user/disable", json!({"userID": alice}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(manager.user_links(&alice, "alice").await, Ok(vec![]));
    wait_for(
        "the core to refuse alice",
        Duration::from_secs(10),
        || async { (!fetch_ok(client.socks_port(), &url).await).then_some(()) },
    )
    .await;

    // Enabled again, then node 0's core dies by SIGKILL: the node comes back
    // with all its users (the agent's supervisor restarts it from the
    // generated config; the manager re-syncs if users were lost).
    manager.post("/user/enable", json!({"userID": alice})).await;
    wait_for("alice back on all nodes", LONG, || async {
        manager
            .user_links(&alice, "alice")
            .await
            .ok()
            .filter(|l| l.len() == 3)
    })
    .await;
    assert!(agents[0].kill_core(), "node 0's core was running");
    wait_for("alice proxied through node 0 again", LONG, || async {
        fetch_ok(client.socks_port(), &url).await.then_some(())
    })
    .await;
    wait_for("node 0 in alice's list again", LONG, || async {
        manager
            .user_links(&alice, "alice")
            .await
            .ok()
            .filter(|l| l.len() == 3)
    })
    .await;

    // An agent that stops answering: Error, out of every list; back after it returns.
    agents[1].stop().await;
    wait_for("node 1 in Error", LONG, || async {
        (manager.node_status(&ids[1]).await == "Error").then_some(())
    })
    .await;
    let links = manager.user_links(&alice, "alice").await.unwrap();
    assert_eq!(links.len(), 2, "node 1 left alice's list");
    agents[1].restart().await;
    wait_for("node 1 Running with alice again", LONG, || async {
        let running = manager.node_status(&ids[1]).await == "Running";
        let listed = manager
            .user_links(&alice, "alice")
            .await
            .is_ok_and(|l| l.len() == 3);
        (running && listed).then_some(())
    })
    .await;
    let client1 = TestClientCore::start(agents[1].ports.vless, &vless_user_with_id(&alice))
        .await
        .expect("client core");
    wait_for(
        "a proxied fetch through the restarted node 1",
        LONG,
        || async { fetch_ok(client1.socks_port(), &url).await.then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_system_on_sqlite_with_the_memory_cache() {
    scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_system_on_postgres_with_redis() {
    let db = storage_postgres::testing::TestDatabase::new().await;
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: TEST_REDIS_URL must point at a Redis"
        );
        "redis://127.0.0.1:6379".to_owned()
    });
    scenario(&[("XM_STORAGE_URL", db.url()), ("XM_CACHE_URL", &redis)]).await;
}
