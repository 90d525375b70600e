//! Webhook events the manager notices, written to the outbox
//! ([`crate::webhook`]) in the same transaction as the change that caused
//! them ([`NotifyingStore`](crate::storage::NotifyingStore)): a manager
//! that dies right after a change, or an outbox write that fails, leaves
//! neither the change nor its event, never one without the other. So every
//! event of a committed change is delivered at least once.
//!
//! With no endpoint configured the plain storage methods are called (no
//! event is recorded, no extra read). Events about users carry the user as
//! the transaction wrote it.

use serde_json::{Value, json};

use super::{Manager, ManagerResult};
use crate::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use crate::domain::{
    ActualStatus, ApiToken, EventKind, InboundDescription, NewDelivery, Node, NodeId, PageRequest,
    PlanEdit, Seq, Timestamp, TokenId, TokenVerifier, User, UserId, UserStatus, WebhookEvent,
};
use crate::storage::Notices;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Manager {
    fn notifies(&self) -> bool {
        !self.settings.webhooks.is_empty()
    }

    /// What a change writes about a user it changed: one event (a random
    /// id) routed to the endpoints whose filter takes it.
    fn notices(&self) -> Notices {
        let routes = self.settings.webhooks.clone();
        Notices::new(move |kind, user| {
            routes.deliveries(&WebhookEvent::new(
                kind,
                user.id.to_string(),
                user_data(user),
            ))
        })
    }

    fn node_deliveries(&self, kind: EventKind, node: &Node) -> Vec<NewDelivery> {
        let data = json!({ "node_id": node.id.to_string(), "endpoint": node.endpoint.to_string() });
        self.settings
            .webhooks
            .deliveries(&WebhookEvent::new(kind, node.id.to_string(), data))
    }

    /// A token's creation and revocation happen once each: the event id
    /// is derived from the token, so the same event enqueued twice is one.
    fn token_deliveries(&self, kind: EventKind, token: &ApiToken) -> Vec<NewDelivery> {
        let data = json!({
            "token_id": token.id.to_string(),
            "name": token.name,
            "role": token.role.as_str(),
        });
        let id = format!("{kind}:{}", token.id);
        self.settings.webhooks.deliveries(&WebhookEvent::with_id(
            id,
            kind,
            token.id.to_string(),
            data,
        ))
    }

    /// Stores a usage page; users it blocks get `user.limited`.
    pub(crate) async fn store_usage(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
    ) -> ManagerResult<IngestOutcome> {
        let now = Timestamp::now();
        Ok(if self.notifies() {
            self.storage
                .ingest_usage_notifying(node, pulled_with, page, now, &self.notices())
                .await?
        } else {
            self.storage
                .ingest_usage(node, pulled_with, page, now)
                .await?
        })
    }

    /// Applies the plans' clock; users expired get `user.expired`, users a
    /// reset unblocked `user.re_enabled`.
    pub(crate) async fn apply_time(&self) -> ManagerResult<EnforceOutcome> {
        let now = Timestamp::now();
        Ok(if self.notifies() {
            self.storage
                .enforce_time_notifying(now, &self.notices())
                .await?
        } else {
            self.storage.enforce_time(now).await?
        })
    }

    /// Edits a plan; a user it blocks or unblocks gets that event.
    pub(crate) async fn store_plan_edit(&self, id: UserId, edit: PlanEdit) -> ManagerResult<User> {
        let now = Timestamp::now();
        Ok(if self.notifies() {
            self.storage
                .edit_user_plan_notifying(id, edit, now, &self.notices())
                .await?
        } else {
            self.storage.edit_user_plan(id, edit, now).await?
        })
    }

    /// Zeroes used bytes; a user it unblocks gets `user.re_enabled`.
    pub(crate) async fn store_usage_reset(&self, id: UserId) -> ManagerResult<User> {
        let now = Timestamp::now();
        Ok(if self.notifies() {
            self.storage
                .reset_user_usage_notifying(id, now, &self.notices())
                .await?
        } else {
            self.storage.reset_user_usage(id, now).await?
        })
    }

    /// Records what a heartbeat saw of `node` (as read before), with
    /// `event` about it (a node down or recovered) when given.
    pub(crate) async fn observe(
        &self,
        node: &Node,
        actual: ActualStatus,
        event: Option<EventKind>,
    ) -> ManagerResult<()> {
        match event.filter(|_| self.notifies()) {
            Some(kind) => {
                let deliveries = self.node_deliveries(kind, node);
                self.storage
                    .record_observation_notifying(node.id, actual, &deliveries)
                    .await?
            }
            None => self.storage.record_observation(node.id, actual).await?,
        }
        Ok(())
    }

    /// Records a successful `/start`, with `node.resynced` when `resynced`
    /// (every user sent again to a node whose core had lost some).
    pub(crate) async fn store_start(
        &self,
        node: &Node,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        resynced: bool,
    ) -> ManagerResult<()> {
        if resynced && self.notifies() {
            let deliveries = self.node_deliveries(EventKind::NodeResynced, node);
            self.storage
                .finish_start_notifying(node.id, seq, template, inbounds, &deliveries)
                .await?
        } else {
            self.storage
                .finish_start(node.id, seq, template, inbounds)
                .await?
        }
        Ok(())
    }

    /// Stores a new token, with `token.created`.
    pub(crate) async fn store_token(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
    ) -> ManagerResult<()> {
        if self.notifies() {
            let deliveries = self.token_deliveries(EventKind::TokenCreated, token);
            self.storage
                .create_token_notifying(token, verifier, &deliveries)
                .await?
        } else {
            self.storage.create_token(token, verifier).await?
        }
        Ok(())
    }

    /// Revokes a token; only the first revocation writes `token.revoked`
    /// (the call is idempotent).
    pub(crate) async fn store_revocation(
        &self,
        id: TokenId,
        now: Timestamp,
    ) -> ManagerResult<ApiToken> {
        if !self.notifies() {
            return Ok(self.storage.revoke_token(id, now).await?);
        }
        // The body names the token: read it first (its name and role never
        // change; an unknown id is `NotFound` here as from the revocation).
        let (token, _) = self.storage.get_token(id).await?;
        let deliveries = self.token_deliveries(EventKind::TokenRevoked, &token);
        Ok(self
            .storage
            .revoke_token_notifying(id, now, &deliveries)
            .await?)
    }

    /// Enqueues `user.expiring` for each enabled, unblocked user whose
    /// expiry falls within `expiring_within_days` from now. This scan
    /// changes nothing but the outbox, so it needs no other transaction:
    /// the event's id is derived from the user and the expiry, and the
    /// outbox keeps one delivery per id and endpoint, so scanning again
    /// (every replica, every hour) sends it once per expiry; a new expiry
    /// is a new event. A failed write is this call's error, and the next
    /// scan writes it again. Returns how many users are expiring.
    pub async fn notice_expiring_users(&self) -> ManagerResult<usize> {
        let days = i64::from(self.settings.expiring_within_days);
        if !self.notifies() || days == 0 {
            return Ok(0);
        }
        let now = Timestamp::now();
        let horizon = Timestamp(now.0.saturating_add(days.saturating_mul(DAY_MS)));
        let mut page = PageRequest::first(1000);
        let mut found = 0;
        loop {
            let users = self.storage.list_users(&page).await?;
            let deliveries: Vec<NewDelivery> = users
                .items
                .iter()
                .filter(|u| u.status == UserStatus::Enabled && u.blocked.is_none())
                .filter_map(|u| {
                    let at = u.plan.expire_at?;
                    (at > now && at <= horizon).then(|| {
                        WebhookEvent::with_id(
                            format!("user.expiring:{}:{}", u.id, at.0),
                            EventKind::UserExpiring,
                            u.id.to_string(),
                            user_data(u),
                        )
                    })
                })
                .inspect(|_| found += 1)
                .flat_map(|e| self.settings.webhooks.deliveries(&e))
                .collect();
            self.storage.enqueue_deliveries(&deliveries).await?;
            match users.next {
                Some(after) => page.after = Some(after),
                None => return Ok(found),
            }
        }
    }
}

fn user_data(user: &User) -> Value {
    json!({
        "user_id": user.id.to_string(),
        "name": user.name,
        "blocked": user.blocked.map(|b| b.as_str()),
        "data_limit": user.plan.data_limit,
        "used_bytes": user.used_up.saturating_add(user.used_down),
        "expire_at": user.plan.expire_at.map(|t| t.0),
    })
}
