//! The webhook outbox part of the `Storage` conformance suite: enqueueing
//! (once per event and endpoint), claiming with a lease, marking delivered,
//! retry scheduling, lease expiry and pruning.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::domain::{EventKind, NewDelivery, Timestamp, WebhookEvent};
use crate::storage::Storage;

const LEASE: Duration = Duration::from_secs(30);

fn delivery(n: u32, endpoint: &str, created: i64) -> NewDelivery {
    let mut event = WebhookEvent::with_id(
        format!("event-{n}"),
        EventKind::NodeDown,
        format!("node-{n}"),
        json!({ "n": n }),
    );
    event.at = Timestamp(created);
    event.delivery_to(endpoint)
}

pub async fn outbox_enqueues_each_event_and_endpoint_once(s: &dyn Storage) {
    let a = delivery(1, "crm", 100);
    let b = delivery(1, "pager", 100);
    s.enqueue_deliveries(&[a.clone(), b.clone()]).await.unwrap();
    s.enqueue_deliveries(std::slice::from_ref(&a))
        .await
        .unwrap();
    assert_eq!(s.undelivered_count().await.unwrap(), 2);
    let got = s
        .claim_deliveries("r1", Timestamp(100), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].id < got[1].id, "oldest first");
    assert_eq!(
        (got[0].endpoint.as_str(), got[0].body.as_str()),
        ("crm", a.body.as_str())
    );
    assert_eq!(got[0].event_id, got[1].event_id, "one event, two endpoints");
    assert_eq!((got[0].event, got[0].attempts), (EventKind::NodeDown, 0));
    assert_eq!(got[0].created, Timestamp(100));
}

pub async fn outbox_claims_are_exclusive_until_the_lease_expires(s: &dyn Storage) {
    let all: Vec<_> = (0..5).map(|n| delivery(n, "crm", 100)).collect();
    s.enqueue_deliveries(&all).await.unwrap();
    let mine = s
        .claim_deliveries("r1", Timestamp(100), LEASE, 3)
        .await
        .unwrap();
    assert_eq!(mine.len(), 3, "the limit holds");
    let theirs = s
        .claim_deliveries("r2", Timestamp(101), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 2, "only the unclaimed ones: {theirs:?}");
    let ids: HashSet<i64> = mine.iter().chain(&theirs).map(|d| d.id).collect();
    assert_eq!(ids.len(), 5, "no delivery held twice");
    let again = s
        .claim_deliveries("r3", Timestamp(100 + 29_999), LEASE, 10)
        .await
        .unwrap();
    assert!(again.is_empty(), "leases still run: {again:?}");
    let expired = s
        .claim_deliveries("r3", Timestamp(100 + 30_000), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(expired.len(), 3, "r1's leases expired, r2's did not");
    assert!(expired.iter().all(|d| mine.iter().any(|m| m.id == d.id)));
}

pub async fn outbox_delivered_entries_are_never_claimed_again(s: &dyn Storage) {
    s.enqueue_deliveries(&[delivery(1, "crm", 100), delivery(2, "crm", 100)])
        .await
        .unwrap();
    let got = s
        .claim_deliveries("r1", Timestamp(100), LEASE, 10)
        .await
        .unwrap();
    assert!(s.mark_delivered(got[0].id, Timestamp(150)).await.unwrap());
    assert!(
        !s.mark_delivered(got[0].id, Timestamp(160)).await.unwrap(),
        "marking twice changes nothing"
    );
    assert!(!s.mark_delivered(i64::MAX, Timestamp(160)).await.unwrap());
    assert_eq!(s.undelivered_count().await.unwrap(), 1);
    let later = s
        .claim_deliveries("r2", Timestamp(1_000_000), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|d| d.id).collect::<Vec<_>>(),
        [got[1].id],
        "only the undelivered one, once its lease expired"
    );
}

pub async fn outbox_retries_wait_for_their_time_and_count_attempts(s: &dyn Storage) {
    s.enqueue_deliveries(&[delivery(1, "crm", 100)])
        .await
        .unwrap();
    let d = s
        .claim_deliveries("r1", Timestamp(100), LEASE, 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        !s.schedule_retry(d.id, "r2", Timestamp(5_000), "no lease")
            .await
            .unwrap(),
        "only the lease holder schedules"
    );
    assert!(
        s.schedule_retry(d.id, "r1", Timestamp(5_000), "HTTP 503")
            .await
            .unwrap()
    );
    let early = s
        .claim_deliveries("r2", Timestamp(4_999), LEASE, 10)
        .await
        .unwrap();
    assert!(early.is_empty(), "not before next_at: {early:?}");
    let due = s
        .claim_deliveries("r2", Timestamp(5_000), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].attempts, due[0].next_at), (1, Timestamp(5_000)));
    assert_eq!(due[0].body, d.body, "a retry carries the same bytes");
    assert!(
        s.schedule_retry(due[0].id, "r2", Timestamp(9_000), "timeout")
            .await
            .unwrap()
    );
    let third = s
        .claim_deliveries("r1", Timestamp(9_000), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(third[0].attempts, 2);
}

pub async fn outbox_prune_drops_only_old_delivered_entries(s: &dyn Storage) {
    let all: Vec<_> = (0..3).map(|n| delivery(n, "crm", 100)).collect();
    s.enqueue_deliveries(&all).await.unwrap();
    let got = s
        .claim_deliveries("r1", Timestamp(100), LEASE, 10)
        .await
        .unwrap();
    s.mark_delivered(got[0].id, Timestamp(200)).await.unwrap();
    s.mark_delivered(got[1].id, Timestamp(400)).await.unwrap();
    assert_eq!(s.prune_deliveries(Timestamp(300)).await.unwrap(), 1);
    assert_eq!(s.prune_deliveries(Timestamp(300)).await.unwrap(), 0);
    assert_eq!(s.undelivered_count().await.unwrap(), 1);
    assert_eq!(s.prune_deliveries(Timestamp(i64::MAX)).await.unwrap(), 1);
    assert_eq!(
        s.undelivered_count().await.unwrap(),
        1,
        "undelivered entries stay whatever their age"
    );
}

pub async fn concurrent_claims_never_share_a_delivery(s: &dyn Storage) {
    let all: Vec<_> = (0..40).map(|n| delivery(n, "crm", 100)).collect();
    s.enqueue_deliveries(&all).await.unwrap();
    let claims = (0..4).map(|r| {
        let owner = format!("r{r}");
        async move {
            s.claim_deliveries(&owner, Timestamp(100), LEASE, 15)
                .await
                .unwrap()
        }
    });
    let got = futures::future::join_all(claims).await;
    let ids: Vec<i64> = got.iter().flatten().map(|d| d.id).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a delivery held by two replicas");
    assert_eq!(unique.len(), 40);
}
