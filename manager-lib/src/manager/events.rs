//! Webhook events the manager notices, written to the outbox right after
//! the change that caused them ([`crate::webhook`]).
//!
//! Right after, not in the same transaction: the changes happen inside
//! storage calls of their own (`ingest_usage`, `enforce_time`, …). So a
//! manager that dies between a change and its enqueue, or an outbox write
//! that fails (logged), loses that one event; the change itself stands.
//! An enqueue never fails the call that caused it.

use serde_json::{Value, json};

use super::{Manager, ManagerResult};
use crate::domain::plan::BlockReason;
use crate::domain::{
    ApiToken, EventKind, Node, PageRequest, Timestamp, User, UserId, UserStatus, WebhookEvent,
};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Manager {
    /// Enqueues `events` for the endpoints whose filter takes them.
    pub(crate) async fn emit(&self, events: Vec<WebhookEvent>) {
        let routes = &self.settings.webhooks;
        if routes.is_empty() || events.is_empty() {
            return;
        }
        let deliveries: Vec<_> = events.iter().flat_map(|e| routes.deliveries(e)).collect();
        if deliveries.is_empty() {
            return;
        }
        if let Err(e) = self.storage.enqueue_deliveries(&deliveries).await {
            let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
            tracing::warn!(error = %e, events = ?kinds, "webhooks: cannot enqueue; events lost");
        }
    }

    /// Events about users, with each user's name and plan when it can
    /// still be read (a user deleted meanwhile gets its id only).
    pub(crate) async fn emit_user_events(&self, kind: EventKind, ids: &[UserId]) {
        if self.settings.webhooks.is_empty() || ids.is_empty() {
            return;
        }
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            let data = match self.storage.get_user(*id).await {
                Ok(user) => user_data(&user),
                Err(_) => json!({ "user_id": id.to_string() }),
            };
            events.push(WebhookEvent::new(kind, id.to_string(), data));
        }
        self.emit(events).await;
    }

    /// Events for a user whose plan changed by hand from `before` to
    /// `after`: blocked now (limited or expired) or back on the nodes.
    pub(crate) async fn emit_plan_change(&self, before: Option<BlockReason>, after: &User) {
        let kind = match (before, after.blocked) {
            (Some(_), None) => EventKind::UserReEnabled,
            (None, Some(BlockReason::Limited)) => EventKind::UserLimited,
            (None, Some(BlockReason::Expired)) => EventKind::UserExpired,
            _ => return,
        };
        self.emit(vec![WebhookEvent::new(
            kind,
            after.id.to_string(),
            user_data(after),
        )])
        .await;
    }

    pub(crate) async fn emit_node_event(&self, kind: EventKind, node: &Node) {
        let data = json!({ "node_id": node.id.to_string(), "endpoint": node.endpoint.to_string() });
        self.emit(vec![WebhookEvent::new(kind, node.id.to_string(), data)])
            .await;
    }

    /// A token's creation and revocation happen once each: the event id
    /// is derived from the token, so two revocations racing (the call is
    /// idempotent) enqueue one event.
    pub(crate) async fn emit_token_event(&self, kind: EventKind, token: &ApiToken) {
        let data = json!({
            "token_id": token.id.to_string(),
            "name": token.name,
            "role": token.role.as_str(),
        });
        let id = format!("{kind}:{}", token.id);
        self.emit(vec![WebhookEvent::with_id(
            id,
            kind,
            token.id.to_string(),
            data,
        )])
        .await;
    }

    /// Enqueues `user.expiring` for each enabled, unblocked user whose
    /// expiry falls within `expiring_within_days` from now. The event's id
    /// is derived from the user and the expiry, and the outbox keeps one
    /// delivery per id and endpoint, so scanning again (every replica, every
    /// hour) sends it once per expiry; a new expiry is a new event. Returns
    /// how many users are expiring.
    pub async fn notice_expiring_users(&self) -> ManagerResult<usize> {
        let days = i64::from(self.settings.expiring_within_days);
        if self.settings.webhooks.is_empty() || days == 0 {
            return Ok(0);
        }
        let now = Timestamp::now();
        let horizon = Timestamp(now.0.saturating_add(days.saturating_mul(DAY_MS)));
        let mut page = PageRequest::first(1000);
        let mut found = 0;
        loop {
            let users = self.storage.list_users(&page).await?;
            let events: Vec<WebhookEvent> = users
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
                .collect();
            found += events.len();
            self.emit(events).await;
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
