//! Webhook deliveries as every backend stores them: an outbox row's
//! columns turned into the domain's [`Delivery`].

use crate::domain::{BlockReason, Delivery, EventKind, NewDelivery, ParseError, Timestamp};
use crate::storage::{StorageError, StorageResult};

/// What every backend refuses to put in the outbox, before writing it (and
/// after the change it comes with, in the same transaction, so a refusal
/// undoes the change): a delivery without an event id or an endpoint, which
/// no worker could dedupe or route.
pub fn check_delivery(d: &NewDelivery) -> StorageResult<()> {
    let what = if d.event_id.trim().is_empty() {
        "webhook event id"
    } else if d.endpoint.trim().is_empty() {
        "webhook endpoint"
    } else {
        return Ok(());
    };
    Err(StorageError::Invalid(ParseError {
        what,
        value: String::new(),
    }))
}

/// The event a change of what blocks a user is: back on the nodes
/// (`user.re_enabled`), or blocked now by the limit or the expiry; `None`
/// when the user was blocked before and still is, or never was.
pub fn block_event(before: Option<BlockReason>, after: Option<BlockReason>) -> Option<EventKind> {
    match (before, after) {
        (Some(_), None) => Some(EventKind::UserReEnabled),
        (None, Some(BlockReason::Limited)) => Some(EventKind::UserLimited),
        (None, Some(BlockReason::Expired)) => Some(EventKind::UserExpired),
        _ => None,
    }
}

/// An outbox row as read: what a backend takes from its columns.
#[derive(Debug)]
pub struct StoredDelivery {
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    pub event: String,
    pub body: String,
    pub created: i64,
    pub attempts: i64,
    pub next_at: i64,
}

impl StoredDelivery {
    /// The delivery; an unknown event kind or a negative attempt count is
    /// [`StorageError::Corrupt`].
    pub fn into_delivery(self) -> StorageResult<Delivery> {
        let event = self
            .event
            .parse::<EventKind>()
            .map_err(|_| StorageError::Corrupt(format!("webhook event {:?}", self.event)))?;
        let attempts = u32::try_from(self.attempts)
            .map_err(|_| StorageError::Corrupt(format!("webhook attempts {}", self.attempts)))?;
        Ok(Delivery {
            id: self.id,
            event_id: self.event_id,
            endpoint: self.endpoint,
            event,
            body: self.body,
            created: Timestamp(self.created),
            attempts,
            next_at: Timestamp(self.next_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredDelivery {
        StoredDelivery {
            id: 7,
            event_id: "e1".into(),
            endpoint: "hook".into(),
            event: EventKind::ALL[0].as_str().into(),
            body: "{}".into(),
            created: 1,
            attempts: 2,
            next_at: 3,
        }
    }

    #[test]
    fn a_stored_delivery_reads_back_and_a_damaged_one_is_corrupt() {
        let d = stored().into_delivery().unwrap();
        assert_eq!((d.id, d.attempts, d.next_at), (7, 2, Timestamp(3)));
        let mut bad = stored();
        bad.event = "user.nope".into();
        assert!(matches!(bad.into_delivery(), Err(StorageError::Corrupt(_))));
        let mut bad = stored();
        bad.attempts = -1;
        assert!(matches!(bad.into_delivery(), Err(StorageError::Corrupt(_))));
    }
}
