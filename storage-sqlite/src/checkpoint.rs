//! WAL checkpoints off the write path.
//!
//! SQLite's own automatic checkpoint runs inside the commit that takes the
//! WAL over its size: the writer, and every caller of its batch, waits
//! while pages are copied back into the database file and synced. Here a
//! task copies them instead, on a connection of the readers' pool (so on
//! the other core), after commits: the writer nudges it after each batch,
//! and it runs a `PASSIVE` checkpoint (never waiting for readers or the
//! writer) at most every [`GAP`], so a stream of commits costs one
//! checkpoint per gap, and an idle database none.
//!
//! The writer keeps an automatic checkpoint as a backstop
//! ([`BACKSTOP_PAGES`], above the usual 1,000 pages), so the WAL stays
//! bounded should this task fall behind or its connection fail.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// The least time between two checkpoints.
pub(crate) const GAP: Duration = Duration::from_millis(200);

/// The writer's own automatic checkpoint, in WAL pages (SQLite's default:
/// 1,000): only reached when the checkpoint task falls behind.
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// The WAL file is cut back to this size (bytes) when a checkpoint lets it
/// start over, so a burst does not keep its disk space forever.
pub(crate) const WAL_SIZE_KEPT: u64 = 64 * 1024 * 1024;

/// The writer's handle: nudges the task; the task ends when it is dropped
/// or the pool is closed.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    nudge: mpsc::Sender<()>,
}

impl Checkpoints {
    /// Starts the task on the current Tokio runtime. It borrows a
    /// connection of `pool` (the readers') for each checkpoint, so closing
    /// the storage closes it too.
    pub(crate) fn spawn(pool: SqlitePool) -> Self {
        let (nudge, nudged) = mpsc::channel(1);
        tokio::spawn(run(pool, nudged));
        Self { nudge }
    }

    /// Something was committed: a checkpoint is due (nudges coalesce).
    pub(crate) fn committed(&self) {
        let _ = self.nudge.try_send(());
    }
}

async fn run(pool: SqlitePool, mut nudged: mpsc::Receiver<()>) {
    while nudged.recv().await.is_some() {
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer's backstop bounds the WAL");
        }
        tokio::time::sleep(GAP).await;
    }
}
