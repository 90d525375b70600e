//! The agent against a real core (Debian's v2ray, or `$V2RAY_BIN`): started
//! by the agent's ProcessService and driven over the JWE API with
//! `NodeClient`, with real traffic through a second core acting as client.
//! Without a core binary the test is skipped, except with `CI=true` where
//! `v2ray_binary()` fails it.

use std::future::Future;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use node_agent_lib::core::{Account, CoreClient, CoreUser};
use node_agent_lib::settings::{Backend, Secret, Settings};
use node_agent_lib::wire::{NodeStatus, UsersEditRequest, WireUser};
use node_agent_lib::{Node, NodeClient, NodeKey};
use tokio::time::Instant;
use xray_core_client::testing::{
    ServerPorts, TestClientCore, binary_flavor, fetch_via_socks, serve_bytes, server_config,
    v2ray_binary,
};

const BYTES: usize = 64 * 1024;

fn wire_user(name: &str) -> WireUser {
    WireUser {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        secret: format!("{name}-secret"),
    }
}

fn vless(user: &WireUser) -> CoreUser {
    CoreUser {
        email: user.id.clone(),
        level: 0,
        account: Account::Vless {
            id: user.id.clone(),
            flow: String::new(),
        },
    }
}

fn vmess(user: &WireUser) -> CoreUser {
    CoreUser {
        email: user.id.clone(),
        level: 0,
        account: Account::Vmess {
            id: user.id.clone(),
        },
    }
}

/// Polls `check` until it is true or `what` times out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetches(socks: u16, url: &str) -> bool {
    fetch_via_socks(socks, url)
        .await
        .is_ok_and(|b| b.len() == BYTES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_a_real_core_with_users_over_its_jwe_api() {
    let Some(binary) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary");
        return;
    };
    let flavor = binary_flavor(&binary);
    let dir = tempfile::tempdir().unwrap();
    let ports = ServerPorts::free();
    let base = dir.path().join("base.json");
    std::fs::write(&base, server_config(&ports, &[]).to_string()).unwrap();
    let key = NodeKey::random();

    let mut settings = Settings {
        node_key: Some(Secret::new(key.expose_base64url())),
        flavor: flavor.to_string(),
        user_config_template: "vless://{{.UserID}}@127.0.0.1#{{.UserName}}".into(),
        config_flush_ms: 50,
        monitor_interval_secs: 1,
        ..Settings::default()
    };
    settings.core.binary = binary.clone();
    settings.core.base_config = base;
    settings.core.generated_config = dir.path().join("core.json");
    settings.core.api_address = format!("127.0.0.1:{}", ports.api);
    settings.core.start_timeout_secs = 20;
    settings.service.backend = Backend::Process;

    let node = Node::build(&settings).unwrap();
    let process = node.process.clone().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = {
        let settings = settings.clone();
        tokio::spawn(async move {
            node.serve(&settings, listener, async {
                stop_rx.await.ok();
            })
            .await
        })
    };
    let client =
        NodeClient::new(&endpoint, &key.expose_base64url(), Duration::from_secs(30)).unwrap();
    let (http, _server) = serve_bytes(BYTES).await;
    let url = format!("http://{http}/file");

    // /start with alice: the agent spawns the core with her in its config.
    let alice = wire_user("alice");
    let started = client.start(std::slice::from_ref(&alice)).await.unwrap();
    assert!(started.user_config_template.contains("{{.UserID}}"));
    let status = client.status().await.unwrap();
    assert_eq!(status.node_status, NodeStatus::Running);
    assert_eq!(status.users, 1);
    let core_pid = process.pid().expect("the core runs");

    // /users/edit adds bob at runtime; he proxies real traffic.
    let bob = wire_user("bob");
    client
        .edit_users(&UsersEditRequest {
            add_users: vec![bob.clone()],
            del_users: vec![],
        })
        .await
        .unwrap();
    assert_eq!(client.status().await.unwrap().users, 2);
    let bob_client = TestClientCore::start(ports.vless, &vless(&bob))
        .await
        .unwrap();
    let bob_fetch = fetch_via_socks(bob_client.socks_port(), &url).await;
    assert_eq!(bob_fetch.map(|b| b.len()), Ok(BYTES));

    // The core counts bob's traffic under his id.
    let api = CoreClient::new(&settings.core.api_address, flavor, Duration::from_secs(5)).unwrap();
    let stats = api
        .query_stats(&format!("user>>>{}>>>traffic", bob.id), false)
        .await
        .unwrap();
    let bytes: i64 = stats.iter().map(|s| s.value).sum();
    assert!(bytes >= BYTES as i64, "bob's traffic: {stats:?}");

    // Bob is removed: his new connections fail.
    client
        .edit_users(&UsersEditRequest {
            add_users: vec![],
            del_users: vec![bob.id.clone()],
        })
        .await
        .unwrap();
    assert!(
        fetch_via_socks(bob_client.socks_port(), &url)
            .await
            .is_err(),
        "a removed user still proxies"
    );
    assert_eq!(client.status().await.unwrap().users, 1);

    // Carol is added at runtime, then the core is SIGKILLed.
    let carol = wire_user("carol");
    client
        .edit_users(&UsersEditRequest {
            add_users: vec![carol.clone()],
            del_users: vec![],
        })
        .await
        .unwrap();
    let alice_client = TestClientCore::start(ports.vmess, &vmess(&alice))
        .await
        .unwrap();
    let carol_client = TestClientCore::start(ports.vless, &vless(&carol))
        .await
        .unwrap();
    assert!(fetches(alice_client.socks_port(), &url).await);
    assert!(fetches(carol_client.socks_port(), &url).await);
    kill(
        Pid::from_raw(i32::try_from(core_pid).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();

    // The supervisor brings it back; alice (from /start) and carol (added at
    // runtime) are accepted again, bob is still refused.
    eventually("the supervisor to restart the core", || async {
        process.restarts() >= 1 && process.pid().is_some_and(|p| p != core_pid)
    })
    .await;
    eventually("alice to proxy after the restart", || {
        fetches(alice_client.socks_port(), &url)
    })
    .await;
    eventually("carol to proxy after the restart", || {
        fetches(carol_client.socks_port(), &url)
    })
    .await;
    assert!(
        fetch_via_socks(bob_client.socks_port(), &url)
            .await
            .is_err()
    );
    eventually("the status to show 2 users", || async {
        client
            .status()
            .await
            .is_ok_and(|s| s.users == 2 && s.node_status == NodeStatus::Running)
    })
    .await;

    // Graceful shutdown stops the core it runs.
    stop_tx.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert_eq!(process.pid(), None);
    let new_pid = Pid::from_raw(i32::try_from(core_pid).unwrap());
    assert!(kill(new_pid, None).is_err(), "the first core is gone");
}
