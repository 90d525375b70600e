//! `xmctl`'s subscription commands (issue 17) against a real manager served
//! in-process: a user's subscription URL shown and rotated, a node shown
//! with what its agent described and what subscriptions list, and its
//! profile set from flags or a file. Simulated nodes describe two inbounds.

mod common;

use std::time::Duration;

use common::{Harness, start_manager_custom};
use manager_lib::domain::InboundDescription;
use manager_lib::subscription::SubscriptionSettings;
use manager_lib::subscription::Subscriptions;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};

const NODE: &str = "http://10.0.0.1:9000";

fn two_inbounds() -> Vec<InboundDescription> {
    serde_json::from_value(json!([
        {"tag": "vless-in", "protocol": "vless", "port": 443, "network": "tcp",
         "security": "tls", "sni": "node.example.com"},
        {"tag": "vmess-ws", "protocol": "vmess", "port": 8080, "network": "ws",
         "path": "/vm", "security": "none"}
    ]))
    .expect("inbound descriptions")
}

/// A manager whose subscriptions live at `public_url` (or, without one,
/// are shown as paths) and whose nodes describe [`two_inbounds`].
async fn start(public_url: Option<&str>) -> Harness {
    let sub = SubscriptionSettings {
        public_url: public_url.map(str::to_owned),
        ..SubscriptionSettings::default()
    };
    start_manager_custom(
        SimulatedFleet::new().with_inbounds(two_inbounds()),
        |s| s.subscription = Subscriptions::new(sub).expect("valid settings"),
        |r| r,
    )
    .await
}

impl Harness {
    /// A registered node, running (so its agent described its inbounds).
    async fn running_node(&self) -> String {
        self.fleet.add_node(NODE);
        let id = self.add_node(NODE).await;
        self.xmctl(&["node", "start", &id]).await.assert_code(0);
        id
    }

    async fn subscription(&self, user: &str) -> Value {
        let run = self.xmctl(&["user", "subscription", user, "--json"]).await;
        run.assert_code(0);
        run.json()["subscription"].clone()
    }

    async fn node_json(&self, node: &str) -> Value {
        let run = self.xmctl(&["node", "show", node, "--json"]).await;
        run.assert_code(0);
        run.json()["node"].clone()
    }
}

/// `GET url` without any token, as a client app fetches it.
async fn fetch(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("the manager answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("a text body"))
}

/// `GET url` until it answers 200 with a body that `ready` accepts (or a
/// deadline passes); the last body.
async fn fetch_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = fetch(url).await;
        if status == 200 && ready(&body) || tokio::time::Instant::now() >= deadline {
            assert_eq!(status, 200, "{body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_subscription_prints_the_url_alone_and_json_adds_the_token() {
    let h = start(Some("https://sub.example.com")).await;
    let user = h.add_user("alice").await;

    let sub = h.subscription(&user).await;
    let token = sub["token"].as_str().expect("token");
    assert!(token.len() >= 32, "{sub}");
    assert_eq!(sub["url"], format!("https://sub.example.com/sub/{token}"));

    let human = h.xmctl(&["user", "subscription", &user]).await;
    human.assert_code(0);
    assert_eq!(
        human.stdout,
        format!("https://sub.example.com/sub/{token}\n")
    );
    assert!(human.stderr.is_empty(), "{human:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_the_path_is_completed_with_the_manager_url() {
    let h = start(None).await;
    let user = h.add_user("bob").await;
    let sub = h.subscription(&user).await;
    let token = sub["token"].as_str().expect("token");
    assert_eq!(sub["url"], format!("/sub/{token}"));

    let human = h.xmctl(&["user", "subscription", &user]).await;
    human.assert_code(0);
    assert_eq!(human.stdout, format!("{}/sub/{token}\n", h.url));
    assert!(
        human.stderr.contains("XM_SUBSCRIPTION_PUBLIC_URL"),
        "{human:?}"
    );
    // The completed URL is one a client can fetch.
    let (status, _) = fetch(human.stdout.trim()).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_subscription_prints_a_new_url_and_the_old_one_answers_404() {
    let h = start(None).await;
    let user = h.add_user("carol").await;
    h.xmctl(&["user", "enable", &user]).await.assert_code(0);
    h.running_node().await;
    let old = h.subscription(&user).await;
    let old_url = format!("{}{}", h.url, old["url"].as_str().expect("url"));
    let (status, links) = fetch(&format!("{old_url}?format=links")).await;
    assert_eq!(status, 200);
    assert!(links.contains(&user), "the user's links before: {links}");

    let rotated = h.xmctl(&["user", "rotate-subscription", &user]).await;
    rotated.assert_code(0);
    let new_url = rotated.stdout.trim().to_owned();
    assert!(
        new_url.starts_with(&format!("{}/sub/", h.url)),
        "{rotated:?}"
    );
    assert_ne!(new_url, old_url);
    assert!(rotated.stderr.contains("404"), "{rotated:?}");

    let (status, _) = fetch(&old_url).await;
    assert_eq!(status, 404, "the old URL after the rotation");
    // A rotation is a change of the user that each node applies (as an
    // enable is): the new URL lists the node once it has.
    let links = fetch_until(&format!("{new_url}?format=links"), |l| l.contains(&user)).await;
    assert!(links.contains(&user), "the user's links after: {links}");
    assert_eq!(
        format!(
            "{}{}",
            h.url,
            h.subscription(&user).await["url"].as_str().expect("url")
        ),
        new_url
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_subscription_with_json_answers_the_new_token() {
    let h = start(Some("https://sub.example.com/")).await;
    let user = h.add_user("dave").await;
    let old = h.subscription(&user).await;

    let run = h
        .xmctl(&["user", "rotate-subscription", &user, "--json"])
        .await;
    run.assert_code(0);
    let new = run.json()["subscription"].clone();
    let token = new["token"].as_str().expect("token");
    assert_ne!(new["token"], old["token"]);
    assert_eq!(new["url"], format!("https://sub.example.com/sub/{token}"));
    assert_eq!(h.subscription(&user).await, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_commands_for_an_unknown_user_exit_2() {
    let h = start(None).await;
    for cmd in ["subscription", "rotate-subscription"] {
        let run = h
            .xmctl(&["user", cmd, "00000000-0000-4000-8000-000000000000"])
            .await;
        run.assert_code(2);
        assert!(run.stderr.contains("user not exists"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_show_lists_described_inbounds_and_what_subscriptions_serve() {
    let h = start(None).await;
    let node = h.running_node().await;

    let v = h.node_json(&node).await;
    assert_eq!(v["id"], node.as_str());
    assert_eq!(v["endpoint"], NODE);
    assert_eq!(v["actualStatus"], "Running");
    assert_eq!(v["trafficMultiplier"], 1.0);
    let tags: Vec<_> = v["inbounds"]
        .as_array()
        .expect("inbounds")
        .iter()
        .map(|i| i["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(tags, ["vless-in", "vmess-ws"]);
    // Every field the agent described is kept in --json.
    assert_eq!(v["inbounds"][1]["path"], "/vm");
    assert_eq!(v["profile"], json!({}));
    assert_eq!(v["served"].as_array().expect("served").len(), 2);
    assert_eq!(v["served"][0]["address"], "10.0.0.1");
    assert_eq!(v["served"][1]["port"], 8080);

    let human = h.xmctl(&["node", "show", &node]).await;
    human.assert_code(0);
    for needle in [
        "TAG",
        "PROTOCOL",
        "NETWORK",
        "SECURITY",
        "SNI",
        "vless-in",
        "tls",
        "node.example.com",
        "vmess-ws",
        "ws",
        "8080",
        "REMARK",
        "ADDRESS",
        "10.0.0.1",
        "10.0.0.1 (the endpoint's host)",
    ] {
        assert!(human.stdout.contains(needle), "{needle}: {human:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_show_of_an_unknown_node_exits_2() {
    let h = start(None).await;
    let run = h
        .xmctl(&["node", "show", "00000000-0000-4000-8000-000000000000"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("node not exists"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_profile_file_round_trips_through_node_show_json() {
    let h = start(None).await;
    let node = h.running_node().await;
    let profile = json!({
        "address": "nl.example.com",
        "remark": "Amsterdam",
        "inbounds": {
            "vmess-ws": {"hidden": true},
            "vless-in": {"addresses": ["cdn1.example.com", "cdn2.example.com"],
                         "sni": "front.example.com", "alpn": ["h2"], "allowInsecure": true}
        }
    });
    let file = h.write("profile.json", &profile.to_string());
    let file = file.to_str().expect("utf-8 path");

    let set = h
        .xmctl(&["node", "profile", &node, "--file", file, "--json"])
        .await;
    set.assert_code(0);
    assert_eq!(set.json()["node"]["profile"], profile);

    let shown = h.node_json(&node).await;
    assert_eq!(shown["profile"], profile);
    let served: Vec<_> = shown["served"]
        .as_array()
        .expect("served")
        .iter()
        .map(|s| (s["address"].as_str(), s["tag"].as_str()))
        .collect();
    assert_eq!(
        served,
        [
            (Some("cdn1.example.com"), Some("vless-in")),
            (Some("cdn2.example.com"), Some("vless-in"))
        ],
        "the hidden inbound is left out, the other listed at each address"
    );

    // What `node show --json` prints is a profile file as it stands.
    let again = h.write("again.json", &shown["profile"].to_string());
    let again = again.to_str().expect("utf-8 path");
    h.xmctl(&["node", "profile", &node, "--file", again])
        .await
        .assert_code(0);
    assert_eq!(h.node_json(&node).await["profile"], profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_profile_flags_override_the_file_and_what_it_leaves_out_is_cleared() {
    let h = start(None).await;
    let node = h.running_node().await;
    let first = h.write(
        "first.json",
        r#"{"address": "a.example.com", "inbounds": {"vmess-ws": {"hidden": true}}}"#,
    );
    h.xmctl(&[
        "node",
        "profile",
        &node,
        "--file",
        first.to_str().expect("path"),
    ])
    .await
    .assert_code(0);

    let second = h.write("second.json", r#"{"address": "b.example.com"}"#);
    let run = h
        .xmctl(&[
            "node",
            "profile",
            &node,
            "--file",
            second.to_str().expect("path"),
            "--address",
            "c.example.com",
            "--remark",
            "Berlin",
            "--json",
        ])
        .await;
    run.assert_code(0);
    assert_eq!(
        run.json()["node"]["profile"],
        json!({"address": "c.example.com", "remark": "Berlin"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_profile_flags_without_a_file_keep_the_rest_of_the_profile() {
    let h = start(None).await;
    let node = h.running_node().await;
    let overrides = json!({"vless-in": {"sni": "front.example.com"}, "vmess-ws": {"hidden": true}});
    let file = h.write(
        "p.json",
        &json!({"remark": "Amsterdam", "inbounds": overrides}).to_string(),
    );
    h.xmctl(&[
        "node",
        "profile",
        &node,
        "--file",
        file.to_str().expect("path"),
    ])
    .await
    .assert_code(0);

    let run = h
        .xmctl(&["node", "profile", &node, "--address", "nl.example.com"])
        .await;
    run.assert_code(0);
    assert!(run.stdout.contains("nl.example.com"), "{run:?}");
    assert!(
        run.stdout.contains("hidden") && run.stdout.contains("sni=front.example.com"),
        "the overrides are shown: {run:?}"
    );
    let v = h.node_json(&node).await;
    assert_eq!(
        v["profile"],
        json!({"address": "nl.example.com", "remark": "Amsterdam", "inbounds": overrides})
    );

    // `none` removes one field and keeps the rest.
    h.xmctl(&["node", "profile", &node, "--remark", "none"])
        .await
        .assert_code(0);
    assert_eq!(
        h.node_json(&node).await["profile"],
        json!({"address": "nl.example.com", "inbounds": overrides})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_profile_exits_2_and_changes_nothing() {
    let h = start(None).await;
    let node = h.running_node().await;
    h.xmctl(&["node", "profile", &node, "--address", "nl.example.com"])
        .await
        .assert_code(0);
    let run = h
        .xmctl(&["node", "profile", &node, "--address", "not a host"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("invalid profile"), "{run:?}");
    assert_eq!(
        h.node_json(&node).await["profile"],
        json!({"address": "nl.example.com"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_file_with_an_unknown_field_exits_1_and_changes_nothing() {
    let h = start(None).await;
    let node = h.running_node().await;
    h.xmctl(&["node", "profile", &node, "--remark", "Amsterdam"])
        .await
        .assert_code(0);
    let file = h.write("typo.json", r#"{"adress": "nl.example.com"}"#);
    let run = h
        .xmctl(&[
            "node",
            "profile",
            &node,
            "--file",
            file.to_str().expect("path"),
        ])
        .await;
    run.assert_code(1);
    assert!(run.stderr.contains("\"adress\""), "{run:?}");
    let missing = h
        .xmctl(&["node", "profile", &node, "--file", "/nonexistent/p.json"])
        .await;
    missing.assert_code(1);
    assert!(missing.stderr.contains("cannot read"), "{missing:?}");
    assert_eq!(
        h.node_json(&node).await["profile"],
        json!({"remark": "Amsterdam"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_profile_without_flags_or_file_is_a_usage_error() {
    let h = start(None).await;
    let node = h.running_node().await;
    let run = h.xmctl(&["node", "profile", &node]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("nothing to change"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_profile_help_says_the_overrides_are_kept() {
    let h = start(None).await;
    let help = h.xmctl(&["node", "profile", "--help"]).await;
    help.assert_code(0);
    let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("`--address` alone never clears the overrides"),
        "{help:?}"
    );
    assert!(text.contains("Exit codes"), "{help:?}");
}
