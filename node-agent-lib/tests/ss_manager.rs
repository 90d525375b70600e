//! The agent with an `ss-manager` core (Debian's shadowsocks-libev, or
//! `$SS_MANAGER_BIN`): started by the agent's ProcessService and driven over
//! the JWE API with `NodeClient`; every user's bytes are fetched by a real
//! `ss-local` through the user's own port. Without the binaries the test is
//! skipped, except with `CI=true`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use node_agent_lib::core::ports::{PortMap, PortRange};
use node_agent_lib::service::ProcessService;
use node_agent_lib::settings::{Backend, SS_MANAGER_FLAVOR, Secret, Settings};
use node_agent_lib::usage::read_lifetime_totals;
use node_agent_lib::wire::{InboundProtocol, NodeStatus, UsersEditRequest, WireUser};
use node_agent_lib::{Node, NodeClient, NodeKey};
use tokio::time::Instant;
use xray_core_client::testing::ssmanager::{TEST_METHOD, TestSsLocal, ss_manager_binary};
use xray_core_client::testing::{fetch_via_socks, free_port, serve_bytes};

const BYTES: usize = 512 * 1024;
/// Per fetch: the HTTP heads (the counter is of the bytes relayed, both
/// directions, before encryption).
const OVERHEAD_PER_FETCH: u64 = 2 * 1024;

fn wire_user(name: &str) -> WireUser {
    WireUser {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        secret: format!("{name}-{}", uuid::Uuid::new_v4()),
        proxy_id: None,
    }
}

/// Polls `check` until it is true, failing after 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let limit = Duration::from_secs(30);
    let begun = Instant::now();
    while !check().await {
        assert!(begun.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A range of users' ports above Linux's ephemeral range (no outgoing
/// connection takes one meanwhile), its own per test process.
fn port_range() -> PortRange {
    let start = 61_000 + u16::try_from(std::process::id() % 90).unwrap() * 40;
    PortRange::new(start, start + 39).unwrap()
}

/// An agent on 127.0.0.1:0 in this process running a real ss-manager.
struct SsNode {
    client: NodeClient,
    process: Arc<ProcessService>,
    settings: Settings,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), node_agent_lib::ServeError>>,
}

impl SsNode {
    async fn start(dir: &Path, key: &NodeKey) -> Option<Self> {
        let Some(binary) = ss_manager_binary() else {
            eprintln!("skipping: no ss-manager");
            return None;
        };
        let mut settings = Settings {
            node_key: Some(Secret::new(key.expose_base64url())),
            flavor: SS_MANAGER_FLAVOR.into(),
            user_config_template: "ss://{{.Secret}}@127.0.0.1#{{.UserName}}".into(),
            config_flush_ms: 50,
            monitor_interval_secs: 1,
            stats_interval_secs: 1,
            ..Settings::default()
        };
        settings.core.binary = binary;
        settings.core.generated_config = dir.join("ss-manager.json");
        settings.state_dir = dir.join("state");
        settings.core.api_address = format!("127.0.0.1:{}", free_port());
        settings.core.start_timeout_secs = 20;
        settings.service.backend = Backend::Process;
        settings.ss_manager.ports = port_range().to_string();
        settings.ss_manager.server = "127.0.0.1".into();
        settings.ss_manager.method = TEST_METHOD.into();

        let node = Node::build(&settings).unwrap();
        let process = node.process.clone().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = {
            let settings = settings.clone();
            tokio::spawn(async move {
                node.serve(&settings, listener, async {
                    stop_rx.await.ok();
                })
                .await
            })
        };
        let client = NodeClient::new(&endpoint, key.clone(), Duration::from_secs(60)).unwrap();
        Some(Self {
            client,
            process,
            settings,
            stop,
            served,
        })
    }

    /// The users' ports, as the agent keeps them in its state directory.
    fn port_of(&self, user: &WireUser) -> u16 {
        PortMap::open(port_range(), &self.settings.state_dir)
            .unwrap()
            .get(&user.id)
            .expect("the user has a port")
    }

    /// Everything the agent journaled, per user id: up + down.
    fn usage(&self) -> BTreeMap<String, u64> {
        read_lifetime_totals(&self.settings.state_dir)
            .unwrap()
            .map(|t| t.all())
            .unwrap_or_default()
            .into_iter()
            .map(|(id, (up, down))| (id, up + down))
            .collect()
    }

    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        self.served.await.unwrap().unwrap();
        assert_eq!(self.process.pid(), None);
    }
}

/// An `ss-local` per user, towards the user's port.
async fn local_for(node: &SsNode, user: &WireUser) -> TestSsLocal {
    TestSsLocal::start(node.port_of(user), &user.secret, TEST_METHOD)
        .await
        .unwrap()
}

async fn fetches(local: &TestSsLocal, url: &str) -> bool {
    fetch_via_socks(local.socks_port(), url)
        .await
        .is_ok_and(|b| b.len() == BYTES)
}

/// Waits until the journal holds at least `at_least` bytes for `user`,
/// then gives what it holds.
async fn journaled(node: &SsNode, user: &WireUser, at_least: u64) -> u64 {
    eventually("the journal counts the bytes", || async {
        node.usage().get(&user.id).copied().unwrap_or(0) >= at_least
    })
    .await;
    node.usage()[&user.id]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ss_manager_node_serves_each_user_on_their_port_and_counts_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::random();
    let Some(node) = SsNode::start(dir.path(), &key).await else {
        return;
    };
    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");
    let (alice, bob) = (wire_user("alice"), wire_user("bob"));

    // /start with both: ss-manager starts empty and the agent adds a port each.
    let started = node
        .client
        .start(&[alice.clone(), bob.clone()])
        .await
        .unwrap();
    assert!(started.user_config_template.starts_with("ss://"));
    let status = node.client.status().await.unwrap();
    assert_eq!(status.node_status, NodeStatus::Running);
    assert_eq!(status.users, 2, "ss-manager counts its ports");
    let (alice_port, bob_port) = (node.port_of(&alice), node.port_of(&bob));
    assert_ne!(alice_port, bob_port);
    assert!(port_range().contains(alice_port) && port_range().contains(bob_port));
    // One Shadowsocks inbound with the range: each user's port follows from
    // it and the exceptions it lists, exactly as the agent assigned them.
    let [described] = &started.inbounds[..] else {
        panic!("one inbound: {:?}", started.inbounds);
    };
    assert_eq!(described.protocol, InboundProtocol::Shadowsocks);
    assert_eq!(described.port_range, Some(port_range()));
    assert_eq!(described.port_for(&alice.id), alice_port);
    assert_eq!(described.port_for(&bob.id), bob_port);

    // Each fetches through their own port with a real ss-local.
    let alice_local = local_for(&node, &alice).await;
    let bob_local = local_for(&node, &bob).await;
    assert!(fetches(&alice_local, &url).await, "{}", alice_local.log());
    assert!(fetches(&bob_local, &url).await, "{}", bob_local.log());
    assert!(fetches(&bob_local, &url).await);
    // Usage: the payload and at most the HTTP heads, per fetch.
    let alice_bytes = journaled(&node, &alice, BYTES as u64).await;
    let bob_bytes = journaled(&node, &bob, 2 * BYTES as u64).await;
    eprintln!(
        "journaled for {BYTES}-byte fetches: alice 1 fetch {alice_bytes}, bob 2 fetches {bob_bytes}"
    );
    assert!(
        alice_bytes <= BYTES as u64 + OVERHEAD_PER_FETCH,
        "{alice_bytes}"
    );
    assert!(
        bob_bytes <= 2 * (BYTES as u64 + OVERHEAD_PER_FETCH),
        "{bob_bytes}"
    );

    // Alice is removed: her port refuses, bob still fetches. A removal
    // reports no port; an addition (carol) reports hers.
    let answer = node
        .client
        .edit_users(&UsersEditRequest {
            add_users: vec![],
            del_users: vec![alice.id.clone()],
        })
        .await
        .unwrap();
    assert!(answer.user_ports.is_empty());
    let carol = wire_user("carol");
    let answer = node
        .client
        .edit_users(&UsersEditRequest {
            add_users: vec![carol.clone()],
            del_users: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        answer.user_ports.into_iter().collect::<Vec<_>>(),
        [(carol.id.clone(), node.port_of(&carol))]
    );
    node.client
        .edit_users(&UsersEditRequest {
            add_users: vec![],
            del_users: vec![carol.id.clone()],
        })
        .await
        .unwrap();
    eventually("alice is refused", || async {
        !fetches(&alice_local, &url).await
    })
    .await;
    assert!(fetches(&bob_local, &url).await);
    assert_eq!(node.client.status().await.unwrap().users, 1);

    // SIGKILL ss-manager: the agent brings it back with bob's port only.
    let pid = node.process.pid().expect("ss-manager runs");
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    eventually("a new ss-manager runs", || async {
        node.process.pid().is_some_and(|p| p != pid)
    })
    .await;
    eventually("bob fetches again on his port", || async {
        fetches(&bob_local, &url).await
    })
    .await;
    assert!(!fetches(&alice_local, &url).await, "alice came back");
    eventually("the agent saw the restart", || async {
        node.client
            .status()
            .await
            .is_ok_and(|s| s.core_restarts >= 1 && s.users == 1)
    })
    .await;
    // Counted once: bob fetched 3 times before the kill and 2 times since.
    // The last one before may die with the kill (as any core's unread
    // counters), and so may the first one after: the killed ss-manager's
    // servers serve until the new one stops them, reporting to nobody.
    let before = node.usage()[&bob.id];
    assert!(fetches(&bob_local, &url).await);
    let after = journaled(&node, &bob, before + BYTES as u64).await;
    let fetches_total = 5 * BYTES as u64;
    eprintln!(
        "bob after the kill: {after} bytes journaled for 5 fetches ({fetches_total} payload)"
    );
    assert!(
        after >= fetches_total - 2 * BYTES as u64
            && after <= fetches_total + 5 * OVERHEAD_PER_FETCH,
        "bob: {after} bytes journaled for 5 fetches of {BYTES} (two may be lost to the kill)"
    );

    // Alice comes back on the port she had.
    node.client
        .edit_users(&UsersEditRequest {
            add_users: vec![alice.clone()],
            del_users: vec![],
        })
        .await
        .unwrap();
    assert_eq!(node.port_of(&alice), alice_port);
    eventually("alice fetches again", || async {
        fetches(&alice_local, &url).await
    })
    .await;
    node.shut_down().await;

    // A new agent on the same state directory gives everyone the same port.
    let node = SsNode::start(dir.path(), &key).await.unwrap();
    node.client
        .start(&[bob.clone(), alice.clone()])
        .await
        .unwrap();
    assert_eq!(node.port_of(&alice), alice_port);
    assert_eq!(node.port_of(&bob), bob_port);
    // (ss-manager answers `ok` once it spawned the server, which binds a
    // moment later.)
    eventually("bob fetches through the new agent's core", || async {
        fetches(&bob_local, &url).await
    })
    .await;
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_port_another_process_holds_is_served_on_the_next_port() {
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::random();
    let Some(node) = SsNode::start(dir.path(), &key).await else {
        return;
    };
    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");
    node.client.start(&[]).await.unwrap();
    let dave = wire_user("dave");
    let home = port_range().home(&dave.id);
    // Another process's listener on dave's home port: ss-manager cannot
    // bind it (neither TCP nor, with it held, the add as a whole).
    let squatter = std::net::TcpListener::bind(("127.0.0.1", home)).unwrap();

    let answer = node
        .client
        .edit_users(&UsersEditRequest {
            add_users: vec![dave.clone()],
            del_users: vec![],
        })
        .await
        .unwrap();
    let port = node.port_of(&dave);
    assert_ne!(port, home, "dave moved off the held port");
    assert!(port_range().contains(port));
    assert_eq!(
        answer.user_ports.into_iter().collect::<Vec<_>>(),
        [(dave.id.clone(), port)],
        "the manager is told where dave is"
    );
    let local = local_for(&node, &dave).await;
    eventually("dave fetches on the port he moved to", || async {
        fetches(&local, &url).await
    })
    .await;
    // What /start describes carries dave's exception too.
    let started = node
        .client
        .start(std::slice::from_ref(&dave))
        .await
        .unwrap();
    assert_eq!(started.inbounds[0].port_for(&dave.id), port);
    drop(squatter);
    node.shut_down().await;
}
