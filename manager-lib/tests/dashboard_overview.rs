//! The dashboard's overview at fleet scale through the real router: users
//! by state come from the storage's counters and link to the table's
//! filter, the node lists stay short (the longest silent and the longest
//! in error first) however many nodes there are, and a node's logged
//! events show escaped: its last error on the overview, all on its page.

mod common;
mod dashboard_support;

use std::sync::Arc;

use axum::http::StatusCode;
use manager_lib::domain::{
    ActualStatus, NewUser, NodeEvent, NodeEventKind, NodeId, Plan, PlanEdit, Timestamp, UserStatus,
};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{NodeEventLog, Storage};

use common::running_node;
use dashboard_support::{BOOT, get, login, server};

/// The number in the users-by-state row of `state` (its link's text).
fn state_count(body: &str, state: &str) -> u64 {
    let link = format!(r#"<a href="/ui/users?state={state}">{state}</a></td><td class="num">"#);
    let at = body.find(&link).unwrap_or_else(|| panic!("no {state} row"));
    let rest = &body[at + link.len()..];
    rest[..rest.find('<').unwrap()].parse().unwrap()
}

#[tokio::test]
async fn the_overview_counts_users_by_state_with_a_link_to_each_filter() {
    let storage = Arc::new(MemoryStorage::new());
    let (router, _, _) = server(storage.clone(), false);
    let mut ids = Vec::new();
    for i in 0..7 {
        let user = storage
            .create_user(NewUser::new(format!("u{i}")).unwrap())
            .await
            .unwrap();
        ids.push(user.id);
    }
    for id in &ids[..5] {
        storage
            .set_user_status(*id, UserStatus::Enabled)
            .await
            .unwrap();
    }
    let now = Timestamp::now();
    let expired = Plan {
        expire_at: Some(Timestamp(now.0 - 1000)),
        ..Plan::default()
    };
    storage
        .edit_user_plan(ids[0], PlanEdit::from(expired), now)
        .await
        .unwrap();
    let hold = Plan {
        on_hold: Some(60),
        ..Plan::default()
    };
    storage
        .edit_user_plan(ids[1], PlanEdit::from(hold), now)
        .await
        .unwrap();
    storage.delete_user(ids[6]).await.unwrap();
    let cookie = login(&router, BOOT).await;
    let page = get(&router, "/ui/overview/fragment", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(state_count(&page.body, "active"), 3);
    assert_eq!(state_count(&page.body, "expired"), 1);
    assert_eq!(state_count(&page.body, "on-hold"), 1);
    assert_eq!(state_count(&page.body, "limited"), 0);
    assert_eq!(
        state_count(&page.body, "disabled"),
        1,
        "the deleted one is gone"
    );
}

#[tokio::test]
async fn the_overview_lists_at_most_twenty_nodes_and_links_to_every_node() {
    let storage = Arc::new(MemoryStorage::new());
    let (router, fleet, _) = server(storage.clone(), false);
    let mut nodes = Vec::new();
    for i in 0..23 {
        nodes.push(running_node(&router, BOOT, &fleet, &format!("http://n{i}:8443")).await);
    }
    let cookie = login(&router, BOOT).await;
    let page = get(&router, "/ui/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let listed = nodes
        .iter()
        .filter(|id| page.body.contains(&format!("/ui/nodes/{id}\"")))
        .count();
    assert_eq!(listed, 20);
    assert!(
        page.body.contains(
            "The first 20 of 23 nodes (those that should run first, longest silent first)"
        )
    );
    assert!(page.body.contains(r#"<a href="/ui/nodes">every node</a>"#));
}

const HOSTILE: &str = "<script>alert('x')</script>";

#[tokio::test]
async fn a_node_in_error_shows_its_last_logged_error_escaped_and_its_page_every_event() {
    let storage = Arc::new(MemoryStorage::new());
    let (router, fleet, _) = server(storage.clone(), false);
    let id = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let node: NodeId = id.parse().unwrap();
    let now = Timestamp::now();
    let events = [
        NodeEvent::new(
            Timestamp(now.0 - 60_000),
            NodeEventKind::Restarted,
            "found stopped",
        ),
        NodeEvent::new(Timestamp(now.0 - 5_000), NodeEventKind::Failed, HOSTILE),
    ];
    for e in &events {
        storage.record_node_event(node, e, 50).await.unwrap();
    }
    storage
        .record_observation(node, ActualStatus::Error)
        .await
        .unwrap();
    let cookie = login(&router, BOOT).await;
    let overview = get(&router, "/ui/overview/fragment", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Nodes in error (1)"));
    assert!(
        overview
            .body
            .contains("&lt;script&gt;alert('x')&lt;/script&gt; ("),
        "{}",
        overview.body
    );
    assert!(!overview.body.contains(HOSTILE));
    let page = get(&router, &format!("/ui/nodes/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let events_at = page.body.find("Recent events").expect("an events section");
    let section = &page.body[events_at..];
    let failed = section.find("event-failed").unwrap();
    let restarted = section.find("event-restarted").unwrap();
    assert!(failed < restarted, "newest first");
    assert!(section.contains("found stopped"));
    assert!(!page.body.contains(HOSTILE));
}
