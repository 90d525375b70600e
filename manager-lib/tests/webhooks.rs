//! Signed webhooks end to end, on a simulated fleet and a real HTTP
//! receiver (axum on 127.0.0.1:0): a receiver that is down for a while gets
//! every event once it is back, each signature verifies, every attempt of
//! an event carries the same id and bytes (so a replay is recognised), the
//! outbox outlives the worker that claimed it, and two workers never
//! deliver the same event at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use manager_lib::domain::{
    EventKind, FieldEdit, NewToken, NewUser, Plan, PlanEdit, ResetEdit, ResetStrategy, Role,
    Timestamp, UserStatus, WebhookEvent,
};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::settings::Secret;
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::webhook::signature::{
    ATTEMPT_HEADER, EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify,
};
use manager_lib::webhook::{Deliverer, DeliverySettings, Endpoint, Routes};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-0123456789abcdefghij";
const NODE: &str = "http://hooked-node.test:9000";
const DEADLINE: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    event_id: String,
    event: String,
    attempt: u32,
    timestamp: String,
    signature: String,
    body: Bytes,
    /// Whether the receiver was up (answered 2xx).
    accepted: bool,
    /// Whether its id was one the receiver had already accepted.
    duplicate: bool,
}

#[derive(Debug, Default)]
struct Receiver {
    up: AtomicBool,
    hits: Mutex<Vec<Hit>>,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.accepted).collect()
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let up = rx.up.load(Ordering::SeqCst);
    let mut hits = rx.hits.lock().unwrap();
    let event_id = header(&headers, EVENT_ID_HEADER);
    let duplicate = hits.iter().any(|h| h.accepted && h.event_id == event_id);
    hits.push(Hit {
        event_id,
        event: header(&headers, EVENT_HEADER),
        attempt: header(&headers, ATTEMPT_HEADER).parse().unwrap_or(u32::MAX),
        timestamp: header(&headers, TIMESTAMP_HEADER),
        signature: header(&headers, SIGNATURE_HEADER),
        body,
        accepted: up,
        duplicate,
    });
    if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// A receiver on 127.0.0.1:0, down (503) until `up` is set.
async fn receiver() -> (Arc<Receiver>, url::Url) {
    let rx = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (rx, url.parse().unwrap())
}

fn endpoint(url: &url::Url) -> Endpoint {
    Endpoint {
        name: "crm".into(),
        url: url.clone(),
        secret: Secret::new(SECRET),
        events: HashSet::new(),
    }
}

fn fast(owner: &str) -> DeliverySettings {
    DeliverySettings {
        owner: owner.into(),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        poll: Duration::from_millis(10),
        lease: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..DeliverySettings::default()
    }
}

fn manager(storage: Arc<dyn Storage>, fleet: Arc<SimulatedFleet>, url: &url::Url) -> Manager {
    let settings = ManagerSettings {
        webhooks: Routes::of(&[endpoint(url)]),
        ..ManagerSettings::default()
    };
    Manager::new(storage, fleet, settings)
}

fn start(storage: &Arc<dyn Storage>, url: &url::Url, owner: &str) -> CancellationToken {
    let stop = CancellationToken::new();
    let deliverer = Arc::new(Deliverer::new(
        storage.clone(),
        vec![endpoint(url)],
        fast(owner),
    ));
    tokio::spawn(deliverer.run(stop.clone()));
    stop
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_until_delivered(storage: &Arc<dyn Storage>) {
    let start = Instant::now();
    while storage.undelivered_count().await.unwrap() > 0 {
        assert!(start.elapsed() < DEADLINE, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now_secs() -> i64 {
    Timestamp::now().0 / 1000
}

fn assert_signed(hit: &Hit) {
    verify(
        SECRET.as_bytes(),
        &hit.timestamp,
        &hit.body,
        &hit.signature,
        now_secs(),
        300,
    )
    .unwrap_or_else(|e| panic!("{} attempt {}: {e}", hit.event, hit.attempt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_event_once_it_is_back() {
    let (rx, url) = receiver().await;
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let fleet = Arc::new(SimulatedFleet::new());
    fleet.add_node(NODE);
    let m = manager(storage.clone(), fleet.clone(), &url);
    let node = m.new_node(NODE).await.unwrap();
    m.start_node(node.id).await.unwrap();
    let mut new = NewUser::new("alice").unwrap();
    new.plan = Plan {
        data_limit: Some(100),
        ..Plan::default()
    };
    let user = storage.create_user(new).await.unwrap();
    storage
        .set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    let beat = || async {
        m.heartbeat_step(vec![storage.get_node(node.id).await.unwrap()], |_, _, _| {})
            .await
    };
    beat().await;
    let stop = start(&storage, &url, "replica-1");

    // Events while the receiver is down.
    let token = m
        .create_token(NewToken::new("ops", Role::Admin, None).unwrap())
        .await
        .unwrap();
    m.revoke_token(token.token.id).await.unwrap();
    m.revoke_token(token.token.id).await.unwrap(); // not news again
    fleet.set_unreachable(NODE, true);
    beat().await;
    beat().await; // still down: not news again
    fleet.set_unreachable(NODE, false);
    beat().await;
    fleet.record_usage(NODE, &[(user.id, 60, 60)]);
    beat().await;
    let expected: BTreeSet<&str> = [
        "token.created",
        "token.revoked",
        "node.down",
        "node.recovered",
        "user.limited",
    ]
    .into();

    wait_for("every event refused at least twice", || {
        let hits = rx.hits();
        expected
            .iter()
            .all(|e| hits.iter().filter(|h| h.event == *e).count() >= 2)
    })
    .await;
    let seen: Vec<String> = rx
        .hits()
        .into_iter()
        .filter(|h| h.attempt == 0)
        .map(|h| h.event)
        .collect();
    assert_eq!(storage.undelivered_count().await.unwrap(), 5, "{seen:?}");
    rx.up.store(true, Ordering::SeqCst);
    wait_until_delivered(&storage).await;
    stop.cancel();

    let accepted = rx.accepted();
    let kinds: BTreeSet<&str> = accepted.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(kinds, expected);
    assert_eq!(accepted.len(), 5, "each event accepted once: {accepted:?}");
    assert!(accepted.iter().all(|h| !h.duplicate));
    // Every attempt of an event: same id, same bytes, signed, counted.
    let mut by_id: BTreeMap<String, Vec<Hit>> = BTreeMap::new();
    for hit in rx.hits() {
        assert_signed(&hit);
        by_id.entry(hit.event_id.clone()).or_default().push(hit);
    }
    assert_eq!(by_id.len(), 5);
    for (id, hits) in &by_id {
        assert!(
            hits.iter().all(|h| h.body == hits[0].body),
            "{id}: bytes changed"
        );
        let attempts: Vec<u32> = hits.iter().map(|h| h.attempt).collect();
        assert_eq!(attempts, (0..hits.len() as u32).collect::<Vec<_>>(), "{id}");
        let event: WebhookEvent = serde_json::from_slice(&hits[0].body).unwrap();
        assert_eq!(&event.id, id, "the body names the event's id too");
        assert_eq!(event.event.as_str(), hits[0].event);
    }
    let limited = accepted.iter().find(|h| h.event == "user.limited").unwrap();
    let event: WebhookEvent = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!(event.subject, user.id.to_string());
    assert_eq!(event.data["name"], "alice");
    assert_eq!(event.data["blocked"], "Limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_recognised_by_its_id() {
    let (rx, url) = receiver().await;
    rx.up.store(true, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let m = manager(storage.clone(), Arc::new(SimulatedFleet::new()), &url);
    let stop = start(&storage, &url, "replica-1");
    m.create_token(NewToken::new("ci", Role::ReadOnly, None).unwrap())
        .await
        .unwrap();
    wait_for("the delivery", || rx.accepted().len() == 1).await;
    stop.cancel();
    // Someone who captured the request sends it again, byte for byte.
    let first = rx.accepted().remove(0);
    assert_signed(&first);
    let answer = reqwest::Client::new()
        .post(url.clone())
        .header(EVENT_ID_HEADER, &first.event_id)
        .header(EVENT_HEADER, &first.event)
        .header(TIMESTAMP_HEADER, &first.timestamp)
        .header(SIGNATURE_HEADER, &first.signature)
        .header(ATTEMPT_HEADER, "0")
        .body(first.body.clone())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let replay = rx.hits().pop().unwrap();
    assert_signed(&replay);
    assert!(replay.duplicate, "the id tells the replay from a new event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_outlives_a_worker_that_died_holding_it() {
    let (rx, url) = receiver().await;
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let m = manager(storage.clone(), Arc::new(SimulatedFleet::new()), &url);
    for n in 0..3 {
        m.create_token(NewToken::new(&format!("t{n}"), Role::Users, None).unwrap())
            .await
            .unwrap();
    }
    // A replica claims them and dies before posting anything.
    let lease = Duration::from_millis(300);
    let claimed = storage
        .claim_deliveries("dead-replica", Timestamp::now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    rx.up.store(true, Ordering::SeqCst);
    let claimed_at = Instant::now();
    let stop = start(&storage, &url, "replica-2");
    wait_until_delivered(&storage).await;
    stop.cancel();
    assert!(
        claimed_at.elapsed() >= lease,
        "delivered only once the dead replica's lease ran out"
    );
    let ids: BTreeSet<String> = rx.accepted().into_iter().map(|h| h.event_id).collect();
    let want: BTreeSet<String> = claimed.into_iter().map(|d| d.event_id).collect();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_deliver_the_same_event_twice() {
    let (rx, url) = receiver().await;
    rx.up.store(true, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let m = manager(storage.clone(), Arc::new(SimulatedFleet::new()), &url);
    for n in 0..30 {
        m.create_token(NewToken::new(&format!("t{n}"), Role::Users, None).unwrap())
            .await
            .unwrap();
    }
    let a = start(&storage, &url, "replica-a");
    let b = start(&storage, &url, "replica-b");
    wait_until_delivered(&storage).await;
    a.cancel();
    b.cancel();
    let accepted = rx.accepted();
    assert_eq!(accepted.len(), 30, "each once: {} posts", accepted.len());
    assert!(accepted.iter().all(|h| !h.duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_user_is_announced_once_per_expiry() {
    let (rx, url) = receiver().await;
    rx.up.store(true, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let m = manager(storage.clone(), Arc::new(SimulatedFleet::new()), &url);
    let day = 24 * 3600 * 1000;
    let mut users = Vec::new();
    for (name, days) in [("soon", 1), ("later", 10)] {
        let mut new = NewUser::new(name).unwrap();
        new.plan = Plan {
            expire_at: Some(Timestamp(Timestamp::now().0 + days * day)),
            ..Plan::default()
        };
        let user = storage.create_user(new).await.unwrap();
        storage
            .set_user_status(user.id, UserStatus::Enabled)
            .await
            .unwrap();
        users.push(user);
    }
    assert_eq!(m.notice_expiring_users().await.unwrap(), 1);
    assert_eq!(
        m.notice_expiring_users().await.unwrap(),
        1,
        "noticed again…"
    );
    let stop = start(&storage, &url, "replica-1");
    wait_until_delivered(&storage).await;
    stop.cancel();
    let accepted = rx.accepted();
    assert_eq!(accepted.len(), 1, "…but enqueued once: {accepted:?}");
    assert_eq!(accepted[0].event, EventKind::UserExpiring.as_str());
    let event: WebhookEvent = serde_json::from_slice(&accepted[0].body).unwrap();
    assert_eq!(event.subject, users[0].id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gets_only_the_events_its_filter_lists() {
    let (rx, url) = receiver().await;
    rx.up.store(true, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let mut tokens_only = endpoint(&url);
    tokens_only.events = [EventKind::TokenRevoked].into();
    let settings = ManagerSettings {
        webhooks: Routes::of(std::slice::from_ref(&tokens_only)),
        ..ManagerSettings::default()
    };
    let m = Manager::new(storage.clone(), Arc::new(SimulatedFleet::new()), settings);
    let token = m
        .create_token(NewToken::new("x", Role::Users, None).unwrap())
        .await
        .unwrap();
    m.revoke_token(token.token.id).await.unwrap();
    assert_eq!(storage.undelivered_count().await.unwrap(), 1);
    let stop = CancellationToken::new();
    tokio::spawn(
        Arc::new(Deliverer::new(
            storage.clone(),
            vec![tokens_only],
            fast("r"),
        ))
        .run(stop.clone()),
    );
    wait_until_delivered(&storage).await;
    stop.cancel();
    let kinds: Vec<String> = rx.accepted().into_iter().map(|h| h.event).collect();
    assert_eq!(kinds, ["token.revoked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_that_lifts_a_limit_and_a_resync_are_announced() {
    let (rx, url) = receiver().await;
    rx.up.store(true, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let fleet = Arc::new(SimulatedFleet::new());
    fleet.add_node(NODE);
    let m = manager(storage.clone(), fleet.clone(), &url);
    let node = m.new_node(NODE).await.unwrap();
    m.start_node(node.id).await.unwrap();
    let user = storage
        .create_user(NewUser::new("bea").unwrap())
        .await
        .unwrap();
    storage
        .set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    let limit = PlanEdit {
        data_limit: FieldEdit::Set(100),
        ..PlanEdit::default()
    };
    m.edit_user_plan(user.id, limit).await.unwrap();
    let beat = || async {
        m.heartbeat_step(vec![storage.get_node(node.id).await.unwrap()], |_, _, _| {})
            .await
    };
    beat().await;
    fleet.record_usage(NODE, &[(user.id, 60, 60)]);
    beat().await;
    assert!(storage.get_user(user.id).await.unwrap().blocked.is_some());
    // A daily reset, set as of two days ago: its first reset is due now.
    let two_days_ago = Timestamp(Timestamp::now().0 - 2 * 24 * 3600 * 1000);
    let daily = PlanEdit {
        reset: ResetEdit::Set(ResetStrategy::Day),
        ..PlanEdit::default()
    };
    storage
        .edit_user_plan(user.id, daily, two_days_ago)
        .await
        .unwrap();

    let outcome = m.enforce_plans().await.unwrap();
    assert_eq!(outcome.unblocked, [user.id]);
    assert!(m.enforce_plans().await.unwrap().unblocked.is_empty());
    beat().await; // the user goes back on the node
    assert!(fleet.users(NODE).contains(&user.id));
    // The core loses its users: the next beat sends them all again.
    fleet.crash_core(NODE);
    beat().await;
    assert!(fleet.users(NODE).contains(&user.id));

    let stop = start(&storage, &url, "replica-1");
    wait_until_delivered(&storage).await;
    stop.cancel();
    let events: Vec<(String, WebhookEvent)> = rx
        .accepted()
        .into_iter()
        .map(|h| (h.event.clone(), serde_json::from_slice(&h.body).unwrap()))
        .collect();
    let of = |kind: &str| -> Vec<&WebhookEvent> {
        events
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, e)| e)
            .collect()
    };
    let [limited] = of("user.limited")[..] else {
        panic!("one user.limited: {events:?}");
    };
    assert_eq!(limited.subject, user.id.to_string());
    let [back] = of("user.re_enabled")[..] else {
        panic!("one user.re_enabled: {events:?}");
    };
    assert_eq!(back.subject, user.id.to_string());
    assert_eq!(back.data["name"], "bea");
    assert!(back.data["blocked"].is_null(), "{}", back.data);
    let [resynced] = of("node.resynced")[..] else {
        panic!("one node.resynced: {events:?}");
    };
    assert_eq!(resynced.subject, node.id.to_string());
}
