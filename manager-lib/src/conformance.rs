//! The `Storage` conformance suite: one `pub async fn` per behaviour of the
//! contract, each taking `&dyn Storage`. Every backend expands them into named
//! tests with [`storage_conformance_tests!`](crate::storage_conformance_tests):
//!
//! ```ignore
//! // `fresh()` gives a new, empty backend as some `F: AsRef<dyn Storage>`.
//! manager_lib::storage_conformance_tests!(fresh().await);
//! ```

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::domain::{
    ActualStatus, NewNode, NewUser, Node, NodeId, Operation, PageRequest, RequiredStatus, UserId,
    UserStatus,
};
use crate::storage::{Entity, Storage, StorageError};

mod access;
mod devices;
mod directory;
pub mod ingest_bench;
mod node_events;
mod notify;
mod outbox;
mod plans;
mod rotation;
pub mod sealed;
mod subscriptions;
mod usage;
pub use access::*;
pub use devices::*;
pub use directory::*;
pub use node_events::*;
pub use notify::*;
pub use outbox::*;
pub use plans::*;
pub use rotation::*;
pub use subscriptions::*;
pub use usage::*;

/// Expands into one `#[tokio::test]` per behaviour of the suite, each with a
/// fresh backend from `$fresh` (an expression, awaited inside the test, giving
/// a value `F: AsRef<dyn Storage>` that lives until the test ends).
#[macro_export]
macro_rules! storage_conformance_tests {
    ($fresh:expr) => {
        $crate::storage_conformance_tests!(@each $fresh;
            node_round_trips,
            node_endpoint_is_unique_and_a_clash_writes_nothing,
            missing_node_is_not_found,
            find_node_by_endpoint,
            nodes_page_visits_every_node_once,
            delete_node_takes_its_pending_operations,
            required_status_is_stored,
            new_user_is_disabled_and_on_no_node,
            user_fields_round_trip_unicode_and_long_names,
            user_names_repeat,
            users_page_visits_every_user_once,
            enable_makes_an_add_pending_for_every_node,
            disable_replaces_the_pending_add_with_a_delete,
            setting_the_same_status_changes_nothing,
            ack_never_drops_a_newer_intent,
            ack_never_moves_the_cursor_back,
            acks_for_many_nodes_move_each_cursor_forward_only,
            pending_batches_are_ordered_and_limited,
            changes_after_a_cursor_are_that_nodes_pending_batch,
            start_plan_hides_the_node_until_finished,
            start_moves_the_cursor_to_the_plan,
            stop_hides_the_node,
            user_nodes_lists_only_nodes_that_applied_the_user,
            observation_of_error_leaves_every_list,
            delete_user_hides_it_and_makes_a_delete_pending,
            tombstones_are_purged_once_applied_everywhere,
            fleet_state_counts_changes_and_enabled_users,
            failed_calls_change_nothing,
            concurrent_toggles_and_acks_end_in_the_newest_intent,
            leases_have_one_owner_and_expire,
            serving_nodes_are_the_ones_user_nodes_considers,
            usage_page_applied_twice_counts_once,
            usage_cursors_move_forward_only,
            usage_journal_change_restarts_from_seq_zero,
            usage_multiplier_is_applied_to_users_only,
            usage_limit_crossed_blocks_once_and_raising_it_unblocks,
            invalid_plans_are_refused_and_change_nothing,
            plan_edits_set_clear_and_leave_fields,
            concurrent_edits_of_different_fields_both_land,
            expiry_blocks_through_enforce_time_and_extending_unblocks,
            on_hold_starts_the_expiry_at_the_first_byte,
            resets_happen_at_period_boundaries,
            usage_totals_saturate_near_the_limit,
            usage_of_deleted_or_unknown_users_is_not_kept,
            usage_limits_near_the_top_compare_without_overflow,
            usage_history_by_day_node_and_hour_and_purge,
            blocked_users_stay_off_starts_and_counts,
            concurrent_ingests_store_a_page_once_and_block_once,
            started_nodes_keep_their_described_inbounds,
            noted_user_ports_land_on_port_per_user_inbounds_only,
            node_profiles_round_trip_and_survive_starts,
            invalid_profiles_are_refused_and_change_nothing,
            user_nodes_serve_each_inbound_with_the_profile_applied,
            subscription_keys_are_stored_and_rotated,
            device_limits_are_stored_without_a_change,
            devices_are_recorded_within_the_limit,
            a_known_devices_last_seen_moves_only_by_the_step,
            a_forgotten_device_counts_as_new_again,
            devices_of_unknown_or_deleted_users_are_not_found,
            concurrent_new_devices_never_pass_the_limit,
            tokens_round_trip_with_their_verifier,
            token_names_and_ids_are_unique_and_a_clash_writes_nothing,
            revoking_a_token_is_idempotent_and_keeps_the_first_time,
            audit_entries_are_listed_newest_first_and_filtered,
            audit_pages_visit_every_entry_once,
            audit_purge_drops_only_older_entries,
            concurrent_audit_appends_all_land_with_distinct_ids,
            outbox_enqueues_each_event_and_endpoint_once,
            outbox_claims_are_exclusive_until_the_lease_expires,
            outbox_delivered_entries_are_never_claimed_again,
            outbox_retries_wait_for_their_time_and_count_attempts,
            outbox_prune_drops_only_old_delivered_entries,
            concurrent_claims_never_share_a_delivery,
            a_usage_page_and_its_limit_events_commit_together,
            a_refused_limit_event_undoes_its_usage_page,
            expiry_and_its_event_commit_together_or_not_at_all,
            a_plan_edit_writes_its_block_event_with_it,
            node_writes_and_their_events_commit_together,
            token_writes_and_their_events_commit_together,
            user_directory_search_filters_orders_and_pages_by_key,
            user_directory_refuses_a_foreign_cursor,
            key_rotation_is_pending_until_confirmed,
            a_second_rotation_while_one_is_pending_is_refused_and_writes_nothing,
            confirming_another_key_or_twice_changes_nothing,
            key_rotations_of_missing_nodes_are_not_found_and_go_with_the_node,
            concurrent_confirmations_switch_the_key_once,
            users_by_state_count_every_live_user_once,
            node_events_keep_the_newest_in_order_and_go_with_the_node,
            node_events_of_an_unknown_node_are_not_found_and_not_kept,
            node_summaries_are_every_node_as_listed_without_its_key,
        );
    };
    (@each $fresh:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fresh;
                let storage: &dyn $crate::storage::Storage = ::std::convert::AsRef::as_ref(&fixture);
                $crate::conformance::$name(storage).await;
            }
        )+
    };
}

async fn node(s: &dyn Storage, endpoint: &str) -> Node {
    s.create_node(NewNode::new(endpoint).expect("valid endpoint"))
        .await
        .expect("create node")
}

async fn user(s: &dyn Storage, name: &str) -> UserId {
    s.create_user(NewUser::new(name).expect("valid name"))
        .await
        .expect("create user")
        .id
}

/// A node started (Running, up to date, template) with the current users.
async fn running_node(s: &dyn Storage, endpoint: &str) -> Node {
    let n = node(s, endpoint).await;
    s.set_required_status(n.id, RequiredStatus::Running)
        .await
        .unwrap();
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(
        n.id,
        plan.seq,
        "vless://{{.UserID}}@host#{{.UserName}}",
        &[],
    )
    .await
    .unwrap();
    s.get_node(n.id).await.unwrap()
}

/// Applies every pending operation of a node and acknowledges it.
async fn drain(s: &dyn Storage, id: NodeId) {
    loop {
        let batch = s.pending_operations(id, 1000).await.unwrap();
        s.ack_operations(id, batch.up_to_seq).await.unwrap();
        if !batch.more {
            return;
        }
    }
}

async fn user_node_ids(s: &dyn Storage, id: UserId) -> Vec<NodeId> {
    s.user_nodes(id)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect()
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StorageError>, entity: Entity) {
    match r {
        Err(StorageError::NotFound(e)) => assert_eq!(e, entity),
        other => panic!("expected {entity} not found, got {other:?}"),
    }
}

pub async fn node_round_trips(s: &dyn Storage) {
    let new = NewNode::new("http://10.0.0.1:8080").unwrap();
    let created = s.create_node(new.clone()).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.endpoint, new.endpoint);
    assert_eq!(created.key, new.key);
    assert_eq!(created.actual_status, ActualStatus::Stopped);
    assert_eq!(created.required_status, RequiredStatus::Stopped);
    assert_eq!(created.user_config_template, None);
    assert!(created.state_up_to_date);
    assert_eq!(s.get_node(new.id).await.unwrap(), created);
}

pub async fn node_endpoint_is_unique_and_a_clash_writes_nothing(s: &dyn Storage) {
    let first = node(s, "http://10.0.0.1:8080").await;
    let clash = s
        .create_node(NewNode::new("http://10.0.0.1:8080").unwrap())
        .await;
    assert!(
        matches!(clash, Err(StorageError::AlreadyExists(Entity::Node))),
        "{clash:?}"
    );
    let all = s.list_nodes(&PageRequest::first(100)).await.unwrap().items;
    assert_eq!(all, vec![first]);
}

pub async fn missing_node_is_not_found(s: &dyn Storage) {
    let id = NodeId::random();
    assert_not_found(s.get_node(id).await, Entity::Node);
    assert_not_found(s.delete_node(id).await, Entity::Node);
    assert_not_found(
        s.set_required_status(id, RequiredStatus::Running).await,
        Entity::Node,
    );
    assert_not_found(s.begin_start(id).await, Entity::Node);
    assert_not_found(s.finish_start(id, 0, "t", &[]).await, Entity::Node);
    assert_not_found(s.begin_stop(id).await, Entity::Node);
    assert_not_found(s.finish_stop(id).await, Entity::Node);
    assert_not_found(
        s.record_observation(id, ActualStatus::Running).await,
        Entity::Node,
    );
    assert_not_found(s.pending_operations(id, 10).await, Entity::Node);
    assert_not_found(s.ack_operations(id, 1).await, Entity::Node);
}

pub async fn find_node_by_endpoint(s: &dyn Storage) {
    let n = node(s, "https://node-1.example.com").await;
    let found = s
        .find_node_by_endpoint("https://node-1.example.com")
        .await
        .unwrap();
    assert_eq!(found, Some(n));
    assert_eq!(
        s.find_node_by_endpoint("https://node-2.example.com")
            .await
            .unwrap(),
        None
    );
}

pub async fn nodes_page_visits_every_node_once(s: &dyn Storage) {
    let mut created = BTreeSet::new();
    for i in 0..25 {
        created.insert(node(s, &format!("http://10.0.1.{i}:80")).await.id);
    }
    let mut seen = Vec::new();
    let mut req = PageRequest::first(7);
    loop {
        let page = s.list_nodes(&req).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|n| n.id));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "a node was visited twice or missed");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), created);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|id| id.to_string());
    assert_eq!(seen, sorted, "pages are in id order");
}

pub async fn delete_node_takes_its_pending_operations(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    assert_eq!(
        s.pending_operations(n.id, 10)
            .await
            .unwrap()
            .operations
            .len(),
        1
    );
    s.delete_node(n.id).await.unwrap();
    assert_not_found(s.get_node(n.id).await, Entity::Node);
    assert_not_found(s.pending_operations(n.id, 10).await, Entity::Node);
    // The endpoint is free again.
    node(s, "http://10.0.0.1:80").await;
}

pub async fn required_status_is_stored(s: &dyn Storage) {
    let n = node(s, "http://10.0.0.1:80").await;
    let after = s
        .set_required_status(n.id, RequiredStatus::Running)
        .await
        .unwrap();
    assert_eq!(after.required_status, RequiredStatus::Running);
    assert_eq!(after.actual_status, n.actual_status);
    assert_eq!(after.applied_seq, n.applied_seq);
    // Idempotent.
    let again = s
        .set_required_status(n.id, RequiredStatus::Running)
        .await
        .unwrap();
    assert_eq!(again.required_status, RequiredStatus::Running);
    assert_eq!(
        s.get_node(n.id).await.unwrap().required_status,
        RequiredStatus::Running
    );
}

pub async fn new_user_is_disabled_and_on_no_node(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    let got = s.get_user(u).await.unwrap();
    assert_eq!(got.status, UserStatus::Disabled);
    assert_eq!(got.change_seq, 0);
    assert!(user_node_ids(s, u).await.is_empty());
    assert!(
        s.pending_operations(n.id, 10)
            .await
            .unwrap()
            .operations
            .is_empty()
    );
}

pub async fn user_fields_round_trip_unicode_and_long_names(s: &dyn Storage) {
    let long = "я🚀'\"; DROP TABLE users; --".repeat(30);
    assert!(long.len() <= crate::domain::MAX_USER_NAME_BYTES);
    for name in [
        "Вася Пупкин",
        "名字-with-dashes-",
        "emoji 🚀🔥",
        long.as_str(),
    ] {
        let new = NewUser::new(name).unwrap();
        let created = s.create_user(new.clone()).await.unwrap();
        let got = s.get_user(new.id).await.unwrap();
        assert_eq!(got, created);
        assert_eq!(got.name, name);
        assert_eq!(got.secret, new.secret);
    }
}

pub async fn user_names_repeat(s: &dyn Storage) {
    let a = user(s, "bob").await;
    let b = user(s, "bob").await;
    assert_ne!(a, b);
    assert_eq!(s.get_user(a).await.unwrap().name, "bob");
    assert_eq!(s.get_user(b).await.unwrap().name, "bob");
}

pub async fn users_page_visits_every_user_once(s: &dyn Storage) {
    let mut created = BTreeSet::new();
    for i in 0..23 {
        created.insert(user(s, &format!("user{i}")).await);
    }
    let mut seen = Vec::new();
    let mut req = PageRequest::first(5);
    loop {
        let page = s.list_users(&req).await.unwrap();
        assert!(page.items.len() <= 5);
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), created);
}

pub async fn enable_makes_an_add_pending_for_every_node(s: &dyn Storage) {
    let nodes = [
        running_node(s, "http://10.0.0.1:80").await,
        running_node(s, "http://10.0.0.2:80").await,
        node(s, "http://10.0.0.3:80").await,
    ];
    let u = user(s, "alice").await;
    let enabled = s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    assert_eq!(enabled.status, UserStatus::Enabled);
    assert!(enabled.change_seq > 0);
    for n in &nodes {
        let batch = s.pending_operations(n.id, 10).await.unwrap();
        assert_eq!(batch.operations.len(), 1, "node {}", n.endpoint);
        let op = &batch.operations[0];
        assert_eq!(op.user.id, u);
        assert_eq!(op.operation, Operation::Add);
        assert_eq!(op.seq, enabled.change_seq);
        assert_eq!(batch.up_to_seq, enabled.change_seq);
        assert!(!batch.more);
    }
    // Not on any node until a node applied it.
    assert!(user_node_ids(s, u).await.is_empty());
}

pub async fn disable_replaces_the_pending_add_with_a_delete(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    s.set_user_status(u, UserStatus::Disabled).await.unwrap();
    let batch = s.pending_operations(n.id, 10).await.unwrap();
    assert_eq!(batch.operations.len(), 1, "only the newest intent");
    assert_eq!(batch.operations[0].operation, Operation::Delete);
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    let batch = s.pending_operations(n.id, 10).await.unwrap();
    assert_eq!(batch.operations.len(), 1);
    assert_eq!(batch.operations[0].operation, Operation::Add);
}

pub async fn setting_the_same_status_changes_nothing(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    let before = s.fleet_state().await.unwrap();
    let same = s.set_user_status(u, UserStatus::Disabled).await.unwrap();
    assert_eq!(same.change_seq, 0);
    assert_eq!(s.fleet_state().await.unwrap(), before);
    assert!(
        s.pending_operations(n.id, 10)
            .await
            .unwrap()
            .operations
            .is_empty()
    );
    let e1 = s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    let e2 = s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    assert_eq!(e1.change_seq, e2.change_seq);
}

pub async fn ack_never_drops_a_newer_intent(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;
    s.set_user_status(alice, UserStatus::Enabled).await.unwrap();
    let read = s.pending_operations(n.id, 10).await.unwrap();
    // While the node applies the batch, alice is disabled again and bob enabled.
    s.set_user_status(alice, UserStatus::Disabled)
        .await
        .unwrap();
    s.set_user_status(bob, UserStatus::Enabled).await.unwrap();
    s.ack_operations(n.id, read.up_to_seq).await.unwrap();
    let left = s.pending_operations(n.id, 10).await.unwrap();
    let ops: Vec<(UserId, Operation)> = left
        .operations
        .iter()
        .map(|op| (op.user.id, op.operation))
        .collect();
    assert_eq!(ops, vec![(alice, Operation::Delete), (bob, Operation::Add)]);
}

pub async fn acks_for_many_nodes_move_each_cursor_forward_only(s: &dyn Storage) {
    let a = node(s, "http://10.0.0.1:80").await;
    let b = node(s, "http://10.0.0.2:80").await;
    let c = node(s, "http://10.0.0.3:80").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = user(s, &format!("u{i}")).await;
        s.set_user_status(id, UserStatus::Enabled).await.unwrap();
        ids.push(id);
    }
    let seqs: Vec<_> = s
        .pending_operations(a.id, 10)
        .await
        .unwrap()
        .operations
        .iter()
        .map(|o| o.seq)
        .collect();
    s.ack_operations(c.id, seqs[3]).await.unwrap();
    let gone = node(s, "http://10.0.0.4:80").await;
    s.delete_node(gone.id).await.unwrap();
    // a twice (the larger counts), b once, c behind its cursor, a deleted node.
    s.ack_operations_many(&[
        (a.id, seqs[2]),
        (b.id, seqs[0]),
        (a.id, seqs[1]),
        (c.id, seqs[1]),
        (gone.id, seqs[3]),
    ])
    .await
    .unwrap();
    let pending = |id| async move { s.pending_operations(id, 10).await.unwrap().operations.len() };
    assert_eq!(
        pending(a.id).await,
        1,
        "a acknowledged up to the third change"
    );
    assert_eq!(pending(b.id).await, 3, "b acknowledged the first change");
    assert_eq!(pending(c.id).await, 0, "c's cursor did not move back");
    s.ack_operations_many(&[]).await.unwrap();
}

pub async fn ack_never_moves_the_cursor_back(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    let old = s.pending_operations(n.id, 10).await.unwrap();
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    let new = s.pending_operations(n.id, 10).await.unwrap();
    s.ack_operations(n.id, new.up_to_seq).await.unwrap();
    s.ack_operations(n.id, old.up_to_seq).await.unwrap();
    assert!(
        s.pending_operations(n.id, 10)
            .await
            .unwrap()
            .operations
            .is_empty()
    );
    assert_eq!(s.get_node(n.id).await.unwrap().applied_seq, new.up_to_seq);
    assert_eq!(user_node_ids(s, u).await, vec![n.id]);
}

pub async fn pending_batches_are_ordered_and_limited(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let mut order = Vec::new();
    for i in 0..10 {
        let u = user(s, &format!("u{i}")).await;
        s.set_user_status(u, UserStatus::Enabled).await.unwrap();
        order.push(u);
    }
    let first = s.pending_operations(n.id, 4).await.unwrap();
    assert_eq!(first.operations.len(), 4);
    assert!(first.more);
    assert_eq!(first.up_to_seq, first.operations[3].seq);
    let seqs: Vec<_> = first.operations.iter().map(|o| o.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    // Reading twice without changes gives the same batch.
    assert_eq!(s.pending_operations(n.id, 4).await.unwrap(), first);
    s.ack_operations(n.id, first.up_to_seq).await.unwrap();
    let rest = s.pending_operations(n.id, 100).await.unwrap();
    assert_eq!(rest.operations.len(), 6);
    assert!(!rest.more);
    let got: Vec<UserId> = first
        .operations
        .iter()
        .chain(&rest.operations)
        .map(|o| o.user.id)
        .collect();
    assert_eq!(got, order);
    // An empty batch keeps the cursor.
    s.ack_operations(n.id, rest.up_to_seq).await.unwrap();
    let empty = s.pending_operations(n.id, 100).await.unwrap();
    assert!(empty.operations.is_empty());
    assert_eq!(empty.up_to_seq, rest.up_to_seq);
}

pub async fn changes_after_a_cursor_are_that_nodes_pending_batch(s: &dyn Storage) {
    let n = node(s, "http://10.0.0.1:80").await;
    let empty = s.changes_after(0, 10).await.unwrap();
    assert!(empty.operations.is_empty() && !empty.more);
    assert_eq!(empty.up_to_seq, 0);
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = user(s, &format!("u{i}")).await;
        s.set_user_status(id, UserStatus::Enabled).await.unwrap();
        ids.push(id);
    }
    // Newest intent only: u0 disabled again, u1 deleted.
    s.set_user_status(ids[0], UserStatus::Disabled)
        .await
        .unwrap();
    s.delete_user(ids[1]).await.unwrap();
    // At every cursor the node passes through, in batches of 3, the log
    // read without the node gives the node's own batch.
    loop {
        let cursor = s.get_node(n.id).await.unwrap().applied_seq;
        let own = s.pending_operations(n.id, 3).await.unwrap();
        let shared = s.changes_after(cursor, 3).await.unwrap();
        assert_eq!(shared, own, "cursor {cursor}");
        if own.operations.is_empty() {
            break;
        }
        s.ack_operations(n.id, own.up_to_seq).await.unwrap();
    }
    let all = s.changes_after(0, 100).await.unwrap();
    assert_eq!(all.operations.len(), 7, "each user once");
    let op_of = |id| {
        all.operations
            .iter()
            .find(|o| o.user.id == id)
            .map(|o| o.operation)
    };
    assert_eq!(op_of(ids[0]), Some(Operation::Delete));
    assert_eq!(op_of(ids[1]), Some(Operation::Delete));
    assert_eq!(op_of(ids[2]), Some(Operation::Add));
    assert!(all.operations.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all.up_to_seq, all.operations.last().unwrap().seq);
}

pub async fn start_plan_hides_the_node_until_finished(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let on = user(s, "on").await;
    let off = user(s, "off").await;
    s.set_user_status(on, UserStatus::Enabled).await.unwrap();
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, on).await, vec![n.id]);

    let plan = s.begin_start(n.id).await.unwrap();
    assert!(!plan.node.state_up_to_date);
    assert_eq!(
        plan.users.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![on]
    );
    assert!(!plan.users.iter().any(|u| u.id == off));
    assert!(
        user_node_ids(s, on).await.is_empty(),
        "hidden while starting"
    );
    assert!(!s.get_node(n.id).await.unwrap().state_up_to_date);

    s.finish_start(n.id, plan.seq, "tpl", &[]).await.unwrap();
    let after = s.get_node(n.id).await.unwrap();
    assert!(after.state_up_to_date);
    assert_eq!(after.actual_status, ActualStatus::Running);
    assert_eq!(after.user_config_template.as_deref(), Some("tpl"));
    assert!(after.last_seen.is_some());
    assert_eq!(user_node_ids(s, on).await, vec![n.id]);
}

pub async fn start_moves_the_cursor_to_the_plan(s: &dyn Storage) {
    let n = node(s, "http://10.0.0.1:80").await;
    let early = user(s, "early").await;
    s.set_user_status(early, UserStatus::Enabled).await.unwrap();
    let plan = s.begin_start(n.id).await.unwrap();
    assert_eq!(plan.users.len(), 1);
    // A change after the snapshot stays pending after the start.
    let late = user(s, "late").await;
    s.set_user_status(late, UserStatus::Enabled).await.unwrap();
    s.finish_start(n.id, plan.seq, "tpl", &[]).await.unwrap();
    let batch = s.pending_operations(n.id, 10).await.unwrap();
    assert_eq!(
        batch
            .operations
            .iter()
            .map(|o| o.user.id)
            .collect::<Vec<_>>(),
        vec![late]
    );
    assert_eq!(user_node_ids(s, early).await, vec![n.id]);
    assert!(user_node_ids(s, late).await.is_empty());
}

pub async fn stop_hides_the_node(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, u).await, vec![n.id]);
    let stopping = s.begin_stop(n.id).await.unwrap();
    assert!(!stopping.state_up_to_date);
    assert!(user_node_ids(s, u).await.is_empty());
    s.finish_stop(n.id).await.unwrap();
    let after = s.get_node(n.id).await.unwrap();
    assert_eq!(after.actual_status, ActualStatus::Stopped);
    assert!(after.state_up_to_date);
    assert!(user_node_ids(s, u).await.is_empty());
}

pub async fn user_nodes_lists_only_nodes_that_applied_the_user(s: &dyn Storage) {
    let a = running_node(s, "http://10.0.0.1:80").await;
    let b = running_node(s, "http://10.0.0.2:80").await;
    let stopped = node(s, "http://10.0.0.3:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, a.id).await;
    drain(s, stopped.id).await;
    let got = s.user_nodes(u).await.unwrap();
    assert_eq!(got.user.id, u);
    assert_eq!(got.user.name, "alice");
    assert_eq!(got.nodes.len(), 1);
    assert_eq!(got.nodes[0].id, a.id);
    assert_eq!(&*got.nodes[0].endpoint, a.endpoint);
    assert_eq!(
        &*got.nodes[0].user_config_template,
        "vless://{{.UserID}}@host#{{.UserName}}"
    );
    drain(s, b.id).await;
    let mut expected = vec![a.id, b.id];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(user_node_ids(s, u).await, expected);
    // Disabled: on no node at once, even before the nodes applied the delete.
    s.set_user_status(u, UserStatus::Disabled).await.unwrap();
    assert!(user_node_ids(s, u).await.is_empty());
    assert_not_found(s.user_nodes(UserId::random()).await, Entity::User);
}

pub async fn observation_of_error_leaves_every_list(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, u).await, vec![n.id]);
    s.record_observation(n.id, ActualStatus::Error)
        .await
        .unwrap();
    let seen = s.get_node(n.id).await.unwrap();
    assert_eq!(seen.actual_status, ActualStatus::Error);
    assert!(
        seen.state_up_to_date,
        "an observation does not touch the flag"
    );
    assert_eq!(seen.applied_seq, n.applied_seq.max(seen.applied_seq));
    assert!(user_node_ids(s, u).await.is_empty());
    s.record_observation(n.id, ActualStatus::Running)
        .await
        .unwrap();
    assert_eq!(user_node_ids(s, u).await, vec![n.id]);
}

pub async fn delete_user_hides_it_and_makes_a_delete_pending(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, n.id).await;
    s.delete_user(u).await.unwrap();
    assert_not_found(s.get_user(u).await, Entity::User);
    assert_not_found(s.user_nodes(u).await, Entity::User);
    assert_not_found(
        s.set_user_status(u, UserStatus::Enabled).await,
        Entity::User,
    );
    assert_not_found(s.delete_user(u).await, Entity::User);
    let listed = s.list_users(&PageRequest::first(10)).await.unwrap();
    assert!(listed.items.is_empty());
    let batch = s.pending_operations(n.id, 10).await.unwrap();
    assert_eq!(batch.operations.len(), 1);
    assert_eq!(batch.operations[0].user.id, u);
    assert_eq!(batch.operations[0].operation, Operation::Delete);
    let plan = s.begin_start(n.id).await.unwrap();
    assert!(plan.users.is_empty(), "a deleted user is not started");
}

pub async fn tombstones_are_purged_once_applied_everywhere(s: &dyn Storage) {
    let a = running_node(s, "http://10.0.0.1:80").await;
    let b = running_node(s, "http://10.0.0.2:80").await;
    let idle = node(s, "http://10.0.0.3:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    s.delete_user(u).await.unwrap();
    drain(s, a.id).await;
    assert_eq!(
        s.purge_tombstones().await.unwrap(),
        0,
        "b has not applied it"
    );
    assert_eq!(
        s.pending_operations(b.id, 10)
            .await
            .unwrap()
            .operations
            .len(),
        1
    );
    drain(s, b.id).await;
    // The stopped node never needs it: its start sends the full set.
    assert_eq!(
        s.pending_operations(idle.id, 10)
            .await
            .unwrap()
            .operations
            .len(),
        1
    );
    assert_eq!(s.purge_tombstones().await.unwrap(), 1);
    assert!(
        s.pending_operations(idle.id, 10)
            .await
            .unwrap()
            .operations
            .is_empty()
    );
    assert_eq!(s.purge_tombstones().await.unwrap(), 0);
}

pub async fn fleet_state_counts_changes_and_enabled_users(s: &dyn Storage) {
    let start = s.fleet_state().await.unwrap();
    assert_eq!(start.enabled_users, 0);
    let a = user(s, "a").await;
    let b = user(s, "b").await;
    s.set_user_status(a, UserStatus::Enabled).await.unwrap();
    s.set_user_status(b, UserStatus::Enabled).await.unwrap();
    s.set_user_status(b, UserStatus::Disabled).await.unwrap();
    let mid = s.fleet_state().await.unwrap();
    assert_eq!(mid.enabled_users, 1);
    assert_eq!(mid.last_seq, start.last_seq + 3);
    s.delete_user(a).await.unwrap();
    s.delete_user(b).await.unwrap();
    let end = s.fleet_state().await.unwrap();
    assert_eq!(end.enabled_users, 0);
    assert_eq!(end.last_seq, mid.last_seq + 2);
}

pub async fn failed_calls_change_nothing(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    let fleet = s.fleet_state().await.unwrap();
    let nodes = s.list_nodes(&PageRequest::first(100)).await.unwrap();
    let users = s.list_users(&PageRequest::first(100)).await.unwrap();
    let pending = s.pending_operations(n.id, 100).await.unwrap();

    let ghost = UserId::random();
    assert!(s.set_user_status(ghost, UserStatus::Enabled).await.is_err());
    assert!(s.delete_user(ghost).await.is_err());
    assert!(
        s.create_node(NewNode::new(&n.endpoint).unwrap())
            .await
            .is_err()
    );
    let mut dup = NewUser::new("dup").unwrap();
    dup.id = u;
    assert!(s.create_user(dup).await.is_err());
    assert!(s.ack_operations(NodeId::random(), i64::MAX).await.is_err());
    assert!(s.begin_start(NodeId::random()).await.is_err());

    assert_eq!(s.fleet_state().await.unwrap(), fleet);
    assert_eq!(s.list_nodes(&PageRequest::first(100)).await.unwrap(), nodes);
    assert_eq!(s.list_users(&PageRequest::first(100)).await.unwrap(), users);
    assert_eq!(s.pending_operations(n.id, 100).await.unwrap(), pending);
    assert_eq!(s.get_user(u).await.unwrap().name, "alice");
}

/// Two writers toggle users while a node applies and acknowledges batches; once
/// they stop and the node drains, the node holds exactly the enabled users.
pub async fn concurrent_toggles_and_acks_end_in_the_newest_intent(s: &dyn Storage) {
    let n = running_node(s, "http://10.0.0.1:80").await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(user(s, &format!("u{i}")).await);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let node_users = std::sync::Mutex::new(HashSet::new());
    let apply = |batch: &crate::domain::PendingBatch| {
        let mut on = node_users.lock().unwrap();
        for op in &batch.operations {
            match op.operation {
                Operation::Add => on.insert(op.user.id),
                Operation::Delete => on.remove(&op.user.id),
            };
        }
    };
    let toggler = |offset: usize| {
        let users = &users;
        async move {
            for round in 0..30 {
                let u = users[(round + offset) % users.len()];
                let status = if (round / 2 + offset) % 2 == 0 {
                    UserStatus::Enabled
                } else {
                    UserStatus::Disabled
                };
                s.set_user_status(u, status).await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    };
    let applier = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let batch = s.pending_operations(n.id, 3).await.unwrap();
            apply(&batch);
            s.ack_operations(n.id, batch.up_to_seq).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let writers = async {
        tokio::join!(toggler(0), toggler(1), toggler(3));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    tokio::join!(writers, applier);
    loop {
        let batch = s.pending_operations(n.id, 3).await.unwrap();
        apply(&batch);
        s.ack_operations(n.id, batch.up_to_seq).await.unwrap();
        if batch.operations.is_empty() {
            break;
        }
    }
    let mut enabled = HashSet::new();
    for u in &users {
        if s.get_user(*u).await.unwrap().status == UserStatus::Enabled {
            enabled.insert(*u);
            assert_eq!(user_node_ids(s, *u).await, vec![n.id]);
        } else {
            assert!(user_node_ids(s, *u).await.is_empty());
        }
    }
    assert_eq!(*node_users.lock().unwrap(), enabled);
    assert_eq!(
        s.fleet_state().await.unwrap().enabled_users,
        enabled.len() as u64
    );
}

pub async fn leases_have_one_owner_and_expire(s: &dyn Storage) {
    let a = node(s, "http://10.0.0.1:80").await;
    let b = node(s, "http://10.0.0.2:80").await;
    let ttl = Duration::from_millis(400);
    let mine = s.claim_nodes("replica-1", ttl, 1).await.unwrap();
    assert_eq!(mine.len(), 1);
    let theirs = s.claim_nodes("replica-2", ttl, 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_ne!(mine[0].id, theirs[0].id);
    let ids: BTreeSet<_> = [mine[0].id, theirs[0].id].into();
    assert_eq!(ids, [a.id, b.id].into());
    // Renewal keeps what one holds; nothing is free for a third replica.
    assert_eq!(s.claim_nodes("replica-1", ttl, 0).await.unwrap(), mine);
    assert!(
        s.claim_nodes("replica-3", ttl, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A replica that stops renewing loses its nodes once the lease expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.claim_nodes("replica-2", ttl, 0).await.unwrap();
        let got = s.claim_nodes("replica-3", ttl, 10).await.unwrap();
        if !got.is_empty() {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].id, mine[0].id);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.release_nodes("replica-2").await.unwrap();
    let freed = s.claim_nodes("replica-3", ttl, 10).await.unwrap();
    assert_eq!(freed.len(), 2);
}

pub async fn serving_nodes_are_the_ones_user_nodes_considers(s: &dyn Storage) {
    let a = running_node(s, "http://10.0.0.1:80").await;
    let b = running_node(s, "http://10.0.0.2:80").await;
    node(s, "http://10.0.0.3:80").await;
    s.begin_stop(b.id).await.unwrap();
    let u = user(s, "alice").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, a.id).await;
    let serving = s.serving_nodes().await.unwrap();
    assert_eq!(serving.len(), 1);
    assert_eq!(serving[0].entry.id, a.id);
    assert_eq!(
        serving[0].applied_seq,
        s.get_node(a.id).await.unwrap().applied_seq
    );
    assert_eq!(user_node_ids(s, u).await, vec![a.id]);
}
