//! What the fleet overview and the node list show of a node (issue 18):
//! its name, statuses and times, read for a thousand nodes at once without
//! opening a sealed key or reading a stored profile whole.

use super::{ActualStatus, Node, NodeId, RequiredStatus, Timestamp};

/// A node as the pages that list every node show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    pub id: NodeId,
    pub endpoint: String,
    /// The remark of the node's profile (the name clients show), if set.
    pub remark: Option<String>,
    pub actual_status: ActualStatus,
    pub required_status: RequiredStatus,
    pub last_seen: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl NodeSummary {
    /// The summary of a whole node: what every backend's summary read must
    /// answer for it.
    pub fn of(node: &Node) -> NodeSummary {
        NodeSummary {
            id: node.id,
            endpoint: node.endpoint.clone(),
            remark: node.profile.remark.clone(),
            actual_status: node.actual_status,
            required_status: node.required_status,
            last_seen: node.last_seen,
            updated_at: node.updated_at,
        }
    }

    /// The name the node is shown by: [`shown_name`].
    pub fn name(&self) -> &str {
        shown_name(self.remark.as_deref(), &self.endpoint)
    }
}

/// The name a node is shown by: its remark unless blank, else its endpoint.
pub fn shown_name<'a>(remark: Option<&'a str>, endpoint: &'a str) -> &'a str {
    remark.filter(|r| !r.trim().is_empty()).unwrap_or(endpoint)
}
