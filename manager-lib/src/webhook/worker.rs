//! The delivery worker: claims due deliveries from the outbox, POSTs them
//! signed, and records each outcome (delivered, or a retry at a later
//! time); prunes delivered entries past their retention.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::signature::{
    ATTEMPT_HEADER, EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign,
};
use super::{DeliverySettings, Endpoint};
use crate::domain::{Delivery, Timestamp};
use crate::storage::{Storage, StorageResult};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// How often delivered entries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The longest last error kept in the outbox.
const MAX_ERROR_CHARS: usize = 300;

/// Posts the outbox's deliveries to their endpoints.
#[derive(Debug)]
pub struct Deliverer {
    storage: Arc<dyn Storage>,
    endpoints: HashMap<String, Endpoint>,
    settings: DeliverySettings,
    http: reqwest::Client,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub delivered: usize,
    pub failed: usize,
}

impl Deliverer {
    pub fn new(
        storage: Arc<dyn Storage>,
        endpoints: Vec<Endpoint>,
        settings: DeliverySettings,
    ) -> Self {
        // No redirects: a receiver that moved must be reconfigured, not
        // followed (a redirect could send the signed body elsewhere).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent(concat!("xray-manager-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            storage,
            endpoints: endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
            settings,
            http,
        }
    }

    /// Delivers until `stop` is cancelled: one pass every `poll`, at once
    /// again while a pass finds a full batch.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut last_prune: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let full = match self.pass().await {
                Ok(outcome) => outcome.delivered + outcome.failed >= self.settings.batch as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read the outbox; retrying");
                    false
                }
            };
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                match self.prune().await {
                    Ok(n) if n > 0 => tracing::debug!(pruned = n, "webhooks: outbox pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot prune the outbox"),
                }
                last_prune = Some(Instant::now());
            }
            if full {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Claims what is due now and tries each once.
    pub async fn pass(&self) -> StorageResult<PassOutcome> {
        let claimed = self
            .storage
            .claim_deliveries(
                &self.settings.owner,
                Timestamp::now(),
                self.settings.lease,
                self.settings.batch,
            )
            .await?;
        let results: Vec<StorageResult<bool>> = futures::stream::iter(claimed)
            .map(|d| self.attempt(d))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut outcome = PassOutcome::default();
        for r in results {
            if r? {
                outcome.delivered += 1;
            } else {
                outcome.failed += 1;
            }
        }
        Ok(outcome)
    }

    /// Drops delivered entries older than `delivered_days_kept`.
    pub async fn prune(&self) -> StorageResult<u64> {
        let days = i64::from(self.settings.delivered_days_kept);
        let before = Timestamp(Timestamp::now().0.saturating_sub(days * DAY_MS));
        self.storage.prune_deliveries(before).await
    }

    /// One POST of `d`; true when it was delivered (or dropped).
    async fn attempt(&self, d: Delivery) -> StorageResult<bool> {
        let Some(endpoint) = self.endpoints.get(&d.endpoint) else {
            // The endpoint was removed from the settings: nobody to send to.
            tracing::warn!(endpoint = %d.endpoint, event = %d.event_id,
                "webhooks: endpoint no longer configured; delivery dropped");
            self.storage.mark_delivered(d.id, Timestamp::now()).await?;
            return Ok(true);
        };
        match self.post(endpoint, &d).await {
            Ok(()) => {
                self.storage.mark_delivered(d.id, Timestamp::now()).await?;
                tracing::debug!(endpoint = %d.endpoint, event = %d.event_id, "webhook delivered");
                Ok(true)
            }
            Err(error) => {
                let failed = d.attempts.saturating_add(1);
                let delay = self.settings.backoff(failed);
                let next_at = Timestamp(
                    Timestamp::now()
                        .0
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                );
                tracing::info!(endpoint = %d.endpoint, event = %d.event_id, attempts = failed,
                    retry_in_ms = delay.as_millis() as u64, error = %error,
                    "webhook not delivered; will retry");
                let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
                self.storage
                    .schedule_retry(d.id, &self.settings.owner, next_at, &error)
                    .await?;
                Ok(false)
            }
        }
    }

    async fn post(&self, endpoint: &Endpoint, d: &Delivery) -> Result<(), String> {
        let timestamp = (Timestamp::now().0 / 1000).to_string();
        let signature = sign(
            endpoint.secret.expose().as_bytes(),
            &timestamp,
            d.body.as_bytes(),
        );
        let answer = self
            .http
            .post(endpoint.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, &d.event_id)
            .header(EVENT_HEADER, d.event.as_str())
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(ATTEMPT_HEADER, d.attempts.to_string())
            .body(d.body.clone())
            .send()
            .await
            // Without the URL: it may hold a credential in its query.
            .map_err(|e| e.without_url().to_string())?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}
