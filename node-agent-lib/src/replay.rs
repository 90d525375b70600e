//! [`ReplayCache`]: the `jti`s the agent accepted, so each sealed request is
//! accepted once. In memory only: after a restart the agent refuses requests
//! issued before it started instead (the API's state remembers when).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::envelope::{CLOCK_SKEW, Rejection};

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Remembers accepted `jti`s until they expire, so each request is accepted
/// once. Bounded: when full of unexpired entries it refuses new requests
/// (fails closed) rather than forgetting one that could then be replayed.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<Arc<str>>,
    by_expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl ReplayCache {
    /// Enough for ~1,100 requests a second sustained over a request's whole
    /// validity window (`MAX_LIFETIME + 2 * CLOCK_SKEW`), in about 10 MB.
    pub const DEFAULT_CAPACITY: usize = 131_072;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records `jti` (valid until `exp`), or refuses it if it was seen.
    pub fn check_and_insert(&self, jti: &str, exp: u64, now: SystemTime) -> Result<(), Rejection> {
        let now = unix_secs(now);
        let forget_after = exp + CLOCK_SKEW.as_secs();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Reverse((expiry, _))) = inner.by_expiry.peek() {
            if *expiry >= now {
                break;
            }
            if let Some(Reverse((_, old))) = inner.by_expiry.pop() {
                inner.seen.remove(&old);
            }
        }
        if inner.seen.contains(jti) {
            return Err(Rejection::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(Rejection::ReplayCacheFull);
        }
        let jti: Arc<str> = Arc::from(jti);
        inner.seen.insert(jti.clone());
        inner.by_expiry.push(Reverse((forget_after, jti)));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}
