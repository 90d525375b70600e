//! Traffic accounting's vocabulary: what a node's agent journals and the
//! manager pulls, and the cursor that makes a repeated pull harmless.

use super::{NodeId, Timestamp, UserId};

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

/// What storing a pulled page did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestOutcome {
    /// False when the node's stored cursor was no longer the one the page
    /// was pulled with (another replica stored it first): nothing written.
    pub stored: bool,
    /// The node's cursor after the call (the stored one when `!stored`).
    pub cursor: UsageCursor,
    /// How many user entries the stored batches held (the batches after
    /// the cursor; users deleted meanwhile included): the ingest rate's unit.
    pub user_deltas: u64,
    /// Users this page took off the nodes (their limit reached), each once.
    pub newly_blocked: Vec<UserId>,
}

/// What a time-driven enforcement pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforceOutcome {
    /// Users whose expiry passed: now blocked as expired.
    pub expired: Vec<UserId>,
    /// Users whose reset came: used bytes back to zero.
    pub reset: Vec<UserId>,
    /// Those of `reset` whose limit had blocked them: back on the nodes.
    pub unblocked: Vec<UserId>,
}

/// How a user's usage history is summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsageGrouping {
    /// One row per UTC day, every node together.
    Day,
    /// One row per node, every day together.
    Node,
}

/// One row of a user's usage history (bytes after the multiplier): `day`
/// (its UTC midnight) when grouped by day, `node` when grouped by node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub day: Option<Timestamp>,
    pub node: Option<NodeId>,
    pub up: u64,
    pub down: u64,
}

/// Raw bytes one node moved over a time range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUsage {
    pub node: NodeId,
    pub up: u64,
    pub down: u64,
}

/// Milliseconds in a UTC day and hour: the history's buckets.
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the bucket of `width` ms holding `t` (UTC day or hour).
pub fn bucket(t: Timestamp, width: i64) -> Timestamp {
    Timestamp(t.0.div_euclid(width) * width)
}

/// Bytes as every backend stores them: at most `i64::MAX`.
pub fn storable(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// `bytes` through a node's multiplier, rounded, at most `i64::MAX`.
pub fn multiplied(bytes: u64, multiplier: f64) -> u64 {
    let scaled = (bytes as f64 * multiplier).round();
    if scaled >= i64::MAX as f64 {
        i64::MAX as u64
    } else if scaled > 0.0 {
        scaled as u64
    } else {
        0
    }
}

/// `a + b` saturating at `i64::MAX`, the totals' ceiling.
pub fn add_stored(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(i64::MAX as u64)
}

/// Checks a node's traffic multiplier: finite and positive.
pub fn check_multiplier(m: f64) -> Result<f64, super::ParseError> {
    if m.is_finite() && m > 0.0 {
        Ok(m)
    } else {
        Err(super::ParseError {
            what: "traffic multiplier",
            value: m.to_string(),
        })
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

    #[test]
    fn bytes_are_multiplied_rounded_and_capped() {
        assert_eq!(multiplied(10, 1.5), 15);
        assert_eq!(multiplied(3, 0.5), 2);
        assert_eq!(multiplied(u64::MAX, 1.0), i64::MAX as u64);
        assert_eq!(multiplied(i64::MAX as u64, 2.0), i64::MAX as u64);
        assert_eq!(add_stored(i64::MAX as u64 - 1, 5), i64::MAX as u64);
        assert_eq!(storable(u64::MAX), i64::MAX);
        assert_eq!(bucket(Timestamp(DAY_MS + 5), DAY_MS), Timestamp(DAY_MS));
        assert_eq!(bucket(Timestamp(-1), HOUR_MS), Timestamp(-HOUR_MS));
        assert!(check_multiplier(0.0).is_err());
        assert!(check_multiplier(f64::NAN).is_err());
        assert!(check_multiplier(f64::INFINITY).is_err());
        assert_eq!(check_multiplier(0.25), Ok(0.25));
    }
}
