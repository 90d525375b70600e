//! Signed webhooks from a durable outbox.
//!
//! The manager notices an event (a user limited or expired, a node down,
//! a token made…) and, in the same transaction as the change that caused
//! it ([`crate::storage::NotifyingStore`]), writes one delivery per
//! interested endpoint into the storage's outbox
//! ([`crate::storage::WebhookStore`]); it never waits for the receiver.
//! The [`Deliverer`] claims due deliveries with a lease (so several
//! replicas never POST the same delivery at once), POSTs each signed
//! ([`signature`]), marks it delivered on a 2xx, otherwise schedules a
//! retry with exponential backoff. The outbox is in the database, so a
//! restart loses nothing: delivery is at least once, and a receiver
//! dedupes on the event id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{EventKind, NewDelivery, WebhookEvent};
// The one secret wrapper (re-exported as `settings::Secret`), from its
// home crate so that `settings` and `webhook` do not import each other.
use node_agent_lib::secret::Secret;

pub mod settings;
pub mod signature;
mod worker;

pub use settings::{EndpointSettings, WebhookSettings};
pub use worker::{Deliverer, PassOutcome};

/// An endpoint ready to be posted to: its secret read.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub url: url::Url,
    /// Redacted in `Debug`; never logged.
    pub secret: Secret,
    /// The events it gets; empty: every event.
    pub events: HashSet<EventKind>,
}

/// Which endpoint gets which event: what the manager needs to enqueue
/// (names and filters, no secret). Empty by default: nothing is enqueued.
#[derive(Clone, Debug, Default)]
pub struct Routes(Arc<[(String, HashSet<EventKind>)]>);

impl Routes {
    /// Routes to endpoints given as (name, filter; empty: every event).
    pub fn new(endpoints: impl IntoIterator<Item = (String, HashSet<EventKind>)>) -> Self {
        Self(endpoints.into_iter().collect())
    }

    /// The routes of resolved endpoints.
    pub fn of(endpoints: &[Endpoint]) -> Self {
        Self::new(endpoints.iter().map(|e| (e.name.clone(), e.events.clone())))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One delivery of `event` per endpoint whose filter takes it.
    pub fn deliveries(&self, event: &WebhookEvent) -> Vec<NewDelivery> {
        self.0
            .iter()
            .filter(|(_, filter)| filter.is_empty() || filter.contains(&event.event))
            .map(|(name, _)| event.delivery_to(name))
            .collect()
    }
}

/// The delivery worker's tuning.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// This replica's name in outbox leases; unique per running replica.
    pub owner: String,
    /// The first retry's delay, doubled at each failure…
    pub retry_initial: Duration,
    /// …up to this.
    pub retry_max: Duration,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// How often the outbox is read for due deliveries.
    pub poll: Duration,
    /// How long a claim holds a delivery (several POST timeouts).
    pub lease: Duration,
    /// Deliveries claimed at once.
    pub batch: u32,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Days a delivered entry stays (then pruned).
    pub delivered_days_kept: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            owner: format!("manager-{}", uuid::Uuid::new_v4()),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 64,
            concurrency: 8,
            delivered_days_kept: 7,
        }
    }
}

impl DeliverySettings {
    /// The delay before the attempt after `failed` failures:
    /// `retry_initial × 2^(failed - 1)`, at most `retry_max`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        self.retry_initial
            .saturating_mul(1u32 << exp)
            .min(self.retry_max)
    }
}
