//! [`AppState`]: what every route of the node API reads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::agent::Agent;
use crate::envelope::{self, NodeKey};
use crate::keyring::KeyRing;
use crate::refusals::Refusals;
use crate::replay::ReplayCache;

/// The largest body an authenticated request may announce: `/start` with
/// 100,000 users is ~15 MB sealed. Nothing is read before the header token
/// that announces the length has been opened.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long an authenticated request's body may take to arrive: a peer with
/// the key is trusted, but a half-sent body must not hold memory forever.
/// 15 MB (100,000 users) at 1 MB/s fits.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub(super) agent: Arc<Agent>,
    pub(super) keys: Arc<KeyRing>,
    pub(super) replay: ReplayCache,
    pub(super) body_limit: usize,
    pub(super) body_timeout: Duration,
    /// Requests issued before this (Unix ms) are refused: the replay cache
    /// starts empty, so a request captured before a restart would otherwise
    /// be accepted again.
    pub(super) started_ms: u64,
    pub(super) refusals: Arc<Refusals>,
}

impl AppState {
    /// The state of an agent holding `key` in memory only (a rotation is
    /// not persisted: see [`AppState::with_key_ring`]).
    pub fn new(agent: Arc<Agent>, key: NodeKey) -> Self {
        Self {
            agent,
            keys: Arc::new(KeyRing::in_memory(key)),
            replay: ReplayCache::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            started_ms: envelope::unix_millis(SystemTime::now()),
            refusals: Arc::new(Refusals::default()),
        }
    }

    /// The keys to accept (and where a rotation is persisted).
    pub fn with_key_ring(mut self, keys: Arc<KeyRing>) -> Self {
        self.keys = keys;
        self
    }

    /// The keys the agent accepts.
    pub fn key_ring(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    pub fn with_replay_cache(mut self, replay: ReplayCache) -> Self {
        self.replay = replay;
        self
    }

    pub fn with_refusals(mut self, refusals: Arc<Refusals>) -> Self {
        self.refusals = refusals;
        self
    }

    /// The refused-request counter (for the metrics).
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.refusals
    }

    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }
}
