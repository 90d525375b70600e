//! `xmctl`'s device commands against a real manager served in-process: a
//! user's devices listed and forgotten, and the user's device limit set.
//! Devices are made by fetching the subscription with `x-hwid`, as Happ
//! does.

mod common;

use common::{Harness, start_manager_custom};
use manager_lib::subscription::{SubscriptionSettings, Subscriptions};
use manager_lib::transport::simulated::SimulatedFleet;

/// A manager whose users may have one device each unless told otherwise,
/// and one user; the user's id and subscription URL.
async fn start() -> (Harness, String, String) {
    let sub = SubscriptionSettings {
        device_limit: 1,
        ..SubscriptionSettings::default()
    };
    let h = start_manager_custom(
        SimulatedFleet::new(),
        |s| s.subscription = Subscriptions::new(sub).expect("valid settings"),
        |r| r,
    )
    .await;
    let user = h.add_user("dana").await;
    let run = h.xmctl(&["user", "subscription", &user]).await;
    run.assert_code(0);
    let url = run.stdout.trim().to_owned();
    (h, user, url)
}

/// Fetches the subscription as the app with `hwid`; whether it was
/// refused for the device limit.
async fn refused(url: &str, hwid: &str) -> bool {
    let resp = reqwest::Client::new()
        .get(url)
        .header("x-hwid", hwid)
        .header("x-device-os", "iOS")
        .header("x-device-model", "iPhone 15")
        .header("user-agent", "Happ/3.1")
        .send()
        .await
        .expect("the manager answers");
    assert_eq!(resp.status(), 200);
    resp.headers().contains_key("x-hwid-limit")
}

#[tokio::test]
async fn devices_are_listed_and_a_forgotten_one_makes_room() {
    let (h, user, url) = start().await;
    assert!(!refused(&url, "device-aaaa-0001").await);
    assert!(refused(&url, "device-bbbb-0002").await);
    let run = h.xmctl(&["user", "devices", &user, "--json"]).await;
    run.assert_code(0);
    let devices = run.json()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["hwid"], "device-aaaa-0001");
    assert_eq!(devices[0]["model"], "iPhone 15");
    let table = h.xmctl(&["user", "devices", &user]).await;
    table.assert_code(0);
    assert!(table.stdout.contains("device-aaaa-0001"), "{table:?}");
    h.xmctl(&["user", "forget-device", &user, "device-aaaa-0001"])
        .await
        .assert_code(0);
    h.xmctl(&["user", "forget-device", &user, "device-aaaa-0001"])
        .await
        .assert_code(2);
    assert!(!refused(&url, "device-bbbb-0002").await, "room again");
}

#[tokio::test]
async fn a_users_device_limit_is_set_and_cleared() {
    let (h, user, url) = start().await;
    let run = h
        .xmctl(&["user", "device-limit", &user, "0", "--json"])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["user"]["deviceLimit"], 0);
    for n in 0..3 {
        assert!(!refused(&url, &format!("device-{n:012}")).await);
    }
    let shown = h.xmctl(&["user", "show", &user]).await;
    shown.assert_code(0);
    assert!(shown.stdout.contains("no limit"), "{shown:?}");
    let run = h
        .xmctl(&["user", "device-limit", &user, "default", "--json"])
        .await;
    run.assert_code(0);
    assert!(run.json()["user"].get("deviceLimit").is_none());
    assert!(
        refused(&url, "device-new-000001").await,
        "back to the default of 1"
    );
    h.xmctl(&["user", "device-limit", &user, "lots"])
        .await
        .assert_code(1);
    h.xmctl(&["user", "devices", "00000000-0000-0000-0000-000000000000"])
        .await
        .assert_code(2);
}
