//! The generated config on disk: written whole by `/start`, rewritten in the
//! background after runtime edits, at most once per `flush_delay`.
//!
//! The rewrite lags the edits the core's API acknowledged, so a core that
//! restarts meanwhile reads an older user set; the agent does not rely on the
//! file being current — it re-applies every user after any start it did not
//! order (see `watch` and `verify`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Agent, AgentError, State, StoredUser};

impl Agent {
    /// Writes the generated config for the current users, now.
    pub(super) async fn flush_now(&self, state: &State) -> Result<(), AgentError> {
        let users: Vec<StoredUser> = state.users.iter().cloned().collect();
        let mut written = self.written.lock().await;
        self.write(state.seq, users).await?;
        *written = Some(state.seq);
        Ok(())
    }

    async fn write(&self, seq: u64, users: Vec<StoredUser>) -> Result<(), AgentError> {
        let config = self.config.clone();
        let path = self.options.generated_config.clone();
        tokio::task::spawn_blocking(move || config.write_atomic(&path, users.iter()))
            .await
            .map_err(|e| AgentError::Internal(format!("config writer task: {e}")))??;
        tracing::trace!(seq, "generated config written");
        Ok(())
    }

    /// Rewrites the generated config after runtime edits, at most once per
    /// `flush_delay`.
    pub(super) async fn run_writer(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.dirty.notified() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.options.flush_delay) => {}
            }
            if let Err(e) = self.flush_if_dirty().await {
                tracing::error!(error = %e, "cannot rewrite the generated config");
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
    }

    /// Writes the generated config if runtime edits changed the users since
    /// the last write.
    pub async fn flush_if_dirty(&self) -> Result<(), AgentError> {
        let (seq, users) = {
            let state = self.state.lock().await;
            (state.seq, state.users.iter().cloned().collect::<Vec<_>>())
        };
        let mut written = self.written.lock().await;
        if written.is_some_and(|last| last >= seq) {
            return Ok(());
        }
        self.write(seq, users).await?;
        *written = Some(seq);
        Ok(())
    }
}
