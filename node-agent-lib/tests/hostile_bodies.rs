//! Property test over hostile bodies that arrive correctly sealed (a
//! compromised manager, or one with a bug): random bytes, and JSON shaped
//! like `/start` and `/users/edit` with odd ids, names, secrets, types,
//! duplicates and sizes. The node always answers a documented status with a
//! sealed answer bound to the request and, for errors, a documented error
//! text; it never panics; and a 400 changes nothing (no service or core call,
//! no config written).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use node_agent_lib::core::MockCoreApi;
use node_agent_lib::service::{CoreInstance, MockServiceControl, ServiceStatus};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every error text the node API documents.
const ERROR_TEXTS: &[&str] = &[
    "bad request",
    "unauthorized",
    "xray service initializing",
    "xray service error",
    "xray service status error",
    "xray service unavailable",
    "internal server error",
];

/// A node whose service and core accept everything, counting each call.
fn counting_node(calls: Arc<AtomicUsize>) -> TestNode {
    // Each changing call succeeds and counts.
    fn counted<E>(calls: &Arc<AtomicUsize>) -> impl Fn() -> Result<(), E> + use<E> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
    let mut service = MockServiceControl::new();
    service.expect_restart().returning(counted(&calls));
    service.expect_start().returning(counted(&calls));
    service.expect_stop().returning(counted(&calls));
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Running));
    service
        .expect_instance()
        .returning(|| Ok(Some(CoreInstance::new("1"))));
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs().returning(|| Ok(100));
    core.expect_users_count().returning(|_| Ok(None));
    let add = counted(&calls);
    core.expect_add_user().returning(move |_, _| add());
    let remove = counted(&calls);
    core.expect_remove_user().returning(move |_, _| remove());
    node(Arc::new(service), Arc::new(core))
}

/// Strings a hostile manager could send: empty, blank, control characters,
/// unicode, quotes, valid and nearly valid UUIDs, long ones.
fn odd_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!(" ")),
        Just(json!("\u{0}\u{7}\n\r\t")),
        Just(json!("\"}],\\")),
        Just(json!("ユーザー😀")),
        Just(json!("00000000-0000-0000-0000-000000001001")),
        Just(json!("00000000-0000-0000-0000-00000000100")),
        Just(json!("ZZZZZZZZ-0000-0000-0000-000000001001")),
        "[ -~]{0,40}".prop_map(Value::from),
        (1usize..70_000).prop_map(|n| Value::from("x".repeat(n))),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// A user object with each field odd, missing, or of the wrong type.
fn odd_user() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(odd_string()),
        proptest::option::of(odd_string()),
        proptest::option::of(odd_string()),
        any::<bool>(),
    )
        .prop_map(|(id, name, secret, extra)| {
            let mut user = serde_json::Map::new();
            for (key, value) in [("id", id), ("name", name), ("secret", secret)] {
                if let Some(value) = value {
                    user.insert(key.into(), value);
                }
            }
            if extra {
                user.insert("flow".into(), json!("xtls-rprx-vision"));
            }
            Value::Object(user)
        })
}

fn users() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::collection::vec(odd_user(), 0..6).prop_map(Value::from),
        // The same user twice.
        odd_user().prop_map(|u| json!([u.clone(), u])),
        odd_string(),
    ]
}

/// A body for `path`: JSON of the route's shape with odd contents, JSON of
/// another shape, or bytes that are not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        users().prop_map(|u| serde_json::to_vec(&json!({ "users": u })).unwrap()),
        (users(), proptest::collection::vec(odd_string(), 0..4)).prop_map(|(add, del)| {
            serde_json::to_vec(&json!({"addUsers": add, "delUsers": del})).unwrap()
        }),
        odd_string().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(b"{\"users\": [".to_vec()),
        Just(b"{\"users\": []} trailing".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_sealed_hostile_body_gets_a_documented_answer_and_a_400_changes_nothing(
        path in prop_oneof![Just("/start"), Just("/users/edit"), Just("/stop")],
        started in any::<bool>(),
        body in body(),
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let node = counting_node(calls.clone());
        let rt = runtime();
        if started {
            // A running core with users, so edits reach the core.
            let first = rt.block_on(call(&node, "POST", "/start", &json!({"users": [user(1), user(2)]})));
            prop_assert_eq!(first.status.as_u16(), 200);
        }
        let config_before = std::fs::read(node.generated()).ok();
        let calls_before = calls.load(Ordering::SeqCst);
        // `call_raw` opens the sealed answer and checks it is bound to this
        // request and status (it panics otherwise).
        let answer = rt.block_on(call_raw(&node, "POST", path, &body));
        let status = answer.status.as_u16();
        prop_assert!([200, 400, 500, 503].contains(&status), "undocumented {}", status);
        if status != 200 {
            let error = answer.json.as_ref().and_then(|j| j["error"].as_str()).unwrap_or("");
            prop_assert!(ERROR_TEXTS.contains(&error), "undocumented error {:?}", answer.json);
            prop_assert!(status != 500, "a 500 with healthy mocks: {:?}", answer.json);
        }
        if status == 400 {
            prop_assert_eq!(calls.load(Ordering::SeqCst), calls_before, "a 400 called the service or core");
            prop_assert_eq!(std::fs::read(node.generated()).ok(), config_before, "a 400 wrote the config");
        }
    }
}
