//! Traffic accounting's vocabulary: what a node's agent journals and the
//! manager pulls, and the cursor that makes a repeated pull harmless.

use super::{Timestamp, UserId};

/// Where the manager stands in one node's usage journal: the journal's id
/// (`None` before the first pull) and the newest sequence number stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UsageCursor {
    pub journal: Option<String>,
    pub seq: u64,
}

/// The bytes one user moved through a node in a batch (raw, before the
/// node's traffic multiplier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserUsage {
    pub user: UserId,
    pub up: u64,
    pub down: u64,
}

/// One journal record: sequence numbers `first_seq..=seq` (several when the
/// agent merged batches while the manager was away), read from the core
/// between `from` and `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBatch {
    pub first_seq: u64,
    pub seq: u64,
    pub from: Timestamp,
    pub to: Timestamp,
    pub users: Vec<UserUsage>,
}

/// A pull's answer: the node's journal id and the batches after the cursor
/// the pull named, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsagePage {
    pub journal: String,
    pub batches: Vec<UsageBatch>,
    /// More batches wait on the node.
    pub more: bool,
}

impl UsagePage {
    /// The cursor after storing this page on top of `cursor`: the page's
    /// journal and its last sequence number (or `cursor`'s when the page is
    /// empty and from the same journal; 0 for a new journal).
    pub fn cursor_after(&self, cursor: &UsageCursor) -> UsageCursor {
        let same = cursor.journal.as_deref() == Some(self.journal.as_str());
        let base = if same { cursor.seq } else { 0 };
        UsageCursor {
            journal: Some(self.journal.clone()),
            seq: self.batches.last().map_or(base, |b| b.seq.max(base)),
        }
    }

    /// The batches not yet stored under `cursor` (a repeated pull answers
    /// some again): all of them for another journal.
    pub fn new_batches<'a>(&'a self, cursor: &UsageCursor) -> impl Iterator<Item = &'a UsageBatch> {
        let after = if cursor.journal.as_deref() == Some(self.journal.as_str()) {
            cursor.seq
        } else {
            0
        };
        self.batches.iter().filter(move |b| b.first_seq > after)
    }

    /// How many user-deltas the page holds.
    pub fn deltas(&self) -> usize {
        self.batches.iter().map(|b| b.users.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_seq: u64, seq: u64) -> UsageBatch {
        UsageBatch {
            first_seq,
            seq,
            from: Timestamp(0),
            to: Timestamp(0),
            users: vec![UserUsage {
                user: UserId::random(),
                up: 1,
                down: 2,
            }],
        }
    }

    #[test]
    fn a_repeated_pull_is_stored_once() {
        let page = UsagePage {
            journal: "j".into(),
            batches: vec![batch(1, 1), batch(2, 4), batch(5, 5)],
            more: false,
        };
        let fresh = UsageCursor::default();
        assert_eq!(page.new_batches(&fresh).count(), 3);
        let stored = page.cursor_after(&fresh);
        assert_eq!(
            stored,
            UsageCursor {
                journal: Some("j".into()),
                seq: 5
            }
        );
        assert_eq!(page.new_batches(&stored).count(), 0);
        assert_eq!(page.cursor_after(&stored), stored);
        let partly = UsageCursor {
            journal: Some("j".into()),
            seq: 4,
        };
        assert_eq!(
            page.new_batches(&partly).map(|b| b.seq).collect::<Vec<_>>(),
            [5]
        );
    }

    #[test]
    fn another_journal_starts_from_its_first_batch() {
        let page = UsagePage {
            journal: "new".into(),
            batches: vec![batch(1, 1)],
            more: false,
        };
        let old = UsageCursor {
            journal: Some("old".into()),
            seq: 900,
        };
        assert_eq!(page.new_batches(&old).count(), 1);
        assert_eq!(
            page.cursor_after(&old),
            UsageCursor {
                journal: Some("new".into()),
                seq: 1
            }
        );
        let empty = UsagePage {
            journal: "new".into(),
            batches: vec![],
            more: false,
        };
        assert_eq!(
            empty.cursor_after(&old),
            UsageCursor {
                journal: Some("new".into()),
                seq: 0
            }
        );
    }
}
