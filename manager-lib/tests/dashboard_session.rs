//! The dashboard's session through the real router: the login form, the
//! `xm_session` cookie and its attributes, logout, the redirect of every
//! page without a session, a wrong token (401) told apart from a database
//! that cannot check it (503), the form token and origin, the built-in
//! files, and the route lists.

mod common;
mod dashboard_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{StatusCode, header};
use manager_lib::api::ROUTES;
use manager_lib::dashboard::{UI_ROUTES, route_of};
use manager_lib::storage::memory::MemoryStorage;
use serde_json::json;

use common::admin;
use dashboard_support::outage::OutageStorage;
use dashboard_support::{BOOT, csrf_of, get, login, post, request, server};

/// The GET pages behind the session (`{id}` filled with a real node id).
const PAGES: &[&str] = &[
    "/ui/",
    "/ui/overview/fragment",
    "/ui/nodes",
    "/ui/nodes/new",
    "/ui/nodes/{id}",
    "/ui/nodes/{id}/delete",
];

#[tokio::test]
async fn the_login_form_has_a_token_field_and_a_log_in_button() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let page = get(&router, "/ui/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"<label for="token">Token</label>"#));
    assert!(
        page.body
            .contains(r#"id="token" name="token" type="password""#)
    );
    assert!(
        page.body
            .contains(r#"<button type="submit">Log in</button>"#)
    );
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn every_page_without_a_session_goes_to_the_login_form() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let (_, node) = admin(
        &router,
        BOOT,
        "POST",
        "/node/new",
        json!({"endpoint": "http://n1:8443"}),
    )
    .await;
    let id = node["nodeID"].as_str().unwrap();
    for page in PAGES {
        let path = page.replace("{id}", id);
        for cookie in [None, Some("xm_session=bm90LWEtdG9rZW4"), Some("other=1")] {
            let answer = get(&router, &path, cookie).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path} {cookie:?}");
            assert_eq!(answer.location(), Some("/ui/login"), "{path}");
        }
    }
    // A change without a session changes nothing.
    let answer = request(
        &router,
        "POST",
        &format!("/ui/nodes/{id}/delete"),
        None,
        &[],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let (status, _) = admin(&router, BOOT, "GET", &format!("/nodes/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the node is still there");
}

#[tokio::test]
async fn the_right_token_opens_a_session_in_a_strict_http_only_cookie() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let answer = request(&router, "POST", "/ui/login", None, &[("token", BOOT)], &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), Some("/ui/"));
    let set = answer.set_cookie().unwrap();
    assert!(set.starts_with("xm_session="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(BOOT), "the token is encoded: {set}");
    let cookie = set.split(';').next().unwrap();
    let overview = get(&router, "/ui/", Some(cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    for link in ["Overview", "Nodes"] {
        assert!(overview.body.contains(&format!(">{link}</a>")), "{link}");
    }
    assert!(overview.body.contains(">Log out</button>"));
    assert!(!overview.body.contains(BOOT), "no token on a page");
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_manager_serves_https() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), true);
    let answer = request(&router, "POST", "/ui/login", None, &[("token", BOOT)], &[]).await;
    assert!(answer.set_cookie().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn a_wrong_token_is_401_and_a_database_that_cannot_check_it_is_503() {
    let storage = Arc::new(OutageStorage::default());
    let down = storage.down.clone();
    let (router, _, _) = server(storage, false);
    let (_, scoped) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "ops", "role": "admin"}),
    )
    .await;
    let scoped = scoped["token"].as_str().unwrap().to_owned();
    for wrong in ["", "nope", "xmt_00000000000000000000000000000000_secret"] {
        let answer = request(&router, "POST", "/ui/login", None, &[("token", wrong)], &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(answer.body.contains("Wrong token"), "{}", answer.body);
        assert!(answer.set_cookie().is_none());
    }
    let cookie = login(&router, &scoped).await;
    down.store(true, Ordering::SeqCst);
    let answer = request(
        &router,
        "POST",
        "/ui/login",
        None,
        &[("token", &scoped)],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.body.contains("cannot check"), "{}", answer.body);
    assert!(!answer.body.contains("Wrong token"));
    // An open session is not thrown out while the database is away.
    let page = get(&router, "/ui/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.set_cookie().is_none());
    // The bootstrap token needs no database.
    let boot = request(&router, "POST", "/ui/login", None, &[("token", BOOT)], &[]).await;
    assert_eq!(boot.status, StatusCode::SEE_OTHER);
    down.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&router, "/ui/", Some(&cookie)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_token_ends_its_session() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let (_, scoped) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "ops", "role": "read-only"}),
    )
    .await;
    let cookie = login(&router, scoped["token"].as_str().unwrap()).await;
    assert_eq!(
        get(&router, "/ui/", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let (status, _) = admin(
        &router,
        BOOT,
        "POST",
        "/token/revoke",
        json!({"tokenID": scoped["tokenID"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer = get(&router, "/ui/", Some(&cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(answer.set_cookie().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn logout_clears_the_cookie_and_needs_the_form_token() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let csrf = csrf_of(&router, &cookie).await;
    let refused = post(&router, "/ui/logout", &cookie, &[("csrf", "00")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.set_cookie().is_none());
    let out = post(&router, "/ui/logout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/ui/login"));
    let set = out.set_cookie().unwrap();
    assert!(
        set.starts_with("xm_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
}

#[tokio::test]
async fn a_change_without_the_form_token_or_from_another_origin_is_403_and_changes_nothing() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let csrf = csrf_of(&router, &cookie).await;
    let (_, node) = admin(
        &router,
        BOOT,
        "POST",
        "/node/new",
        json!({"endpoint": "http://n1:8443"}),
    )
    .await;
    let id = node["nodeID"].as_str().unwrap();
    let path = format!("/ui/nodes/{id}/delete");
    let flipped = {
        let mut c: Vec<char> = csrf.chars().collect();
        c[0] = if c[0] == '0' { '1' } else { '0' };
        c.into_iter().collect::<String>()
    };
    for (form, origin) in [
        (vec![], None),
        (vec![("csrf", "")], None),
        (vec![("csrf", flipped.as_str())], None),
        (vec![("csrf", csrf.as_str())], Some("https://evil.example")),
        (vec![("csrf", csrf.as_str())], Some("null")),
    ] {
        let extra: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        let answer = request(&router, "POST", &path, Some(&cookie), &form, &extra).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form:?} {origin:?}");
        assert!(answer.body.contains("Nothing was changed"));
    }
    let (status, _) = admin(&router, BOOT, "GET", &format!("/nodes/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the node is still there");
    let with_origin = request(
        &router,
        "POST",
        &path,
        Some(&cookie),
        &[("csrf", &csrf)],
        &[("origin", "http://127.0.0.1:8080")],
    )
    .await;
    assert_eq!(
        with_origin.status,
        StatusCode::SEE_OTHER,
        "{}",
        with_origin.body
    );
    let (status, _) = admin(&router, BOOT, "GET", &format!("/nodes/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "deleted: node not exists");
}

#[tokio::test]
async fn a_form_token_is_good_only_for_its_own_session() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let (_, scoped) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "ops", "role": "admin"}),
    )
    .await;
    let boot = login(&router, BOOT).await;
    let ops = login(&router, scoped["token"].as_str().unwrap()).await;
    let boot_csrf = csrf_of(&router, &boot).await;
    assert_ne!(boot_csrf, csrf_of(&router, &ops).await);
    let answer = post(&router, "/ui/logout", &ops, &[("csrf", &boot_csrf)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_built_in_files_are_served_under_hashed_names_for_a_year() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let page = get(&router, "/ui/login", None).await;
    let re = regex::Regex::new(r#"(/ui/assets/(?:style|app)\.[0-9a-f]{16}\.(?:css|js))"#).unwrap();
    let urls: Vec<String> = re
        .captures_iter(&page.body)
        .map(|c| c[1].to_owned())
        .collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    for url in &urls {
        let file = get(&router, url, None).await;
        assert_eq!(file.status, StatusCode::OK, "{url}");
        assert!(
            file.headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!file.body.is_empty());
    }
    let stale = get(&router, "/ui/assets/style.0000000000000000.css", None).await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND);
}

#[test]
fn dashboard_routes_are_not_api_routes_and_map_to_their_templates() {
    for (_, template) in UI_ROUTES {
        assert!(
            !ROUTES.iter().any(|(_, api)| api == template),
            "{template} is an API route"
        );
        assert!(template.starts_with("/ui"), "{template}");
        assert_eq!(route_of(template), Some(*template));
    }
    assert_eq!(
        route_of("/ui/nodes/6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22/start"),
        Some("/ui/nodes/{id}/start")
    );
    assert_eq!(route_of("/ui/nodes//start"), None);
    assert_eq!(route_of("/ui/elsewhere"), None);
    assert_eq!(
        manager_lib::server::loggable_path("/ui/nodes/abc"),
        "/ui/nodes/{id}"
    );
}

#[tokio::test]
async fn visits_without_a_cookie_cost_nothing_and_wrong_tokens_spend_the_failure_budget() {
    use manager_lib::api::admin_auth::FailureLimit;
    use manager_lib::server::{Backends, Server, ServerSettings};
    let fleet = Arc::new(manager_lib::transport::simulated::SimulatedFleet::new());
    let settings = ServerSettings {
        admin_failure_limit: Some(FailureLimit {
            failures: 3,
            refill_every: std::time::Duration::from_secs(3600),
            max_clients: 100,
        }),
        push_on_change: false,
        ..ServerSettings::new(BOOT)
    };
    let router = Server::build(
        Backends::new(Arc::new(MemoryStorage::new()), fleet),
        settings,
    )
    .router;
    for _ in 0..10 {
        let answer = get(&router, "/ui/", None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
    }
    for _ in 0..3 {
        let answer = request(
            &router,
            "POST",
            "/ui/login",
            None,
            &[("token", "guess")],
            &[],
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = request(&router, "POST", "/ui/login", None, &[("token", BOOT)], &[]).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    assert!(throttled.set_cookie().is_none());
    // The API shares the budget.
    let (status, _) = admin(&router, BOOT, "GET", "/nodes", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}
