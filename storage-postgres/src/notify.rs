//! Changes written with their webhook events ([`NotifyingStore`]): the
//! change's statements and the outbox rows in one transaction, so a
//! failing row rolls the change back with it.

use async_trait::async_trait;
use manager_lib::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use manager_lib::domain::{
    ActualStatus, ApiToken, InboundDescription, NewDelivery, NodeId, PlanEdit, Seq, Timestamp,
    TokenId, TokenVerifier, User, UserId,
};
use manager_lib::storage::{Entity, Notices, NotifyingStore, StorageResult};

use crate::error::map_err;
use crate::outbox::insert;
use crate::{PgStorage, access, nodes, plans, usage};

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl NotifyingStore for PgStorage {
    async fn ingest_usage_notifying(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<IngestOutcome> {
        usage::ingest_usage(self, node, pulled_with, page, now, Some(notices)).await
    }

    async fn enforce_time_notifying(
        &self,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<EnforceOutcome> {
        plans::enforce_time(self, now, Some(notices)).await
    }

    async fn edit_user_plan_notifying(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        plans::edit_user_plan(self, id, edit, now, Some(notices)).await
    }

    async fn reset_user_usage_notifying(
        &self,
        id: UserId,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        plans::reset_user_usage(self, id, now, Some(notices)).await
    }

    async fn record_observation_notifying(
        &self,
        id: NodeId,
        actual: ActualStatus,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(node_err)?;
        nodes::record_observation(&mut *tx, id, actual).await?;
        insert(&mut *tx, deliveries).await?;
        tx.commit().await.map_err(node_err)
    }

    async fn finish_start_notifying(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(node_err)?;
        nodes::finish_start(&mut *tx, id, seq, template, inbounds).await?;
        insert(&mut *tx, deliveries).await?;
        tx.commit().await.map_err(node_err)
    }

    async fn create_token_notifying(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(token_err)?;
        access::create_token(&mut *tx, token, verifier).await?;
        insert(&mut *tx, deliveries).await?;
        tx.commit().await.map_err(token_err)
    }

    async fn revoke_token_notifying(
        &self,
        id: TokenId,
        now: Timestamp,
        deliveries: &[NewDelivery],
    ) -> StorageResult<ApiToken> {
        let mut tx = self.pool.begin().await.map_err(token_err)?;
        let (token, first) = access::revoke_token(&mut *tx, id, now).await?;
        if first {
            insert(&mut *tx, deliveries).await?;
        }
        tx.commit().await.map_err(token_err)?;
        Ok(token)
    }
}

fn node_err(e: sqlx::Error) -> manager_lib::storage::StorageError {
    map_err(Entity::Node, e)
}

fn token_err(e: sqlx::Error) -> manager_lib::storage::StorageError {
    map_err(Entity::Token, e)
}
