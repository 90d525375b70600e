//! The part of the `Storage` port that keeps node key rotations (see
//! [`crate::domain::key_rotation`]): the key waiting to be delivered to a
//! node's agent, and the key the last rotation replaced. Every backend
//! implements it next to [`Storage`](super::Storage), which requires it;
//! the SQL backends seal both keys at rest like the node's key, bound to
//! the node's row.
//!
//! A rotation row goes with its node ([`Storage::delete_node`](super::Storage::delete_node)).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::{KeyRotation, Node, NodeId, NodeKey, Timestamp};

/// Node key rotations. Object safe; every method is one transaction.
#[async_trait]
pub trait KeyRotationStore: Debug + Send + Sync {
    /// Records `key` as the node's pending key, to be delivered with
    /// `grace`, asked for at `now`; the previous key (if any) is kept.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`](super::StorageError::NotFound)`(Node)`
    ///   when there is no such node.
    /// - [`StorageError::AlreadyExists`](super::StorageError::AlreadyExists)`(KeyRotation)`
    ///   when a key is already pending for the node; nothing is written.
    /// - Returns the rotation as a following [`KeyRotationStore::key_rotation`] reads it.
    async fn request_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        grace: Duration,
        now: Timestamp,
    ) -> StorageResult<KeyRotation>;

    /// The node's rotation: `Ok(None)` when it was never rotated (or there
    /// is no such node).
    async fn key_rotation(&self, node: NodeId) -> StorageResult<Option<KeyRotation>>;

    /// Every rotation with a pending key, in node id order: what the
    /// heartbeat delivers.
    async fn pending_key_rotations(&self) -> StorageResult<Vec<KeyRotation>>;

    /// The node's agent took `key`: the node's key becomes `key`, the key it
    /// replaces is kept as the previous one until `now + grace`, and nothing
    /// is pending. Returns the node as stored after.
    ///
    /// # Contract
    /// - `Ok(None)`, and nothing changes, unless `key` is the node's pending
    ///   key (another replica confirmed it first, or there is no such node):
    ///   confirming twice is harmless.
    async fn confirm_key_rotation(
        &self,
        node: NodeId,
        key: &NodeKey,
        now: Timestamp,
    ) -> StorageResult<Option<Node>>;
}

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

/// Implements [`KeyRotationStore`] for `$ty` by forwarding every method to
/// its field `$inner`: for decorators and test fakes that change nothing
/// about rotations (`clippy::missing_trait_methods` denied).
///
/// ```ignore
/// manager_lib::forward_key_rotation_store!(MyDecorator, inner);
/// ```
#[macro_export]
macro_rules! forward_key_rotation_store {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::rotation::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::KeyRotationStore for $ty {
            async fn request_key_rotation(
                &self,
                node: $crate::domain::NodeId,
                key: &$crate::domain::NodeKey,
                grace: ::std::time::Duration,
                now: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<$crate::domain::KeyRotation> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::KeyRotationStore as _;
                self.$inner
                    .request_key_rotation(node, key, grace, now)
                    .await
            }
            async fn key_rotation(
                &self,
                node: $crate::domain::NodeId,
            ) -> $crate::storage::StorageResult<::std::option::Option<$crate::domain::KeyRotation>>
            {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::KeyRotationStore as _;
                self.$inner.key_rotation(node).await
            }
            async fn pending_key_rotations(
                &self,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::KeyRotation>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::KeyRotationStore as _;
                self.$inner.pending_key_rotations().await
            }
            async fn confirm_key_rotation(
                &self,
                node: $crate::domain::NodeId,
                key: &$crate::domain::NodeKey,
                now: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<::std::option::Option<$crate::domain::Node>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::KeyRotationStore as _;
                self.$inner.confirm_key_rotation(node, key, now).await
            }
        }
    };
}
