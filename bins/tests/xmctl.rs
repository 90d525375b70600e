//! The real `xmctl` binary against a real manager (in-memory storage,
//! simulated fleet) served in-process on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::{Harness, TOKEN, closed_port_url, run_xmctl, start_manager};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_add_prints_id_and_key_and_is_idempotent() {
    let h = start_manager().await;
    let human = h.xmctl(&["node", "add", "http://node-a.test:9000"]).await;
    human.assert_code(0);
    assert!(human.stdout.contains("node id:"), "{human:?}");
    assert!(human.stdout.contains("node key:"), "{human:?}");

    let again = h
        .xmctl(&["node", "add", "http://node-a.test:9000", "--json"])
        .await;
    again.assert_code(0);
    let v = again.json();
    let id = v["nodeID"].as_str().expect("nodeID");
    let key = v["nodeKey"].as_str().expect("nodeKey");
    assert!(
        human.stdout.contains(id) && human.stdout.contains(key),
        "same node twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_start_runs_the_node_and_list_shows_it() {
    let h = start_manager().await;
    let endpoint = "http://node-a.test:9000";
    h.fleet.add_node(endpoint);
    let id = h.add_node(endpoint).await;

    let listed = h.xmctl(&["node", "list", "--json"]).await;
    listed.assert_code(0);
    let nodes = listed.json()["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], id.as_str());
    assert_eq!(nodes[0]["endpoint"], endpoint);
    assert_eq!(nodes[0]["requiredStatus"], "Stopped");

    h.xmctl(&["node", "start", &id]).await.assert_code(0);
    assert!(h.fleet.is_running(endpoint));

    let table = h.xmctl(&["node", "list"]).await;
    table.assert_code(0);
    assert!(table.stdout.contains(&id), "{table:?}");
    assert!(table.stdout.contains(endpoint), "{table:?}");
    assert!(table.stdout.contains("Running"), "{table:?}");

    h.xmctl(&["node", "stop", &id]).await.assert_code(0);
    assert!(!h.fleet.is_running(endpoint));
    h.xmctl(&["node", "delete", &id]).await.assert_code(0);
    let after = h.xmctl(&["node", "list", "--json"]).await;
    assert_eq!(after.json()["nodes"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_unreachable_node_is_a_server_error() {
    let h = start_manager().await;
    // Not added to the fleet: the simulated agent does not answer.
    let id = h.add_node("http://nowhere.test:9000").await;
    let run = h.xmctl(&["node", "start", &id]).await;
    run.assert_code(5);
    assert!(run.stderr.contains("node unreachable"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follow_every_page() {
    let h = start_manager().await;
    for i in 0..5 {
        h.add_node(&format!("http://node-{i}.test:9000")).await;
        h.add_user(&format!("user-{i}")).await;
    }
    let nodes = h
        .xmctl(&["node", "list", "--page-size", "2", "--json"])
        .await;
    nodes.assert_code(0);
    assert_eq!(nodes.json()["nodes"].as_array().expect("nodes").len(), 5);
    let users = h
        .xmctl(&["user", "list", "--page-size", "2", "--json"])
        .await;
    users.assert_code(0);
    let names: Vec<_> = users.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["name"].as_str().expect("name").to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..5).map(|i| format!("user-{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_enable_list_and_nodes() {
    let h = start_manager().await;
    let endpoint = "http://node-a.test:9000";
    h.fleet.add_node(endpoint);
    let node = h.add_node(endpoint).await;

    let human = h.xmctl(&["user", "add", "alice"]).await;
    human.assert_code(0);
    assert!(human.stdout.contains("alice"), "{human:?}");
    let id = h.add_user("bob").await;
    assert_eq!(h.users().await.len(), 2);

    h.xmctl(&["user", "enable", &id]).await.assert_code(0);
    let bob = h
        .users()
        .await
        .into_iter()
        .find(|u| u["id"] == id.as_str())
        .expect("bob listed");
    assert_eq!(bob["status"], "Enabled");
    let table = h.xmctl(&["user", "list"]).await;
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("Enabled"),
        "{table:?}"
    );

    // Starting the node puts every enabled user on it.
    h.xmctl(&["node", "start", &node]).await.assert_code(0);
    // The user's own call needs no token.
    let links = run_xmctl(
        h.home.path(),
        &["user", "nodes", &id, "bob", "--json"],
        &[("XMCTL_URL", &h.url)],
    )
    .await;
    links.assert_code(0);
    let links = links.json();
    let links = links.as_array().expect("array of links");
    assert_eq!(links.len(), 1);
    let link = links[0].as_str().expect("link");
    assert!(link.contains(&id) && link.contains("bob"), "{link}");

    let mismatch = h.xmctl(&["user", "nodes", &id, "not-bob"]).await;
    mismatch.assert_code(2);
    assert!(
        mismatch.stderr.contains("user id and name do not match"),
        "{mismatch:?}"
    );

    h.xmctl(&["user", "disable", &id]).await.assert_code(0);
    h.xmctl(&["user", "delete", &id]).await.assert_code(0);
    assert_eq!(h.users().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_rejected_with_exit_2() {
    let h = start_manager().await;
    let run = h
        .xmctl(&["user", "enable", "00000000-0000-4000-8000-000000000000"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("user not exists"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_exits_3_and_is_never_printed() {
    let h = start_manager().await;
    let secret = "wrong-token-s3cr3t";
    for args in [
        &["node", "list"][..],
        &["user", "add", "x", "--json"][..],
        &["status"][..],
    ] {
        let run = run_xmctl(
            h.home.path(),
            args,
            &[("XMCTL_URL", &h.url), ("XMCTL_TOKEN", secret)],
        )
        .await;
        run.assert_code(3);
        assert!(run.stderr.contains("authentication failed"), "{run:?}");
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{run:?}"
        );
    }
    // Not even the help, which lists the variables.
    let help = run_xmctl(h.home.path(), &["--help"], &[("XMCTL_TOKEN", secret)]).await;
    help.assert_code(0);
    assert!(help.stdout.contains("XMCTL_TOKEN"), "{help:?}");
    assert!(!help.stdout.contains(secret), "{help:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_for_an_admin_call_is_a_usage_error() {
    let h = start_manager().await;
    let run = run_xmctl(h.home.path(), &["user", "list"], &[("XMCTL_URL", &h.url)]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("no admin token"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_manager_exits_4() {
    let home = tempfile::tempdir().expect("home");
    let url = closed_port_url().await;
    let run = run_xmctl(
        home.path(),
        &["status", "--timeout", "5"],
        &[("XMCTL_URL", &url), ("XMCTL_TOKEN", TOKEN)],
    )
    .await;
    run.assert_code(4);
    assert!(
        run.stderr.contains("could not reach the manager"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(TOKEN), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_1() {
    let home = tempfile::tempdir().expect("home");
    for args in [
        &["frobnicate"][..],
        &["node", "add"][..],
        &["user", "import", "x.csv", "--concurrency", "0"][..],
        &["--url", "ftp://x", "user", "list"][..],
        &["--timeout", "0", "status"][..],
    ] {
        let run = run_xmctl(home.path(), args, &[("XMCTL_TOKEN", TOKEN)]).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_nodes_and_users_by_status() {
    let h = start_manager().await;
    let up = "http://node-up.test:9000";
    h.fleet.add_node(up);
    let running = h.add_node(up).await;
    h.add_node("http://node-down.test:9000").await;
    h.xmctl(&["node", "start", &running]).await.assert_code(0);
    let alice = h.add_user("alice").await;
    h.add_user("bob").await;
    h.add_user("carol").await;
    h.xmctl(&["user", "enable", &alice]).await.assert_code(0);

    let run = h.xmctl(&["status", "--json"]).await;
    run.assert_code(0);
    let v = run.json();
    assert_eq!(v["health"]["status"], "ok");
    assert_eq!(v["nodes"]["total"], 2);
    assert_eq!(v["nodes"]["byActualStatus"]["Running"], 1);
    // The down node is Stopped until a heartbeat (every 100 ms here) finds
    // it unreachable and records Error: either is right at this moment.
    let by = &v["nodes"]["byActualStatus"];
    let down = by["Stopped"].as_u64().zip(by["Error"].as_u64());
    assert_eq!(down.map(|(s, e)| s + e), Some(1), "{v}");
    assert_eq!(v["users"]["total"], 3);
    assert_eq!(v["users"]["byStatus"]["Enabled"], 1);
    assert_eq!(v["users"]["byStatus"]["Disabled"], 2);

    let human = h.xmctl(&["status"]).await;
    human.assert_code(0);
    assert!(human.stdout.contains("ok"), "{human:?}");
    assert!(
        human.stdout.contains("Running") && human.stdout.contains("Disabled"),
        "{human:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_then_env_then_flag() {
    let h = start_manager().await;
    let dead = closed_port_url().await;
    let config = h.write(
        "xmctl.toml",
        &format!("url = \"{}\"\ntoken = \"{TOKEN}\"\n", h.url),
    );
    let config = config.to_str().expect("utf-8 path");
    let home = h.home.path();

    // The file alone is enough.
    run_xmctl(home, &["--config", config, "user", "list"], &[])
        .await
        .assert_code(0);
    // The environment wins over the file…
    run_xmctl(
        home,
        &["--config", config, "user", "list"],
        &[("XMCTL_TOKEN", "wrong")],
    )
    .await
    .assert_code(3);
    run_xmctl(
        home,
        &["--config", config, "user", "list"],
        &[("XMCTL_URL", &dead)],
    )
    .await
    .assert_code(4);
    // …and a flag wins over the environment.
    run_xmctl(
        home,
        &["--config", config, "--token", TOKEN, "user", "list"],
        &[("XMCTL_TOKEN", "wrong")],
    )
    .await
    .assert_code(0);
    run_xmctl(
        home,
        &["--config", config, "--url", &h.url, "user", "list"],
        &[("XMCTL_URL", &dead)],
    )
    .await
    .assert_code(0);
    // XMCTL_CONFIG names the file too.
    run_xmctl(home, &["user", "list"], &[("XMCTL_CONFIG", config)])
        .await
        .assert_code(0);
    // An explicit file that is missing is a usage error.
    run_xmctl(
        home,
        &["--config", "/nonexistent/xmctl.toml", "user", "list"],
        &[],
    )
    .await
    .assert_code(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_config_file_is_read_when_present() {
    let h = start_manager().await;
    // Without it: the default URL and no token.
    run_xmctl(h.home.path(), &["user", "list"], &[])
        .await
        .assert_code(1);
    h.write(
        ".config/xmctl/config.toml",
        &format!("url = \"{}\"\ntoken = \"{TOKEN}\"\n", h.url),
    );
    run_xmctl(h.home.path(), &["user", "list", "--json"], &[])
        .await
        .assert_code(0);
    // XDG_CONFIG_HOME moves it.
    let elsewhere = tempfile::tempdir().expect("xdg dir");
    let xdg = elsewhere.path().to_str().expect("utf-8 path");
    run_xmctl(
        h.home.path(),
        &["user", "list"],
        &[("XDG_CONFIG_HOME", xdg)],
    )
    .await
    .assert_code(1);
}

/// Polls `xmctl user show ID --json` until `check` holds on the user.
async fn wait_user(h: &Harness, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = h.xmctl(&["user", "show", id, "--json"]).await;
        run.assert_code(0);
        let user = run.json()["user"].clone();
        if check(&user) {
            return user;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {user}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_usage_and_multipliers() {
    let h = start_manager().await;
    let endpoint = "http://node-u.test:9000";
    h.fleet.add_node(endpoint);
    let node = h.add_node(endpoint).await;
    h.xmctl(&["node", "start", &node]).await.assert_code(0);

    // A plan from people's spellings.
    let run = h
        .xmctl(&[
            "user", "add", "carol", "--limit", "1KiB", "--expire", "+30d", "--reset", "month:15",
            "--json",
        ])
        .await;
    run.assert_code(0);
    let id = run.json()["user"]["id"].as_str().expect("id").to_owned();
    let user = wait_user(&h, &id, "carol's plan", |_| true).await;
    assert_eq!(user["dataLimit"], 1024);
    assert_eq!(user["resetStrategy"], "month");
    assert_eq!(user["resetDay"], 15);
    assert_eq!(user["state"], "disabled");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expire = user["expireAt"].as_i64().expect("expireAt");
    assert!((expire - (now + 30 * 86_400)).abs() < 120, "{user}");
    let human = h.xmctl(&["user", "show", &id]).await;
    assert!(human.stdout.contains("month, on day 15"), "{human:?}");

    // Bytes on the node cross the limit: limited, and shown per node.
    h.xmctl(&["user", "enable", &id]).await.assert_code(0);
    let uid: manager_lib::domain::UserId = id.parse().expect("a user id");
    h.fleet.record_usage(endpoint, &[(uid, 600, 600)]);
    let user = wait_user(&h, &id, "carol limited", |u| u["state"] == "limited").await;
    assert_eq!(
        (user["usedUp"].as_u64(), user["usedDown"].as_u64()),
        (Some(600), Some(600))
    );
    let usage = h
        .xmctl(&["user", "usage", &id, "--by", "node", "--json"])
        .await;
    usage.assert_code(0);
    assert_eq!(usage.json()["usage"][0]["nodeID"], node.as_str());
    assert_eq!(usage.json()["usage"][0]["down"], 600);
    let nodes = h.xmctl(&["node", "usage", "--from", "-1d", "--json"]).await;
    nodes.assert_code(0);
    assert_eq!(nodes.json()["usage"][0]["up"], 600);
    let table = h.xmctl(&["user", "usage", &id]).await;
    assert!(table.stdout.contains("total"), "{table:?}");

    // No limit: active again; a reset zeroes the bytes.
    let run = h
        .xmctl(&["user", "edit", &id, "--limit", "none", "--json"])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["user"]["state"], "active");
    assert!(run.json()["user"].get("dataLimit").is_none());
    let run = h.xmctl(&["user", "reset-usage", &id, "--json"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["user"]["usedUp"], 0);

    // A multiplier counts each byte through the node twice, from now on.
    h.xmctl(&["node", "multiplier", &node, "2"])
        .await
        .assert_code(0);
    h.fleet.record_usage(endpoint, &[(uid, 100, 0)]);
    wait_user(&h, &id, "100 bytes counted as 200", |u| u["usedUp"] == 200).await;

    // Bad input: refused, named, and nothing changed.
    let run = h.xmctl(&["user", "edit", &id]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("nothing to change"), "{run:?}");
    let run = h.xmctl(&["user", "add", "x", "--limit", "lots"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("--limit"), "{run:?}");
    let run = h.xmctl(&["node", "multiplier", &node, "0"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("invalid multiplier"), "{run:?}");
    let run = h.xmctl(&["user", "edit", &id, "--reset", "month:31"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("1 to 28"), "{run:?}");
    assert_eq!(h.users().await.len(), 1, "the refused add created nothing");
}
