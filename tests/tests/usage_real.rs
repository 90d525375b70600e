//! Traffic accounting for real: the `xray-node-agent` binary with a real
//! v2ray core, from a base config with no stats of its own; a user fetches a payload of known size through the node and
//! the bytes pulled with `POST /usage` match it within the protocol's
//! overhead; a SIGKILL of the agent after the batch is journaled and before
//! any pull loses nothing; pulls repeat and confirm as the contract says.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use node_agent_lib::NodeClient;
use node_agent_lib::envelope::NodeKey;
use node_agent_lib::usage::Journal;
use node_agent_lib::wire::{UsageBatch, UsageRequest, WireUser};
use tests::fleet::AgentProcess;
use tests::wait_for;
use xray_core_client::testing::{
    TestClientCore, fetch_via_socks, serve_bytes, v2ray_binary, vless_user_with_id,
};

const PAYLOAD: usize = 1024 * 1024;
/// What the core counts beyond the payload: the HTTP request (uplink) and
/// the response head (downlink), a few hundred bytes each; generous.
const OVERHEAD: u64 = 16 * 1024;
const LONG: Duration = Duration::from_secs(30);

fn totals(batches: &[UsageBatch]) -> HashMap<String, (u64, u64)> {
    let mut sums: HashMap<String, (u64, u64)> = HashMap::new();
    for b in batches {
        for u in &b.users {
            let slot = sums.entry(u.id.clone()).or_default();
            slot.0 += u.up;
            slot.1 += u.down;
        }
    }
    sums
}

/// What the journal file in `state` holds now, read from a copy (the agent
/// keeps the original open).
fn journaled(state: &Path) -> HashMap<String, (u64, u64)> {
    let copy = tempfile::tempdir().unwrap();
    let from = state.join(node_agent_lib::usage::journal::FILE_NAME);
    if std::fs::copy(
        &from,
        copy.path().join(node_agent_lib::usage::journal::FILE_NAME),
    )
    .is_err()
    {
        return HashMap::new();
    }
    let mut journal = Journal::open(copy.path(), 720).unwrap();
    totals(&journal.after(None, 0, 10_000).unwrap().batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_through_a_real_core_are_journaled_and_survive_a_sigkill() {
    let Some(core) = v2ray_binary() else {
        eprintln!("skipping: no v2ray binary");
        return;
    };
    let key = NodeKey::random();
    // An operator's base config without anything accounting needs: the
    // agent must add stats, StatsService and the per-user policy itself.
    let mut agent = AgentProcess::start_with_base(
        &key.expose_base64url(),
        &core,
        xray_core_client::testing::free_port(),
        50,
        |base| {
            let base = base.as_object_mut().unwrap();
            base.remove("stats");
            base.remove("policy");
            base["api"]["services"] = serde_json::json!(["HandlerService"]);
        },
    )
    .await;
    let node = NodeClient::new(&agent.endpoint, key.clone(), Duration::from_secs(30)).unwrap();
    let alice = uuid::Uuid::new_v4().to_string();
    node.start(&[WireUser {
        id: alice.clone(),
        name: "alice".into(),
        secret: "alice-secret".into(),
        proxy_id: None,
    }])
    .await
    .expect("start");

    let (http, _server) = serve_bytes(PAYLOAD).await;
    let url = format!("http://{http}/file");
    let user = vless_user_with_id(&alice);
    let client = TestClientCore::start(agent.ports.vless, &user)
        .await
        .expect("client core");
    let mut attempts = 0u64;
    wait_for("a proxied fetch of the payload", LONG, || {
        attempts += 1;
        let url = url.clone();
        let socks = client.socks_port();
        async move {
            fetch_via_socks(socks, &url)
                .await
                .ok()
                .filter(|b| b.len() == PAYLOAD)
        }
    })
    .await;

    // The collector (every second) writes the read to the journal.
    let state = agent.state_dir();
    wait_for("the payload in the journal file", LONG, || {
        let state = state.clone();
        let alice = alice.clone();
        async move {
            journaled(&state)
                .get(&alice)
                .copied()
                .filter(|(_, down)| *down >= PAYLOAD as u64)
        }
    })
    .await;

    // SIGKILL before any pull; what the file holds is what must come back.
    agent.kill().await;
    let on_disk = journaled(&state);
    agent.restart().await;
    let pulled = wait_for("the restarted agent to answer /usage", LONG, || async {
        node.usage(&UsageRequest::default()).await.ok()
    })
    .await;
    let (up, down) = totals(&pulled.batches)[&alice];
    eprintln!(
        "payload {PAYLOAD} B in {attempts} attempt(s): counted down {down} B (+{} B), up {up} B",
        down.saturating_sub(PAYLOAD as u64)
    );
    assert_eq!(
        totals(&pulled.batches),
        on_disk,
        "nothing lost across SIGKILL"
    );
    assert!(down >= PAYLOAD as u64, "down {down}");
    assert!(
        down <= attempts * (PAYLOAD as u64 + OVERHEAD),
        "down {down} for {attempts} attempt(s)"
    );
    assert!(up > 0 && up <= attempts * OVERHEAD, "up {up}");

    // A repeated pull answers the same; `after` = the last seq answers none
    // and confirms everything.
    let again = node.usage(&UsageRequest::default()).await.unwrap();
    assert_eq!(again, pulled);
    let last = pulled.batches.last().unwrap().seq;
    let confirm = node
        .usage(&UsageRequest {
            journal: Some(pulled.journal.clone()),
            after: last,
            max_batches: None,
        })
        .await
        .unwrap();
    assert_eq!(
        confirm.journal, pulled.journal,
        "the same journal after the restart"
    );
    assert!(confirm.batches.is_empty(), "{confirm:?}");
    assert!(!confirm.more);
}
