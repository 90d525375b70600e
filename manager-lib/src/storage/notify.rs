//! The part of the `Storage` port that makes a change and writes the
//! webhook events it causes in the same transaction: both commit or
//! neither does, so a manager that dies right after a change, or an outbox
//! write that fails, cannot lose the event (the webhook worker delivers it
//! at least once).
//!
//! Each method is its plain [`Storage`](super::Storage) /
//! [`AccessStore`](super::AccessStore) namesake plus the outbox rows:
//!
//! - where the caller knows the events before the change (a node seen down,
//!   a token made), it passes the deliveries;
//! - where only the transaction knows which users changed (usage crossing
//!   a limit, expiries, a plan edit), it passes [`Notices`], which turns
//!   each changed user, as the transaction wrote it, into deliveries.
//!
//! A delivery refused by [`kit::outbox::check_delivery`](super::kit::outbox::check_delivery)
//! fails the call with [`StorageError::Invalid`](super::StorageError::Invalid)
//! and undoes the change: that is how the conformance suite checks the two
//! really share a transaction. The manager calls these only when an
//! endpoint is configured; without one it calls the plain methods.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::StorageResult;
use super::kit::outbox::check_delivery;
use crate::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use crate::domain::{
    ActualStatus, ApiToken, EventKind, InboundDescription, NewDelivery, NodeId, PlanEdit, Seq,
    Timestamp, TokenId, TokenVerifier, User, UserId,
};

type UserEvents = dyn Fn(EventKind, &User) -> Vec<NewDelivery> + Send + Sync;

/// What a change tells the outbox about a user it changed: `(kind, user as
/// written) → deliveries`. Cheap to clone (a shared closure), so a backend
/// can move it into its transaction.
#[derive(Clone)]
pub struct Notices(Arc<UserEvents>);

impl Notices {
    pub fn new(f: impl Fn(EventKind, &User) -> Vec<NewDelivery> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Notices that write nothing.
    pub fn none() -> Self {
        Self::new(|_, _| Vec::new())
    }

    /// The deliveries of `kind` for each of `users`, each checked
    /// ([`check_delivery`]): a backend writes them or fails the call.
    pub fn deliveries(&self, kind: EventKind, users: &[User]) -> StorageResult<Vec<NewDelivery>> {
        let out: Vec<NewDelivery> = users.iter().flat_map(|u| (self.0)(kind, u)).collect();
        out.iter().try_for_each(check_delivery)?;
        Ok(out)
    }
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notices(..)")
    }
}

/// Changes with their webhook events, one transaction each. Object safe.
#[async_trait]
pub trait NotifyingStore: Send + Sync {
    /// [`Storage::ingest_usage`](super::Storage::ingest_usage), and in the
    /// same transaction `user.limited` for each user in `newly_blocked`
    /// (as written).
    ///
    /// # Contract
    /// - The outcome, and the change, are those of `ingest_usage`; the
    ///   deliveries are in the outbox exactly when the page was stored.
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   nothing of the page stored.
    async fn ingest_usage_notifying(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<IngestOutcome>;

    /// [`Storage::enforce_time`](super::Storage::enforce_time), with
    /// `user.expired` for each user in `expired` and `user.re_enabled` for
    /// each in `unblocked`, in the same transaction.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   no user expired or reset.
    async fn enforce_time_notifying(
        &self,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<EnforceOutcome>;

    /// [`Storage::edit_user_plan`](super::Storage::edit_user_plan), with,
    /// when the edit changes what blocks the user
    /// ([`kit::outbox::block_event`](super::kit::outbox::block_event)),
    /// that event in the same transaction.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   the plan unchanged.
    async fn edit_user_plan_notifying(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User>;

    /// [`Storage::reset_user_usage`](super::Storage::reset_user_usage), with
    /// `user.re_enabled` in the same transaction when it unblocks the user.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   the used bytes unchanged.
    async fn reset_user_usage_notifying(
        &self,
        id: UserId,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User>;

    /// [`Storage::record_observation`](super::Storage::record_observation)
    /// and `deliveries` (a node down or recovered), in one transaction.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   the node unchanged.
    async fn record_observation_notifying(
        &self,
        id: NodeId,
        actual: ActualStatus,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()>;

    /// [`Storage::finish_start`](super::Storage::finish_start) and
    /// `deliveries` (a node re-synced), in one transaction.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   the node unchanged.
    async fn finish_start_notifying(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        deliveries: &[NewDelivery],
    ) -> StorageResult<()>;

    /// [`AccessStore::create_token`](super::AccessStore::create_token) and
    /// `deliveries` (`token.created`), in one transaction.
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   no token stored. A taken id or name writes no delivery either.
    async fn create_token_notifying(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()>;

    /// [`AccessStore::revoke_token`](super::AccessStore::revoke_token), and
    /// `deliveries` (`token.revoked`) in the same transaction when this call
    /// is the one that revokes it (a token already revoked writes none).
    ///
    /// # Contract
    /// - A delivery refused: [`StorageError::Invalid`](super::StorageError::Invalid),
    ///   the token not revoked.
    async fn revoke_token_notifying(
        &self,
        id: TokenId,
        now: Timestamp,
        deliveries: &[NewDelivery],
    ) -> StorageResult<ApiToken>;
}

/// Implements [`NotifyingStore`] for `$ty` by forwarding every method to
/// its field `$inner`: for decorators and test fakes that change nothing
/// about these writes (`clippy::missing_trait_methods` denied).
#[macro_export]
macro_rules! forward_notifying_store {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::access::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::NotifyingStore for $ty {
            async fn ingest_usage_notifying(
                &self,
                node: $crate::domain::NodeId,
                pulled_with: &$crate::domain::usage::UsageCursor,
                page: &$crate::domain::usage::UsagePage,
                now: $crate::domain::Timestamp,
                notices: &$crate::storage::Notices,
            ) -> $crate::storage::StorageResult<$crate::domain::usage::IngestOutcome> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .ingest_usage_notifying(node, pulled_with, page, now, notices)
                    .await
            }
            async fn enforce_time_notifying(
                &self,
                now: $crate::domain::Timestamp,
                notices: &$crate::storage::Notices,
            ) -> $crate::storage::StorageResult<$crate::domain::usage::EnforceOutcome> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner.enforce_time_notifying(now, notices).await
            }
            async fn edit_user_plan_notifying(
                &self,
                id: $crate::domain::UserId,
                edit: $crate::domain::PlanEdit,
                now: $crate::domain::Timestamp,
                notices: &$crate::storage::Notices,
            ) -> $crate::storage::StorageResult<$crate::domain::User> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .edit_user_plan_notifying(id, edit, now, notices)
                    .await
            }
            async fn reset_user_usage_notifying(
                &self,
                id: $crate::domain::UserId,
                now: $crate::domain::Timestamp,
                notices: &$crate::storage::Notices,
            ) -> $crate::storage::StorageResult<$crate::domain::User> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .reset_user_usage_notifying(id, now, notices)
                    .await
            }
            async fn record_observation_notifying(
                &self,
                id: $crate::domain::NodeId,
                actual: $crate::domain::ActualStatus,
                deliveries: &[$crate::domain::NewDelivery],
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .record_observation_notifying(id, actual, deliveries)
                    .await
            }
            async fn finish_start_notifying(
                &self,
                id: $crate::domain::NodeId,
                seq: $crate::domain::Seq,
                template: &str,
                inbounds: &[$crate::domain::InboundDescription],
                deliveries: &[$crate::domain::NewDelivery],
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .finish_start_notifying(id, seq, template, inbounds, deliveries)
                    .await
            }
            async fn create_token_notifying(
                &self,
                token: &$crate::domain::ApiToken,
                verifier: &$crate::domain::TokenVerifier,
                deliveries: &[$crate::domain::NewDelivery],
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .create_token_notifying(token, verifier, deliveries)
                    .await
            }
            async fn revoke_token_notifying(
                &self,
                id: $crate::domain::TokenId,
                now: $crate::domain::Timestamp,
                deliveries: &[$crate::domain::NewDelivery],
            ) -> $crate::storage::StorageResult<$crate::domain::ApiToken> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::NotifyingStore as _;
                self.$inner
                    .revoke_token_notifying(id, now, deliveries)
                    .await
            }
        }
    };
}
