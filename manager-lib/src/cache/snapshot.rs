//! The in-process set of serving nodes of [`CachedStorage`](super::CachedStorage):
//! one read of the storage, kept until it is older than `nodes_ttl` or a
//! local node write makes it unusable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::ServingNode;

/// One read of `Storage::serving_nodes`.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub(super) nodes: Arc<[ServingNode]>,
    /// The value of [`NodeSet::generation`] when the read started: a local
    /// node write since then makes the snapshot unusable.
    pub(super) generation: u64,
    /// When the read started, so the age is never understated.
    pub(super) fetched_at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct NodeSet {
    /// Moved on by every local node write (after it, successful or not).
    pub(super) generation: AtomicU64,
    current: RwLock<Option<Snapshot>>,
}

impl NodeSet {
    pub(super) fn snapshot(&self) -> Option<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn store(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }

    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The snapshot if no local node write happened since it was read and it
    /// is younger than `ttl`.
    pub(super) fn fresh(&self, ttl: Duration) -> Option<Arc<[ServingNode]>> {
        let generation = self.generation.load(Ordering::SeqCst);
        self.snapshot()
            .filter(|s| s.generation == generation && s.fetched_at.elapsed() < ttl)
            .map(|s| s.nodes)
    }
}
