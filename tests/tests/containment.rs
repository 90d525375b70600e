//! Containment of a compromised node, for real: the `xray-manager` binary
//! with per-node credentials on and the id-name node list off, three
//! `xray-node-agent`s each with a real V2Ray core (VLESS and VMess
//! inbounds), two users on every node. Everything node A holds on disk (its
//! settings, its core's base and generated config, its state directory) is
//! read as an attacker who owns node A would, and every UUID in it is tried
//! as a VLESS and a VMess id on nodes B and C with a real client core:
//! each is refused there, while the same users' own subscription
//! credentials for B and C work, and the credentials taken from A work on A
//! (so they were real). Node A holds no user name, no subscription token,
//! and no credential of another node; the node-list call answers 404.
//!
//! The second test does the same with Trojan too: three TLS nodes (VLESS
//! tcp+TLS, VMess ws, Trojan tcp+TLS), the user's subscription in Xray JSON
//! run by V2Ray as a client app, each of node B's and C's entries with its
//! credential replaced by each one node A holds (ids and Trojan passwords
//! read from node A's generated core config): refused; the same
//! replacement in node A's entries works.
//!
//! The third does it for Shadowsocks: two `ss-manager` nodes, the
//! password node A holds (in ss-manager's files on its disk) tried with a
//! real `ss-local` on node B: refused; the user's own link for B works.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tests::clients::{
    ClientApp, assert_all_fetch, assert_all_refused, run_v2ray, v2ray_client_binary,
};
use tests::fleet::{AgentProcess, ManagerProcess};
use tests::origin::Origin;
use tests::tls_node::{TROJAN_TAG, TlsNode};
use tests::wait_for;
use xray_core_client::testing::{
    TestClientCore, VLESS_TAG, fetch_via_socks, free_port, serve_bytes, v2ray_binary,
};
use xray_core_client::{Account, CoreUser};

const HEARTBEAT_MS: u64 = 500;
const BYTES: usize = 4 * 1024;
const LONG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Protocol {
    Vless,
    Vmess,
}

/// One credential of a user's subscription: what to dial and as whom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Credential {
    protocol: Protocol,
    port: u16,
    id: String,
}

fn core_user(protocol: Protocol, id: &str) -> CoreUser {
    CoreUser {
        email: "probe".into(),
        level: 0,
        account: match protocol {
            Protocol::Vless => Account::Vless {
                id: id.to_owned(),
                flow: String::new(),
            },
            Protocol::Vmess => Account::Vmess { id: id.to_owned() },
        },
    }
}

/// The subscription's share links, read back into credentials.
fn credentials(links: &str) -> Vec<Credential> {
    links
        .lines()
        .filter(|l| !l.is_empty())
        .map(|link| {
            if let Some(rest) = link.strip_prefix("vless://") {
                let (id, rest) = rest.split_once('@').expect("vless://id@host:port");
                let port = rest
                    .split(['?', '#'])
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse().ok())
                    .expect("a port");
                Credential {
                    protocol: Protocol::Vless,
                    port,
                    id: id.to_owned(),
                }
            } else if let Some(rest) = link.strip_prefix("vmess://") {
                let json: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD
                        .decode(rest)
                        .expect("vmess base64"),
                )
                .expect("vmess JSON");
                Credential {
                    protocol: Protocol::Vmess,
                    port: json["port"].as_str().unwrap().parse().unwrap(),
                    id: json["id"].as_str().unwrap().to_owned(),
                }
            } else {
                panic!("unexpected link {link}")
            }
        })
        .collect()
}

/// Every file under `dir`, as text.
fn everything_under(dir: &Path) -> String {
    let mut text = String::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                text.push_str(&String::from_utf8_lossy(&bytes));
                text.push('\n');
            }
        }
    }
    text
}

/// Every UUID-shaped string in `text` (lower or upper case).
fn uuids_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(35))
        .filter_map(|i| text.get(i..i + 36))
        .filter_map(|s| uuid::Uuid::try_parse(s).ok().filter(|_| s.contains('-')))
        .map(|u| u.hyphenated().to_string())
        .collect()
}

/// Whether bytes fetched through a client core dialing `port` as
/// `protocol`/`id` arrive.
async fn fetches(protocol: Protocol, port: u16, id: &str, url: &str) -> bool {
    let client = TestClientCore::start(port, &core_user(protocol, id))
        .await
        .expect("client core");
    fetch_via_socks(client.socks_port(), url)
        .await
        .is_ok_and(|b| b.len() == BYTES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compromised_nodes_credentials_open_nothing_on_the_other_nodes() {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let manager = contained_manager().await;

    let mut agents = Vec::new();
    for _ in 0..3 {
        let listen = free_port();
        let (id, key) = manager
            .new_node(&format!("http://127.0.0.1:{listen}"))
            .await;
        let agent = AgentProcess::start_at(&key, &core, listen).await;
        let (status, body) = manager.post("/node/start", json!({"nodeID": id})).await;
        assert_eq!(status, 200, "{body}");
        agents.push(agent);
    }
    let node_of = |port: u16| {
        agents
            .iter()
            .position(|a| a.ports.vless == port || a.ports.vmess == port)
            .expect("a port of one of the nodes")
    };

    // Two users, enabled; each one's subscription lists both inbounds of
    // every node.
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let (status, body) = manager.post("/user/new", json!({"userName": name})).await;
        assert_eq!(status, 200, "{body}");
        let id = body["user"]["id"].as_str().unwrap().to_owned();
        let (status, _) = manager.post("/user/enable", json!({"userID": id})).await;
        assert_eq!(status, 200);
        let (_, sub) = manager.get(&format!("/users/{id}/subscription")).await;
        let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
        let token = path.rsplit('/').next().unwrap().to_owned();
        let subscribed = wait_for(&format!("{name} on all three nodes"), LONG, || async {
            let text = reqwest::get(format!("{}{path}?format=links", manager.url))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            Some(credentials(&text)).filter(|c| c.len() == 6)
        })
        .await;
        users.push((name, id, token, subscribed));
    }

    // The id-name node list is off: 404 in the error shape, for a real user.
    let (alice_id, alice_name) = (&users[0].1, users[0].0);
    let answer = reqwest::get(format!(
        "{}/user/{alice_id}-{alice_name}/nodes",
        manager.url
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"error": "not found"}));

    // Each user has a different credential on each node.
    for (name, id, _, subscribed) in &users {
        let per_node: BTreeSet<(usize, &str)> = subscribed
            .iter()
            .map(|c| (node_of(c.port), c.id.as_str()))
            .collect();
        let ids: BTreeSet<&str> = per_node.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), 3, "{name}: one id per node: {per_node:?}");
        assert!(
            !ids.contains(id.as_str()),
            "{name}'s own id is no credential"
        );
    }

    // Node A's complete knowledge, once its core config holds both users.
    let a = &agents[0];
    let knowledge = wait_for("node A's config to hold both users", LONG, || async {
        let text = everything_under(a.dir());
        users
            .iter()
            .all(|(_, _, _, subscribed)| {
                subscribed
                    .iter()
                    .filter(|c| node_of(c.port) == 0)
                    .all(|c| text.contains(&c.id))
            })
            .then_some(text)
    })
    .await;
    for (name, _, token, subscribed) in &users {
        assert!(!knowledge.contains(name), "node A knows the name {name}");
        assert!(
            !knowledge.contains(token.as_str()),
            "node A knows {name}'s subscription token"
        );
        for c in subscribed.iter().filter(|c| node_of(c.port) != 0) {
            assert!(
                !knowledge.contains(&c.id),
                "node A knows {name}'s id for another node"
            );
        }
    }
    let harvested = uuids_in(&knowledge);
    assert!(
        harvested.len() >= 4,
        "two per-node ids and two user ids: {harvested:?}"
    );

    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");

    // What node A learned is real: node A's credentials work on node A.
    for (name, _, _, subscribed) in &users {
        for c in subscribed.iter().filter(|c| node_of(c.port) == 0) {
            wait_for(
                &format!("{name} through node A ({:?})", c.protocol),
                LONG,
                || async { fetches(c.protocol, c.port, &c.id, &url).await.then_some(()) },
            )
            .await;
        }
    }

    // Every id node A holds, as VLESS and as VMess, on nodes B and C: refused.
    let attempts: Vec<(String, Protocol, u16)> = harvested
        .iter()
        .flat_map(|id| {
            agents[1..].iter().flat_map(move |b| {
                [
                    (id.clone(), Protocol::Vless, b.ports.vless),
                    (id.clone(), Protocol::Vmess, b.ports.vmess),
                ]
            })
        })
        .collect();
    let results = futures::future::join_all(attempts.iter().map(|(id, protocol, port)| {
        let url = url.clone();
        async move { fetches(*protocol, *port, id, &url).await }
    }))
    .await;
    let opened: Vec<_> = attempts
        .iter()
        .zip(&results)
        .filter(|(_, ok)| **ok)
        .map(|(a, _)| a)
        .collect();
    assert!(
        opened.is_empty(),
        "node A's ids opened other nodes: {opened:?}"
    );
    eprintln!(
        "{} attempts with {} ids held by node A: all refused",
        attempts.len(),
        harvested.len()
    );

    // The users' own subscription credentials for B and C work there.
    for (name, _, _, subscribed) in &users {
        for c in subscribed.iter().filter(|c| node_of(c.port) != 0) {
            wait_for(
                &format!("{name} through node {}", node_of(c.port)),
                LONG,
                || async { fetches(c.protocol, c.port, &c.id, &url).await.then_some(()) },
            )
            .await;
        }
    }
}

/// Starts a manager with per-node credentials on and the id-name node list
/// off.
async fn contained_manager() -> ManagerProcess {
    ManagerProcess::start(
        HEARTBEAT_MS,
        &[
            ("XM_CONTAINMENT_PER_NODE_CREDENTIALS", "true"),
            ("XM_CONTAINMENT_ID_NAME_NODE_LIST", "false"),
        ],
    )
    .await
}

/// The server port an Xray JSON client config dials.
fn dialed_port(config: &Value) -> u16 {
    let settings = &config["outbounds"][0]["settings"];
    let port = settings["vnext"][0]["port"]
        .as_u64()
        .or_else(|| settings["servers"][0]["port"].as_u64())
        .expect("a proxy outbound with a port");
    u16::try_from(port).unwrap()
}

/// `config` with its credential replaced by `credential`: the id of a
/// VLESS/VMess outbound, the password of a Trojan one. `None` when the
/// credential cannot be one of that protocol (a VLESS/VMess id is a UUID).
fn with_credential(config: &Value, credential: &str) -> Option<Value> {
    let mut config = config.clone();
    let outbound = &mut config["outbounds"][0];
    match outbound["protocol"].as_str() {
        Some("vless" | "vmess") => {
            uuid::Uuid::try_parse(credential).ok()?;
            outbound["settings"]["vnext"][0]["users"][0]["id"] = credential.into();
        }
        Some("trojan") => outbound["settings"]["servers"][0]["password"] = credential.into(),
        other => panic!("unexpected outbound {other:?}"),
    }
    Some(config)
}

/// Every credential in a generated core config: clients' ids, emails and
/// passwords.
fn credentials_in_core_config(config: &Value) -> BTreeSet<String> {
    config["inbounds"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| {
            i["settings"]["clients"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| {
            ["id", "email", "password"]
                .into_iter()
                .filter_map(move |k| c[k].as_str().map(str::to_owned))
        })
        .collect()
}

/// Runs each config in V2Ray and asserts all of them fetch (`expect_fetch`)
/// or all are refused, a few at a time (each app is a process).
async fn check_all(bin: &Path, configs: Vec<(String, Value)>, origin: &Origin, expect_fetch: bool) {
    for chunk in configs.chunks(8) {
        let mut apps: Vec<(String, ClientApp)> = Vec::new();
        for (name, config) in chunk {
            apps.push((name.clone(), run_v2ray(bin, config.clone()).await));
        }
        if expect_fetch {
            assert_all_fetch(&apps, origin, LONG).await;
        } else {
            assert_all_refused(&apps, origin, LONG).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compromised_nodes_trojan_vless_and_vmess_credentials_open_nothing_in_client_apps() {
    let Some(v2ray) = v2ray_client_binary() else {
        eprintln!("skipping: no v2ray binary (CI=true fails instead)");
        return;
    };
    let manager = contained_manager().await;
    let mut agents = Vec::new();
    let mut nodes = Vec::new();
    for remark in ["A", "B", "C"] {
        let listen = free_port();
        let (id, key) = manager
            .new_node(&format!("http://127.0.0.1:{listen}"))
            .await;
        let mut node = TlsNode::new();
        agents.push(node.start_agent(&key, &v2ray, listen).await);
        let insecure = json!({"allowInsecure": true});
        let (status, body) = manager
            .post(
                "/node/profile",
                json!({
                    "nodeID": id,
                    "remark": remark,
                    "inbounds": { VLESS_TAG: insecure, TROJAN_TAG: insecure },
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = manager.post("/node/start", json!({"nodeID": id})).await;
        assert_eq!(status, 200, "{body}");
        nodes.push(node);
    }
    let node_of = |port: u16| {
        nodes
            .iter()
            .position(|n| [n.vless, n.vmess_ws, n.trojan].contains(&port))
            .unwrap()
    };

    let (_, created) = manager
        .post("/user/new", json!({"userName": "carol"}))
        .await;
    let user = created["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = manager.post("/user/enable", json!({"userID": user})).await;
    assert_eq!(status, 200);
    let (_, sub) = manager.get(&format!("/users/{user}/subscription")).await;
    let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
    let configs: Vec<Value> = wait_for("carol on all three nodes", LONG, || async {
        let text = reqwest::get(format!("{}{path}?format=xray", manager.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        serde_json::from_str::<Vec<Value>>(&text)
            .ok()
            .filter(|c| c.len() == 9)
    })
    .await;

    // What node A holds: every client credential of its generated core
    // config (read as it is written, once it has carol in all three
    // inbounds), and every UUID anywhere on its disk.
    let a = &agents[0];
    let held = wait_for("node A's core config to hold carol", LONG, || async {
        let config: Value =
            serde_json::from_slice(&std::fs::read(a.dir().join("core.json")).ok()?).ok()?;
        let held = credentials_in_core_config(&config);
        // Carol's id (the core's key) plus her VLESS/VMess id and her
        // Trojan password on node A.
        (held.len() >= 3).then_some(held)
    })
    .await;
    let held: BTreeSet<String> = held
        .into_iter()
        .chain(uuids_in(&everything_under(a.dir())))
        .collect();
    assert!(
        !everything_under(a.dir()).contains("carol"),
        "node A knows the name"
    );

    let origin = Origin::start().await;
    let mut on_a = Vec::new();
    let mut elsewhere = Vec::new();
    for config in &configs {
        let node = node_of(dialed_port(config));
        let protocol = config["outbounds"][0]["protocol"]
            .as_str()
            .unwrap()
            .to_owned();
        for credential in &held {
            let Some(swapped) = with_credential(config, credential) else {
                continue;
            };
            let which = held.iter().position(|h| h == credential).unwrap();
            let name = format!("{protocol} on node {node} as held credential #{which}");
            if node == 0 {
                on_a.push((name, swapped));
            } else {
                elsewhere.push((name, swapped));
            }
        }
    }
    // What node A holds is real: among the swapped configs of its own
    // entries, the one with the credential made for each entry works.
    let mine: Vec<(String, Value)> = on_a
        .into_iter()
        .filter(|(_, config)| {
            let own = configs
                .iter()
                .find(|c| dialed_port(c) == dialed_port(config))
                .unwrap();
            own["outbounds"][0]["settings"] == config["outbounds"][0]["settings"]
        })
        .collect();
    assert_eq!(
        mine.len(),
        3,
        "node A holds carol's credential for each of its inbounds"
    );
    check_all(&v2ray, mine, &origin, true).await;

    // Every credential node A holds, in every entry of nodes B and C: refused.
    let attempts = elsewhere.len();
    assert!(attempts >= 2 * 3, "{attempts} attempts");
    check_all(&v2ray, elsewhere, &origin, false).await;
    eprintln!(
        "{attempts} attempts on nodes B and C with {} credentials node A holds: all refused",
        held.len()
    );

    // Carol's own entries for B and C work.
    let theirs: Vec<(String, Value)> = configs
        .iter()
        .filter(|c| node_of(dialed_port(c)) != 0)
        .map(|c| (format!("carol's own entry {}", c["remarks"]), c.clone()))
        .collect();
    check_all(&v2ray, theirs, &origin, true).await;
}

/// What an `ss://` link (SIP002, user info in base64url) says: port,
/// method and password.
fn parse_ss(link: &str) -> (u16, String, String) {
    let rest = link.strip_prefix("ss://").expect("an ss:// link");
    let authority = rest.split('#').next().unwrap();
    let (info, address) = authority.rsplit_once('@').expect("user info @ address");
    let info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(info)
        .expect("base64url user info");
    let (method, password) = std::str::from_utf8(&info)
        .unwrap()
        .split_once(':')
        .expect("method:password");
    let port = address.rsplit_once(':').unwrap().1.parse().unwrap();
    (port, method.to_owned(), password.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_ss_manager_nodes_password_opens_nothing_on_another() {
    use xray_core_client::testing::ssmanager::{TestSsLocal, ss_local_binary, ss_manager_binary};
    let (Some(ss_manager), Some(_)) = (ss_manager_binary(), ss_local_binary()) else {
        eprintln!("skipping: no shadowsocks-libev (CI=true fails instead)");
        return;
    };
    // One port per node, below the other ss-manager tests' blocks and above
    // the ephemeral ports; one pair per test process.
    let first = 63_800 + u16::try_from(std::process::id() % 100).unwrap() * 2;
    let manager = contained_manager().await;
    let mut agents = Vec::new();
    for port in [first, first + 1] {
        let listen = free_port();
        let (id, key) = manager
            .new_node(&format!("http://127.0.0.1:{listen}"))
            .await;
        let range = format!("{port}-{port}");
        agents.push(AgentProcess::start_ss_manager(&key, &ss_manager, listen, &range).await);
        let (status, body) = manager.post("/node/start", json!({"nodeID": id})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, created) = manager.post("/user/new", json!({"userName": "dave"})).await;
    let user = created["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = manager.post("/user/enable", json!({"userID": user})).await;
    assert_eq!(status, 200);
    let (_, sub) = manager.get(&format!("/users/{user}/subscription")).await;
    let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
    let links = wait_for("dave on both nodes", LONG, || async {
        let text = reqwest::get(format!("{}{path}?format=links", manager.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let links: Vec<_> = text.lines().map(parse_ss).collect();
        (links.len() == 2).then_some(links)
    })
    .await;
    let on = |port: u16| links.iter().find(|l| l.0 == port).expect("a link per node");
    let ((_, method, a_password), (_, _, b_password)) = (on(first), on(first + 1));
    assert_ne!(a_password, b_password);

    // Node A holds its password (ss-manager's files), not node B's.
    let knowledge = wait_for("node A to hold dave's password", LONG, || async {
        let text = everything_under(agents[0].dir());
        text.contains(a_password.as_str()).then_some(text)
    })
    .await;
    assert!(!knowledge.contains(b_password.as_str()));
    assert!(!knowledge.contains("dave"));

    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");
    let fetch_as = |port: u16, password: String| {
        let (url, method) = (url.clone(), method.clone());
        async move {
            let local = TestSsLocal::start(port, &password, &method)
                .await
                .expect("ss-local");
            fetch_via_socks(local.socks_port(), &url)
                .await
                .is_ok_and(|b| b.len() == BYTES)
        }
    };
    wait_for("dave through node A with node A's password", LONG, || {
        let fetch = fetch_as(first, a_password.clone());
        async move { fetch.await.then_some(()) }
    })
    .await;
    assert!(
        !fetch_as(first + 1, a_password.clone()).await,
        "node A's password opened node B"
    );
    wait_for("dave through node B with his own link", LONG, || {
        let fetch = fetch_as(first + 1, b_password.clone());
        async move { fetch.await.then_some(()) }
    })
    .await;
}
