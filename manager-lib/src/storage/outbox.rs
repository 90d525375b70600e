//! The part of the `Storage` port that keeps the webhook outbox (see
//! [`crate::domain::webhook`]): deliveries waiting to be POSTed, claimed by
//! one manager replica at a time with a lease, retried at a later time when
//! they fail, pruned once delivered. Every backend implements it next to
//! [`Storage`](super::Storage), which requires it.
//!
//! Times are the caller's clock (`now`), so the retry schedule can be
//! tested; replicas are expected to run NTP-synced clocks (a skew only
//! shortens or lengthens a lease by that much).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::{Delivery, NewDelivery, Timestamp};

/// The webhook outbox. Object safe; every method is one transaction.
#[async_trait]
pub trait WebhookStore: Debug + Send + Sync {
    /// Adds the deliveries, due at once (`next_at = created`), in one
    /// transaction.
    ///
    /// # Contract
    /// - A delivery whose (event id, endpoint) is already in the outbox
    ///   (delivered or not, until pruned) is skipped: enqueueing the same
    ///   event twice delivers it once.
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> StorageResult<()>;

    /// Claims up to `limit` undelivered deliveries due at `now` (`next_at <=
    /// now`) whose lease is free or expired, for `owner` until `now +
    /// lease`, and returns them oldest (smallest id) first.
    ///
    /// # Contract
    /// - At any moment a delivery has at most one owner with an unexpired
    ///   lease: two replicas never hold the same delivery at once.
    /// - A delivered delivery is never claimed again.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Delivery>>;

    /// Records that delivery `id` reached its endpoint at `now` and frees
    /// its lease. Returns false when there is no such undelivered delivery.
    ///
    /// # Contract
    /// - Idempotent: a delivery keeps its first delivery time.
    async fn mark_delivered(&self, id: i64, now: Timestamp) -> StorageResult<bool>;

    /// Records a failed attempt of delivery `id`: one more attempt, not due
    /// before `next_at`, lease freed, `error` kept as the last error.
    /// Returns false (and changes nothing) unless `owner` holds its lease
    /// and it is undelivered: a replica whose lease ran out and was taken
    /// over does not push the new owner's schedule.
    async fn schedule_retry(
        &self,
        id: i64,
        owner: &str,
        next_at: Timestamp,
        error: &str,
    ) -> StorageResult<bool>;

    /// Deletes the deliveries delivered before `before`; returns how many.
    /// Undelivered ones are kept whatever their age.
    async fn prune_deliveries(&self, before: Timestamp) -> StorageResult<u64>;

    /// How many deliveries are not delivered yet (for metrics and tests).
    async fn undelivered_count(&self) -> StorageResult<u64>;
}

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

/// Implements [`WebhookStore`] for `$ty` by forwarding every method to its
/// field `$inner`: for decorators and test fakes that change nothing about
/// the outbox. Every method is forwarded (`clippy::missing_trait_methods`
/// is denied).
///
/// ```ignore
/// manager_lib::forward_webhook_store!(MyDecorator, inner);
/// ```
#[macro_export]
macro_rules! forward_webhook_store {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::outbox::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::WebhookStore for $ty {
            async fn enqueue_deliveries(
                &self,
                deliveries: &[$crate::domain::NewDelivery],
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.enqueue_deliveries(deliveries).await
            }
            async fn claim_deliveries(
                &self,
                owner: &str,
                now: $crate::domain::Timestamp,
                lease: ::std::time::Duration,
                limit: u32,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::Delivery>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.claim_deliveries(owner, now, lease, limit).await
            }
            async fn mark_delivered(
                &self,
                id: i64,
                now: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<bool> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.mark_delivered(id, now).await
            }
            async fn schedule_retry(
                &self,
                id: i64,
                owner: &str,
                next_at: $crate::domain::Timestamp,
                error: &str,
            ) -> $crate::storage::StorageResult<bool> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.schedule_retry(id, owner, next_at, error).await
            }
            async fn prune_deliveries(
                &self,
                before: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<u64> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.prune_deliveries(before).await
            }
            async fn undelivered_count(&self) -> $crate::storage::StorageResult<u64> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::WebhookStore as _;
                self.$inner.undelivered_count().await
            }
        }
    };
}

/// The lease end `now + lease`, saturating.
pub fn lease_until(now: Timestamp, lease: Duration) -> Timestamp {
    Timestamp(
        now.0
            .saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
    )
}
