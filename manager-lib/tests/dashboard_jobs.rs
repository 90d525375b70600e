//! A bulk action on a whole filter result through the real router: the
//! confirmation states the count and the filter, the job walks the result
//! by key (past one read's chunk, while its own changes drop users out of
//! the filter), its page shows progress and, at the end, what failed and
//! why; every user's change is audited; a read-only session and a stale
//! form start nothing; a running job is cancelled.

mod common;
mod dashboard_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use manager_lib::domain::{AuditQuery, UserId, UserStatus};
use manager_lib::manager::Manager;
use manager_lib::storage::{AccessStore, Storage};
use serde_json::json;

use common::admin;
use dashboard_support::outage::OutageStorage;
use dashboard_support::{Answer, BOOT, get, login, post, server};

/// `n` users named `{prefix}-0000`…, every one enabled when `enabled`.
async fn users(manager: &Manager, prefix: &str, n: usize, enabled: bool) -> Vec<UserId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let user = manager.new_user(&format!("{prefix}-{i:04}")).await.unwrap();
        if enabled {
            manager.enable_user(user.id).await.unwrap();
        }
        ids.push(user.id);
    }
    ids
}

/// Polls the job's fragment until it has ended; the last fragment.
async fn ended(router: &axum::Router, cookie: &str, job: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fragment = get(router, &format!("{job}/fragment"), Some(cookie)).await;
        assert_eq!(fragment.status, StatusCode::OK, "{}", fragment.body);
        if fragment.body.contains(r#"data-stage="ended""#) {
            return fragment;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end: {}",
            fragment.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn enabled_count(storage: &dyn Storage) -> u64 {
    let counts = storage.count_users_by_state().await.unwrap();
    counts.active + counts.on_hold + counts.limited + counts.expired
}

#[tokio::test]
async fn a_job_disables_every_user_the_filter_matches_and_reports_what_failed() {
    let storage = Arc::new(OutageStorage::default());
    let (router, _, manager) = server(storage.clone(), false);
    let cookie = login(&router, BOOT).await;
    // 1,100 enabled (more than two reads' worth), 30 disabled.
    let on = users(&manager, "on", 1100, true).await;
    users(&manager, "off", 30, false).await;
    storage.refused.lock().unwrap().push(on[517]);
    let table = get(&router, "/ui/users?status=enabled", Some(&cookie)).await;
    assert!(
        table.body.contains("Apply to all 1100 matching"),
        "{}",
        table.body
    );
    let confirm = get(
        &router,
        "/ui/users/all?status=enabled&action=disable",
        Some(&cookie),
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm
            .body
            .contains("<strong>all 1100</strong> users matching <strong>status enabled</strong>"),
        "{}",
        confirm.body
    );
    let csrf = confirm.csrf();
    let started = post(
        &router,
        "/ui/users/all",
        &cookie,
        &[
            ("csrf", &csrf),
            ("status", "enabled"),
            ("action", "disable"),
        ],
    )
    .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started.location().unwrap().to_owned();
    assert!(job.starts_with("/ui/jobs/"), "{job}");
    let page = get(&router, &job, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<progress id=\"job-progress\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-refresh=\"/ui/jobs/"));
    assert!(page.body.contains("status enabled"));
    let summary = ended(&router, &cookie, &job).await;
    assert!(
        summary
            .body
            .contains("1100 of 1100 users handled (finished)"),
        "{}",
        summary.body
    );
    assert!(
        summary.body.contains("1099 disabled, 1 failed."),
        "{}",
        summary.body
    );
    assert!(summary.body.contains("Failed (1)"));
    assert!(summary.body.contains(&on[517].to_string()));
    assert!(
        summary.body.contains("database unavailable"),
        "the API's reason: {}",
        summary.body
    );
    assert_eq!(
        enabled_count(storage.as_ref()).await,
        1,
        "only the refused one is left"
    );
    assert_eq!(
        manager.get_user(on[517]).await.unwrap().status,
        UserStatus::Enabled
    );
    // One audit entry per user, as the API's call, the failure with its status.
    let audit = |target: Option<String>| {
        let storage = storage.clone();
        async move {
            let query = AuditQuery {
                call: Some("POST /user/disable".into()),
                target,
                limit: 10_000,
                ..AuditQuery::default()
            };
            storage.list_audit(&query).await.unwrap().items
        }
    };
    assert_eq!(audit(None).await.len(), 1100);
    let refused = audit(Some(on[517].to_string())).await;
    assert_eq!(refused.iter().map(|e| e.result).collect::<Vec<_>>(), [500]);
    // The page stays for its summary.
    let again = get(&router, &job, Some(&cookie)).await;
    assert!(again.body.contains("The job has ended."));
}

#[tokio::test]
async fn a_read_only_session_or_a_stale_form_starts_nothing() {
    let storage = Arc::new(OutageStorage::default());
    let (router, _, manager) = server(storage.clone(), false);
    users(&manager, "u", 5, true).await;
    let (_, ro) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "viewer", "role": "read-only"}),
    )
    .await;
    let viewer = login(&router, ro["token"].as_str().unwrap()).await;
    let table = get(&router, "/ui/users", Some(&viewer)).await;
    assert!(
        !table.body.contains("Apply to all"),
        "no offer to a read-only role"
    );
    let csrf = table.csrf();
    let refused = post(
        &router,
        "/ui/users/all",
        &viewer,
        &[("csrf", &csrf), ("action", "disable")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(enabled_count(storage.as_ref()).await, 5, "nothing changed");
    let cookie = login(&router, BOOT).await;
    let forged = post(
        &router,
        "/ui/users/all",
        &cookie,
        &[("csrf", "00"), ("action", "delete")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(enabled_count(storage.as_ref()).await, 5, "nothing changed");
    let unknown = get(&router, "/ui/jobs/0123456789abcdef", Some(&cookie)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_running_job_is_cancelled_before_its_next_user() {
    let storage = Arc::new(OutageStorage::default());
    let (router, _, manager) = server(storage.clone(), false);
    let cookie = login(&router, BOOT).await;
    users(&manager, "c", 50, true).await;
    storage.hold.store(true, Ordering::SeqCst);
    let csrf = get(&router, "/ui/users", Some(&cookie)).await.csrf();
    let started = post(
        &router,
        "/ui/users/all",
        &cookie,
        &[("csrf", &csrf), ("q", "c-"), ("action", "disable")],
    )
    .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started.location().unwrap().to_owned();
    let running = get(&router, &job, Some(&cookie)).await;
    assert!(
        running.body.contains("0 of 50 users handled (running)"),
        "{}",
        running.body
    );
    assert!(running.body.contains("Cancel the job"));
    let stale = post(
        &router,
        &format!("{job}/cancel"),
        &cookie,
        &[("csrf", "00")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let cancel = post(
        &router,
        &format!("{job}/cancel"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(cancel.status, StatusCode::SEE_OTHER, "{}", cancel.body);
    storage.hold.store(false, Ordering::SeqCst);
    let summary = ended(&router, &cookie, &job).await;
    assert!(summary.body.contains("(cancelled)"), "{}", summary.body);
    assert!(
        enabled_count(storage.as_ref()).await >= 49,
        "at most the user in hand changed"
    );
}
