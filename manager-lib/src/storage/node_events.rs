//! The part of the `Storage` port the node pages read: each node's recent
//! heartbeat events ([`NodeEvent`]: a bounded log per node, newest kept,
//! gone with the node), every node's [`NodeSummary`] (the overview and the
//! node list at a thousand nodes) and one node's traffic by day (its
//! chart). Every backend implements it next to
//! [`Storage`](super::Storage), which requires it.

use std::fmt::Debug;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::usage::UsageRow;
use crate::domain::{NodeEvent, NodeId, NodeSummary, Timestamp};

/// Each node's recent events, summaries and daily traffic. Object safe;
/// every method is one transaction.
#[async_trait]
pub trait NodeEventLog: Debug + Send + Sync {
    /// Appends `event` to node `id`'s log and drops its oldest events past
    /// the newest `keep` (at least one is kept).
    ///
    /// # Contract
    /// - An unknown node is [`StorageError::NotFound`](super::StorageError::NotFound)
    ///   and nothing is written.
    /// - Events of one node are read back in the order they were recorded
    ///   (by the order of the calls, not by `at`).
    async fn record_node_event(
        &self,
        id: NodeId,
        event: &NodeEvent,
        keep: u32,
    ) -> StorageResult<()>;

    /// Node `id`'s newest events, newest first, at most `limit`.
    ///
    /// # Contract
    /// - An unknown or deleted node is
    ///   [`StorageError::NotFound`](super::StorageError::NotFound); a new
    ///   node has none. Deleting a node deletes its events.
    async fn node_events(&self, id: NodeId, limit: u32) -> StorageResult<Vec<NodeEvent>>;

    /// Every node's summary, in id order.
    ///
    /// # Contract
    /// - The nodes [`Storage::list_nodes`](super::Storage::list_nodes)
    ///   walks, each equal to [`NodeSummary::of`] the node it reads.
    /// - Cost: one read of plain columns; no key is opened and no stored
    ///   profile parsed (a thousand nodes read in about a millisecond).
    async fn node_summaries(&self) -> StorageResult<Vec<NodeSummary>>;

    /// Raw bytes through node `id` per UTC day, summed over the hours whose
    /// start is in `from..to` (as [`Storage::node_usage`](super::Storage::node_usage)
    /// counts them): one row per day with traffic, in day order, `day` and
    /// `node` set.
    ///
    /// # Contract
    /// - An unknown node, or days without traffic, have no rows.
    /// - Cost: an index range over the node's hours, one read.
    async fn node_usage_by_day(
        &self,
        id: NodeId,
        from: Timestamp,
        to: Timestamp,
    ) -> StorageResult<Vec<UsageRow>>;
}

/// Implements [`NodeEventLog`] for `$ty` by forwarding every method to its
/// field `$inner`: for decorators and test fakes
/// (`clippy::missing_trait_methods` denied, as for every forwarding impl).
#[macro_export]
macro_rules! forward_node_event_log {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::outbox::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::NodeEventLog for $ty {
            async fn record_node_event(
                &self,
                id: $crate::domain::NodeId,
                event: &$crate::domain::NodeEvent,
                keep: u32,
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NodeEventLog as _;
                self.$inner.record_node_event(id, event, keep).await
            }
            async fn node_events(
                &self,
                id: $crate::domain::NodeId,
                limit: u32,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::NodeEvent>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NodeEventLog as _;
                self.$inner.node_events(id, limit).await
            }
            async fn node_summaries(
                &self,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::NodeSummary>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NodeEventLog as _;
                self.$inner.node_summaries().await
            }
            async fn node_usage_by_day(
                &self,
                id: $crate::domain::NodeId,
                from: $crate::domain::Timestamp,
                to: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::usage::UsageRow>>
            {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NodeEventLog as _;
                self.$inner.node_usage_by_day(id, from, to).await
            }
        }
    };
}
