//! The changes-with-their-events part of the `Storage` conformance suite
//! ([`NotifyingStore`](crate::storage::NotifyingStore)): a change and its
//! outbox rows are both there after the call, and a delivery the backend
//! refuses (checked after the change, in its transaction) leaves the
//! change undone too.

use std::time::Duration;

use serde_json::json;

use crate::domain::usage::UsageCursor;
use crate::domain::{
    ActualStatus, BlockReason, Delivery, EventKind, IssuedToken, NewDelivery, NewToken, Plan, Role,
    Timestamp, WebhookEvent,
};
use crate::storage::{Entity, Notices, Storage, StorageError};

use super::usage::{batch, enabled_user, limit, page, plan, used, utc};
use super::{node, running_node};

const LEASE: Duration = Duration::from_secs(30);

/// Notices that route every user event to `endpoint` (an empty name: a
/// delivery every backend refuses), with the user's used bytes as written.
fn notices(endpoint: &'static str) -> Notices {
    Notices::new(move |kind, user| {
        let data = json!({ "used": user.used(), "blocked": user.blocked.map(|b| b.as_str()) });
        vec![WebhookEvent::new(kind, user.id.to_string(), data).delivery_to(endpoint)]
    })
}

fn delivery(id: &str, endpoint: &str) -> NewDelivery {
    WebhookEvent::with_id(id.into(), EventKind::NodeDown, "n", json!({})).delivery_to(endpoint)
}

async fn outbox(s: &dyn Storage) -> Vec<Delivery> {
    s.claim_deliveries("check", Timestamp::now(), LEASE, 100)
        .await
        .unwrap()
}

fn assert_refused<T: std::fmt::Debug>(r: Result<T, StorageError>) {
    assert!(matches!(r, Err(StorageError::Invalid(_))), "{r:?}");
}

pub async fn a_usage_page_and_its_limit_events_commit_together(s: &dyn Storage) {
    let n = running_node(s, "http://10.9.1.1:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(1000), now).await;
    let p = page("j", vec![batch(1, now, &[(u, 600, 400)])]);
    let out = s
        .ingest_usage_notifying(n.id, &UsageCursor::default(), &p, now, &notices("crm"))
        .await
        .unwrap();
    assert_eq!(out.newly_blocked, [u]);
    let got = outbox(s).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].event, got[0].endpoint.as_str()),
        (EventKind::UserLimited, "crm")
    );
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["subject"], u.to_string());
    assert_eq!(body["data"]["used"], 1000, "the user as the page wrote it");
    assert_eq!(body["data"]["blocked"], "Limited");
}

pub async fn a_refused_limit_event_undoes_its_usage_page(s: &dyn Storage) {
    let n = running_node(s, "http://10.9.1.2:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    plan(s, u, limit(1000), now).await;
    let p = page("j", vec![batch(1, now, &[(u, 600, 400)])]);
    let r = s
        .ingest_usage_notifying(n.id, &UsageCursor::default(), &p, now, &notices(""))
        .await;
    assert_refused(r);
    assert_eq!(used(s, u).await, (0, 0), "no byte counted");
    assert_eq!(s.get_user(u).await.unwrap().blocked, None);
    assert_eq!(
        s.get_node(n.id).await.unwrap().usage_cursor,
        UsageCursor::default()
    );
    assert_eq!(s.undelivered_count().await.unwrap(), 0);
    // The page is still to store, from the same cursor.
    let out = s
        .ingest_usage_notifying(n.id, &UsageCursor::default(), &p, now, &notices("crm"))
        .await
        .unwrap();
    assert!(out.stored);
    assert_eq!(s.undelivered_count().await.unwrap(), 1);
}

pub async fn expiry_and_its_event_commit_together_or_not_at_all(s: &dyn Storage) {
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let expiring = Plan {
        expire_at: Some(Timestamp(now.0 + 1000)),
        ..Plan::default()
    };
    plan(s, u, expiring, now).await;
    let later = Timestamp(now.0 + 2000);
    assert_refused(s.enforce_time_notifying(later, &notices("")).await);
    assert_eq!(s.get_user(u).await.unwrap().blocked, None, "not expired");
    assert_eq!(s.undelivered_count().await.unwrap(), 0);
    let out = s
        .enforce_time_notifying(later, &notices("crm"))
        .await
        .unwrap();
    assert_eq!(out.expired, [u]);
    let got = outbox(s).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].event, EventKind::UserExpired);
    assert_eq!(
        s.get_user(u).await.unwrap().blocked,
        Some(BlockReason::Expired)
    );
}

pub async fn a_plan_edit_writes_its_block_event_with_it(s: &dyn Storage) {
    let n = running_node(s, "http://10.9.1.3:1").await;
    let u = enabled_user(s, "u").await;
    let now = utc(2025, 3, 10, 12);
    let p = page("j", vec![batch(1, now, &[(u, 500, 0)])]);
    s.ingest_usage(n.id, &UsageCursor::default(), &p, now)
        .await
        .unwrap();
    let r = s
        .edit_user_plan_notifying(u, limit(100).into(), now, &notices(""))
        .await;
    assert_refused(r);
    let kept = s.get_user(u).await.unwrap();
    assert_eq!((kept.plan.data_limit, kept.blocked), (None, None));
    let limited = s
        .edit_user_plan_notifying(u, limit(100).into(), now, &notices("crm"))
        .await
        .unwrap();
    assert_eq!(limited.blocked, Some(BlockReason::Limited));
    // No change of block, no event.
    s.edit_user_plan_notifying(u, limit(200).into(), now, &notices("crm"))
        .await
        .unwrap();
    assert_refused(s.reset_user_usage_notifying(u, now, &notices("")).await);
    assert_eq!(used(s, u).await, (500, 0), "the refused reset undone");
    let back = s
        .reset_user_usage_notifying(u, now, &notices("crm"))
        .await
        .unwrap();
    assert_eq!(back.blocked, None);
    let kinds: Vec<EventKind> = outbox(s).await.iter().map(|d| d.event).collect();
    assert_eq!(kinds, [EventKind::UserLimited, EventKind::UserReEnabled]);
}

pub async fn node_writes_and_their_events_commit_together(s: &dyn Storage) {
    let n = node(s, "http://10.9.1.4:1").await;
    let r = s
        .record_observation_notifying(n.id, ActualStatus::Error, &[delivery("down", "")])
        .await;
    assert_refused(r);
    assert_eq!(
        s.get_node(n.id).await.unwrap().actual_status,
        n.actual_status
    );
    s.record_observation_notifying(n.id, ActualStatus::Error, &[delivery("down", "crm")])
        .await
        .unwrap();
    assert_eq!(
        s.get_node(n.id).await.unwrap().actual_status,
        ActualStatus::Error
    );
    let plan = s.begin_start(n.id).await.unwrap();
    let r = s
        .finish_start_notifying(n.id, plan.seq, "{}", &[], &[delivery("resync", "")])
        .await;
    assert_refused(r);
    assert!(
        !s.get_node(n.id).await.unwrap().state_up_to_date,
        "start not recorded"
    );
    s.finish_start_notifying(n.id, plan.seq, "{}", &[], &[delivery("resync", "crm")])
        .await
        .unwrap();
    assert!(s.get_node(n.id).await.unwrap().state_up_to_date);
    let ids: Vec<String> = outbox(s).await.into_iter().map(|d| d.event_id).collect();
    assert_eq!(ids, ["down", "resync"]);
    let unknown = crate::domain::NodeId::random();
    let r = s
        .record_observation_notifying(unknown, ActualStatus::Error, &[delivery("x", "crm")])
        .await;
    assert!(
        matches!(r, Err(StorageError::NotFound(Entity::Node))),
        "{r:?}"
    );
    assert_eq!(
        s.undelivered_count().await.unwrap(),
        2,
        "no event of a failed change"
    );
}

pub async fn token_writes_and_their_events_commit_together(s: &dyn Storage) {
    let t = IssuedToken::issue(
        NewToken::new("ops", Role::Users, None).unwrap(),
        Timestamp(10),
    );
    let r = s
        .create_token_notifying(&t.token, &t.verifier, &[delivery("made", "")])
        .await;
    assert_refused(r);
    assert!(matches!(
        s.get_token(t.token.id).await,
        Err(StorageError::NotFound(Entity::Token))
    ));
    s.create_token_notifying(&t.token, &t.verifier, &[delivery("made", "crm")])
        .await
        .unwrap();
    let taken = s
        .create_token_notifying(&t.token, &t.verifier, &[delivery("made-again", "crm")])
        .await;
    assert!(
        matches!(taken, Err(StorageError::AlreadyExists(_))),
        "{taken:?}"
    );
    let r = s
        .revoke_token_notifying(t.token.id, Timestamp(20), &[delivery("gone", "")])
        .await;
    assert_refused(r);
    assert_eq!(s.get_token(t.token.id).await.unwrap().0.revoked, None);
    let revoked = s
        .revoke_token_notifying(t.token.id, Timestamp(20), &[delivery("gone", "crm")])
        .await
        .unwrap();
    assert_eq!(revoked.revoked, Some(Timestamp(20)));
    // Revoked already: the call answers the token and writes no event.
    let again = s
        .revoke_token_notifying(t.token.id, Timestamp(30), &[delivery("gone-again", "crm")])
        .await
        .unwrap();
    assert_eq!(again.revoked, Some(Timestamp(20)));
    let ids: Vec<String> = outbox(s).await.into_iter().map(|d| d.event_id).collect();
    assert_eq!(ids, ["made", "gone"]);
}
