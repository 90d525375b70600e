//! The `NodeTransport` conformance suite: one `pub async fn` per behaviour
//! of the contract (the trait's and the node API's in SPEC.md), each taking
//! a [`FleetFixture`]: the transport, and agents it can reach. Every
//! transport expands them into named tests with
//! [`transport_conformance_tests!`](crate::transport_conformance_tests):
//!
//! ```ignore
//! // `fresh()` gives a new fleet as some `F: FleetFixture`.
//! manager_lib::transport_conformance_tests!(fresh().await);
//! ```

use std::time::Duration;

use async_trait::async_trait;

use super::{NodeReport, NodeTransport, TransportError};
use crate::domain::{Node, NodeKey, UserCredentials, UserId, UserSecret};

/// A transport under test and the agents it talks to.
#[async_trait]
pub trait FleetFixture: Send + Sync {
    /// Its timeout must be well under the suite's patience (20 s).
    fn transport(&self) -> &dyn NodeTransport;

    /// A new node whose agent is up, holds `node.key`, and has never been
    /// started (its core is stopped).
    async fn node(&self) -> Node;

    /// The node's agent goes away: nothing answers at its endpoint any more.
    async fn make_unreachable(&self, node: &Node);

    /// The node's agent takes calls but never answers them.
    async fn make_silent(&self, node: &Node);
}

/// Expands into one `#[tokio::test]` per behaviour of the suite, each with a
/// fresh fleet from `$fresh` (an expression, awaited inside the test if it
/// needs to be, giving a value `F: FleetFixture` that lives until the test
/// ends).
#[macro_export]
macro_rules! transport_conformance_tests {
    ($fresh:expr) => {
        $crate::transport_conformance_tests!(@each $fresh;
            a_new_node_is_stopped_with_no_users,
            start_runs_the_core_with_exactly_the_users,
            start_answers_the_nodes_template,
            start_again_replaces_the_users,
            start_with_no_users_runs_an_empty_core,
            edit_adds_and_removes_users,
            adding_a_present_user_or_removing_a_missing_one_succeeds,
            edits_at_once_all_land,
            stop_stops_the_core_and_drops_its_users,
            stopping_a_stopped_node_succeeds,
            a_stopped_core_refuses_edits_with_the_nodes_error,
            nodes_are_independent,
            a_node_that_went_away_is_unreachable,
            a_node_that_does_not_answer_is_unreachable_in_time,
            a_node_holding_another_key_is_a_key_mismatch,
        );
    };
    (@each $fresh:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fresh;
                $crate::transport::conformance::$name(&fixture).await;
            }
        )+
    };
}

/// How long a call may take before the suite calls it unbounded.
const PATIENCE: Duration = Duration::from_secs(20);

fn users(n: usize) -> Vec<UserCredentials> {
    (0..n)
        .map(|i| UserCredentials {
            id: UserId::random(),
            name: format!("user {i} ✓"),
            secret: UserSecret::random(),
        })
        .collect()
}

fn ids(users: &[UserCredentials]) -> Vec<UserId> {
    users.iter().map(|u| u.id).collect()
}

async fn status(f: &dyn FleetFixture, node: &Node) -> NodeReport {
    f.transport().status(node).await.expect("status")
}

/// Asserts what the node's `/status` says: running or not, how many users.
async fn assert_node(f: &dyn FleetFixture, node: &Node, running: bool, count: u64) {
    let report = status(f, node).await;
    assert_eq!(
        (report.running, report.users),
        (running, count),
        "(running, users) of {report:?}"
    );
}

/// Every call of the transport to `node`, each with its outcome.
async fn every_call(f: &dyn FleetFixture, node: &Node) -> Vec<(&'static str, TransportError)> {
    let t = f.transport();
    let one = users(1);
    let outcomes = [
        ("start", t.start(node, &one).await.map(drop)),
        ("edit_users", t.edit_users(node, &one, &[]).await),
        ("status", t.status(node).await.map(drop)),
        ("stop", t.stop(node).await),
    ];
    outcomes
        .into_iter()
        .map(|(call, outcome)| match outcome {
            Ok(()) => panic!("{call} succeeded"),
            Err(e) => (call, e),
        })
        .collect()
}

pub async fn a_new_node_is_stopped_with_no_users(f: &dyn FleetFixture) {
    let node = f.node().await;
    assert_node(f, &node, false, 0).await;
}

pub async fn start_runs_the_core_with_exactly_the_users(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().start(&node, &users(3)).await.unwrap();
    assert_node(f, &node, true, 3).await;
}

pub async fn start_answers_the_nodes_template(f: &dyn FleetFixture) {
    let node = f.node().await;
    let first = f.transport().start(&node, &users(1)).await.unwrap();
    assert!(
        first.contains("{{.UserID}}") || first.contains("{{.UserName}}"),
        "a template names the user it is filled for: {first:?}"
    );
    let again = f.transport().start(&node, &users(2)).await.unwrap();
    assert_eq!(again, first, "the template is the node's, not the call's");
}

pub async fn start_again_replaces_the_users(f: &dyn FleetFixture) {
    let node = f.node().await;
    let first = users(3);
    f.transport().start(&node, &first).await.unwrap();
    // The same start again is harmless.
    f.transport().start(&node, &first).await.unwrap();
    assert_node(f, &node, true, 3).await;
    f.transport().start(&node, &users(1)).await.unwrap();
    assert_node(f, &node, true, 1).await;
    // The first users are gone: removing them changes nothing.
    f.transport()
        .edit_users(&node, &[], &ids(&first))
        .await
        .unwrap();
    assert_node(f, &node, true, 1).await;
}

pub async fn start_with_no_users_runs_an_empty_core(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().start(&node, &[]).await.unwrap();
    assert_node(f, &node, true, 0).await;
}

pub async fn edit_adds_and_removes_users(f: &dyn FleetFixture) {
    let node = f.node().await;
    let first = users(2);
    f.transport().start(&node, &first).await.unwrap();
    let added = users(3);
    f.transport()
        .edit_users(&node, &added, &[first[0].id])
        .await
        .unwrap();
    assert_node(f, &node, true, 4).await;
    f.transport()
        .edit_users(&node, &[], &ids(&added))
        .await
        .unwrap();
    assert_node(f, &node, true, 1).await;
}

pub async fn adding_a_present_user_or_removing_a_missing_one_succeeds(f: &dyn FleetFixture) {
    let node = f.node().await;
    let present = users(2);
    f.transport().start(&node, &present).await.unwrap();
    let t = f.transport();
    t.edit_users(&node, &present, &[]).await.unwrap();
    t.edit_users(&node, &[], &[UserId::random()]).await.unwrap();
    // Both in one call, twice.
    for _ in 0..2 {
        t.edit_users(&node, &present[..1], &[UserId::random()])
            .await
            .unwrap();
    }
    assert_node(f, &node, true, 2).await;
}

pub async fn edits_at_once_all_land(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().start(&node, &[]).await.unwrap();
    let each = users(16);
    let edits = each
        .chunks(1)
        .map(|one| f.transport().edit_users(&node, one, &[]));
    for done in futures::future::join_all(edits).await {
        done.unwrap();
    }
    assert_node(f, &node, true, 16).await;
}

pub async fn stop_stops_the_core_and_drops_its_users(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().start(&node, &users(2)).await.unwrap();
    f.transport().stop(&node).await.unwrap();
    assert_node(f, &node, false, 0).await;
    // A start after a stop runs exactly the new users.
    f.transport().start(&node, &users(1)).await.unwrap();
    assert_node(f, &node, true, 1).await;
}

pub async fn stopping_a_stopped_node_succeeds(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().stop(&node).await.unwrap();
    f.transport().stop(&node).await.unwrap();
    assert_node(f, &node, false, 0).await;
}

pub async fn a_stopped_core_refuses_edits_with_the_nodes_error(f: &dyn FleetFixture) {
    // SPEC: `/users/edit` answers 500 `xray service unavailable` when the
    // core's API does not answer, as a stopped core's does not.
    let node = f.node().await;
    let error = f
        .transport()
        .edit_users(&node, &users(1), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            TransportError::Node { status: 500, error, .. } if error == "xray service unavailable"
        ),
        "{error:?}"
    );
    assert_node(f, &node, false, 0).await;
    // The node is not harmed by the refusal.
    f.transport().start(&node, &users(1)).await.unwrap();
    assert_node(f, &node, true, 1).await;
}

pub async fn nodes_are_independent(f: &dyn FleetFixture) {
    let a = f.node().await;
    let b = f.node().await;
    f.transport().start(&a, &users(2)).await.unwrap();
    assert_node(f, &b, false, 0).await;
    f.transport().start(&b, &users(5)).await.unwrap();
    f.transport().stop(&a).await.unwrap();
    assert_node(f, &a, false, 0).await;
    assert_node(f, &b, true, 5).await;
}

pub async fn a_node_that_went_away_is_unreachable(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.transport().start(&node, &users(1)).await.unwrap();
    f.make_unreachable(&node).await;
    for (call, error) in every_call(f, &node).await {
        assert!(
            matches!(error, TransportError::Unreachable(_)),
            "{call}: {error:?}"
        );
    }
}

pub async fn a_node_that_does_not_answer_is_unreachable_in_time(f: &dyn FleetFixture) {
    let node = f.node().await;
    f.make_silent(&node).await;
    let outcomes = tokio::time::timeout(PATIENCE, every_call(f, &node))
        .await
        .expect("every call is bounded by the transport's timeout");
    for (call, error) in outcomes {
        assert!(
            matches!(error, TransportError::Unreachable(_)),
            "{call}: {error:?}"
        );
    }
}

pub async fn a_node_holding_another_key_is_a_key_mismatch(f: &dyn FleetFixture) {
    let node = f.node().await;
    let foreign = Node {
        key: NodeKey::random(),
        ..node.clone()
    };
    for (call, error) in every_call(f, &foreign).await {
        assert!(
            matches!(error, TransportError::KeyMismatch(_)),
            "{call}: {error:?}"
        );
    }
    // The refused calls did nothing.
    assert_node(f, &node, false, 0).await;
}
