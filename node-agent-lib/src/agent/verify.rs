//! Anti-entropy: the agent keeps checking the core against the users it was
//! given, whether or not it saw anything go wrong.
//!
//! A check costs one API call per user and managed inbound, and repairs as it
//! checks: adding one of our users answers "already exists" when the core has
//! it (else it is now back), removing an id that is not ours answers "not
//! found" when the core lacks it (else it is now gone). V2Ray 4.34 cannot
//! list an inbound's users, so the ids checked for absence are the ones the
//! agent knows of: those it removed or that a `/start` or `/stop` dropped
//! (the newest [`GONE_MAX`]). A user added behind the agent's back under an
//! id it never held, or one of ours whose credentials were changed behind
//! its back, is not found this way.
//!
//! A pass checks every user once, paced evenly over `verify_period`; passes
//! start one period apart, so a divergence is repaired within two periods
//! (plus the checks' own time when the core answers slowly). After a start of
//! the core the agent did not order, a pass runs at once, unpaced. Each check
//! holds the user's stripe, so it never races an edit of the same user.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentError, StoredUser, stripe_of};

/// How many ids no longer ours are remembered for the absence check.
pub const GONE_MAX: usize = 100_000;
/// Users checked per hold of the gate (a `/start` waits at most this many).
const BATCH: usize = 64;
/// The pause before retrying a re-apply that failed (e.g. the core's API
/// was not answering yet).
const RETRY: Duration = Duration::from_secs(1);

/// Ids the core may hold that are not ours, oldest first, at most [`GONE_MAX`].
#[derive(Debug, Default)]
pub(super) struct Gone {
    ids: HashMap<Arc<str>, u64>,
    /// Insertion order; entries whose id was removed or re-inserted since
    /// are skipped (and dropped when they pile up).
    order: VecDeque<(u64, Arc<str>)>,
    next: u64,
}

impl Gone {
    pub(super) fn insert(&mut self, id: Arc<str>) {
        self.next += 1;
        self.ids.insert(id.clone(), self.next);
        self.order.push_back((self.next, id));
        while self.ids.len() > GONE_MAX {
            let Some((n, id)) = self.order.pop_front() else {
                break;
            };
            if self.ids.get(&id) == Some(&n) {
                self.ids.remove(&id);
            }
        }
        if self.order.len() > 2 * self.ids.len() + 1024 {
            let ids = &self.ids;
            self.order.retain(|(n, id)| ids.get(id) == Some(n));
        }
    }

    pub(super) fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }
}

/// What one pass found and repaired.
#[derive(Debug, Default, Clone, Copy)]
struct Repairs {
    checked: usize,
    /// Every user was checked (the pass was not cut short).
    complete: bool,
    added: u64,
    removed: u64,
}

/// An id a pass checks: one of our users or one no longer ours.
enum Checked {
    Ours(StoredUser),
    Gone(Arc<str>),
}

impl Checked {
    fn id(&self) -> &str {
        match self {
            Self::Ours(user) => user.id(),
            Self::Gone(id) => id,
        }
    }
}

enum Want {
    Present(StoredUser),
    Absent,
    /// Neither ours nor remembered (changed since the pass began).
    Unknown,
}

impl Agent {
    pub(super) async fn run_verifier(self: Arc<Self>, shutdown: CancellationToken) {
        let period = self.options.verify_period;
        let mut next = Instant::now() + period;
        loop {
            if !self.resync.load(Ordering::SeqCst) {
                let paced = !period.is_zero();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep_until(next), if paced => {}
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let urgent = self.resync.swap(false, Ordering::SeqCst);
            let begun = Instant::now();
            let pace = (!urgent).then_some(period);
            match self.verify_pass(pace, &shutdown).await {
                Ok(repairs) => {
                    self.report(urgent, repairs);
                    next = begun + period;
                }
                Err(e) => {
                    if urgent {
                        tracing::warn!(error = %e, "cannot re-apply the users yet; retrying");
                        self.resync.store(true, Ordering::SeqCst);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                    } else {
                        tracing::debug!(error = %e, "verification pass");
                        next = Instant::now() + period.min(RETRY.max(period / 4));
                    }
                }
            }
        }
    }

    fn report(&self, urgent: bool, repairs: Repairs) {
        if repairs.complete {
            self.passes.fetch_add(1, Ordering::Relaxed);
        }
        self.repaired_added
            .fetch_add(repairs.added, Ordering::Relaxed);
        self.repaired_removed
            .fetch_add(repairs.removed, Ordering::Relaxed);
        if repairs.added + repairs.removed > 0 {
            tracing::warn!(
                checked = repairs.checked,
                readded = repairs.added,
                removed = repairs.removed,
                after_restart = urgent,
                "the core did not hold the agent's users; repaired"
            );
        } else if urgent {
            tracing::info!(
                checked = repairs.checked,
                "users re-applied after a restart"
            );
        }
    }

    /// Checks (and repairs) every user once; paced over `pace`, or at once.
    /// Stops early, with what it did, when a `/start` or `/stop` intervenes,
    /// a re-apply is asked for, or on shutdown.
    async fn verify_pass(
        &self,
        pace: Option<Duration>,
        shutdown: &CancellationToken,
    ) -> Result<Repairs, AgentError> {
        // Exclusive for a moment: an edit in flight has recorded its change
        // (once the core took it) before the list is taken.
        let (ids, epoch) = {
            let _gate = self.gate.write().await;
            let state = self.state.lock().await;
            if !state.running {
                return Ok(Repairs::default());
            }
            let mut ids: Vec<Checked> = state
                .users
                .iter()
                .cloned()
                .map(Checked::Ours)
                .chain(state.gone.ids.keys().cloned().map(Checked::Gone))
                .collect();
            // A stable order keeps each user near the same point of every
            // pass, which is what bounds the time between two of its checks.
            ids.sort_unstable_by(|a, b| a.id().cmp(b.id()));
            (ids, state.epoch)
        };
        let begun = Instant::now();
        let mut repairs = Repairs::default();
        for (i, batch) in ids.chunks(BATCH).enumerate() {
            if let Some(period) = pace {
                let due = begun + period.mul_f64((i * BATCH) as f64 / ids.len() as f64);
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(repairs),
                    () = self.wake.notified() => return Ok(repairs),
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            let _gate = self.gate.read().await;
            if self.state.lock().await.epoch != epoch {
                return Ok(repairs);
            }
            for id in batch.iter().map(Checked::id) {
                let _stripe = self.stripes[stripe_of(id)].lock().await;
                let want = {
                    let state = self.state.lock().await;
                    match state.users.get(id) {
                        Some(user) => Want::Present(user.clone()),
                        None if state.gone.contains(id) => Want::Absent,
                        None => Want::Unknown,
                    }
                };
                match want {
                    Want::Present(user) => {
                        repairs.added += u64::from(self.add_everywhere(&user).await?)
                    }
                    Want::Absent => repairs.removed += u64::from(self.remove_everywhere(id).await?),
                    Want::Unknown => {}
                }
                repairs.checked += 1;
            }
        }
        repairs.complete = true;
        Ok(repairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_keeps_the_newest_ids_and_forgets_the_ones_taken_back() {
        let mut gone = Gone::default();
        for n in 0..GONE_MAX + 10 {
            gone.insert(Arc::from(n.to_string()));
        }
        assert_eq!(gone.ids.len(), GONE_MAX);
        assert!(!gone.contains("0"), "the oldest is forgotten");
        assert!(gone.contains(&(GONE_MAX + 9).to_string()));
        gone.remove("500");
        assert!(!gone.contains("500"));
        for _ in 0..10_000 {
            gone.insert(Arc::from("again"));
        }
        assert!(gone.order.len() <= 2 * gone.ids.len() + 1024);
        assert!(gone.contains("again"));
    }
}
