//! `POST /usage` through the real router and [`NodeClient`]: the journal's
//! batches after the manager's cursor, confirmation, another journal, and
//! the error table (journal I/O → 500 `internal server error`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use node_agent_lib::config::CoreConfig;
use node_agent_lib::core::{Flavor, MockCoreApi};
use node_agent_lib::envelope::NodeKey;
use node_agent_lib::service::MockServiceControl;
use node_agent_lib::usage::{Journal, Usage};
use node_agent_lib::wire::{JournalMark, StatusResponse, UsageRequest, UserUsage};
use node_agent_lib::{Agent, AppState, ClientError, NodeClient, router};
use serde_json::json;

const A: &str = "0b5e8f1c-5a7e-4c2b-9d3f-00000000000a";

struct Served {
    client: NodeClient,
    usage: Arc<Usage>,
    /// The same agent's router and key, for raw sealed calls.
    node: TestNode,
}

/// An agent with a journal in a temp dir, whose core answers `reads` in turn
/// to `take_user_traffic`, served on 127.0.0.1.
async fn served(reads: Vec<Vec<(String, u64, u64)>>) -> Served {
    let mut core = MockCoreApi::new();
    let mut reads = reads.into_iter();
    core.expect_take_user_traffic()
        .returning(move || Ok(reads.next().unwrap_or_default()));
    let core = Arc::new(core);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("state"), 720).unwrap();
    let usage = Arc::new(Usage::new(core.clone(), journal));
    let (config, _) = CoreConfig::parse(&base_config(9), Flavor::Xray, "").unwrap();
    let agent = Arc::new(
        Agent::new(
            Arc::new(MockServiceControl::new()),
            core,
            config,
            options(&dir),
        )
        .with_usage(usage.clone()),
    );
    let key = NodeKey::random();
    let app = router(Arc::new(AppState::new(agent.clone(), key.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served_app = app.clone();
    tokio::spawn(async move { axum::serve(listener, served_app).await });
    let client = NodeClient::new(&endpoint, key.clone(), Duration::from_secs(10)).unwrap();
    Served {
        client,
        usage,
        node: TestNode {
            router: app,
            agent,
            key,
            dir,
        },
    }
}

fn read(up: u64, down: u64) -> Vec<(String, u64, u64)> {
    vec![(A.to_owned(), up, down)]
}

#[tokio::test]
async fn a_pull_answers_the_batches_and_a_repeated_pull_the_same() {
    let s = served(vec![read(10, 20), read(1, 2)]).await;
    assert_eq!(s.usage.collect().await.unwrap(), Some(1));
    assert_eq!(s.usage.collect().await.unwrap(), Some(2));

    let first = s.client.usage(&UsageRequest::default()).await.unwrap();
    assert_eq!(first.journal, s.usage.journal_id());
    assert_eq!(
        first.batches.iter().map(|b| b.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        first.batches[0].users,
        vec![UserUsage {
            id: A.into(),
            up: 10,
            down: 20
        }]
    );
    assert!(!first.more);
    let again = s.client.usage(&UsageRequest::default()).await.unwrap();
    assert_eq!(again, first);
}

#[tokio::test]
async fn naming_the_journal_answers_after_the_cursor_and_confirms_it() {
    let s = served(vec![read(10, 20), read(1, 2), read(5, 5)]).await;
    for _ in 0..3 {
        s.usage.collect().await.unwrap();
    }
    let journal = Some(s.usage.journal_id());
    let page = s
        .client
        .usage(&UsageRequest {
            journal: journal.clone(),
            after: 1,
            max_batches: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(page.batches.len(), 1);
    assert_eq!(page.batches[0].seq, 2);
    assert!(page.more);
    let done = s
        .client
        .usage(&UsageRequest {
            journal: journal.clone(),
            after: 3,
            max_batches: None,
        })
        .await
        .unwrap();
    assert!(done.batches.is_empty());
    assert!(!done.more);
    // Confirmed up to 3: even a pull from the start finds nothing now.
    let fresh = s.client.usage(&UsageRequest::default()).await.unwrap();
    assert!(fresh.batches.is_empty());
}

#[tokio::test]
async fn another_journal_answers_from_the_first_batch() {
    let s = served(vec![read(10, 20)]).await;
    s.usage.collect().await.unwrap();
    let page = s
        .client
        .usage(&UsageRequest {
            journal: Some("a-wiped-node".into()),
            after: 7,
            max_batches: None,
        })
        .await
        .unwrap();
    assert_eq!(page.batches.len(), 1);
    assert_eq!(page.batches[0].first_seq, 1);
}

#[tokio::test]
async fn snake_case_and_camel_case_requests_are_both_accepted() {
    let s = served(vec![read(1, 1), read(1, 1)]).await;
    s.usage.collect().await.unwrap();
    s.usage.collect().await.unwrap();
    for body in [json!({"max_batches": 1}), json!({"maxBatches": 1})] {
        let answer = call(&s.node, "POST", "/usage", &body).await;
        assert_eq!(answer.status, 200);
        let json = answer.json.unwrap();
        assert_eq!(json["batches"].as_array().unwrap().len(), 1);
        assert_eq!(json["batches"][0]["firstSeq"], 1);
        assert_eq!(json["more"], true);
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_usage_request_is_bad_request() {
    let s = served(vec![]).await;
    let answer = call(&s.node, "POST", "/usage", &json!({"after": "yesterday"})).await;
    assert_error(&answer, 400, "bad request");
}

#[tokio::test]
async fn a_journal_that_cannot_be_read_is_internal_server_error() {
    let s = served(vec![read(10, 20)]).await;
    s.usage.collect().await.unwrap();
    // The file is cut behind the agent's back: the batch it indexed is gone.
    let path = s.node.dir.path().join("state").join("usage.journal");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    match s.client.usage(&UsageRequest::default()).await {
        Err(ClientError::Node { status, body }) => {
            assert_eq!(
                (status, body.error.as_str()),
                (500, "internal server error")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_agent_without_a_journal_answers_internal_server_error() {
    let node = untouchable();
    let answer = call(&node, "POST", "/usage", &json!({})).await;
    assert_error(&answer, 500, "internal server error");
}

/// A node whose service starts and stops at once and whose core counts
/// `(A, 7, 9)` more at every read: what a stop or restart must not lose.
fn counting_node() -> TestNode {
    let mut service = MockServiceControl::new();
    service.expect_restart().returning(|| Ok(()));
    service.expect_stop().returning(|| Ok(()));
    service
        .expect_status()
        .returning(|| Ok(node_agent_lib::ServiceStatus::Running));
    service.expect_instance().returning(|| {
        Ok(Some(node_agent_lib::service::CoreInstance::new(
            "1".to_owned(),
        )))
    });
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs().returning(|| Ok(1));
    core.expect_add_user().returning(|_, _| Ok(()));
    core.expect_take_user_traffic().returning(|| Ok(read(7, 9)));
    node_with_journal(Arc::new(service), Arc::new(core))
}

#[tokio::test]
async fn the_agent_reads_the_counters_before_it_restarts_or_stops_the_core() {
    let node = counting_node();
    let usage = node.agent.usage().unwrap().clone();
    assert_eq!(
        call(&node, "POST", "/start", &json!({"users": []}))
            .await
            .status,
        200
    );
    assert_eq!(
        usage
            .counters()
            .batches_appended
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        call(&node, "POST", "/stop", &serde_json::Value::Null)
            .await
            .status,
        200
    );
    let page = call(&node, "POST", "/usage", &json!({}))
        .await
        .json
        .unwrap();
    let batches = page["batches"].as_array().unwrap();
    assert_eq!(
        batches.len(),
        2,
        "one read before the restart, one before the stop"
    );
    assert!(batches.iter().all(|b| b["users"][0]["down"] == 9));
}

#[tokio::test]
async fn a_page_of_many_users_fits_the_clients_cap() {
    // 20,000 users: ~1.5 MB of JSON, far over the 64 KiB of other answers.
    let many: Vec<(String, u64, u64)> = (0..20_000u128)
        .map(|i| (uuid::Uuid::from_u128(i).to_string(), 1_000_000, 2_000_000))
        .collect();
    let s = served(vec![many]).await;
    s.usage.collect().await.unwrap();
    let page = s.client.usage(&UsageRequest::default()).await.unwrap();
    assert_eq!(page.batches[0].users.len(), 20_000);
}

#[test]
fn a_status_without_the_usage_journal_still_parses_and_none_is_left_out() {
    // What an agent older than `usageJournal` answers.
    let old: StatusResponse =
        serde_json::from_str(r#"{"nodeStatus":"Running","users":3,"coreUptimeSecs":4}"#).unwrap();
    assert_eq!(old.usage_journal, None);
    assert!(
        !serde_json::to_string(&old)
            .unwrap()
            .contains("usageJournal")
    );
    let new: StatusResponse = serde_json::from_value(json!({
        "nodeStatus": "Stopped",
        "usageJournal": {"journal": "j", "seq": 7, "batches": 2}
    }))
    .unwrap();
    assert_eq!(
        new.usage_journal,
        Some(JournalMark {
            journal: "j".into(),
            seq: 7,
            batches: 2
        })
    );
}
