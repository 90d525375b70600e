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
use crate::domain::usage::{UsageCursor, UsagePage};
use crate::domain::{Node, NodeKey, NodeUser, UserId, UserSecret};

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

    /// The node's core counts these bytes `(user, up, down)` and its agent
    /// journals them as one batch (all entries are non-zero).
    async fn record_usage(&self, node: &Node, usage: &[(UserId, u64, u64)]);

    /// The node's usage journal is lost (its state wiped): it comes back
    /// with a new journal id and no batches.
    async fn wipe_usage_journal(&self, node: &Node);
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
            a_rotated_node_takes_the_new_key_and_the_old_one_during_the_grace,
            a_rotation_without_grace_refuses_the_old_key_at_once,
            usage_of_a_new_node_is_empty,
            a_pull_answers_the_batches_after_the_cursor,
            a_repeated_pull_answers_the_same,
            a_confirmed_cursor_is_followed_by_newer_batches_only,
            pages_follow_the_cursor_until_nothing_is_left,
            another_journal_is_answered_from_its_first_batch,
            a_wiped_journal_answers_its_new_batches_under_a_new_id,
            the_status_tells_whether_a_pull_would_answer_anything,
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

fn users(n: usize) -> Vec<NodeUser> {
    (0..n)
        .map(|i| {
            let id = UserId::random();
            NodeUser {
                id,
                name: format!("user {i} ✓"),
                proxy_id: id.as_uuid(),
                secret: UserSecret::random(),
            }
        })
        .collect()
}

fn ids(users: &[NodeUser]) -> Vec<UserId> {
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
        ("edit_users", t.edit_users(node, &one, &[]).await.map(drop)),
        ("status", t.status(node).await.map(drop)),
        ("stop", t.stop(node).await),
        (
            "usage",
            t.usage(node, &UsageCursor::default(), 64).await.map(drop),
        ),
        (
            "rotate_key",
            t.rotate_key(node, &NodeKey::random(), Duration::from_secs(60))
                .await,
        ),
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
        first.user_config_template.contains("{{.UserID}}")
            || first.user_config_template.contains("{{.UserName}}"),
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

// ---- key rotation: POST /key ----

pub async fn a_rotated_node_takes_the_new_key_and_the_old_one_during_the_grace(
    f: &dyn FleetFixture,
) {
    let old = f.node().await;
    let t = f.transport();
    let new = Node {
        key: NodeKey::random(),
        ..old.clone()
    };
    t.rotate_key(&old, &new.key, Duration::from_secs(3600))
        .await
        .expect("rotate");
    t.start(&new, &users(2))
        .await
        .expect("start under the new key");
    assert_node(f, &new, true, 2).await;
    assert_node(f, &old, true, 2).await;
    // A repeated delivery, under either key, changes nothing.
    t.rotate_key(&old, &new.key, Duration::from_secs(3600))
        .await
        .expect("again under the old key");
    t.rotate_key(&new, &new.key, Duration::ZERO)
        .await
        .expect("again under the new key");
    assert_node(f, &old, true, 2).await;
}

pub async fn a_rotation_without_grace_refuses_the_old_key_at_once(f: &dyn FleetFixture) {
    let old = f.node().await;
    let t = f.transport();
    let new = Node {
        key: NodeKey::random(),
        ..old.clone()
    };
    t.rotate_key(&old, &new.key, Duration::ZERO)
        .await
        .expect("rotate");
    let refused = t.status(&old).await;
    assert!(
        matches!(refused, Err(TransportError::KeyMismatch(_))),
        "{refused:?}"
    );
    assert_node(f, &new, false, 0).await;
}

// ---- usage: POST /usage ----

/// The cursor a manager holds after storing `page` on top of `cursor`.
fn stored(page: &UsagePage, cursor: &UsageCursor) -> UsageCursor {
    page.cursor_after(cursor)
}

/// `(user, up, down)` of every batch of `page`, in order.
fn flat(page: &UsagePage) -> Vec<(UserId, u64, u64)> {
    page.batches
        .iter()
        .flat_map(|b| b.users.iter().map(|u| (u.user, u.up, u.down)))
        .collect()
}

async fn pull(f: &dyn FleetFixture, node: &Node, cursor: &UsageCursor, max: u32) -> UsagePage {
    f.transport().usage(node, cursor, max).await.expect("usage")
}

pub async fn usage_of_a_new_node_is_empty(f: &dyn FleetFixture) {
    let node = f.node().await;
    let page = pull(f, &node, &UsageCursor::default(), 64).await;
    assert!(!page.journal.is_empty(), "a journal has an id");
    assert!(page.batches.is_empty());
    assert!(!page.more);
}

pub async fn a_pull_answers_the_batches_after_the_cursor(f: &dyn FleetFixture) {
    let node = f.node().await;
    let (a, b) = (UserId::random(), UserId::random());
    f.record_usage(&node, &[(a, 10, 20)]).await;
    f.record_usage(&node, &[(b, 5, 1)]).await;
    f.record_usage(&node, &[(a, 1, u64::MAX / 2)]).await;
    let all = pull(f, &node, &UsageCursor::default(), 64).await;
    assert_eq!(all.batches.len(), 3);
    assert!(!all.more);
    let seqs: Vec<u64> = all.batches.iter().map(|b| b.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(
        all.batches
            .iter()
            .all(|b| b.first_seq <= b.seq && b.from <= b.to)
    );
    assert_eq!(flat(&all), [(a, 10, 20), (b, 5, 1), (a, 1, u64::MAX / 2)]);
    let after_first = UsageCursor {
        journal: Some(all.journal.clone()),
        seq: all.batches[0].seq,
    };
    let rest = pull(f, &node, &after_first, 64).await;
    assert_eq!(rest.journal, all.journal);
    assert_eq!(flat(&rest), [(b, 5, 1), (a, 1, u64::MAX / 2)]);
}

pub async fn a_repeated_pull_answers_the_same(f: &dyn FleetFixture) {
    // A manager killed between storing a page and its next pull pulls again
    // with its old cursor: it must see the very same batches.
    let node = f.node().await;
    let a = UserId::random();
    f.record_usage(&node, &[(a, 1, 2)]).await;
    f.record_usage(&node, &[(a, 3, 4)]).await;
    let first = pull(f, &node, &UsageCursor::default(), 64).await;
    let cursor = UsageCursor {
        journal: Some(first.journal.clone()),
        seq: 0,
    };
    let named = pull(f, &node, &cursor, 64).await;
    assert_eq!(named, first);
    assert_eq!(pull(f, &node, &cursor, 64).await, first);
}

pub async fn a_confirmed_cursor_is_followed_by_newer_batches_only(f: &dyn FleetFixture) {
    let node = f.node().await;
    let a = UserId::random();
    f.record_usage(&node, &[(a, 1, 1)]).await;
    f.record_usage(&node, &[(a, 2, 2)]).await;
    let page = pull(f, &node, &UsageCursor::default(), 64).await;
    let cursor = stored(&page, &UsageCursor::default());
    // Confirms everything stored: nothing after it.
    let confirm = pull(f, &node, &cursor, 64).await;
    assert!(confirm.batches.is_empty(), "{confirm:?}");
    f.record_usage(&node, &[(a, 7, 9)]).await;
    let newer = pull(f, &node, &cursor, 64).await;
    assert_eq!(flat(&newer), [(a, 7, 9)]);
    assert!(newer.batches[0].first_seq > cursor.seq, "numbers go on");
}

pub async fn pages_follow_the_cursor_until_nothing_is_left(f: &dyn FleetFixture) {
    let node = f.node().await;
    let users: Vec<UserId> = (0..5).map(|_| UserId::random()).collect();
    for (i, user) in users.iter().enumerate() {
        f.record_usage(&node, &[(*user, i as u64 + 1, 100)]).await;
    }
    let mut cursor = UsageCursor::default();
    let mut seen = Vec::new();
    let mut pulls = 0;
    loop {
        let page = pull(f, &node, &cursor, 2).await;
        assert!(page.batches.len() <= 2, "{} batches", page.batches.len());
        seen.extend(flat(&page));
        cursor = stored(&page, &cursor);
        pulls += 1;
        assert!(pulls <= 5, "the pages never end");
        if !page.more {
            break;
        }
    }
    let expected: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (*u, i as u64 + 1, 100))
        .collect();
    assert_eq!(seen, expected, "every batch exactly once");
}

pub async fn another_journal_is_answered_from_its_first_batch(f: &dyn FleetFixture) {
    let node = f.node().await;
    let a = UserId::random();
    f.record_usage(&node, &[(a, 1, 2)]).await;
    f.record_usage(&node, &[(a, 3, 4)]).await;
    let foreign = UsageCursor {
        journal: Some("a-journal-this-node-never-had".into()),
        seq: 1,
    };
    let page = pull(f, &node, &foreign, 64).await;
    assert_eq!(flat(&page), [(a, 1, 2), (a, 3, 4)]);
    // A foreign cursor confirms nothing.
    let again = pull(f, &node, &UsageCursor::default(), 64).await;
    assert_eq!(flat(&again), [(a, 1, 2), (a, 3, 4)]);
}

pub async fn a_wiped_journal_answers_its_new_batches_under_a_new_id(f: &dyn FleetFixture) {
    let node = f.node().await;
    let a = UserId::random();
    f.record_usage(&node, &[(a, 1, 2)]).await;
    f.record_usage(&node, &[(a, 3, 4)]).await;
    let page = pull(f, &node, &UsageCursor::default(), 64).await;
    let cursor = stored(&page, &UsageCursor::default());
    pull(f, &node, &cursor, 64).await;
    f.wipe_usage_journal(&node).await;
    f.record_usage(&node, &[(a, 50, 60)]).await;
    let after = pull(f, &node, &cursor, 64).await;
    assert_ne!(Some(after.journal.clone()), cursor.journal);
    assert_eq!(flat(&after), [(a, 50, 60)]);
    assert_eq!(after.batches[0].first_seq, 1, "a new journal starts at 1");
    // Stored on top of the old cursor, the new journal's cursor restarts.
    assert_eq!(stored(&after, &cursor).seq, after.batches[0].seq);
}

pub async fn the_status_tells_whether_a_pull_would_answer_anything(f: &dyn FleetFixture) {
    let node = f.node().await;
    let report = || async {
        f.transport()
            .status(&node)
            .await
            .expect("status")
            .journal
            .expect("the node reports its usage journal")
    };
    let first = pull(f, &node, &UsageCursor::default(), 64).await;
    let cursor = stored(&first, &UsageCursor::default());
    let fresh = report().await;
    assert_eq!(fresh.journal, first.journal);
    assert!(fresh.nothing_to_pull(&cursor), "{fresh:?}");
    assert!(
        !fresh.nothing_to_pull(&UsageCursor::default()),
        "no cursor yet"
    );

    let a = UserId::random();
    f.record_usage(&node, &[(a, 1, 2)]).await;
    let recorded = report().await;
    assert!(!recorded.nothing_to_pull(&cursor), "{recorded:?}");
    let page = pull(f, &node, &cursor, 64).await;
    let cursor = stored(&page, &cursor);
    assert_eq!(
        recorded.seq, cursor.seq,
        "the newest number is the page's last"
    );
    let delivered = report().await;
    assert!(
        !delivered.nothing_to_pull(&cursor),
        "delivered but not yet confirmed: {delivered:?}"
    );
    assert!(pull(f, &node, &cursor, 64).await.batches.is_empty());
    let confirmed = report().await;
    assert!(confirmed.nothing_to_pull(&cursor), "{confirmed:?}");
}
