//! A node's recent heartbeat events (issue 18): what the heartbeat saw go
//! wrong or set right on a node, kept a bounded number per node for its
//! page and the overview's nodes in error.

use super::{ParseError, Timestamp};

/// What happened to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeEventKind {
    /// The node did not answer its check well (unreachable, not authentic,
    /// its core in trouble); the detail is the error.
    Failed,
    /// It answers well again after being in error.
    Recovered,
    /// Found stopped while it should run: started again.
    Restarted,
    /// Its core had lost users: every user was sent again.
    Resynced,
}

impl NodeEventKind {
    pub const ALL: [NodeEventKind; 4] = [
        NodeEventKind::Failed,
        NodeEventKind::Recovered,
        NodeEventKind::Restarted,
        NodeEventKind::Resynced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeEventKind::Failed => "failed",
            NodeEventKind::Recovered => "recovered",
            NodeEventKind::Restarted => "restarted",
            NodeEventKind::Resynced => "resynced",
        }
    }
}

impl std::str::FromStr for NodeEventKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "node event kind",
                value: s.chars().take(32).collect(),
            })
    }
}

/// One event of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub at: Timestamp,
    pub kind: NodeEventKind,
    /// What the manager knows more (the error's text), at most
    /// [`NodeEvent::MAX_DETAIL`] characters.
    pub detail: String,
}

impl NodeEvent {
    /// The longest detail kept, in characters.
    pub const MAX_DETAIL: usize = 500;
    /// How many events a node keeps (its newest).
    pub const KEEP: u32 = 50;

    /// An event, its detail cut to [`Self::MAX_DETAIL`] characters.
    pub fn new(at: Timestamp, kind: NodeEventKind, detail: &str) -> Self {
        Self {
            at,
            kind,
            detail: detail.chars().take(Self::MAX_DETAIL).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_details_are_cut() {
        for kind in NodeEventKind::ALL {
            assert_eq!(kind.as_str().parse::<NodeEventKind>().unwrap(), kind);
        }
        assert!("exploded".parse::<NodeEventKind>().is_err());
        let long = "é".repeat(NodeEvent::MAX_DETAIL + 10);
        let event = NodeEvent::new(Timestamp(1), NodeEventKind::Failed, &long);
        assert_eq!(event.detail.chars().count(), NodeEvent::MAX_DETAIL);
    }
}
