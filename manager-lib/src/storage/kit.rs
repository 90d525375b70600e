//! A kit for backend authors: the pieces of the [`Storage`](super::Storage)
//! contract every backend computes the same way, written once so the
//! backends cannot drift apart. Grouped point reads are in
//! [`super::grouped`].

pub mod access;
pub mod directory;
pub mod outbox;
pub mod profile;
pub mod usage;

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::domain::{
    NodeId, Operation, Page, PageRequest, PendingBatch, PendingOperation, Seq, UserStatus,
};
use crate::storage::StorageResult;

/// The pending-operation rule: what a user's newest change asks of a node.
/// Enabled, not blocked by the plan and not deleted → add; disabled,
/// blocked or deleted (a tombstone) → delete.
pub fn intent(status: UserStatus, blocked: bool, deleted: bool) -> Operation {
    if !deleted && !blocked && status == UserStatus::Enabled {
        Operation::Add
    } else {
        Operation::Delete
    }
}

/// The limit of a pending-operations read, clamped to 1..=10,000.
pub fn batch_limit(limit: u32) -> usize {
    limit.clamp(1, PageRequest::MAX_LIMIT) as usize
}

/// A batch for a node whose cursor is `cursor`: `up_to_seq` is the last
/// operation's number, or the cursor when there is none.
pub fn batch(operations: Vec<PendingOperation>, cursor: Seq, more: bool) -> PendingBatch {
    let up_to_seq = operations.last().map_or(cursor, |op| op.seq);
    PendingBatch {
        operations,
        up_to_seq,
        more,
    }
}

/// The id a page starts after. An `after` that is no id of this kind starts
/// from the beginning, as in the reference backend.
pub fn page_after<K: FromStr>(page: &PageRequest) -> Option<K> {
    page.after.as_deref().and_then(|a| a.parse().ok())
}

/// A page from rows read in id order, `limit + 1` of them at most (the
/// extra one only says that more follow): the first `limit` decoded, and
/// `next` the last one's `key` when more follow.
pub fn into_page<R, T>(
    rows: impl IntoIterator<Item = R>,
    limit: usize,
    decode: impl FnMut(R) -> StorageResult<T>,
    key: impl Fn(&T) -> String,
) -> StorageResult<Page<T>> {
    let mut rows = rows.into_iter();
    let items = rows
        .by_ref()
        .take(limit)
        .map(decode)
        .collect::<StorageResult<Vec<T>>>()?;
    let next = match rows.next() {
        Some(_) => items.last().map(key),
        None => None,
    };
    Ok(Page { items, next })
}

/// The acknowledgements with each node once, at its largest number (for
/// backends implementing
/// [`Storage::ack_operations_many`](super::Storage::ack_operations_many) in
/// one statement).
pub fn largest_per_node(acks: &[(NodeId, Seq)]) -> Vec<(NodeId, Seq)> {
    let mut largest: BTreeMap<NodeId, Seq> = BTreeMap::new();
    for (id, seq) in acks {
        let at = largest.entry(*id).or_insert(*seq);
        *at = (*at).max(*seq);
    }
    largest.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_enabled_live_user_is_added() {
        assert_eq!(intent(UserStatus::Enabled, false, false), Operation::Add);
        assert_eq!(intent(UserStatus::Enabled, true, false), Operation::Delete);
        assert_eq!(intent(UserStatus::Enabled, false, true), Operation::Delete);
        assert_eq!(
            intent(UserStatus::Disabled, false, false),
            Operation::Delete
        );
        assert_eq!(intent(UserStatus::Disabled, false, true), Operation::Delete);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_a_row_follows() {
        let key = |n: &u32| n.to_string();
        let full = into_page(1..=3, 2, Ok, key).unwrap();
        assert_eq!((full.items, full.next), (vec![1, 2], Some("2".into())));
        let last = into_page(1..=2, 2, Ok, key).unwrap();
        assert_eq!((last.items, last.next), (vec![1, 2], None));
    }

    #[test]
    fn an_after_that_is_no_id_starts_from_the_beginning() {
        let mut page = PageRequest::first(10);
        page.after = Some("not-an-id".into());
        assert_eq!(page_after::<NodeId>(&page), None);
        let id = NodeId::random();
        page.after = Some(id.to_string());
        assert_eq!(page_after::<NodeId>(&page), Some(id));
    }
}
