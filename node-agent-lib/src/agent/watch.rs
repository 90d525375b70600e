//! Noticing every start of the core the agent did not order.
//!
//! The service backend names each run of the core ([`CoreInstance`]: a spawn
//! counter, systemd's invocation id, launchd's pid), so a start is seen
//! however soon it follows the previous one — unlike the core's uptime, which
//! counts whole seconds. After such a start the core runs whatever config was
//! on disk, which may lack acknowledged edits (the writer lags them) or hold
//! users removed since: the verifier re-applies every user at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{Agent, AgentError, Observed};

impl Agent {
    pub(super) async fn run_monitor(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.options.monitor_interval) => {}
            }
            if let Err(e) = self.check_now().await {
                tracing::debug!(error = %e, "core check");
            }
        }
    }

    /// One look at the core (what the monitor does periodically and
    /// `/status` does on every call): a start we did not order is counted
    /// and, while the manager wants the core running, wakes the verifier to
    /// re-apply every user.
    pub async fn check_now(&self) -> Result<(), AgentError> {
        let Ok(transition) = self.transition.try_lock() else {
            return Ok(());
        };
        drop(transition);
        let epoch = self.state.lock().await.epoch;
        if let Observed::Running { .. } = self.observe().await? {
            self.look_for_restart(epoch).await?;
        }
        Ok(())
    }

    /// Compares the running instance with the one we know. `epoch` is the
    /// one read before looking: a `/start` or `/stop` since then records its
    /// own instance, which wins.
    pub(super) async fn look_for_restart(&self, epoch: u64) -> Result<(), AgentError> {
        let Some(seen) = self
            .service
            .instance()
            .await
            .map_err(AgentError::ServiceStatus)?
        else {
            return Ok(()); // between two runs: the next look sees the new one
        };
        let mut state = self.state.lock().await;
        if state.epoch != epoch {
            return Ok(());
        }
        // Unknown while running: `/start` could not name the core it started,
        // so the one we see may have read an older config.
        let restarted = match &state.instance {
            Some(known) => *known != seen,
            None => state.running,
        };
        state.instance = Some(seen);
        if !restarted {
            return Ok(());
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        if state.running {
            tracing::warn!(
                users = state.users.len(),
                "the core started without us: re-applying every user"
            );
            self.resync.store(true, Ordering::SeqCst);
            self.wake.notify_one();
        } else {
            tracing::warn!("the core started without us (no users to re-apply: stopped)");
        }
        Ok(())
    }
}
