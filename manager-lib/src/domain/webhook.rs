//! Webhook events and their deliveries through the outbox.
//!
//! An event (a user limited, a node down, a token made…) becomes one JSON
//! body, written once; each configured endpoint whose filter takes the
//! event gets a [`NewDelivery`] of that same body in the outbox. The body
//! and the event id never change afterwards, so every retry (and a replay)
//! carries the same bytes and the same `X-Xm-Event-Id`, and a receiver
//! recognises a delivery it already has by that id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ParseError, Timestamp};

/// What happened. The text form (`user.limited`, …) is the `event` field of
/// the body and what an endpoint's filter lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventKind {
    UserLimited,
    UserExpired,
    UserExpiring,
    UserReEnabled,
    NodeDown,
    NodeRecovered,
    NodeResynced,
    TokenCreated,
    TokenRevoked,
}

impl EventKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [EventKind; 9] = [
        EventKind::UserLimited,
        EventKind::UserExpired,
        EventKind::UserExpiring,
        EventKind::UserReEnabled,
        EventKind::NodeDown,
        EventKind::NodeRecovered,
        EventKind::NodeResynced,
        EventKind::TokenCreated,
        EventKind::TokenRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserLimited => "user.limited",
            EventKind::UserExpired => "user.expired",
            EventKind::UserExpiring => "user.expiring",
            EventKind::UserReEnabled => "user.re_enabled",
            EventKind::NodeDown => "node.down",
            EventKind::NodeRecovered => "node.recovered",
            EventKind::NodeResynced => "node.resynced",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "webhook event",
                value: s.to_owned(),
            })
    }
}

impl TryFrom<String> for EventKind {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EventKind> for String {
    fn from(k: EventKind) -> Self {
        k.as_str().to_owned()
    }
}

/// One event as sent: the body of every delivery of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event; the idempotency key a receiver dedupes on.
    pub id: String,
    pub event: EventKind,
    /// When the manager saw it happen (ms since the epoch).
    pub at: Timestamp,
    /// The id of the user, node or token it is about.
    pub subject: String,
    /// Kind-specific details (a user's name, a block reason, an expiry).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl WebhookEvent {
    /// A new event with a random id.
    pub fn new(event: EventKind, subject: impl Into<String>, data: serde_json::Value) -> Self {
        Self::with_id(uuid::Uuid::new_v4().to_string(), event, subject, data)
    }

    /// An event whose id the caller derives, so that noticing the same thing
    /// twice (a scan that runs again) enqueues it once: the outbox keeps one
    /// delivery per (event id, endpoint).
    pub fn with_id(
        id: String,
        event: EventKind,
        subject: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id,
            event,
            at: Timestamp::now(),
            subject: subject.into(),
            data,
        }
    }

    /// The delivery of this event to `endpoint`, with its JSON body.
    pub fn delivery_to(&self, endpoint: &str) -> NewDelivery {
        NewDelivery {
            event_id: self.id.clone(),
            endpoint: endpoint.to_owned(),
            event: self.event,
            // A struct of strings, numbers and JSON values always serialises.
            body: serde_json::to_string(self).unwrap_or_default(),
            created: self.at,
        }
    }
}

/// A delivery to put in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub event_id: String,
    /// The configured endpoint's name.
    pub endpoint: String,
    pub event: EventKind,
    /// The exact bytes to POST (and to sign).
    pub body: String,
    pub created: Timestamp,
}

/// A delivery as stored, claimed by a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The outbox row's id (grows with each delivery enqueued).
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    pub event: EventKind,
    pub body: String,
    pub created: Timestamp,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not tried before this time.
    pub next_at: Timestamp,
}
