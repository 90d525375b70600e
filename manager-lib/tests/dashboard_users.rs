//! The dashboard's user pages through the real router: the table pages by
//! key with search and filters, a user is created with a plan and enabled
//! and disabled from its page (each change audited like the API's), bulk
//! actions report what failed, the subscription link and its QR code show
//! to roles that may read it, a hostile name is escaped, no user secret
//! shows anywhere, and a read-only token changes nothing.

mod common;
mod dashboard_support;

use std::sync::Arc;

use axum::http::StatusCode;
use manager_lib::domain::{DevicePolicy, DeviceSighting, DeviceVerdict, UserStatus};
use manager_lib::storage::memory::MemoryStorage;
use serde_json::json;

use common::{admin, new_user, running_node};
use dashboard_support::{BOOT, get, login, post, request, server};

const HOSTILE: &str = "<script>alert('x')</script>";

async fn status_of(router: &axum::Router, id: &str) -> String {
    let (status, body) = admin(router, BOOT, "GET", &format!("/users/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["user"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn user_ids(body: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"name="ids" value="([0-9a-f-]{36})""#).unwrap();
    re.captures_iter(body).map(|c| c[1].to_owned()).collect()
}

fn next_link(body: &str) -> Option<String> {
    let re = regex::Regex::new(r#"<a href="([^"]+)" rel="next">Next page</a>"#).unwrap();
    re.captures(body).map(|c| c[1].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_user_table_pages_by_key_searches_and_filters() {
    let (router, _, manager) = server(Arc::new(MemoryStorage::new()), false);
    let mut ids = Vec::new();
    for i in 0..120 {
        let u = manager.new_user(&format!("user-{i:03}")).await.unwrap();
        if i % 3 == 0 {
            manager.enable_user(u.id).await.unwrap();
        }
        ids.push(u.id.to_string());
    }
    let cookie = login(&router, BOOT).await;
    let first = get(&router, "/ui/users", Some(&cookie)).await;
    assert_eq!(first.status, StatusCode::OK);
    for hook in [
        r#"<label for="q">Search</label>"#,
        r#"<label for="status">Status</label>"#,
        ">Filter</button>",
        ">New user</a>",
        ">Disable selected</button>",
        ">Enable selected</button>",
        r#"aria-label="user-000""#,
    ] {
        assert!(first.body.contains(hook), "{hook}");
    }
    // Every user once, in name order, 50 a page.
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        let on_page = user_ids(&page.body);
        assert!(on_page.len() <= 50);
        seen.extend(on_page);
        match next_link(&page.body) {
            Some(next) => page = get(&router, &next, Some(&cookie)).await,
            None => break,
        }
    }
    assert_eq!(seen, ids, "name order is creation order here");
    let search = get(&router, "/ui/users?q=user-01", Some(&cookie)).await;
    assert_eq!(user_ids(&search.body), ids[10..20].to_vec());
    let by_id = get(
        &router,
        &format!("/ui/users?q={}", &ids[7][..8]),
        Some(&cookie),
    )
    .await;
    assert!(user_ids(&by_id.body).contains(&ids[7]));
    let enabled = get(
        &router,
        "/ui/users?status=enabled&sort=name&order=desc",
        Some(&cookie),
    )
    .await;
    let want: Vec<String> = ids.iter().step_by(3).rev().take(50).cloned().collect();
    assert_eq!(user_ids(&enabled.body), want);
    let active = get(&router, "/ui/users?state=disabled&q=user-00", Some(&cookie)).await;
    assert_eq!(
        user_ids(&active.body).len(),
        6,
        "user-001, 002, 004, 005, 007, 008"
    );
    for bad in [
        "/ui/users?status=maybe",
        "/ui/users?sort=shoe",
        "/ui/users?after=garbage",
    ] {
        let answer = get(&router, bad, Some(&cookie)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_user_is_created_with_a_plan_and_enabled_and_disabled_from_its_page() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let (_, ops) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "helpdesk", "role": "users"}),
    )
    .await;
    let cookie = login(&router, ops["token"].as_str().unwrap()).await;
    let form = get(&router, "/ui/users/new", Some(&cookie)).await;
    assert!(form.body.contains(r#"<label for="name">Name</label>"#));
    assert!(form.body.contains(">Create</button>"));
    let created = post(
        &router,
        "/ui/users/new",
        &cookie,
        &[
            ("csrf", &form.csrf()),
            ("name", "carol"),
            ("limit_gib", "5"),
            ("days", "30"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let path = created.location().unwrap().to_owned();
    let id = path.trim_start_matches("/ui/users/").to_owned();
    let (_, user) = admin(&router, BOOT, "GET", &format!("/users/{id}"), json!({})).await;
    assert_eq!(user["user"]["dataLimit"], 5u64 << 30, "{user}");
    let page = get(&router, &path, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("0 B of 5.0 GiB"));
    assert!(page.body.contains("29 days left") || page.body.contains("30 days left"));
    for button in [
        ">Enable</button>",
        ">Disable</button>",
        ">Rotate link</button>",
    ] {
        assert!(page.body.contains(button), "{button}");
    }
    let csrf = page.csrf();
    let enable = post(
        &router,
        &format!("{path}/enable"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(enable.status, StatusCode::SEE_OTHER);
    assert_eq!(status_of(&router, &id).await, "Enabled");
    let disable = post(
        &router,
        &format!("{path}/disable"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(disable.status, StatusCode::SEE_OTHER);
    assert_eq!(status_of(&router, &id).await, "Disabled");
    let plan = post(
        &router,
        &format!("{path}/plan"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("limit_gib", ""),
            ("expires", "2099-01-31"),
        ],
    )
    .await;
    assert_eq!(plan.status, StatusCode::SEE_OTHER, "{}", plan.body);
    let (_, user) = admin(&router, BOOT, "GET", &format!("/users/{id}"), json!({})).await;
    assert_eq!(user["user"].get("dataLimit"), None, "cleared: {user}");
    assert_eq!(user["user"]["expireAt"], 4_073_500_800i64, "{user}");
    let bad = post(
        &router,
        &format!("{path}/plan"),
        &cookie,
        &[("csrf", &csrf), ("limit_gib", "-1")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let (_, audit) = admin(&router, BOOT, "GET", "/audit?actor=helpdesk", json!({})).await;
    let calls: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .map(|e| e["call"].as_str().unwrap())
        .collect();
    for call in [
        "POST /user/new",
        "POST /user/enable",
        "POST /user/disable",
        "POST /user/edit",
    ] {
        assert!(calls.contains(&call), "{call} in {calls:?}");
    }
}

#[tokio::test]
async fn bulk_actions_change_each_selected_user_and_report_what_failed() {
    let (router, _, manager) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(manager.new_user(name).await.unwrap().id.to_string());
    }
    let page = get(&router, "/ui/users", Some(&cookie)).await;
    let csrf = page.csrf();
    let unknown = "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22";
    let enable = post(
        &router,
        "/ui/users/bulk",
        &cookie,
        &[
            ("csrf", &csrf),
            ("action", "enable"),
            ("ids", &ids[0]),
            ("ids", &ids[1]),
            ("ids", unknown),
        ],
    )
    .await;
    assert_eq!(enable.status, StatusCode::OK, "{}", enable.body);
    assert!(
        enable.body.contains("2 of 3 selected users enabled."),
        "{}",
        enable.body
    );
    assert!(enable.body.contains("Failed (1)") && enable.body.contains(unknown));
    assert!(enable.body.contains("user not exists"));
    assert_eq!(status_of(&router, &ids[0]).await, "Enabled");
    assert_eq!(status_of(&router, &ids[1]).await, "Enabled");
    assert_eq!(status_of(&router, &ids[2]).await, "Disabled");
    let disable = post(
        &router,
        "/ui/users/bulk",
        &cookie,
        &[("csrf", &csrf), ("action", "disable"), ("ids", &ids[0])],
    )
    .await;
    assert!(disable.body.contains("1 of 1 selected users disabled."));
    assert_eq!(
        manager
            .get_user(ids[0].parse().unwrap())
            .await
            .unwrap()
            .status,
        UserStatus::Disabled
    );
    let delete = post(
        &router,
        "/ui/users/bulk",
        &cookie,
        &[("csrf", &csrf), ("action", "delete"), ("ids", &ids[2])],
    )
    .await;
    assert!(delete.body.contains("1 of 1 selected users deleted."));
    assert!(manager.get_user(ids[2].parse().unwrap()).await.is_err());
    let forged = post(
        &router,
        "/ui/users/bulk",
        &cookie,
        &[("csrf", "00"), ("action", "delete"), ("ids", &ids[1])],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        status_of(&router, &ids[1]).await,
        "Enabled",
        "nothing changed"
    );
}

#[tokio::test]
async fn the_subscription_link_and_qr_show_to_a_role_that_may_read_them_and_rotate() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let id = new_user(&router, BOOT, "dave").await;
    let cookie = login(&router, BOOT).await;
    let page = get(&router, &format!("/ui/users/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let (_, sub) = admin(
        &router,
        BOOT,
        "GET",
        &format!("/users/{id}/subscription"),
        json!({}),
    )
    .await;
    let token = sub["subscription"]["token"].as_str().unwrap();
    let link = format!("http://127.0.0.1:8080/sub/{token}");
    assert!(
        page.body
            .contains(&format!(r#"<a id="subscription-link" href="{link}">"#)),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<svg role="img" aria-label="Subscription QR code""#)
    );
    let rotated = post(
        &router,
        &format!("/ui/users/{id}/rotate"),
        &cookie,
        &[("csrf", &page.csrf())],
    )
    .await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER);
    let after = get(&router, &format!("/ui/users/{id}"), Some(&cookie)).await;
    assert!(!after.body.contains(token), "the old link is gone");
    assert!(after.body.contains(r#"id="subscription-link""#));
    // A read-only token sees the user but neither the link nor a button.
    let (_, ro) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "viewer", "role": "read-only"}),
    )
    .await;
    let viewer = login(&router, ro["token"].as_str().unwrap()).await;
    let seen = get(&router, &format!("/ui/users/{id}"), Some(&viewer)).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.contains("dave"));
    assert!(!seen.body.contains("subscription-link") && !seen.body.contains("/sub/"));
    for button in [
        ">Enable</button>",
        ">Disable</button>",
        ">Rotate link</button>",
        "Save plan",
    ] {
        assert!(!seen.body.contains(button), "{button}");
    }
    let csrf = seen.csrf();
    for verb in ["enable", "rotate", "delete"] {
        let answer = post(
            &router,
            &format!("/ui/users/{id}/{verb}"),
            &viewer,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{verb}");
    }
    let bulk = post(
        &router,
        "/ui/users/bulk",
        &viewer,
        &[("csrf", &csrf), ("action", "enable"), ("ids", &id)],
    )
    .await;
    assert_eq!(bulk.status, StatusCode::FORBIDDEN);
    let create = post(
        &router,
        "/ui/users/new",
        &viewer,
        &[("csrf", &csrf), ("name", "eve")],
    )
    .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert_eq!(status_of(&router, &id).await, "Disabled");
    let (_, users) = admin(&router, BOOT, "GET", "/users", json!({})).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "no user made");
}

#[tokio::test]
async fn a_hostile_name_is_escaped_and_no_secret_shows_on_any_page() {
    let (router, fleet, manager) = server(Arc::new(MemoryStorage::new()), false);
    let node = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let id = new_user(&router, BOOT, HOSTILE).await;
    let user = manager.get_user(id.parse().unwrap()).await.unwrap();
    let secret = user.secret.expose().to_owned();
    let key = manager
        .get_node(node.parse().unwrap())
        .await
        .unwrap()
        .key
        .expose_base64url();
    let cookie = login(&router, BOOT).await;
    let page = get(&router, "/ui/users", Some(&cookie)).await;
    let bulk = post(
        &router,
        "/ui/users/bulk",
        &cookie,
        &[("csrf", &page.csrf()), ("action", "enable"), ("ids", &id)],
    )
    .await;
    assert!(bulk.body.contains("1 of 1"));
    let mut pages = vec![page, bulk];
    for path in [
        "/ui/".to_owned(),
        "/ui/overview/fragment".to_owned(),
        "/ui/nodes".to_owned(),
        format!("/ui/nodes/{node}"),
        "/ui/users?q=%3Cscript".to_owned(),
        format!("/ui/users/{id}"),
        format!("/ui/users/{id}/delete"),
        "/ui/users/new".to_owned(),
    ] {
        let answer = get(&router, &path, Some(&cookie)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        pages.push(answer);
    }
    for (i, page) in pages.iter().enumerate() {
        assert!(!page.body.contains("<script>alert"), "page {i}: raw script");
        assert!(!page.body.contains(&secret), "page {i}: the user's secret");
        assert!(!page.body.contains(&key), "page {i}: the node key");
        assert!(!page.body.contains(BOOT), "page {i}: the admin token");
    }
    for i in [0, 6, 7, 8] {
        assert!(
            pages[i].body.contains("&lt;script&gt;alert"),
            "page {i} shows the name escaped"
        );
    }
    // The login page of a missing session is reached, not a user page.
    let out = request(&router, "GET", &format!("/ui/users/{id}"), None, &[], &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_device_is_forgotten_from_the_users_page_audited_and_only_by_a_role_that_may() {
    let (router, _, manager) = server(Arc::new(MemoryStorage::new()), false);
    let user = manager.new_user("erin").await.unwrap();
    let id = user.id.to_string();
    for (hwid, model) in [
        ("hwid-phone-0001", "Pixel <b>9</b>"),
        ("hwid-laptop-002", "ThinkPad"),
    ] {
        let seen = DeviceSighting::new(hwid, "Android", "15", model, "v2rayNG/1.9").unwrap();
        let verdict = manager
            .admit_device(&user, Some(&seen), DevicePolicy::default())
            .await
            .unwrap();
        assert_eq!(verdict, DeviceVerdict::Allowed);
    }
    let path = format!("/ui/users/{id}");
    // A read-only token sees the devices, no button, and is refused.
    let (_, ro) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "viewer", "role": "read-only"}),
    )
    .await;
    let viewer = login(&router, ro["token"].as_str().unwrap()).await;
    let seen = get(&router, &path, Some(&viewer)).await;
    assert!(seen.body.contains("Devices (2)"), "{}", seen.body);
    assert!(seen.body.contains("Pixel &lt;b&gt;9&lt;/b&gt;"), "escaped");
    assert!(!seen.body.contains(">Forget</button>"));
    let refused = post(
        &router,
        &format!("{path}/devices/forget"),
        &viewer,
        &[("csrf", &seen.csrf()), ("hwid", "hwid-phone-0001")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // An admin page has a button per device; a stale form changes nothing.
    let cookie = login(&router, BOOT).await;
    let page = get(&router, &path, Some(&cookie)).await;
    assert_eq!(
        page.body.matches(">Forget</button>").count(),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"name="hwid" value="hwid-phone-0001""#));
    let stale = post(
        &router,
        &format!("{path}/devices/forget"),
        &cookie,
        &[("csrf", "stale"), ("hwid", "hwid-phone-0001")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    assert_eq!(manager.list_devices(user.id).await.unwrap().len(), 2);
    let forgot = post(
        &router,
        &format!("{path}/devices/forget"),
        &cookie,
        &[("csrf", &page.csrf()), ("hwid", "hwid-phone-0001")],
    )
    .await;
    assert_eq!(forgot.status, StatusCode::SEE_OTHER, "{}", forgot.body);
    assert_eq!(forgot.location(), Some(path.as_str()));
    let left: Vec<String> = manager
        .list_devices(user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.hwid)
        .collect();
    assert_eq!(left, ["hwid-laptop-002"]);
    // Forgetting it again: refused as the API's call is, nothing changed.
    let again = post(
        &router,
        &format!("{path}/devices/forget"),
        &cookie,
        &[("csrf", &page.csrf()), ("hwid", "hwid-phone-0001")],
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(again.body.contains("device not exists"), "{}", again.body);
    assert_eq!(manager.list_devices(user.id).await.unwrap().len(), 1);
    let (_, audit) = admin(&router, BOOT, "GET", "/audit", json!({})).await;
    let forgets: Vec<(&str, i64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["call"] == "POST /user/device/delete" && e["target"] == id.as_str())
        .map(|e| (e["actor"].as_str().unwrap(), e["result"].as_i64().unwrap()))
        .collect();
    // Newest first: not found, done, refused to the viewer.
    assert_eq!(
        forgets,
        [("bootstrap", 400), ("bootstrap", 200), ("viewer", 403)],
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("hwid-phone-0001"),
        "no hwid in the audit"
    );
}
