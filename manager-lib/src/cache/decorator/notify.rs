//! The decorator's changes written with their webhook events: each drops
//! what its plain namesake drops from the cache (see the `Storage` impl).

use async_trait::async_trait;

use super::CachedStorage;
use crate::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use crate::domain::{
    ActualStatus, ApiToken, InboundDescription, NewDelivery, NodeId, PlanEdit, Seq, Timestamp,
    TokenId, TokenVerifier, User, UserId,
};
use crate::storage::{Notices, NotifyingStore, StorageError, StorageResult};

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl NotifyingStore for CachedStorage {
    async fn ingest_usage_notifying(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<IngestOutcome> {
        let r = self
            .inner
            .ingest_usage_notifying(node, pulled_with, page, now, notices)
            .await;
        if let Ok(outcome) = &r {
            for id in &outcome.newly_blocked {
                self.user_written(*id, None).await;
            }
        }
        r
    }

    async fn enforce_time_notifying(
        &self,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<EnforceOutcome> {
        let r = self.inner.enforce_time_notifying(now, notices).await;
        if let Ok(outcome) = &r {
            for id in outcome.expired.iter().chain(&outcome.reset) {
                self.user_written(*id, None).await;
            }
        }
        r
    }

    async fn edit_user_plan_notifying(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        let r = self
            .inner
            .edit_user_plan_notifying(id, edit, now, notices)
            .await;
        if !matches!(r, Err(StorageError::NotFound(_) | StorageError::Invalid(_))) {
            self.user_written(id, None).await;
        }
        r
    }

    async fn reset_user_usage_notifying(
        &self,
        id: UserId,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        let r = self
            .inner
            .reset_user_usage_notifying(id, now, notices)
            .await;
        if !matches!(r, Err(StorageError::NotFound(_) | StorageError::Invalid(_))) {
            self.user_written(id, None).await;
        }
        r
    }

    async fn record_observation_notifying(
        &self,
        id: NodeId,
        actual: ActualStatus,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let r = self
            .inner
            .record_observation_notifying(id, actual, deliveries)
            .await;
        self.nodes.invalidate();
        r
    }

    async fn finish_start_notifying(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let r = self
            .inner
            .finish_start_notifying(id, seq, template, inbounds, deliveries)
            .await;
        self.nodes.invalidate();
        r
    }

    async fn create_token_notifying(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        self.inner
            .create_token_notifying(token, verifier, deliveries)
            .await
    }

    async fn revoke_token_notifying(
        &self,
        id: TokenId,
        now: Timestamp,
        deliveries: &[NewDelivery],
    ) -> StorageResult<ApiToken> {
        self.inner.revoke_token_notifying(id, now, deliveries).await
    }
}
