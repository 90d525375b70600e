//! Changes written with their webhook events ([`NotifyingStore`]): each is
//! one write of the group-commit writer (one `SAVEPOINT`), the change's
//! statements then the outbox rows, so a failing row rolls the change back
//! with it.

use async_trait::async_trait;
use manager_lib::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use manager_lib::domain::{
    ActualStatus, ApiToken, EventKind, InboundDescription, NewDelivery, NodeId, PlanEdit, Seq,
    Timestamp, TokenId, TokenVerifier, User, UserId,
};
use manager_lib::seal::Sealer;
use manager_lib::storage::kit::outbox::block_event;
use manager_lib::storage::{Entity, Notices, NotifyingStore, StorageResult, kit};
use sqlx::SqliteConnection;

use crate::SqliteStorage;
use crate::access::{TOKEN_COLUMNS, token_err, token_from_row};
use crate::error::node_err;
use crate::nodes::{FINISH_START, RECORD_OBSERVATION};
use crate::outbox::insert;
use crate::plans::{edit_plan, enforce, live_user, reset_usage};
use crate::rows::found;
use crate::usage::ingest;

/// The users of `ids` still live, as written so far in this transaction.
async fn users(
    conn: &mut SqliteConnection,
    ids: &[UserId],
    seal: &Sealer,
) -> StorageResult<Vec<User>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(live_user(conn, *id, seal).await?);
    }
    Ok(out)
}

/// The event of a plan change, written.
async fn plan_change(
    conn: &mut SqliteConnection,
    (before, after): (User, User),
    notices: &Notices,
) -> StorageResult<User> {
    if let Some(kind) = block_event(before.blocked, after.blocked) {
        let deliveries = notices.deliveries(kind, std::slice::from_ref(&after))?;
        insert(conn, &deliveries).await?;
    }
    Ok(after)
}

/// Runs a statement that must touch the node, on `conn`.
async fn node_statement<'q>(
    conn: &mut SqliteConnection,
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
) -> StorageResult<()> {
    let row = query.fetch_optional(&mut *conn).await.map_err(node_err)?;
    found(row, Entity::Node).map(drop)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl NotifyingStore for SqliteStorage {
    async fn ingest_usage_notifying(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<IngestOutcome> {
        let (pulled_with, page) = (pulled_with.clone(), page.clone());
        let (seal, notices) = (self.seal.clone(), notices.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let outcome = ingest(conn, node, pulled_with, page, now).await?;
                let limited = users(conn, &outcome.newly_blocked, &seal).await?;
                insert(conn, &notices.deliveries(EventKind::UserLimited, &limited)?).await?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn enforce_time_notifying(
        &self,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<EnforceOutcome> {
        let (seal, notices) = (self.seal.clone(), notices.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let outcome = enforce(conn, now).await?;
                let expired = users(conn, &outcome.expired, &seal).await?;
                insert(conn, &notices.deliveries(EventKind::UserExpired, &expired)?).await?;
                let back = users(conn, &outcome.unblocked, &seal).await?;
                insert(conn, &notices.deliveries(EventKind::UserReEnabled, &back)?).await?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn edit_user_plan_notifying(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        let (seal, notices) = (self.seal.clone(), notices.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let change = edit_plan(conn, id, edit, now, &seal).await?;
                plan_change(conn, change, &notices).await
            })
        })
        .await
    }

    async fn reset_user_usage_notifying(
        &self,
        id: UserId,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        let (seal, notices) = (self.seal.clone(), notices.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let change = reset_usage(conn, id, now, &seal).await?;
                plan_change(conn, change, &notices).await
            })
        })
        .await
    }

    async fn record_observation_notifying(
        &self,
        id: NodeId,
        actual: ActualStatus,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let deliveries = deliveries.to_vec();
        self.write(move |conn| {
            Box::pin(async move {
                let query = sqlx::query(RECORD_OBSERVATION)
                    .bind(id.to_string())
                    .bind(actual.as_str())
                    .bind(Timestamp::now().0);
                node_statement(conn, query).await?;
                insert(conn, &deliveries).await
            })
        })
        .await
    }

    async fn finish_start_notifying(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let deliveries = deliveries.to_vec();
        let template = template.to_owned();
        let inbounds = kit::profile::inbounds_to_json(inbounds);
        self.write(move |conn| {
            Box::pin(async move {
                let query = sqlx::query(FINISH_START)
                    .bind(id.to_string())
                    .bind(seq)
                    .bind(template)
                    .bind(Timestamp::now().0)
                    .bind(inbounds);
                node_statement(conn, query).await?;
                insert(conn, &deliveries).await
            })
        })
        .await
    }

    async fn create_token_notifying(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        let (token, verifier) = (token.clone(), verifier.clone());
        let deliveries = deliveries.to_vec();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(&format!(
                    "INSERT INTO api_tokens ({TOKEN_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))
                .bind(token.id.to_string())
                .bind(&token.name)
                .bind(token.role.as_str())
                .bind(token.created.0)
                .bind(token.expires.map(|t| t.0))
                .bind(token.revoked.map(|t| t.0))
                .bind(verifier.salt().to_vec())
                .bind(verifier.digest_bytes().to_vec())
                .execute(&mut *conn)
                .await
                .map_err(token_err)?;
                insert(conn, &deliveries).await
            })
        })
        .await
    }

    async fn revoke_token_notifying(
        &self,
        id: TokenId,
        now: Timestamp,
        deliveries: &[NewDelivery],
    ) -> StorageResult<ApiToken> {
        let deliveries = deliveries.to_vec();
        self.write(move |conn| {
            Box::pin(async move {
                // Revoked by this call exactly when it was not before.
                let row = sqlx::query(&format!(
                    "UPDATE api_tokens SET revoked = coalesce(revoked, ?2) WHERE id = ?1 \
                     RETURNING {TOKEN_COLUMNS}, (revoked = ?2) AS now_revoked"
                ))
                .bind(id.to_string())
                .bind(now.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(token_err)?;
                let row = found(row, Entity::Token)?;
                let (token, _) = token_from_row(&row)?;
                let first: bool = sqlx::Row::try_get(&row, "now_revoked").map_err(token_err)?;
                if first {
                    insert(conn, &deliveries).await?;
                }
                Ok(token)
            })
        })
        .await
    }
}
