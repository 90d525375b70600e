//! The agent's logic between the HTTP API and its two ports: run the core
//! with exactly the manager's users, edit them at runtime, notice when the
//! core restarted behind our back and put the users back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, RwLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, CoreConfig};
use crate::core::{CoreApi, CoreError};
use crate::service::{ServiceControl, ServiceError, ServiceStatus};
use crate::wire::{NodeStatus, StatusResponse, UsersEditRequest, WireUser};

/// Why an agent operation failed; [`crate::api`] maps each to a status and text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The core is starting (or a start/stop is in progress): ask again soon.
    #[error("the core is initializing")]
    Initializing,
    /// The service backend failed to start/stop the core.
    #[error("service backend failed: {0}")]
    Service(#[source] ServiceError),
    /// The service backend could not tell the core's status.
    #[error("service status failed: {0}")]
    ServiceStatus(#[source] ServiceError),
    /// The core was started but did not come up (it exited, or its API never answered).
    #[error("the core did not come up: {0}")]
    CoreDidNotStart(String),
    /// The core's API does not answer.
    #[error("core API unavailable: {0}")]
    CoreUnavailable(#[source] CoreError),
    /// The core's API answered with an error.
    #[error("core API error: {0}")]
    Core(#[source] CoreError),
    /// The request's users are not usable (e.g. an id that is not a UUID).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Anything else (e.g. the generated config cannot be written).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    fn from_core(e: CoreError) -> Self {
        if e.is_temporary() {
            Self::CoreUnavailable(e)
        } else {
            Self::Core(e)
        }
    }
}

impl From<ConfigError> for AgentError {
    fn from(e: ConfigError) -> Self {
        Self::Internal(format!("generated config: {e}"))
    }
}

/// Tunables of the agent's logic.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Where the generated core config is written.
    pub generated_config: PathBuf,
    /// The share-link template returned by `/start`.
    pub user_config_template: String,
    /// How long `/start` waits for the (re)started core's API to answer.
    pub start_timeout: Duration,
    /// How long the background writer waits after a runtime edit before it
    /// rewrites the generated config, so a burst of edits costs one rewrite.
    pub flush_delay: Duration,
    /// How often the background monitor checks whether the core restarted.
    pub monitor_interval: Duration,
}

impl AgentOptions {
    pub fn new(generated_config: impl Into<PathBuf>) -> Self {
        Self {
            generated_config: generated_config.into(),
            user_config_template: String::new(),
            start_timeout: Duration::from_secs(30),
            flush_delay: Duration::from_millis(500),
            monitor_interval: Duration::from_secs(5),
        }
    }
}

/// A core whose start moved later than we last saw by more than this has
/// restarted (uptime is in whole seconds, plus the call's latency).
const RESTART_SLACK: Duration = Duration::from_millis(1500);
/// How many writes of the generated config are remembered for self-healing.
const FLUSH_HISTORY: usize = 64;
/// How many per-user locks edits are spread over.
const STRIPES: usize = 64;

/// The node agent: owns the desired users and drives the service and the core.
#[derive(Debug)]
pub struct Agent {
    service: Arc<dyn ServiceControl>,
    core: Arc<dyn CoreApi>,
    config: Arc<CoreConfig>,
    options: AgentOptions,
    /// Held by `/start` and `/stop`; a second one meanwhile gets 503.
    transition: Mutex<()>,
    /// Runtime edits hold it shared, so edits of different users reach the
    /// core concurrently; start, stop and self-healing hold it exclusively.
    gate: RwLock<()>,
    /// Serialises edits of the same user (by a hash of the id).
    stripes: Vec<Mutex<()>>,
    /// Short critical sections only, except under an exclusive `gate`.
    state: Mutex<State>,
    writer: Mutex<Flushes>,
    dirty: Notify,
    restarts: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the manager wants the core running with `users` (set by
    /// `/start`, cleared by `/stop`): only then does the agent self-heal.
    running: bool,
    users: HashMap<Arc<str>, Arc<WireUser>>,
    /// Bumped by every change to `users`.
    seq: u64,
    /// The ids changed by each runtime edit, oldest first; complete for every
    /// seq above `changes_floor`.
    changes: VecDeque<(u64, Arc<str>)>,
    changes_floor: u64,
    /// When the core we know started (estimated from its uptime).
    core_started: Option<Instant>,
    /// Bumped by every `/start` and `/stop`: a heal decided before one of
    /// them is void.
    epoch: u64,
    /// When the core restarted by itself and putting its users back failed:
    /// the config seq it started from, and how many users it holds.
    heal_from: Option<(u64, u64)>,
}

/// One completed write of the generated config.
#[derive(Debug, Clone, Copy)]
struct Flush {
    seq: u64,
    users: u64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Flushes {
    history: VecDeque<Flush>,
}

impl Flushes {
    fn last_seq(&self) -> Option<u64> {
        self.history.back().map(|f| f.seq)
    }
}

/// The answer of one look at the core.
enum Observed {
    Stopped,
    Running { uptime: u32 },
}

impl Agent {
    /// Warns (in the log) about users that cannot be managed come from
    /// [`CoreConfig::parse`]; this only wires the parts together.
    pub fn new(
        service: Arc<dyn ServiceControl>,
        core: Arc<dyn CoreApi>,
        config: CoreConfig,
        options: AgentOptions,
    ) -> Self {
        Self {
            service,
            core,
            config: Arc::new(config),
            options,
            transition: Mutex::new(()),
            gate: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            state: Mutex::new(State::default()),
            writer: Mutex::new(Flushes::default()),
            dirty: Notify::new(),
            restarts: AtomicU64::new(0),
        }
    }

    pub fn user_config_template(&self) -> &str {
        &self.options.user_config_template
    }

    /// How many times the agent saw the core restart behind its back.
    pub fn core_restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Runs the background tasks (config writer and restart monitor) until
    /// `shutdown` is cancelled.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        tokio::spawn(async move {
            tokio::join!(
                agent.clone().run_writer(shutdown.clone()),
                agent.run_monitor(shutdown)
            );
        })
    }

    /// Checks that `users` can be put in the core: ids are UUIDs when a
    /// VLESS/VMess inbound is managed, secrets are non-empty, ids unique.
    pub fn validate(&self, users: &[WireUser]) -> Result<(), AgentError> {
        let uuid = self.config.needs_uuid_ids();
        let mut seen = HashSet::with_capacity(users.len());
        for user in users {
            if user.id.is_empty() || (uuid && uuid::Uuid::parse_str(&user.id).is_err()) {
                return Err(AgentError::BadRequest(
                    "every user id must be a UUID".into(),
                ));
            }
            if user.secret.is_empty() {
                return Err(AgentError::BadRequest("every user needs a secret".into()));
            }
            if !seen.insert(user.id.as_str()) {
                return Err(AgentError::BadRequest("a user id appears twice".into()));
            }
        }
        Ok(())
    }

    /// `/start`: writes the generated config with exactly `users`, (re)starts
    /// the core and waits until its API answers.
    pub async fn start(&self, users: Vec<WireUser>) -> Result<(), AgentError> {
        self.validate(&users)?;
        let Ok(_transition) = self.transition.try_lock() else {
            return Err(AgentError::Initializing);
        };
        let _gate = self.gate.write().await;
        let mut state = self.state.lock().await;
        state.users = users
            .into_iter()
            .map(|u| (Arc::<str>::from(u.id.as_str()), Arc::new(u)))
            .collect();
        state.seq += 1;
        state.changes.clear();
        state.changes_floor = state.seq;
        state.running = true;
        state.heal_from = None;
        state.epoch += 1;
        let begun = Instant::now();
        self.flush_now(&state).await?;
        let written = begun.elapsed();
        self.service.restart().await.map_err(AgentError::Service)?;
        let uptime = self.wait_ready().await?;
        state.core_started = started_at(uptime);
        tracing::info!(
            users = state.users.len(),
            config_ms = u64::try_from(written.as_millis()).unwrap_or(u64::MAX),
            total_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX),
            "core started with the manager's users"
        );
        Ok(())
    }

    /// `/stop`: stops the core and forgets the users.
    pub async fn stop(&self) -> Result<(), AgentError> {
        let Ok(_transition) = self.transition.try_lock() else {
            return Err(AgentError::Initializing);
        };
        let _gate = self.gate.write().await;
        let mut state = self.state.lock().await;
        self.service.stop().await.map_err(AgentError::Service)?;
        state.running = false;
        state.users.clear();
        state.seq += 1;
        state.changes.clear();
        state.changes_floor = state.seq;
        state.heal_from = None;
        state.core_started = None;
        state.epoch += 1;
        tracing::info!("core stopped");
        Ok(())
    }

    /// `/status`: whether the core runs, how many users it really has, and
    /// (as a side effect) puts the users back if it restarted by itself.
    pub async fn status(&self) -> Result<StatusResponse, AgentError> {
        let Ok(transition) = self.transition.try_lock() else {
            return Err(AgentError::Initializing);
        };
        drop(transition);
        let uptime = match self.observe().await? {
            Observed::Stopped => {
                return Ok(StatusResponse {
                    node_status: NodeStatus::Stopped,
                    users: 0,
                    core_uptime_secs: 0,
                    core_restarts: self.core_restarts(),
                });
            }
            Observed::Running { uptime } => uptime,
        };
        self.check_restart(uptime).await?;
        let state = self.state.lock().await;
        let own_count = match state.heal_from {
            Some((_, users)) => users,
            None => state.users.len() as u64,
        };
        drop(state);
        let users = self.core_users_count().await.unwrap_or(own_count);
        Ok(StatusResponse {
            node_status: NodeStatus::Running,
            users,
            core_uptime_secs: u64::from(uptime),
            core_restarts: self.core_restarts(),
        })
    }

    /// `/users/edit`: removes then adds users through the core's API (adding
    /// an existing user or removing a missing one is success) and schedules
    /// the rewrite of the generated config.
    pub async fn edit_users(&self, edit: UsersEditRequest) -> Result<(), AgentError> {
        self.validate(&edit.add_users)?;
        let _gate = self.gate.read().await;
        let mut stripes: Vec<usize> = edit
            .del_users
            .iter()
            .chain(edit.add_users.iter().map(|u| &u.id))
            .map(|id| stripe_of(id))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.stripes[i].lock().await);
        }
        let result = self.apply_edit(edit).await;
        drop(guards);
        self.dirty.notify_one();
        result
    }

    /// Core calls happen without the state lock (other users' edits run
    /// meanwhile); each user's change is recorded once the core took it.
    async fn apply_edit(&self, edit: UsersEditRequest) -> Result<(), AgentError> {
        for id in edit.del_users {
            self.remove_everywhere(&id).await?;
            let mut state = self.state.lock().await;
            if let Some((key, _)) = state.users.remove_entry(id.as_str()) {
                state.record_change(key);
            }
        }
        for user in edit.add_users {
            let old = self.state.lock().await.users.get(user.id.as_str()).cloned();
            if old.as_deref() == Some(&user) {
                // Already ours: make sure the core has it (idempotent).
                self.add_everywhere(&user).await?;
                continue;
            }
            if old.is_some() {
                // Same id, new credentials: the core only knows the old ones.
                self.remove_everywhere(&user.id).await?;
            }
            self.add_everywhere(&user).await?;
            let key: Arc<str> = Arc::from(user.id.as_str());
            let mut state = self.state.lock().await;
            state.users.insert(key.clone(), Arc::new(user));
            state.record_change(key);
        }
        Ok(())
    }

    async fn add_everywhere(&self, user: &WireUser) -> Result<(), AgentError> {
        for inbound in self.config.inbounds() {
            match self
                .core
                .add_user(&inbound.tag, &inbound.core_user(user))
                .await
            {
                Ok(()) | Err(CoreError::UserExists { .. }) => {}
                Err(e) => return Err(AgentError::from_core(e)),
            }
        }
        Ok(())
    }

    async fn remove_everywhere(&self, id: &str) -> Result<(), AgentError> {
        for inbound in self.config.inbounds() {
            match self.core.remove_user(&inbound.tag, id).await {
                Ok(()) | Err(CoreError::UserNotFound { .. }) => {}
                Err(e) => return Err(AgentError::from_core(e)),
            }
        }
        Ok(())
    }

    /// What the service and the core say, as one view.
    async fn observe(&self) -> Result<Observed, AgentError> {
        match self
            .service
            .status()
            .await
            .map_err(AgentError::ServiceStatus)?
        {
            ServiceStatus::Stopped => Ok(Observed::Stopped),
            ServiceStatus::Initializing => Err(AgentError::Initializing),
            ServiceStatus::Running => match self.core.uptime_secs().await {
                Ok(uptime) => Ok(Observed::Running { uptime }),
                // Running but its API does not answer yet.
                Err(e) if e.is_temporary() => Err(AgentError::Initializing),
                Err(e) => Err(AgentError::Core(e)),
            },
        }
    }

    /// Xray: the users the core really has per managed inbound (without the
    /// operator's static clients), averaged over the inbounds. `None` when the
    /// core cannot count (V2Ray) or did not answer.
    async fn core_users_count(&self) -> Option<u64> {
        let inbounds = self.config.inbounds();
        if inbounds.is_empty() {
            return None;
        }
        let mut total = 0u64;
        for inbound in inbounds {
            let count = self.core.users_count(&inbound.tag).await.ok()??;
            total += count.saturating_sub(inbound.static_clients());
        }
        Some(total / inbounds.len() as u64)
    }

    /// Compares the core's start time with the one we know; if it moved, the
    /// core restarted behind our back: count it and put the users back.
    async fn check_restart(&self, uptime: u32) -> Result<(), AgentError> {
        let mut state = self.state.lock().await;
        let started = started_at(uptime);
        let restarted = match (state.core_started, started) {
            (Some(known), Some(now)) => now > known + RESTART_SLACK,
            _ => false,
        };
        if state.core_started.is_none() || restarted {
            state.core_started = started;
        }
        let mut full = false;
        if restarted {
            self.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(uptime, "the core restarted by itself");
            if state.running {
                let core_start = started.unwrap_or_else(Instant::now);
                match self.base_of(core_start, &state).await {
                    Some(flush) => state.heal_from = Some((flush.seq, flush.users)),
                    None => full = true,
                }
            }
        }
        if !state.running || (!full && state.heal_from.is_none()) {
            return Ok(());
        }
        // Healing excludes edits: let the ones in flight finish (and record
        // their changes), then re-apply.
        let epoch = state.epoch;
        drop(state);
        let _gate = self.gate.write().await;
        let mut state = self.state.lock().await;
        if !state.running || state.epoch != epoch {
            return Ok(()); // started or stopped meanwhile
        }
        if full {
            self.heal_by_restart(&mut state).await
        } else {
            self.heal(&mut state).await;
            Ok(())
        }
    }

    /// The newest write of the generated config that the core, started at
    /// `core_start`, must have read (or a later one), if we still know the
    /// changes made since.
    async fn base_of(&self, core_start: Instant, state: &State) -> Option<Flush> {
        let writer = self.writer.lock().await;
        // The estimate of the start may be late by up to a second (whole-second
        // uptime) plus the call's latency: keep a margin.
        let cutoff = core_start.checked_sub(Duration::from_secs(2))?;
        let flush = *writer.history.iter().rev().find(|f| f.at < cutoff)?;
        (flush.seq >= state.changes_floor).then_some(flush)
    }

    /// Re-applies through the API every change made after the config the
    /// restarted core read; idempotent, so a newer config read is fine too.
    async fn heal(&self, state: &mut State) {
        let Some((base_seq, _)) = state.heal_from else {
            return;
        };
        let ids: HashSet<Arc<str>> = state
            .changes
            .iter()
            .filter(|(seq, _)| *seq > base_seq)
            .map(|(_, id)| id.clone())
            .collect();
        let mut failed = 0usize;
        for id in &ids {
            let result = match state.users.get(id) {
                Some(user) => self.add_everywhere(user).await,
                None => self.remove_everywhere(id).await,
            };
            if let Err(e) = result {
                failed += 1;
                tracing::warn!(error = %e, "cannot put a user back into the restarted core");
            }
        }
        if failed == 0 {
            tracing::info!(
                changes = ids.len(),
                "users put back into the restarted core"
            );
            state.heal_from = None;
        }
    }

    /// The fallback when we no longer know what the restarted core read:
    /// write the config now and restart the core on it.
    async fn heal_by_restart(&self, state: &mut State) -> Result<(), AgentError> {
        tracing::warn!("restarting the core on a fresh config to put the users back");
        state.heal_from = None;
        self.flush_now(state).await?;
        self.service.restart().await.map_err(AgentError::Service)?;
        let uptime = self.wait_ready().await?;
        state.core_started = started_at(uptime);
        Ok(())
    }

    /// Waits until the core's API answers; gives its uptime.
    async fn wait_ready(&self) -> Result<u32, AgentError> {
        let deadline = Instant::now() + self.options.start_timeout;
        let mut next_status_check = Instant::now() + Duration::from_millis(500);
        loop {
            let last_error = match self.core.uptime_secs().await {
                Ok(uptime) => return Ok(uptime),
                Err(e) => e,
            };
            let now = Instant::now();
            if now >= next_status_check || now >= deadline {
                next_status_check = now + Duration::from_millis(500);
                let status = self
                    .service
                    .status()
                    .await
                    .map_err(AgentError::ServiceStatus)?;
                if status == ServiceStatus::Stopped {
                    return Err(AgentError::CoreDidNotStart(format!(
                        "the core stopped while starting (last API error: {last_error})"
                    )));
                }
                if now >= deadline {
                    return Err(match status {
                        ServiceStatus::Initializing => AgentError::Initializing,
                        _ => AgentError::CoreDidNotStart(format!(
                            "API not answering after {:?}: {last_error}",
                            self.options.start_timeout
                        )),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Writes the generated config for the current users, now.
    async fn flush_now(&self, state: &State) -> Result<(), AgentError> {
        let users: Vec<Arc<WireUser>> = state.users.values().cloned().collect();
        let mut writer = self.writer.lock().await;
        self.write(&mut writer, state.seq, users).await
    }

    async fn write(
        &self,
        writer: &mut Flushes,
        seq: u64,
        users: Vec<Arc<WireUser>>,
    ) -> Result<(), AgentError> {
        let config = self.config.clone();
        let path = self.options.generated_config.clone();
        let count = users.len() as u64;
        tokio::task::spawn_blocking(move || config.write_atomic(&path, users.iter().map(|u| &**u)))
            .await
            .map_err(|e| AgentError::Internal(format!("config writer task: {e}")))??;
        writer.history.push_back(Flush {
            seq,
            users: count,
            at: Instant::now(),
        });
        if writer.history.len() > FLUSH_HISTORY {
            writer.history.pop_front();
        }
        Ok(())
    }

    /// Rewrites the generated config after runtime edits, at most once per
    /// `flush_delay`. Until it has, a core restart starts without the newest
    /// edits; the restart monitor then re-applies them through the API.
    async fn run_writer(self: Arc<Self>, shutdown: CancellationToken) {
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
    /// the last write. Also trims the change log to what self-healing may need.
    pub async fn flush_if_dirty(&self) -> Result<(), AgentError> {
        let (seq, users) = {
            let state = self.state.lock().await;
            (state.seq, state.users.values().cloned().collect::<Vec<_>>())
        };
        let mut writer = self.writer.lock().await;
        if writer.last_seq().is_some_and(|last| last >= seq) {
            return Ok(());
        }
        self.write(&mut writer, seq, users).await?;
        let oldest = writer.history.front().map_or(0, |f| f.seq);
        drop(writer);
        let mut state = self.state.lock().await;
        state.trim_changes(oldest);
        Ok(())
    }

    async fn run_monitor(self: Arc<Self>, shutdown: CancellationToken) {
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

    /// One look at the core, healing it if it restarted (what the monitor
    /// does periodically and `/status` does on every call).
    pub async fn check_now(&self) -> Result<(), AgentError> {
        let Ok(transition) = self.transition.try_lock() else {
            return Ok(());
        };
        drop(transition);
        if let Observed::Running { uptime } = self.observe().await? {
            self.check_restart(uptime).await?;
        }
        Ok(())
    }
}

impl State {
    fn record_change(&mut self, id: Arc<str>) {
        self.seq += 1;
        self.changes.push_back((self.seq, id));
    }

    /// Forgets changes at or below `seq` (already in every config that a
    /// restarted core could have read, as far as the flush history reaches).
    fn trim_changes(&mut self, seq: u64) {
        if seq <= self.changes_floor {
            return;
        }
        while self.changes.front().is_some_and(|(s, _)| *s <= seq) {
            self.changes.pop_front();
        }
        self.changes_floor = seq;
    }
}

fn stripe_of(id: &str) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}

/// The moment a core with `uptime` seconds started.
fn started_at(uptime: u32) -> Option<Instant> {
    Instant::now().checked_sub(Duration::from_secs(u64::from(uptime)))
}
