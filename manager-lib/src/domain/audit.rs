//! The audit log: who changed what through the API, when, with what result.
//!
//! An entry holds the actor (a token's name, or `bootstrap`), the call
//! (`METHOD /route/template`, never the raw path), the target (the id of
//! the user, node or token the call was about, when it had one) and the
//! HTTP status it answered. No request or response body is kept, so no
//! secret (node key, token, subscription URL) can end up in it. Entries
//! older than the retention setting are pruned by the manager.

use serde::{Deserialize, Serialize};

use super::{PageRequest, Timestamp};

/// One stored entry. `id` grows with each entry: newer entries have larger ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub call: String,
    pub target: Option<String>,
    pub result: u16,
}

/// An entry to store; the storage gives it its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: Timestamp,
    pub actor: String,
    pub call: String,
    pub target: Option<String>,
    pub result: u16,
}

/// Which entries to list, newest first: every given field must match
/// (`actor`, `call` and `target` exactly; `at` in `from..to`), and only
/// entries older than `before` (an id: the previous page's `next`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub call: Option<String>,
    pub target: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub before: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// The limit, clamped as every page's is (1..=10,000).
    pub fn clamped_limit(&self) -> u32 {
        PageRequest::first(self.limit).clamped_limit()
    }

    /// Whether `entry` is one this query lists (paging aside from `before`).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let eq = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        eq(&self.actor, Some(&entry.actor))
            && eq(&self.call, Some(&entry.call))
            && eq(&self.target, entry.target.as_deref())
            && self.from.is_none_or(|f| entry.at >= f)
            && self.to.is_none_or(|t| entry.at < t)
            && self.before.is_none_or(|b| entry.id < b)
    }
}
