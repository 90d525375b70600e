//! The collector: every `stats_interval` it reads and zeroes the core's
//! per-user traffic counters and appends the deltas to the [`Journal`] as one
//! batch. A read the journal could not take stays in memory and joins the
//! next append, so nothing read is ever dropped; the agent also takes one
//! last read before it stops or restarts the core itself ([`Usage::collect`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::journal::{Journal, JournalError};
use super::reader::{CoreApiTraffic, TrafficReader};
use super::sums::UserSums;
use crate::core::{CoreApi, CoreError};
use crate::wire::{JournalMark, UsageRequest, UsageResponse};

/// The default number of batches a pull answers.
pub const DEFAULT_PULL_BATCHES: u32 = 64;
/// The most a pull answers, whatever it asks: bounds what was delivered but
/// not yet confirmed.
pub const MAX_PULL_BATCHES: u32 = 256;

/// Why a collection did not end in the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The core did not answer: its counters (if it runs) stay in it.
    #[error("reading the core's traffic counters: {0}")]
    Core(#[from] CoreError),
    /// The read is kept in memory and joins the next append.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What the collector did so far, for the metrics.
#[derive(Debug, Default)]
pub struct UsageCounters {
    pub batches_appended: AtomicU64,
    pub user_deltas: AtomicU64,
    pub reads: AtomicU64,
    pub read_errors: AtomicU64,
    pub append_errors: AtomicU64,
    /// Microseconds spent in reads of the core, in total.
    pub read_micros: AtomicU64,
    /// The batches and bytes of the journal after the last operation on it.
    pub journal_batches: AtomicU64,
    pub journal_bytes: AtomicU64,
}

/// Deltas read from the core but not yet in the journal.
#[derive(Debug)]
struct Pending {
    /// Unix seconds of the read before the first delta held here.
    from: i64,
    /// Unix seconds of the last read.
    last_read: i64,
    users: UserSums,
}

/// The agent's usage accounting: the journal and what feeds it.
#[derive(Debug)]
pub struct Usage {
    core: Arc<dyn TrafficReader>,
    journal: Arc<StdMutex<Journal>>,
    /// The journal's id (fixed for the file's life), and its newest
    /// sequence number after the last operation: `/status` reads them
    /// without waiting for the journal's lock (held across `fsync`).
    journal_id: String,
    last_seq: AtomicU64,
    /// Held across a read and its append, so batches follow the reads' order.
    pending: tokio::sync::Mutex<Pending>,
    counters: UsageCounters,
    /// False when accounting is off: the journal still answers pulls (of
    /// what it held), the core is never read.
    reads_core: bool,
}

impl Usage {
    /// Accounting that reads through `core`'s `take_user_traffic`.
    pub fn new(core: Arc<dyn CoreApi>, journal: Journal) -> Self {
        Self::with_reader(Arc::new(CoreApiTraffic(core)), journal)
    }

    /// Accounting that reads through `core`, e.g. a
    /// [`crate::core::CoreClient`], whose reads never hold every user's
    /// counters at once.
    pub fn with_reader(core: Arc<dyn TrafficReader>, journal: Journal) -> Self {
        let now = unix_now();
        let counters = UsageCounters::default();
        counters
            .journal_batches
            .store(journal.len() as u64, Ordering::Relaxed);
        counters
            .journal_bytes
            .store(journal.bytes(), Ordering::Relaxed);
        Self {
            core,
            journal_id: journal.id().to_owned(),
            last_seq: AtomicU64::new(journal.last_seq()),
            journal: Arc::new(StdMutex::new(journal)),
            pending: tokio::sync::Mutex::new(Pending {
                from: now,
                last_read: now,
                users: UserSums::default(),
            }),
            counters,
            reads_core: true,
        }
    }

    /// Accounting off: pulls answer what the journal holds, [`Self::collect`]
    /// reads nothing.
    pub fn without_reads(mut self) -> Self {
        self.reads_core = false;
        self
    }

    pub fn counters(&self) -> &UsageCounters {
        &self.counters
    }

    /// The journal's id.
    pub fn journal_id(&self) -> String {
        self.journal_id.clone()
    }

    /// Where the journal stands, for `/status`: its id, newest sequence
    /// number and the batches it holds (not yet confirmed).
    pub fn mark(&self) -> JournalMark {
        JournalMark {
            journal: self.journal_id.clone(),
            seq: self.last_seq.load(Ordering::Relaxed),
            batches: self.counters.journal_batches.load(Ordering::Relaxed),
        }
    }

    /// Reads and zeroes the core's counters and appends what it read (with
    /// whatever an earlier failed append left) as one batch; `Ok(None)` when
    /// there was nothing to append. Only user ids count: the counters of the
    /// operator's own clients (emails that are not UUIDs) are not journaled.
    pub async fn collect(&self) -> Result<Option<u64>, CollectError> {
        if !self.reads_core {
            return Ok(None);
        }
        let mut pending = self.pending.lock().await;
        if pending.users.is_empty() {
            pending.from = pending.last_read;
        }
        let began = Instant::now();
        // Straight into what waits for the journal: a read that fails part
        // way has still read (and zeroed) what it added, which is kept.
        let read = self.core.take_user_traffic_into(&mut pending.users).await;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters
            .read_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        if read.is_ok() || !pending.users.is_empty() {
            pending.last_read = unix_now();
        }
        if let Err(e) = read {
            self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
            // What was read, now or by an earlier read whose append
            // failed, still goes to the journal.
            if !pending.users.is_empty() {
                return self.append(&mut pending).await.and(Err(e.into()));
            }
            return Err(e.into());
        }
        self.append(&mut pending).await
    }

    /// Appends `pending` as one batch; on failure keeps it.
    async fn append(&self, pending: &mut Pending) -> Result<Option<u64>, CollectError> {
        if pending.users.is_empty() {
            return Ok(None);
        }
        // Moved out for the blocking task and back, emptied, with its table
        // (100,000 users' worth): allocated once, not at every read, so no
        // read leaves a freed table behind that the allocator keeps.
        let users = std::mem::take(&mut pending.users);
        let (from, to) = (pending.from, pending.last_read);
        let journal = self.journal.clone();
        let (mut users, result, size) = tokio::task::spawn_blocking(move || {
            let mut journal = lock(&journal);
            let result = journal.append_sums(from, to, &users);
            (users, result, JournalSize::of(&journal))
        })
        .await
        .expect("the journal append does not panic");
        self.set_journal_size(size);
        let appended = users.len() as u64;
        if result.is_ok() {
            users.clear();
        }
        // Nothing was added meanwhile: the caller holds `pending`.
        pending.users = users;
        match result {
            Ok(seq) => {
                self.counters
                    .batches_appended
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .user_deltas
                    .fetch_add(appended, Ordering::Relaxed);
                Ok(seq)
            }
            Err(e) => {
                self.counters.append_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// `POST /usage`: the batches after the request's cursor, at most
    /// `max_batches` (default [`DEFAULT_PULL_BATCHES`], capped at
    /// [`MAX_PULL_BATCHES`]); naming this journal confirms `after`.
    pub async fn pull(&self, request: UsageRequest) -> Result<UsageResponse, JournalError> {
        self.page(request, |journal, cursor, after, max| {
            journal.after(cursor, after, max)
        })
        .await
    }

    /// As [`Self::pull`], the answer's JSON made from the journal's records
    /// as they are (see [`Journal::after_json`]): what `POST /usage` sends.
    pub async fn pull_json(&self, request: UsageRequest) -> Result<Vec<u8>, JournalError> {
        self.page(request, |journal, cursor, after, max| {
            journal.after_json(cursor, after, max)
        })
        .await
    }

    async fn page<T: Send + 'static>(
        &self,
        request: UsageRequest,
        answer: impl FnOnce(&mut Journal, Option<&str>, u64, usize) -> Result<T, JournalError>
        + Send
        + 'static,
    ) -> Result<T, JournalError> {
        let max = request
            .max_batches
            .unwrap_or(DEFAULT_PULL_BATCHES)
            .clamp(1, MAX_PULL_BATCHES) as usize;
        let journal = self.journal.clone();
        let (result, size) = tokio::task::spawn_blocking(move || {
            let mut journal = lock(&journal);
            let result = answer(&mut journal, request.journal.as_deref(), request.after, max);
            (result, JournalSize::of(&journal))
        })
        .await
        .expect("a journal read does not panic");
        self.set_journal_size(size);
        result
    }

    fn set_journal_size(&self, size: JournalSize) {
        // A `/status` racing these stores may see part of them; the next
        // sees all (a pull it skips waits one heartbeat, nothing is lost).
        self.counters
            .journal_batches
            .store(size.batches, Ordering::Relaxed);
        self.counters
            .journal_bytes
            .store(size.bytes, Ordering::Relaxed);
        self.last_seq.store(size.last_seq, Ordering::Relaxed);
    }

    /// Collects every `interval` until `shutdown`, then once more, so what
    /// the core counted up to the agent's stop is journaled.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match self.collect().await {
                Ok(_) => failing = false,
                // The core is stopped or starting: nothing counts meanwhile.
                Err(CollectError::Core(e)) if e.is_temporary() => {
                    tracing::debug!(error = %e, "usage: core not answering");
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "usage: collection failed (the read is kept)");
                }
                Err(_) => {}
            }
        }
        if let Err(e) = self.collect().await {
            tracing::debug!(error = %e, "usage: last read before stopping");
        }
    }
}

/// What the journal holds after an operation on it.
#[derive(Debug, Clone, Copy)]
struct JournalSize {
    batches: u64,
    bytes: u64,
    last_seq: u64,
}

impl JournalSize {
    fn of(journal: &Journal) -> Self {
        Self {
            batches: journal.len() as u64,
            bytes: journal.bytes(),
            last_seq: journal.last_seq(),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Journal operations do not panic; if one ever did, the file it left is
/// still whole record by record (appends are cut back, rewrites atomic).
fn lock(journal: &StdMutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "collector_tests.rs"]
mod tests;
