//! An ss-manager node's users dial it from their subscription: the real
//! `xray-manager` and an `xray-node-agent` running shadowsocks-libev's
//! `ss-manager` with a port range of three ports, and two users whose home
//! ports collide, so one of them holds the next port instead (the agent
//! reports that exception on `/start`). Each user's base64 subscription,
//! fetched over HTTP, lists the node with that user's own port; a real
//! `ss-local` configured from nothing but the `ss://` link fetches bytes
//! through it. A third user enabled while the node runs, whose home port is
//! held, gets the free port through `/users/edit`, whose answer tells the
//! manager. A disabled user's subscription lists nothing.

use std::time::Duration;

use base64::Engine as _;
use node_agent_lib::core::ports::{PortMap, PortRange};
use serde_json::json;
use tests::fleet::{AgentProcess, ManagerProcess};
use tests::wait_for;
use xray_core_client::testing::ssmanager::{TestSsLocal, ss_local_binary, ss_manager_binary};
use xray_core_client::testing::{fetch_via_socks, free_port, serve_bytes};

const HEARTBEAT_MS: u64 = 500;
const LONG: Duration = Duration::from_secs(40);
const BYTES: usize = 256 * 1024;

/// Three ports above ss_manager_real's blocks (64000-65199), one block per
/// test process.
fn range() -> PortRange {
    let start = 65_200 + u16::try_from(std::process::id() % 100).unwrap() * 3;
    PortRange::new(start, start + 2).unwrap()
}

/// What an `ss://` link (SIP002, user info in base64url) says.
#[derive(Debug)]
struct SsLink {
    method: String,
    password: String,
    host: String,
    port: u16,
}

fn parse_ss(link: &str) -> SsLink {
    let rest = link.strip_prefix("ss://").expect("an ss:// link");
    let (authority, _remark) = rest.split_once('#').unwrap_or((rest, ""));
    let (info, address) = authority.rsplit_once('@').expect("user info @ address");
    let info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(info)
        .expect("base64url user info");
    let info = String::from_utf8(info).unwrap();
    let (method, password) = info.split_once(':').expect("method:password");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    SsLink {
        method: method.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.parse().expect("a port"),
    }
}

/// The links of the user's base64 subscription at `path`.
async fn subscription(manager: &ManagerProcess, path: &str) -> Vec<String> {
    let body = reqwest::Client::new()
        .get(format!("{}{path}?format=base64", manager.url))
        .send()
        .await
        .expect("the manager answers")
        .error_for_status()
        .expect("200")
        .text()
        .await
        .unwrap();
    let text = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("standard base64");
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_dials_their_own_port_from_their_subscription_even_after_a_collision() {
    let (Some(ss_manager), Some(_)) = (ss_manager_binary(), ss_local_binary()) else {
        eprintln!("skipping: no shadowsocks-libev (CI=true fails instead)");
        return;
    };
    let range = range();
    let manager = ManagerProcess::start(HEARTBEAT_MS, &[]).await;

    // Users (disabled, on no node) until two share a home port: at most
    // four for three ports.
    let mut by_home: std::collections::HashMap<u16, String> = Default::default();
    let (first, second) = loop {
        let name = format!("u{}", by_home.len());
        let (status, body) = manager.post("/user/new", json!({ "userName": name })).await;
        assert_eq!(status, 200, "{body}");
        let id = body["user"]["id"].as_str().unwrap().to_owned();
        match by_home.insert(range.home(&id), id.clone()) {
            Some(earlier) => break (earlier, id),
            None => continue,
        }
    };
    let home = range.home(&first);
    for id in [&first, &second] {
        let (status, body) = manager.post("/user/enable", json!({ "userID": id })).await;
        assert_eq!(status, 200, "{body}");
    }

    // The node starts with both: ss-manager gives one of them the home
    // port, the other the next free one, and /start tells the manager.
    let listen = free_port();
    let (node, key) = manager
        .new_node(&format!("http://127.0.0.1:{listen}"))
        .await;
    let agent = AgentProcess::start_ss_manager(&key, &ss_manager, listen, &range.to_string()).await;
    let (status, body) = manager.post("/node/start", json!({ "nodeID": node })).await;
    assert_eq!(status, 200, "{body}");
    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");

    let held = PortMap::open(range, &agent.state_dir()).unwrap();
    let ports = [held.get(&first).unwrap(), held.get(&second).unwrap()];
    assert!(ports.contains(&home), "{ports:?}, home {home}");
    assert_ne!(ports[0], ports[1]);
    eprintln!("home {home}; ports held {ports:?} in {range}");

    let mut paths = Vec::new();
    for (id, port) in [&first, &second].into_iter().zip(ports) {
        let (status, sub) = manager.get(&format!("/users/{id}/subscription")).await;
        assert_eq!(status, 200, "{sub}");
        let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
        let links = wait_for("the node in the subscription", LONG, || async {
            Some(subscription(&manager, &path).await).filter(|l| l.len() == 1)
        })
        .await;
        let link = parse_ss(&links[0]);
        assert_eq!((link.host.as_str(), link.port), ("127.0.0.1", port), "{id}");
        assert_eq!(link.method, "chacha20-ietf-poly1305");
        let local = TestSsLocal::start(link.port, &link.password, &link.method)
            .await
            .expect("ss-local");
        wait_for(&format!("a fetch as {id} on port {port}"), LONG, || async {
            fetch_via_socks(local.socks_port(), &url)
                .await
                .ok()
                .filter(|b| b.len() == BYTES)
        })
        .await;
        paths.push(path);
    }

    // A third user, enabled while the node runs, whose home port is held:
    // the edit gives them the one port never held, and its answer tells
    // the manager.
    let free = (range.start..=range.end)
        .find(|p| !ports.contains(p))
        .unwrap();
    let third = loop {
        let (status, body) = manager
            .post("/user/new", json!({ "userName": "late" }))
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["user"]["id"].as_str().unwrap().to_owned();
        if range.home(&id) != free {
            break id;
        }
    };
    let (status, body) = manager
        .post("/user/enable", json!({ "userID": third }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, sub) = manager.get(&format!("/users/{third}/subscription")).await;
    assert_eq!(status, 200, "{sub}");
    let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
    let links = wait_for("the late user in the subscription", LONG, || async {
        Some(subscription(&manager, &path).await).filter(|l| l.len() == 1)
    })
    .await;
    let link = parse_ss(&links[0]);
    assert_eq!(link.port, free, "home {} held", range.home(&third));
    assert_eq!(
        PortMap::open(range, &agent.state_dir())
            .unwrap()
            .get(&third),
        Some(free)
    );
    let local = TestSsLocal::start(link.port, &link.password, &link.method)
        .await
        .expect("ss-local");
    wait_for("a fetch as the late user", LONG, || async {
        fetch_via_socks(local.socks_port(), &url)
            .await
            .ok()
            .filter(|b| b.len() == BYTES)
    })
    .await;

    // The user away from home disabled: their subscription lists nothing.
    let moved = if ports[0] == home { &second } else { &first };
    let (status, body) = manager
        .post("/user/disable", json!({ "userID": moved }))
        .await;
    assert_eq!(status, 200, "{body}");
    let moved_path = if moved == &first {
        &paths[0]
    } else {
        &paths[1]
    };
    wait_for("an empty subscription", LONG, || async {
        subscription(&manager, moved_path)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // One port for everyone cannot be set on the inbound: each user has
    // their own. Refused, and the profile stays as it was.
    let (status, body) = manager
        .post(
            "/node/profile",
            json!({ "nodeID": node, "inbounds": { "ss-manager": { "port": 8388 } } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid profile");
    assert!(body["message"].to_string().contains("own port"), "{body}");
    let (status, details) = manager.get(&format!("/nodes/{node}")).await;
    assert_eq!(status, 200, "{details}");
    assert!(
        details["node"]["profile"]["inbounds"]
            .get("ss-manager")
            .is_none(),
        "{details}"
    );
}
