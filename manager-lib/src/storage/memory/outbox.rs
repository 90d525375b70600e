//! The reference backend's webhook outbox, on a state of its own (no call
//! touches both it and the fleet).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;

use super::MemoryStorage;
use crate::domain::{Delivery, NewDelivery, Timestamp};
use crate::storage::outbox::lease_until;
use crate::storage::{StorageResult, WebhookStore};

#[derive(Debug)]
struct Row {
    delivery: Delivery,
    lease: Option<(String, Timestamp)>,
    delivered: Option<Timestamp>,
    #[allow(dead_code)] // kept as the SQL backends keep it; read by no call
    last_error: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct OutboxState {
    rows: BTreeMap<i64, Row>,
    keys: HashSet<(String, String)>,
    last_id: i64,
}

impl OutboxState {
    /// Adds the deliveries not in the outbox yet (by event id and endpoint).
    pub(super) fn enqueue(&mut self, deliveries: &[NewDelivery]) {
        for d in deliveries {
            if !self.keys.insert((d.event_id.clone(), d.endpoint.clone())) {
                continue;
            }
            self.last_id += 1;
            let id = self.last_id;
            let delivery = Delivery {
                id,
                event_id: d.event_id.clone(),
                endpoint: d.endpoint.clone(),
                event: d.event,
                body: d.body.clone(),
                created: d.created,
                attempts: 0,
                next_at: d.created,
            };
            self.rows.insert(
                id,
                Row {
                    delivery,
                    lease: None,
                    delivered: None,
                    last_error: None,
                },
            );
        }
    }
}

impl MemoryStorage {
    pub(super) fn outbox(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // Every method checks before it writes: a panic leaves no half-write.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl WebhookStore for MemoryStorage {
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> StorageResult<()> {
        self.outbox().enqueue(deliveries);
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Delivery>> {
        let mut st = self.outbox();
        let until = lease_until(now, lease);
        let mut out = Vec::new();
        for row in st.rows.values_mut() {
            if out.len() >= limit as usize {
                break;
            }
            let free = row.lease.as_ref().is_none_or(|(_, t)| *t <= now);
            if row.delivered.is_none() && row.delivery.next_at <= now && free {
                row.lease = Some((owner.to_owned(), until));
                out.push(row.delivery.clone());
            }
        }
        Ok(out)
    }

    async fn mark_delivered(&self, id: i64, now: Timestamp) -> StorageResult<bool> {
        let mut st = self.outbox();
        match st.rows.get_mut(&id) {
            Some(row) if row.delivered.is_none() => {
                row.delivered = Some(now);
                row.lease = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn schedule_retry(
        &self,
        id: i64,
        owner: &str,
        next_at: Timestamp,
        error: &str,
    ) -> StorageResult<bool> {
        let mut st = self.outbox();
        match st.rows.get_mut(&id) {
            Some(row)
                if row.delivered.is_none()
                    && row.lease.as_ref().is_some_and(|(o, _)| o == owner) =>
            {
                row.delivery.attempts = row.delivery.attempts.saturating_add(1);
                row.delivery.next_at = next_at;
                row.lease = None;
                row.last_error = Some(error.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn prune_deliveries(&self, before: Timestamp) -> StorageResult<u64> {
        let mut st = self.outbox();
        let gone: Vec<(i64, (String, String))> = st
            .rows
            .iter()
            .filter(|(_, r)| r.delivered.is_some_and(|t| t < before))
            .map(|(id, r)| {
                let key = (r.delivery.event_id.clone(), r.delivery.endpoint.clone());
                (*id, key)
            })
            .collect();
        for (id, key) in &gone {
            st.rows.remove(id);
            st.keys.remove(key);
        }
        Ok(gone.len() as u64)
    }

    async fn undelivered_count(&self) -> StorageResult<u64> {
        Ok(self
            .outbox()
            .rows
            .values()
            .filter(|r| r.delivered.is_none())
            .count() as u64)
    }
}
