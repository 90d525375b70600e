//! The agent's logic between the HTTP API and its two ports: run the core
//! with exactly the manager's users and edit them at runtime. Keeping the
//! core right lives in the submodules: the config writer, the watch for
//! starts of the core we did not order, and the verifier.

mod users;
mod verify;
mod watch;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, RwLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, CoreConfig, CoreCredentials};
use crate::core::ports::PortMap;
use crate::core::{CoreApi, CoreError};
use crate::service::{CoreInstance, ServiceControl, ServiceError, ServiceStatus};
use crate::usage::Usage;
use crate::wire::{
    InboundDescription, NodeStatus, StatusResponse, UsageRequest, UsersEditRequest, WireUser,
};
use users::{StoredUser, Users};
use verify::Gone;

/// Why an agent operation failed; the node API's error table maps each to a
/// status and text.
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
    /// How long one background verification pass over every user takes
    /// (paced evenly); a divergence is repaired within two of these. Zero:
    /// no background verification (re-applying after a restart still runs).
    pub verify_period: Duration,
    /// A core with a port per user (`ss-manager`): the users' ports, whose
    /// exceptions (users away from their home port) `/start` reports, and
    /// the ports of the users it added `/users/edit`.
    pub user_ports: Option<Arc<PortMap>>,
}

impl AgentOptions {
    pub fn new(generated_config: impl Into<PathBuf>) -> Self {
        Self {
            generated_config: generated_config.into(),
            user_config_template: String::new(),
            start_timeout: Duration::from_secs(30),
            flush_delay: Duration::from_millis(500),
            monitor_interval: Duration::from_secs(5),
            verify_period: Duration::from_secs(DEFAULT_VERIFY_PERIOD_SECS),
            user_ports: None,
        }
    }
}

/// The default of [`AgentOptions::verify_period`], in seconds.
pub const DEFAULT_VERIFY_PERIOD_SECS: u64 = 25;
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
    /// Runtime edits and verification hold it shared, so different users
    /// reach the core concurrently; start and stop hold it exclusively.
    gate: RwLock<()>,
    /// Serialises everything done to one user (edits, repairs), by a hash of the id.
    stripes: Vec<Mutex<()>>,
    /// Short critical sections only, except under an exclusive `gate`.
    state: Mutex<State>,
    /// The `seq` of the last write of the generated config.
    written: Mutex<Option<u64>>,
    dirty: Notify,
    /// Set when the core started without us: every user must be re-applied.
    resync: AtomicBool,
    /// Wakes the verifier for a resync.
    wake: Notify,
    restarts: AtomicU64,
    passes: AtomicU64,
    repaired_added: AtomicU64,
    repaired_removed: AtomicU64,
    /// Usage accounting, when on: read once more before the agent itself
    /// stops or restarts the core, whose counters die with it.
    usage: Option<Arc<Usage>>,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the manager wants the core running with `users` (set by
    /// `/start`, cleared by `/stop`): only then does the agent repair it.
    running: bool,
    users: Users,
    /// Ids the core may hold that are not ours: the verifier removes them.
    gone: Gone,
    /// Bumped by every change to `users`.
    seq: u64,
    /// The core instance last seen (or started by `/start`).
    instance: Option<CoreInstance>,
    /// Bumped by every `/start` and `/stop`: a look at the core taken before
    /// one of them is void.
    epoch: u64,
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
            written: Mutex::new(None),
            dirty: Notify::new(),
            resync: AtomicBool::new(false),
            wake: Notify::new(),
            restarts: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            repaired_added: AtomicU64::new(0),
            repaired_removed: AtomicU64::new(0),
            usage: None,
        }
    }

    /// Usage accounting: `/usage` answers from its journal and the core's
    /// counters are read once more before every stop or restart the agent orders.
    pub fn with_usage(mut self, usage: Arc<Usage>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The usage accounting, if on.
    pub fn usage(&self) -> Option<&Arc<Usage>> {
        self.usage.as_ref()
    }

    /// `/usage`: the journal's batches after the manager's cursor, as the
    /// answer's JSON made from the journal's records as they are (a page of
    /// 100,000 users is never parsed to be written again). Journal I/O
    /// failures (and an agent built without accounting) are internal
    /// errors: the details go to the log, not to the caller.
    pub async fn usage_after_json(&self, pull: UsageRequest) -> Result<Vec<u8>, AgentError> {
        let Some(usage) = &self.usage else {
            return Err(AgentError::Internal("no usage journal".into()));
        };
        usage
            .pull_json(pull)
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))
    }

    /// The last read before the agent stops or restarts the core. A failure
    /// is logged, not fatal: the core may already be down (nothing to lose)
    /// and a failed append keeps the read in memory.
    async fn last_usage_read(&self) {
        if let Some(usage) = &self.usage
            && let Err(e) = usage.collect().await
        {
            tracing::debug!(error = %e, "usage: read before stopping the core");
        }
    }

    pub fn user_config_template(&self) -> &str {
        &self.options.user_config_template
    }

    /// How clients dial each managed inbound, returned by `/start`: derived
    /// from the base config when it was parsed ([`CoreConfig::descriptions`]);
    /// an inbound with a port per user carries the users away from their
    /// home port as they are now.
    pub fn inbounds(&self) -> Vec<InboundDescription> {
        let mut inbounds = self.config.descriptions().to_vec();
        if let Some(ports) = &self.options.user_ports {
            ports.describe(&mut inbounds);
        }
        inbounds
    }

    /// The ports of the users among `ids` (a core with a port per user;
    /// empty otherwise): what `/users/edit` answers for the users it added.
    pub fn user_ports<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u16> {
        let ports = self.options.user_ports.as_ref();
        ports.map_or_else(BTreeMap::new, |p| p.ports_of(ids))
    }

    /// How many times the agent saw the core start without being told to.
    pub fn core_restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// How many verification passes over every user completed.
    pub fn verification_passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// How many users the agent found missing from the core and put back.
    pub fn users_readded(&self) -> u64 {
        self.repaired_added.load(Ordering::Relaxed)
    }

    /// How many users the agent found in the core though they are not ours,
    /// and removed.
    pub fn users_removed_as_stray(&self) -> u64 {
        self.repaired_removed.load(Ordering::Relaxed)
    }

    /// Runs the background tasks (config writer, restart monitor and
    /// verifier) until `shutdown` is cancelled.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        tokio::spawn(async move {
            tokio::join!(
                agent.clone().run_writer(shutdown.clone()),
                agent.clone().run_monitor(shutdown.clone()),
                agent.run_verifier(shutdown)
            );
        })
    }

    /// Checks that `users` can be put in the core: ids are UUIDs when a
    /// VLESS/VMess inbound is managed, secrets are non-empty, ids unique.
    pub fn validate(&self, users: &[WireUser]) -> Result<(), AgentError> {
        users::validate(users, self.config.needs_uuid_ids())
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
        // Each request user is freed as soon as it is compacted.
        let users = users
            .into_iter()
            .map(|user| StoredUser::new(&user))
            .collect::<Result<Users, _>>()?;
        let old = std::mem::replace(&mut state.users, users);
        for user in old {
            if !state.users.contains(user.id()) {
                state.gone.insert(Arc::from(user.id()));
            }
        }
        let State { users, gone, .. } = &mut *state;
        for user in users.iter() {
            gone.remove(user.id());
        }
        state.seq += 1;
        state.running = true;
        state.epoch += 1;
        // Whatever the core did before, this start re-applies everything.
        self.resync.store(false, Ordering::SeqCst);
        let begun = Instant::now();
        self.flush_now(&state).await?;
        let written = begun.elapsed();
        self.last_usage_read().await;
        self.service.restart().await.map_err(AgentError::Service)?;
        self.wait_ready().await?;
        // Any core that started since the restart read the config just
        // written (edits wait for the gate), so whichever we see now is right.
        state.instance = self
            .service
            .instance()
            .await
            .map_err(AgentError::ServiceStatus)?;
        if !self.config.restores_users() {
            // The core started empty (ss-manager): every user goes in
            // through its API before the start counts as done.
            for user in state.users.iter() {
                self.add_everywhere(user).await?;
            }
        }
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
        self.last_usage_read().await;
        self.service.stop().await.map_err(AgentError::Service)?;
        state.running = false;
        let old = std::mem::take(&mut state.users);
        for user in old {
            state.gone.insert(Arc::from(user.id()));
        }
        state.seq += 1;
        state.instance = None;
        state.epoch += 1;
        self.resync.store(false, Ordering::SeqCst);
        tracing::info!("core stopped");
        Ok(())
    }

    /// `/status`: whether the core runs and how many users it really has;
    /// as a side effect, notices a core that started without us.
    pub async fn status(&self) -> Result<StatusResponse, AgentError> {
        let Ok(transition) = self.transition.try_lock() else {
            return Err(AgentError::Initializing);
        };
        drop(transition);
        let epoch = self.state.lock().await.epoch;
        let uptime = match self.observe().await? {
            Observed::Stopped => {
                return Ok(StatusResponse {
                    node_status: NodeStatus::Stopped,
                    users: 0,
                    core_uptime_secs: 0,
                    core_restarts: self.core_restarts(),
                    usage_journal: self.usage.as_ref().map(|u| u.mark()),
                });
            }
            Observed::Running { uptime } => uptime,
        };
        self.look_for_restart(epoch).await?;
        let own_count = self.state.lock().await.users.len() as u64;
        let users = self.core_users_count().await.unwrap_or(own_count);
        Ok(StatusResponse {
            node_status: NodeStatus::Running,
            users,
            core_uptime_secs: u64::from(uptime),
            core_restarts: self.core_restarts(),
            usage_journal: self.usage.as_ref().map(|u| u.mark()),
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
            if state.users.remove(id.as_str()) {
                state.seq += 1;
                state.gone.insert(Arc::from(id));
            }
        }
        for user in edit.add_users {
            let stored = StoredUser::new(&user)?;
            let old = self.state.lock().await.users.get(user.id.as_str()).cloned();
            if old.as_ref().is_some_and(|old| old.is(&user)) {
                // Already ours: make sure the core has it (idempotent).
                self.add_everywhere(&user).await?;
                continue;
            }
            if old.is_some() {
                // Same id, new credentials: the core only knows the old ones.
                self.remove_everywhere(&user.id).await?;
            }
            self.add_everywhere(&user).await?;
            let mut state = self.state.lock().await;
            state.gone.remove(&user.id);
            state.users.replace(stored);
            state.seq += 1;
        }
        Ok(())
    }

    /// Adds `user` to every managed inbound; true when some inbound lacked it.
    async fn add_everywhere(
        &self,
        user: &(impl CoreCredentials + Sync + ?Sized),
    ) -> Result<bool, AgentError> {
        let mut added = false;
        for inbound in self.config.inbounds() {
            match self
                .core
                .add_user(&inbound.tag, &inbound.core_user(user))
                .await
            {
                Ok(()) => added = true,
                Err(CoreError::UserExists { .. }) => {}
                Err(e) => return Err(AgentError::from_core(e)),
            }
        }
        Ok(added)
    }

    /// Removes `id` from every managed inbound; true when some inbound had it.
    async fn remove_everywhere(&self, id: &str) -> Result<bool, AgentError> {
        let mut removed = false;
        for inbound in self.config.inbounds() {
            match self.core.remove_user(&inbound.tag, id).await {
                Ok(()) => removed = true,
                Err(CoreError::UserNotFound { .. }) => {}
                Err(e) => return Err(AgentError::from_core(e)),
            }
        }
        Ok(removed)
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

    /// Waits until the core's API answers.
    async fn wait_ready(&self) -> Result<(), AgentError> {
        let deadline = Instant::now() + self.options.start_timeout;
        let mut next_status_check = Instant::now() + Duration::from_millis(500);
        loop {
            let last_error = match self.core.uptime_secs().await {
                Ok(_) => return Ok(()),
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
}

fn stripe_of(id: &str) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}
