//! The part of the `Storage` port that keeps each node's recent heartbeat
//! events ([`NodeEvent`]): a bounded log per node, newest kept, gone with
//! the node. Every backend implements it next to
//! [`Storage`](super::Storage), which requires it.

use std::fmt::Debug;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::{NodeEvent, NodeId};

/// Each node's recent events. Object safe; every method is one transaction.
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
        }
    };
}
