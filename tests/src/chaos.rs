//! A seeded chaos harness: the real `xray-manager` (one or more replicas) on
//! PostgreSQL behind a [`TcpProxy`], real `xray-node-agent`s with real v2ray
//! cores, each behind its own proxy, all on 127.0.0.1.
//!
//! Workers send admin calls through the HTTP API with a short timeout while a
//! fault task strikes at random moments (SIGKILL of a manager, an agent or a
//! core; the database path cut; a node unreachable or slow). A model keeps
//! what was acknowledged (200 answers). When the faults stop and everything
//! answers again, the harness measures how long the fleet takes to converge
//! and checks it against the model: the manager's view, the users' node
//! lists, every core (through its own gRPC API) and the database. Users of
//! their own move real bytes through the nodes all along; their stored
//! totals must be what the agents read from the cores (see `TrafficReport`).
//!
//! Every random choice comes from `CHAOS_SEED` (printed first); the same seed
//! replays the same decisions, though not the same interleaving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::{Mutex as AsyncMutex, RwLock as AsyncRwLock};
use tokio::task::JoinHandle;
use xray_core_client::testing::{VLESS_TAG, binary_flavor, free_port, vless_user_with_id};
use xray_core_client::{CoreClient, CoreError};

use crate::TcpProxy;
use crate::fleet::{AgentProcess, ManagerProcess};

mod traffic;
pub use traffic::{JournalReader, JournalTotals, TrafficReport, UserBytes};

/// Names of the users the harness creates (unacknowledged creates are
/// recognised by it).
const NAME_PREFIX: &str = "chaos-";

/// Sizes and timings of one run; [`ChaosSettings::from_env`] reads the
/// `CHAOS_*` variables over CI-sized defaults.
#[derive(Clone, Debug)]
pub struct ChaosSettings {
    /// The variant's name, in every line printed.
    pub name: String,
    pub seed: u64,
    /// Admin operations to send in all.
    pub ops: usize,
    /// Manager processes on the one database.
    pub replicas: usize,
    /// Nodes at the start; deletes never go below this many.
    pub nodes: usize,
    /// Adds never go above this many.
    pub max_nodes: usize,
    /// Operations in flight at once (never two on one user or node).
    pub workers: usize,
    pub heartbeat: Duration,
    /// The manager's timeout for one node call.
    pub node_timeout: Duration,
    /// The admin client's timeout for one call.
    pub client_timeout: Duration,
    /// Mean pause of a worker between operations.
    pub op_gap: Duration,
    /// Mean pause between faults.
    pub fault_gap: Duration,
    /// A core kill kills the core's successor too, 0.3–1.3 s after it
    /// started: a core killed before the agent's config flush and within
    /// its whole-second uptime of the previous start (issue 14, finding 12).
    pub double_core_kills: bool,
    /// The agents' config flush delay (`config_flush_ms`): the window in
    /// which a restarted core reads a config without the newest edits.
    pub agent_flush: Duration,
    /// How long after everything answers again the fleet may take to converge.
    pub converge: Duration,
}

fn env_u64(key: &str, default: u64) -> u64 {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => {
            parse_u64(v.trim()).unwrap_or_else(|| panic!("{key}={v:?} is not a number"))
        }
        _ => default,
    }
}

fn parse_u64(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl ChaosSettings {
    /// `CHAOS_SEED` (else random), `CHAOS_OPS` (300), `CHAOS_NODES` (5),
    /// `CHAOS_MAX_NODES` (8), `CHAOS_WORKERS` (3), `CHAOS_HEARTBEAT_MS` (500),
    /// `CHAOS_NODE_TIMEOUT_MS` (2000), `CHAOS_CLIENT_TIMEOUT_MS` (4000),
    /// `CHAOS_OP_GAP_MS` (120), `CHAOS_FAULT_GAP_MS` (1500),
    /// `CHAOS_CONVERGE_MS` (two heartbeats + 8000), `CHAOS_DOUBLE_CORE_KILLS` (0),
    /// `CHAOS_AGENT_FLUSH_MS` (50).
    pub fn from_env(name: &str, replicas: usize) -> Self {
        let seed = match std::env::var("CHAOS_SEED") {
            Ok(v) if !v.trim().is_empty() => {
                parse_u64(v.trim()).unwrap_or_else(|| panic!("CHAOS_SEED={v:?} is not a number"))
            }
            _ => rand::random(),
        };
        let heartbeat = Duration::from_millis(env_u64("CHAOS_HEARTBEAT_MS", 500));
        let nodes = env_u64("CHAOS_NODES", 5).max(1) as usize;
        Self {
            name: name.to_owned(),
            seed,
            ops: env_u64("CHAOS_OPS", 300) as usize,
            replicas,
            nodes,
            max_nodes: (env_u64("CHAOS_MAX_NODES", 8) as usize).max(nodes),
            workers: env_u64("CHAOS_WORKERS", 3).max(1) as usize,
            heartbeat,
            node_timeout: Duration::from_millis(env_u64("CHAOS_NODE_TIMEOUT_MS", 2000)),
            client_timeout: Duration::from_millis(env_u64("CHAOS_CLIENT_TIMEOUT_MS", 4000)),
            op_gap: Duration::from_millis(env_u64("CHAOS_OP_GAP_MS", 120)),
            fault_gap: Duration::from_millis(env_u64("CHAOS_FAULT_GAP_MS", 1500).max(1)),
            double_core_kills: env_u64("CHAOS_DOUBLE_CORE_KILLS", 0) != 0,
            agent_flush: Duration::from_millis(env_u64("CHAOS_AGENT_FLUSH_MS", 50)),
            converge: Duration::from_millis(env_u64(
                "CHAOS_CONVERGE_MS",
                2 * heartbeat.as_millis() as u64 + 8000,
            )),
        }
    }
}

/// What the database holds, read by the caller's own connection (not
/// through the manager).
#[derive(Debug, Default, Clone)]
pub struct DbSnapshot {
    pub users: Vec<DbUser>,
    pub nodes: Vec<DbNode>,
    /// Per user id, per node id: the bytes of the usage history (every day).
    pub usage_by_node: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
}

#[derive(Debug, Clone)]
pub struct DbUser {
    pub id: String,
    pub name: String,
    /// `Enabled` / `Disabled`.
    pub status: String,
    /// Bytes stored for the user (since the last reset; the chaos users
    /// have no plan, so: ever).
    pub used_up: u64,
    pub used_down: u64,
}

#[derive(Debug, Clone)]
pub struct DbNode {
    pub id: String,
    pub endpoint: String,
    /// `Running` / `Stopped`.
    pub required_status: String,
    /// The manager's usage cursor on the node: the journal and the last
    /// batch stored.
    pub usage_journal: Option<String>,
    pub usage_seq: u64,
}

/// Reads a [`DbSnapshot`]; called once everything has converged.
pub type DbReader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<DbSnapshot, String>> + Send>> + Send + Sync>;

/// What one run did.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub seed: u64,
    pub ops: usize,
    pub acked: usize,
    pub failed: usize,
    pub faults: BTreeMap<&'static str, usize>,
    /// From "everything answers again" to the fleet passing every check.
    pub convergence: Duration,
    pub wall: Duration,
    pub probes: usize,
    pub users: usize,
    pub nodes: usize,
    pub traffic: TrafficReport,
}

impl ChaosReport {
    pub fn fault_count(&self) -> usize {
        self.faults.values().sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UserState {
    Enabled,
    Disabled,
    Deleted,
}

impl UserState {
    fn from_api(s: &str) -> Option<Self> {
        match s {
            "Enabled" => Some(Self::Enabled),
            "Disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::Deleted => "Deleted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Required {
    Running,
    Stopped,
}

impl Required {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
        }
    }
}

/// A user an acknowledged create made.
#[derive(Debug)]
struct UserModel {
    id: String,
    name: String,
    /// What the last acknowledged operation left; `None`: uncertain.
    state: Option<UserState>,
    /// A delete that failed may still have been applied.
    maybe_deleted: bool,
    /// When an operation on it last failed: a later acknowledgement only
    /// settles the state once a failed call can no longer land.
    failed_at: Option<Instant>,
    busy: bool,
}

/// A node, its agent and the proxy the manager reaches it through.
#[derive(Debug)]
struct NodeSlot {
    node_id: String,
    proxy: TcpProxy,
    agent: AsyncMutex<AgentProcess>,
    vless: u16,
    api: u16,
    /// Its agent was stopped for good (the node was deleted).
    removed: AtomicBool,
    /// A lasting fault (agent down, path cut, slow) is on it.
    faulted: AtomicBool,
}

#[derive(Debug)]
struct NodeModel {
    slot: Arc<NodeSlot>,
    required: Option<Required>,
    deleted: bool,
    maybe_deleted: bool,
    failed_at: Option<Instant>,
    busy: bool,
}

/// A `/node/new` that failed: the node may exist; resolved at the end.
#[derive(Debug)]
struct PendingNode {
    port: u16,
    proxy: TcpProxy,
}

#[derive(Debug, Default)]
struct Model {
    users: Vec<UserModel>,
    nodes: Vec<NodeModel>,
    pending_nodes: Vec<PendingNode>,
    /// Contradictions seen while operating (an acknowledged user reported missing…).
    violations: Vec<String>,
}

#[derive(Debug)]
struct Replica {
    process: AsyncMutex<ManagerProcess>,
    url: Mutex<String>,
    down: AtomicBool,
}

/// An admin call's outcome.
#[derive(Debug)]
enum Answer {
    Ok(Value),
    Refused { status: u16, error: String },
    Lost(String),
}

impl Answer {
    fn refused_with(&self, text: &str) -> bool {
        matches!(self, Self::Refused { status: 400, error } if error == text)
    }
}

/// The manager's view at one moment.
#[derive(Debug, Default)]
struct View {
    /// id → (name, status)
    users: HashMap<String, (String, UserState)>,
    /// id → (endpoint, required, actual)
    nodes: HashMap<String, (String, String, String)>,
}

#[derive(Debug)]
struct Harness {
    s: ChaosSettings,
    core: PathBuf,
    http: reqwest::Client,
    /// Node-list clients from distinct loopback addresses: the call is rate
    /// limited per client address, and the checks ask for every user.
    list_clients: Vec<reqwest::Client>,
    token: String,
    replicas: Vec<Replica>,
    db_proxy: TcpProxy,
    /// Held for reading while a manager starts (it needs the database), for
    /// writing while the database path is cut.
    db_gate: AsyncRwLock<()>,
    db_cut: AtomicBool,
    model: Mutex<Model>,
    issued: AtomicUsize,
    acked: AtomicUsize,
    failed: AtomicUsize,
    faults: Mutex<BTreeMap<&'static str, usize>>,
    /// Failed calls by how they failed.
    fail_kinds: Mutex<BTreeMap<String, usize>>,
    stop_faults: AtomicBool,
    started: Instant,
    /// After a failed call, how long it may still land in the database.
    settle: Duration,
    traffic: traffic::Traffic,
}

/// Prints the replay hint if the run panics anywhere.
struct ReplayHint {
    name: String,
    seed: u64,
}

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[chaos {}] FAILED — replay with CHAOS_SEED={} cargo nextest run --release -p tests --test chaos {}",
                self.name, self.seed, self.name
            );
        }
    }
}

/// Runs one chaos run and checks the outcome; panics (printing what differs
/// and the seed) on any divergence. `db_url` is the database the managers
/// use (reached through a proxy the harness cuts); `db` reads it directly;
/// `journals` reads an agent's usage journal from its state directory.
pub async fn run(
    settings: ChaosSettings,
    core: PathBuf,
    db_url: &str,
    db: DbReader,
    journals: JournalReader,
) -> ChaosReport {
    println!(
        "[chaos {}] CHAOS_SEED={} ops={} replicas={} nodes={} heartbeat={:?}",
        settings.name,
        settings.seed,
        settings.ops,
        settings.replicas,
        settings.nodes,
        settings.heartbeat
    );
    let _hint = ReplayHint {
        name: settings.name.clone(),
        seed: settings.seed,
    };
    let started = Instant::now();
    let harness = Arc::new(Harness::start(settings, core, db_url, started).await);

    let mut workers = Vec::new();
    for k in 0..harness.s.workers {
        workers.push(tokio::spawn(harness.clone().worker(k)));
    }
    let faults = tokio::spawn(harness.clone().fault_loop());
    let traffic = harness.start_traffic();
    for w in workers {
        join(w).await;
    }
    harness.stop_faults.store(true, Ordering::SeqCst);
    harness.stop_traffic();
    for task in join(faults).await {
        join(task).await;
    }
    join(traffic).await;
    harness.log(&format!(
        "chaos over: {} ops ({} acknowledged, {} failed: {:?}), faults {:?}",
        harness.issued.load(Ordering::SeqCst).min(harness.s.ops),
        harness.acked.load(Ordering::SeqCst),
        harness.failed.load(Ordering::SeqCst),
        harness.fail_kinds.lock().unwrap(),
        harness.faults.lock().unwrap()
    ));
    harness.check(db, journals).await
}

/// Awaits a task, passing its panic on.
async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("chaos task cancelled: {e}"),
        },
    }
}

/// Whether an acknowledgement sent at `sent` settles an entity whose last
/// failed call ended at `failed_at`.
fn settles(failed_at: Option<Instant>, sent: Instant, settle: Duration) -> bool {
    failed_at.is_none_or(|f| sent >= f + settle)
}

/// The VLESS port in a node-list link `vless://ID@127.0.0.1:PORT?…`.
fn link_port(link: &str) -> Option<u16> {
    let rest = link.split_once('@')?.1;
    let hostport = rest.split(['?', '#', '/']).next()?;
    hostport.rsplit_once(':')?.1.parse().ok()
}

impl Harness {
    async fn start(s: ChaosSettings, core: PathBuf, db_url: &str, started: Instant) -> Self {
        let mut url: reqwest::Url = db_url.parse().expect("a database URL");
        let target = format!(
            "{}:{}",
            url.host_str().expect("a database host"),
            url.port().unwrap_or(5432)
        );
        let target: SocketAddr = tokio::net::lookup_host(target)
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address for the database");
        let db_proxy = TcpProxy::start(target).await.expect("database proxy");
        url.set_port(Some(db_proxy.addr().port())).unwrap();
        let node_timeout = s.node_timeout.as_millis().to_string();
        let env = [
            ("XM_STORAGE_URL", url.as_str()),
            ("XM_NODE_TIMEOUT_MS", node_timeout.as_str()),
            ("RUST_LOG", "warn"),
        ];
        let mut replicas = Vec::new();
        let mut token = String::new();
        for _ in 0..s.replicas {
            let process = ManagerProcess::start(s.heartbeat.as_millis() as u64, &env).await;
            token = process.token.clone();
            replicas.push(Replica {
                url: Mutex::new(process.url.clone()),
                process: AsyncMutex::new(process),
                down: AtomicBool::new(false),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(s.client_timeout)
            .build()
            .expect("http client");
        let list_clients = (0..48u8)
            .map(|i| {
                reqwest::Client::builder()
                    .timeout(s.client_timeout)
                    .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i)))
                    .build()
                    .expect("node-list client")
            })
            .collect();
        let settle = s.client_timeout + Duration::from_secs(5) + s.node_timeout;
        let harness = Self {
            s,
            core,
            http,
            list_clients,
            token,
            replicas,
            db_proxy,
            db_gate: AsyncRwLock::new(()),
            db_cut: AtomicBool::new(false),
            model: Mutex::default(),
            issued: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            faults: Mutex::default(),
            fail_kinds: Mutex::default(),
            stop_faults: AtomicBool::new(false),
            started,
            settle,
            traffic: traffic::Traffic::default(),
        };
        // The initial fleet, before any fault: every call must succeed.
        for _ in 0..harness.s.nodes {
            let port = free_port();
            let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .expect("node proxy");
            let endpoint = format!("http://{}", proxy.addr());
            let Answer::Ok(body) = harness
                .call(0, "/node/new", Some(json!({"endpoint": endpoint})))
                .await
            else {
                panic!("registering {endpoint} before any fault failed");
            };
            let slot = harness.start_agent(&body, port, proxy).await;
            let id = slot.node_id.clone();
            let answer = harness
                .call(0, "/node/start", Some(json!({"nodeID": id})))
                .await;
            // A core slow to come up on a loaded machine can outlast the
            // manager's node timeout (502 `node unreachable`): the start is
            // stored and the heartbeat finishes it, so the model treats it
            // like any start whose answer was lost. Anything else is a bug.
            let (required, failed_at) = match &answer {
                Answer::Ok(_) => (Some(Required::Running), None),
                Answer::Refused { status: 502, .. } => {
                    harness.log(&format!(
                        "starting node {id} timed out before any fault; the heartbeat finishes it"
                    ));
                    (None, Some(Instant::now()))
                }
                other => panic!("starting node {id} before any fault: {other:?}"),
            };
            harness.model.lock().unwrap().nodes.push(NodeModel {
                slot,
                required,
                deleted: false,
                maybe_deleted: false,
                failed_at,
                busy: false,
            });
        }
        harness.add_traffic_users().await;
        harness.log(&format!(
            "fleet up: {} manager(s), {} nodes, traffic users",
            harness.replicas.len(),
            harness.s.nodes
        ));
        harness
    }

    fn log(&self, msg: &str) {
        println!(
            "[chaos {} t={:.3}s] {msg}",
            self.s.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn url(&self, replica: usize) -> String {
        self.replicas[replica].url.lock().unwrap().clone()
    }

    /// One admin call (GET without a body, POST with one).
    async fn call(&self, replica: usize, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.url(replica));
        let req = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        match req.bearer_auth(&self.token).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.json::<Value>().await {
                    Ok(body) if status == 200 => Answer::Ok(body),
                    Ok(body) => Answer::Refused {
                        status,
                        error: body["error"].as_str().unwrap_or_default().to_owned(),
                    },
                    Err(e) => Answer::Lost(format!("status {status}, body unread: {e}")),
                }
            }
            Err(e) => Answer::Lost(e.to_string()),
        }
    }

    /// Starts the agent for a node `/node/new` answered with `body`.
    async fn start_agent(&self, body: &Value, port: u16, proxy: TcpProxy) -> Arc<NodeSlot> {
        let id = body["nodeID"].as_str().expect("nodeID").to_owned();
        let key = body["nodeKey"].as_str().expect("nodeKey").to_owned();
        let flush_ms = self.s.agent_flush.as_millis() as u64;
        let agent = AgentProcess::start_flushing(&key, &self.core, port, flush_ms).await;
        Arc::new(NodeSlot {
            node_id: id,
            proxy,
            vless: agent.ports.vless,
            api: agent.ports.api,
            agent: AsyncMutex::new(agent),
            removed: AtomicBool::new(false),
            faulted: AtomicBool::new(false),
        })
    }

    fn note_ack(&self) {
        self.acked.fetch_add(1, Ordering::SeqCst);
    }

    fn note_fail(&self, answer: &Answer) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let kind = match answer {
            Answer::Ok(_) => "200 (unexpected)".to_owned(),
            Answer::Refused { status, error } => format!("{status} {error}"),
            Answer::Lost(e) if e.contains("timed out") => "timeout".to_owned(),
            Answer::Lost(_) => "no answer".to_owned(),
        };
        *self.fail_kinds.lock().unwrap().entry(kind).or_default() += 1;
    }

    // ---- the operations ----

    async fn worker(self: Arc<Self>, k: usize) {
        let mut rng = StdRng::seed_from_u64(
            self.s.seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1),
        );
        loop {
            if self.issued.fetch_add(1, Ordering::SeqCst) >= self.s.ops {
                break;
            }
            let gap = self.s.op_gap.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..=2 * gap))).await;
            let replica = rng.random_range(0..self.replicas.len());
            match rng.random_range(0..100u32) {
                0..25 => self.create_user(replica).await,
                25..50 => self.set_user(&mut rng, replica, UserState::Enabled).await,
                50..64 => self.set_user(&mut rng, replica, UserState::Disabled).await,
                64..72 => self.set_user(&mut rng, replica, UserState::Deleted).await,
                72..74 => self.touch_deleted(&mut rng, replica).await,
                74..86 => {
                    self.set_node(&mut rng, replica, Some(Required::Running))
                        .await
                }
                86..92 => {
                    self.set_node(&mut rng, replica, Some(Required::Stopped))
                        .await
                }
                92..96 => self.add_node(replica).await,
                _ => self.set_node(&mut rng, replica, None).await,
            }
        }
    }

    async fn create_user(&self, replica: usize) {
        let n = self.issued.load(Ordering::SeqCst);
        let name = format!("{NAME_PREFIX}user-{n}");
        match self
            .call(replica, "/user/new", Some(json!({"userName": name})))
            .await
        {
            Answer::Ok(body) => {
                self.note_ack();
                let id = body["user"]["id"].as_str().unwrap_or_default().to_owned();
                let mut model = self.model.lock().unwrap();
                if id.is_empty() || body["user"]["name"] != name.as_str() {
                    model
                        .violations
                        .push(format!("create of {name} answered 200 with {body}"));
                    return;
                }
                model.users.push(UserModel {
                    id,
                    name,
                    state: Some(UserState::Disabled),
                    maybe_deleted: false,
                    failed_at: None,
                    busy: false,
                });
            }
            other => self.note_fail(&other),
        }
    }

    /// Enable, disable (`Enabled`/`Disabled`) or delete (`Deleted`) a user.
    async fn set_user(&self, rng: &mut StdRng, replica: usize, to: UserState) {
        let picked = {
            let mut model = self.model.lock().unwrap();
            let free: Vec<usize> = (0..model.users.len())
                .filter(|&i| {
                    let u = &model.users[i];
                    !u.busy && u.state != Some(UserState::Deleted)
                })
                .collect();
            if free.is_empty() {
                None
            } else {
                let i = free[rng.random_range(0..free.len())];
                model.users[i].busy = true;
                Some((i, model.users[i].id.clone()))
            }
        };
        let Some((i, id)) = picked else {
            return self.create_user(replica).await;
        };
        let path = match to {
            UserState::Enabled => "/user/enable",
            UserState::Disabled => "/user/disable",
            UserState::Deleted => "/user/delete",
        };
        let sent = Instant::now();
        let answer = self.call(replica, path, Some(json!({"userID": id}))).await;
        let mut model = self.model.lock().unwrap();
        let u = &mut model.users[i];
        u.busy = false;
        let mut violation = None;
        match answer {
            Answer::Ok(_) => {
                self.note_ack();
                if to == UserState::Deleted || settles(u.failed_at, sent, self.settle) {
                    u.state = Some(to);
                    u.maybe_deleted = false;
                }
            }
            ref a if a.refused_with("user not exists") => {
                self.note_fail(a);
                if u.maybe_deleted {
                    // A delete that failed for us did land.
                    u.state = Some(UserState::Deleted);
                } else {
                    violation = Some(format!(
                        "user {} ({}): created (acknowledged), never deleted, but {path} answered `user not exists`",
                        u.id, u.name
                    ));
                }
            }
            ref other => {
                self.note_fail(other);
                u.state = None;
                u.failed_at = Some(Instant::now());
                if to == UserState::Deleted {
                    u.maybe_deleted = true;
                }
            }
        }
        if let Some(v) = violation {
            model.violations.push(v);
        }
    }

    /// A call on a user whose delete was acknowledged must answer `user not exists`.
    async fn touch_deleted(&self, rng: &mut StdRng, replica: usize) {
        let id = {
            let model = self.model.lock().unwrap();
            let deleted: Vec<&UserModel> = model
                .users
                .iter()
                .filter(|u| u.state == Some(UserState::Deleted))
                .collect();
            if deleted.is_empty() {
                None
            } else {
                Some(deleted[rng.random_range(0..deleted.len())].id.clone())
            }
        };
        let Some(id) = id else {
            return self.create_user(replica).await;
        };
        let answer = self
            .call(replica, "/user/enable", Some(json!({"userID": id})))
            .await;
        if let Answer::Ok(_) = answer {
            self.note_ack();
            self.model.lock().unwrap().violations.push(format!(
                "user {id}: deleted (acknowledged), yet /user/enable answered 200"
            ));
        } else {
            self.note_fail(&answer);
        }
    }

    /// Start (`Some(Running)`), stop (`Some(Stopped)`) or delete (`None`) a node.
    async fn set_node(&self, rng: &mut StdRng, replica: usize, to: Option<Required>) {
        let picked = {
            let mut model = self.model.lock().unwrap();
            let live = model
                .nodes
                .iter()
                .filter(|n| !n.deleted && !n.maybe_deleted)
                .count();
            let free: Vec<usize> = (0..model.nodes.len())
                .filter(|&i| {
                    let n = &model.nodes[i];
                    !n.busy && !n.deleted
                })
                .collect();
            if free.is_empty() || (to.is_none() && live <= self.s.nodes) {
                None
            } else {
                let i = free[rng.random_range(0..free.len())];
                model.nodes[i].busy = true;
                Some((i, model.nodes[i].slot.clone()))
            }
        };
        let Some((i, slot)) = picked else {
            return self.create_user(replica).await;
        };
        let path = match to {
            Some(Required::Running) => "/node/start",
            Some(Required::Stopped) => "/node/stop",
            None => "/node/delete",
        };
        let sent = Instant::now();
        let answer = self
            .call(replica, path, Some(json!({"nodeID": slot.node_id})))
            .await;
        let mut stop_agent = false;
        {
            let mut model = self.model.lock().unwrap();
            let n = &mut model.nodes[i];
            n.busy = false;
            let mut violation = None;
            match answer {
                Answer::Ok(_) => {
                    self.note_ack();
                    match to {
                        None => {
                            n.deleted = true;
                            stop_agent = true;
                        }
                        Some(req) => {
                            if settles(n.failed_at, sent, self.settle) {
                                n.required = Some(req);
                                n.maybe_deleted = false;
                            }
                        }
                    }
                }
                ref a if a.refused_with("node not exists") => {
                    self.note_fail(a);
                    if n.maybe_deleted {
                        n.deleted = true;
                        stop_agent = true;
                    } else {
                        violation = Some(format!(
                            "node {}: registered (acknowledged), never deleted, but {path} answered `node not exists`",
                            slot.node_id
                        ));
                    }
                }
                ref other => {
                    self.note_fail(other);
                    n.required = None;
                    n.failed_at = Some(Instant::now());
                    if to.is_none() {
                        n.maybe_deleted = true;
                    }
                }
            }
            if let Some(v) = violation {
                model.violations.push(v);
            }
        }
        if stop_agent {
            slot.removed.store(true, Ordering::SeqCst);
            slot.agent.lock().await.stop().await;
            self.log(&format!("node {} deleted; its agent stopped", slot.node_id));
        }
    }

    /// Registers a new node and starts its agent, then starts the node.
    async fn add_node(&self, replica: usize) {
        let live = {
            let model = self.model.lock().unwrap();
            model.nodes.iter().filter(|n| !n.deleted).count() + model.pending_nodes.len()
        };
        if live >= self.s.max_nodes {
            return self.create_user(replica).await;
        }
        let port = free_port();
        let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("node proxy");
        let endpoint = format!("http://{}", proxy.addr());
        let body = match self
            .call(replica, "/node/new", Some(json!({"endpoint": endpoint})))
            .await
        {
            Answer::Ok(body) => {
                self.note_ack();
                body
            }
            other => {
                self.note_fail(&other);
                self.model
                    .lock()
                    .unwrap()
                    .pending_nodes
                    .push(PendingNode { port, proxy });
                return;
            }
        };
        let slot = self.start_agent(&body, port, proxy).await;
        let i = {
            let mut model = self.model.lock().unwrap();
            model.nodes.push(NodeModel {
                slot: slot.clone(),
                required: Some(Required::Stopped),
                deleted: false,
                maybe_deleted: false,
                failed_at: None,
                busy: true,
            });
            model.nodes.len() - 1
        };
        self.log(&format!("node {} added ({endpoint})", slot.node_id));
        self.issued.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let answer = self
            .call(
                replica,
                "/node/start",
                Some(json!({"nodeID": slot.node_id})),
            )
            .await;
        let mut model = self.model.lock().unwrap();
        let n = &mut model.nodes[i];
        n.busy = false;
        if let Answer::Ok(_) = answer {
            self.note_ack();
            if settles(n.failed_at, sent, self.settle) {
                n.required = Some(Required::Running);
            }
        } else {
            self.note_fail(&answer);
            n.required = None;
            n.failed_at = Some(Instant::now());
        }
    }

    // ---- the faults ----

    fn count_fault(&self, kind: &'static str, what: &str) {
        *self.faults.lock().unwrap().entry(kind).or_default() += 1;
        self.log(&format!("FAULT {kind}: {what}"));
    }

    /// Nodes a fault may strike: present, not deleted, no lasting fault on them.
    fn fault_targets(&self) -> Vec<Arc<NodeSlot>> {
        self.model
            .lock()
            .unwrap()
            .nodes
            .iter()
            .filter(|n| !n.deleted && !n.slot.removed.load(Ordering::SeqCst))
            .filter(|n| !n.slot.faulted.load(Ordering::SeqCst))
            .map(|n| n.slot.clone())
            .collect()
    }

    async fn fault_loop(self: Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut rng = StdRng::seed_from_u64(self.s.seed ^ 0xFA17_FA17_FA17_FA17);
        let mut tasks = Vec::new();
        let gap = self.s.fault_gap.as_millis() as u64;
        loop {
            let wait = Duration::from_millis(rng.random_range(gap / 2..=gap * 3 / 2));
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stop_faults.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if self.stop_faults.load(Ordering::SeqCst) {
                return tasks;
            }
            let mut kind = rng.random_range(0..12u32);
            if self.s.double_core_kills && (5..10).contains(&kind) {
                kind = 6; // mostly double core kills in this mode
            }
            let down_for = Duration::from_millis(rng.random_range(300..2000));
            let lasting = Duration::from_millis(rng.random_range(500..3000));
            let delay = Duration::from_millis(rng.random_range(200..2500));
            let pick = rng.random_range(0..1000usize);
            let targets = self.fault_targets();
            let target = (!targets.is_empty()).then(|| targets[pick % targets.len()].clone());
            let this = self.clone();
            let task = match (kind, target) {
                (0..2, _) => {
                    let i = pick % self.replicas.len();
                    if self.replicas.iter().any(|r| r.down.load(Ordering::SeqCst)) {
                        continue;
                    }
                    self.replicas[i].down.store(true, Ordering::SeqCst);
                    self.count_fault("kill-manager", &format!("replica {i}, down {down_for:?}"));
                    tokio::spawn(async move { this.kill_manager(i, down_for).await })
                }
                (2..4, _) => {
                    if self.db_cut.swap(true, Ordering::SeqCst) {
                        continue;
                    }
                    self.count_fault("cut-database", &format!("for {lasting:?}"));
                    tokio::spawn(async move {
                        let _cut = this.db_gate.write().await;
                        this.db_proxy.cut().await;
                        tokio::time::sleep(lasting).await;
                        this.db_proxy
                            .restore()
                            .await
                            .expect("restore database path");
                        this.db_cut.store(false, Ordering::SeqCst);
                        this.log("database path restored");
                    })
                }
                (_, None) => continue,
                (4..6, Some(slot)) => {
                    slot.faulted.store(true, Ordering::SeqCst);
                    self.count_fault(
                        "kill-agent",
                        &format!("node {}, down {down_for:?}", slot.node_id),
                    );
                    tokio::spawn(async move {
                        let mut agent = slot.agent.lock().await;
                        agent.kill().await;
                        tokio::time::sleep(down_for).await;
                        if !slot.removed.load(Ordering::SeqCst) {
                            agent.restart().await;
                            this.log(&format!("agent of node {} restarted", slot.node_id));
                        }
                        slot.faulted.store(false, Ordering::SeqCst);
                    })
                }
                (6..8, Some(slot)) if self.s.double_core_kills => {
                    slot.faulted.store(true, Ordering::SeqCst);
                    let after = Duration::from_millis(rng.random_range(300..1300));
                    self.count_fault(
                        "kill-core-twice",
                        &format!("node {}, again {after:?} after its restart", slot.node_id),
                    );
                    tokio::spawn(async move {
                        let agent = slot.agent.lock().await;
                        let first = agent.core_pids();
                        if agent.kill_core() {
                            let deadline = Instant::now() + Duration::from_secs(5);
                            while Instant::now() < deadline {
                                let now = agent.core_pids();
                                if !now.is_empty() && now != first {
                                    tokio::time::sleep(after).await;
                                    agent.kill_core();
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        drop(agent);
                        slot.faulted.store(false, Ordering::SeqCst);
                    })
                }
                (6..8, Some(slot)) => {
                    let agent = slot.agent.lock().await;
                    if agent.kill_core() {
                        self.count_fault("kill-core", &format!("node {}", slot.node_id));
                    }
                    continue;
                }
                (8..10, Some(slot)) => {
                    slot.faulted.store(true, Ordering::SeqCst);
                    self.count_fault(
                        "cut-node",
                        &format!("node {} for {lasting:?}", slot.node_id),
                    );
                    tokio::spawn(async move {
                        slot.proxy.cut().await;
                        tokio::time::sleep(lasting).await;
                        slot.proxy.restore().await.expect("restore node path");
                        slot.faulted.store(false, Ordering::SeqCst);
                    })
                }
                (_, Some(slot)) => {
                    slot.faulted.store(true, Ordering::SeqCst);
                    let slow_for = lasting * 2;
                    self.count_fault(
                        "slow-node",
                        &format!(
                            "node {} +{delay:?} per answer for {slow_for:?}",
                            slot.node_id
                        ),
                    );
                    tokio::spawn(async move {
                        slot.proxy.set_delay(delay);
                        tokio::time::sleep(slow_for).await;
                        slot.proxy.set_delay(Duration::ZERO);
                        slot.faulted.store(false, Ordering::SeqCst);
                    })
                }
            };
            tasks.push(task);
        }
    }

    async fn kill_manager(&self, i: usize, down_for: Duration) {
        let replica = &self.replicas[i];
        let mut process = replica.process.lock().await;
        process.kill().await;
        tokio::time::sleep(down_for).await;
        // A manager cannot start without its database: wait out a cut.
        let _db = self.db_gate.read().await;
        process.restart().await;
        *replica.url.lock().unwrap() = process.url.clone();
        replica.down.store(false, Ordering::SeqCst);
        self.log(&format!("manager replica {i} restarted at {}", process.url));
    }
}

/// What the checks expect after the read-back: every user's final status
/// (certain from the model, else as the manager shows it) and the nodes.
#[derive(Debug, Default)]
struct Expected {
    /// id → (name, Enabled/Disabled)
    users: BTreeMap<String, (String, UserState)>,
    /// Users that must be gone everywhere.
    deleted: BTreeSet<String>,
    /// Nodes that must run: id → slot.
    running: BTreeMap<String, Arc<NodeSlot>>,
}

impl Harness {
    // ---- after the faults ----

    async fn check(self: Arc<Self>, db: DbReader, journals: JournalReader) -> ChaosReport {
        // Everything back: the fault tasks healed what they broke; make sure.
        self.db_proxy.set_delay(Duration::ZERO);
        let slots: Vec<Arc<NodeSlot>> = {
            let model = self.model.lock().unwrap();
            model.nodes.iter().map(|n| n.slot.clone()).collect()
        };
        for slot in &slots {
            slot.proxy.set_delay(Duration::ZERO);
            let mut agent = slot.agent.lock().await;
            if !slot.removed.load(Ordering::SeqCst) && !agent.is_running() {
                agent.restart().await;
            }
        }
        for (i, r) in self.replicas.iter().enumerate() {
            assert!(
                !r.down.load(Ordering::SeqCst),
                "replica {i} still down after its fault task ended"
            );
        }
        self.resolve_pending_nodes().await;
        // Everything answers: the convergence clock starts.
        for i in 0..self.replicas.len() {
            let url = format!("{}/health", self.url(i));
            crate::wait_for("the manager to answer", Duration::from_secs(30), || {
                let req = self.http.get(&url);
                async move { req.send().await.ok().filter(|r| r.status() == 200) }
            })
            .await;
        }
        let t0 = Instant::now();
        self.log("faults over, every process answers: waiting for convergence");

        let deadline = t0 + self.s.converge;
        let stable_for = self.s.heartbeat * 2;
        let mut stable_since: Option<Instant> = None;
        let mut round = 0usize;
        let (expected, convergence) = loop {
            let replica = round % self.replicas.len();
            round += 1;
            let (diffs, expected) = match self.read_view(replica).await {
                Some(view) => self.check_view(&view, replica).await,
                None => (
                    vec![format!("replica {replica}: cannot read users/nodes")],
                    None,
                ),
            };
            let now = Instant::now();
            match (diffs.is_empty(), expected) {
                (true, Some(expected)) => {
                    let since = *stable_since.get_or_insert(now);
                    if now.duration_since(since) >= stable_for {
                        break (expected, since.duration_since(t0));
                    }
                }
                _ => {
                    stable_since = None;
                    if now >= deadline {
                        self.fail(
                            &format!(
                                "no convergence within {:?} after every process answered",
                                self.s.converge
                            ),
                            &diffs,
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        self.log(&format!(
            "converged in {:.3}s ({} users, {} running nodes); probing the cores",
            convergence.as_secs_f64(),
            expected.users.len(),
            expected.running.len()
        ));

        // 1. every running node's core has exactly the enabled users.
        let probe_deadline = Instant::now() + self.s.heartbeat * 2 + Duration::from_secs(3);
        let mut probes = 0;
        loop {
            let (n, diffs) = self.probe_cores(&expected).await;
            probes += n;
            if diffs.is_empty() {
                break;
            }
            if Instant::now() >= probe_deadline {
                self.fail("cores differ from the enabled users", &diffs);
            }
            for d in &diffs {
                self.log(&format!("WARN transient core divergence: {d}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // 4. the database holds what was acknowledged.
        let snapshot = {
            let mut last = String::new();
            let mut found = None;
            for _ in 0..5 {
                match db().await {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            found.unwrap_or_else(|| self.fail("cannot read the database", &[last]))
        };
        let diffs = self.check_database(&snapshot, &expected);
        if !diffs.is_empty() {
            self.fail("the database differs from what was acknowledged", &diffs);
        }
        let violations = self.model.lock().unwrap().violations.clone();
        if !violations.is_empty() {
            self.fail("contradictions while operating", &violations);
        }
        // 5. the traffic users' totals are what the agents read.
        let traffic = self.check_traffic(&db, &journals).await;

        let report = ChaosReport {
            seed: self.s.seed,
            ops: self.issued.load(Ordering::SeqCst).min(self.s.ops),
            acked: self.acked.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            faults: self.faults.lock().unwrap().clone(),
            convergence,
            wall: self.started.elapsed(),
            probes,
            users: expected.users.len(),
            nodes: expected.running.len(),
            traffic,
        };
        let faults: Vec<String> = report
            .faults
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        println!(
            "CHAOS-RESULT variant={} seed={} ops={} acked={} failed={} faults={} [{}] converge_ms={} wall_ms={} probes={} users={} running_nodes={} fetches={} failed_fetches={} moved_b={} counted_b={} stored_b={} unpulled_b={} result=ok",
            self.s.name,
            report.seed,
            report.ops,
            report.acked,
            report.failed,
            report.fault_count(),
            faults.join(" "),
            report.convergence.as_millis(),
            report.wall.as_millis(),
            report.probes,
            report.users,
            report.nodes,
            report.traffic.fetches,
            report.traffic.failed_fetches,
            report.traffic.moved,
            report.traffic.counted,
            report.traffic.stored,
            report.traffic.unpulled
        );
        report
    }

    fn fail(&self, what: &str, diffs: &[String]) -> ! {
        let mut msg = format!(
            "[chaos {}] DIVERGENCE (seed {}): {what}\n",
            self.s.name, self.s.seed
        );
        for d in diffs.iter().take(200) {
            let _ = writeln!(msg, "  - {d}");
        }
        if diffs.len() > 200 {
            let _ = writeln!(msg, "  … and {} more", diffs.len() - 200);
        }
        println!("{msg}");
        println!(
            "CHAOS-RESULT variant={} seed={} result=FAILED",
            self.s.name, self.s.seed
        );
        panic!("{msg}");
    }

    /// `/node/new` calls that failed: if the node exists, learn its key (the
    /// call is idempotent) and start its agent.
    async fn resolve_pending_nodes(&self) {
        let pending = std::mem::take(&mut self.model.lock().unwrap().pending_nodes);
        if pending.is_empty() {
            return;
        }
        let view = crate::wait_for("the node list", Duration::from_secs(30), || {
            self.read_view(0)
        })
        .await;
        for p in pending {
            let endpoint = format!("http://{}", p.proxy.addr());
            if !view.nodes.values().any(|(e, _, _)| *e == endpoint) {
                continue;
            }
            let body = crate::wait_for(
                "the idempotent /node/new",
                Duration::from_secs(30),
                || async {
                    match self
                        .call(0, "/node/new", Some(json!({"endpoint": endpoint})))
                        .await
                    {
                        Answer::Ok(body) => Some(body),
                        _ => None,
                    }
                },
            )
            .await;
            let slot = self.start_agent(&body, p.port, p.proxy).await;
            self.log(&format!(
                "node {} registered by a call that failed: agent started",
                slot.node_id
            ));
            self.model.lock().unwrap().nodes.push(NodeModel {
                slot,
                required: None,
                deleted: false,
                maybe_deleted: false,
                failed_at: None,
                busy: false,
            });
        }
    }

    async fn read_view(&self, replica: usize) -> Option<View> {
        let mut view = View::default();
        let Answer::Ok(users) = self.call(replica, "/users?limit=10000", None).await else {
            return None;
        };
        for u in users["users"].as_array()? {
            let id = u["id"].as_str()?.to_owned();
            let name = u["name"].as_str()?.to_owned();
            let status = UserState::from_api(u["status"].as_str()?)?;
            view.users.insert(id, (name, status));
        }
        let Answer::Ok(nodes) = self.call(replica, "/nodes?limit=10000", None).await else {
            return None;
        };
        for n in nodes["nodes"].as_array()? {
            view.nodes.insert(
                n["id"].as_str()?.to_owned(),
                (
                    n["endpoint"].as_str()?.to_owned(),
                    n["requiredStatus"].as_str()?.to_owned(),
                    n["actualStatus"].as_str()?.to_owned(),
                ),
            );
        }
        Some(view)
    }

    /// The model against the manager's view, then checks 2 and 3.
    async fn check_view(&self, view: &View, replica: usize) -> (Vec<String>, Option<Expected>) {
        let mut diffs = Vec::new();
        let mut expected = Expected::default();
        {
            let model = self.model.lock().unwrap();
            let known: BTreeSet<&str> = model.users.iter().map(|u| u.id.as_str()).collect();
            for u in &model.users {
                let shown = view.users.get(&u.id);
                match (u.state, shown) {
                    (Some(UserState::Deleted), None) => {
                        expected.deleted.insert(u.id.clone());
                    }
                    (Some(UserState::Deleted), Some((_, s))) => diffs.push(format!(
                        "user {} ({}): expected deleted (acknowledged), found {}",
                        u.id,
                        u.name,
                        s.as_str()
                    )),
                    (_, None) if u.maybe_deleted => {
                        expected.deleted.insert(u.id.clone());
                    }
                    (_, None) => diffs.push(format!(
                        "user {} ({}): expected {} (acknowledged create), found absent",
                        u.id,
                        u.name,
                        u.state.map_or("present", UserState::as_str)
                    )),
                    (state, Some((name, s))) => {
                        if *name != u.name {
                            diffs.push(format!(
                                "user {}: expected name {}, found {name}",
                                u.id, u.name
                            ));
                        }
                        if let Some(st) = state
                            && st != *s
                        {
                            diffs.push(format!(
                                "user {} ({}): expected {} (acknowledged), found {}",
                                u.id,
                                u.name,
                                st.as_str(),
                                s.as_str()
                            ));
                        }
                    }
                }
            }
            for (id, (name, status)) in &view.users {
                if !known.contains(id.as_str())
                    && (!name.starts_with(NAME_PREFIX) || *status != UserState::Disabled)
                {
                    diffs.push(format!(
                        "user {id} ({name}): unknown to the model (an unacknowledged create?) but {}",
                        status.as_str()
                    ));
                }
                expected.users.insert(id.clone(), (name.clone(), *status));
            }
            let known_nodes: BTreeSet<&str> = model
                .nodes
                .iter()
                .map(|n| n.slot.node_id.as_str())
                .collect();
            for n in &model.nodes {
                let id = &n.slot.node_id;
                match view.nodes.get(id) {
                    None if n.deleted || n.maybe_deleted => {}
                    None => diffs.push(format!(
                        "node {id}: expected {} (acknowledged), found absent",
                        n.required.map_or("present", Required::as_str)
                    )),
                    Some(_) if n.deleted => diffs.push(format!(
                        "node {id}: expected deleted (acknowledged), found present"
                    )),
                    Some((_, required, actual)) => {
                        if let Some(r) = n.required
                            && r.as_str() != required
                        {
                            diffs.push(format!(
                                "node {id}: expected required {} (acknowledged), found {required}",
                                r.as_str()
                            ));
                        }
                        // 3. what is required is what runs.
                        if actual != required {
                            diffs.push(format!(
                                "node {id} (:{}): required {required}, actual {actual}",
                                n.slot.vless
                            ));
                        }
                        if required == "Running" {
                            expected.running.insert(id.clone(), n.slot.clone());
                        }
                    }
                }
            }
            for id in view.nodes.keys() {
                if !known_nodes.contains(id.as_str()) {
                    diffs.push(format!("node {id}: in the manager, unknown to the model"));
                }
            }
        }
        // 2. every user's node list: all running nodes if enabled, none if not.
        let by_port: HashMap<u16, &str> = expected
            .running
            .values()
            .map(|s| (s.vless, s.node_id.as_str()))
            .collect();
        let mut k = 0usize;
        for (id, (name, status)) in &expected.users {
            k += 1;
            let client = &self.list_clients[k % self.list_clients.len()];
            let links = match self.node_list(replica, client, id, name).await {
                Ok(links) => links,
                Err(e) => {
                    diffs.push(format!("user {id} ({name}): node list: {e}"));
                    continue;
                }
            };
            let mut listed = BTreeSet::new();
            for link in &links {
                match link_port(link).and_then(|p| by_port.get(&p)) {
                    Some(node) => {
                        listed.insert(node.to_string());
                    }
                    None => diffs.push(format!(
                        "user {id} ({name}): node list holds {link}, not a running node's"
                    )),
                }
            }
            let want: BTreeSet<String> = match status {
                UserState::Enabled => expected.running.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            for missing in want.difference(&listed) {
                diffs.push(format!(
                    "user {id} ({name}) {}: node list lacks running node {missing}",
                    status.as_str()
                ));
            }
            for extra in listed.difference(&want) {
                diffs.push(format!(
                    "user {id} ({name}) {}: node list holds node {extra}",
                    status.as_str()
                ));
            }
        }
        for id in &expected.deleted {
            k += 1;
            let client = &self.list_clients[k % self.list_clients.len()];
            let name = self.model_name(id);
            match self.node_list(replica, client, id, &name).await {
                Err(e) if e.starts_with("status 422") => {}
                other => diffs.push(format!(
                    "user {id} ({name}) deleted: node list answered {other:?}, expected 422"
                )),
            }
        }
        (diffs, Some(expected))
    }

    fn model_name(&self, id: &str) -> String {
        self.model
            .lock()
            .unwrap()
            .users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    async fn node_list(
        &self,
        replica: usize,
        client: &reqwest::Client,
        id: &str,
        name: &str,
    ) -> Result<Vec<String>, String> {
        let url = format!("{}/user/{id}-{name}/nodes", self.url(replica));
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("status {status}"));
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Check 1, through each running core's own API: `add_user` answers
    /// `UserExists` exactly for the enabled users. A probe that adds a user
    /// removes it at once.
    async fn probe_cores(&self, expected: &Expected) -> (usize, Vec<String>) {
        let flavor = binary_flavor(&self.core);
        let mut diffs = Vec::new();
        let mut probes = 0;
        let universe: Vec<(&String, &str, bool)> = expected
            .users
            .iter()
            .map(|(id, (name, s))| (id, name.as_str(), *s == UserState::Enabled))
            .chain(expected.deleted.iter().map(|id| (id, "(deleted)", false)))
            .collect();
        for (node, slot) in &expected.running {
            let client = match CoreClient::new(
                &format!("127.0.0.1:{}", slot.api),
                flavor,
                Duration::from_secs(3),
            ) {
                Ok(c) => c,
                Err(e) => {
                    diffs.push(format!("node {node}: core client: {e}"));
                    continue;
                }
            };
            for (id, name, present) in &universe {
                probes += 1;
                let user = vless_user_with_id(id);
                match client.add_user(VLESS_TAG, &user).await {
                    Err(CoreError::UserExists { .. }) => {
                        if !present {
                            diffs.push(format!(
                                "node {node} (core api :{}) user {id} ({name}): expected absent, found present",
                                slot.api
                            ));
                        }
                    }
                    Ok(()) => {
                        match client.remove_user(VLESS_TAG, id).await {
                            Ok(()) | Err(CoreError::UserNotFound { .. }) => {}
                            Err(e) => diffs.push(format!(
                                "node {node}: could not remove probe user {id} again: {e}"
                            )),
                        }
                        if *present {
                            diffs.push(format!(
                                "node {node} (core api :{}) user {id} ({name}): expected present (Enabled), found absent",
                                slot.api
                            ));
                        }
                    }
                    Err(e) => diffs.push(format!("node {node} user {id}: probe failed: {e}")),
                }
            }
        }
        (probes, diffs)
    }

    /// Check 4: the database (read directly) holds every acknowledged user
    /// and node with its acknowledged status, and agrees with the manager.
    fn check_database(&self, db: &DbSnapshot, expected: &Expected) -> Vec<String> {
        let mut diffs = Vec::new();
        let users: HashMap<&str, &DbUser> = db.users.iter().map(|u| (u.id.as_str(), u)).collect();
        let model = self.model.lock().unwrap();
        for u in &model.users {
            match (users.get(u.id.as_str()), u.state) {
                (Some(_), Some(UserState::Deleted)) => diffs.push(format!(
                    "database: user {} ({}) deleted (acknowledged) but still stored",
                    u.id, u.name
                )),
                (None, Some(UserState::Deleted)) => {}
                (None, _) if u.maybe_deleted => {}
                (None, _) => diffs.push(format!(
                    "database: user {} ({}) created (acknowledged) is missing",
                    u.id, u.name
                )),
                (Some(row), state) => {
                    if row.name != u.name {
                        diffs.push(format!(
                            "database: user {} name {:?}, expected {:?}",
                            u.id, row.name, u.name
                        ));
                    }
                    if let Some(st) = state
                        && row.status != st.as_str()
                    {
                        diffs.push(format!(
                            "database: user {} ({}) status {}, acknowledged {}",
                            u.id,
                            u.name,
                            row.status,
                            st.as_str()
                        ));
                    }
                }
            }
        }
        for (id, (name, status)) in &expected.users {
            match users.get(id.as_str()) {
                Some(row) if row.status == status.as_str() => {}
                Some(row) => diffs.push(format!(
                    "database: user {id} ({name}) status {}, the manager shows {}",
                    row.status,
                    status.as_str()
                )),
                None => diffs.push(format!(
                    "database: user {id} ({name}) shown by the manager is not stored"
                )),
            }
        }
        for row in &db.users {
            if !expected.users.contains_key(&row.id) {
                diffs.push(format!(
                    "database: user {} ({}) stored but not shown by the manager",
                    row.id, row.name
                ));
            }
        }
        let nodes: HashMap<&str, &DbNode> = db.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        for n in &model.nodes {
            let id = n.slot.node_id.as_str();
            match nodes.get(id) {
                Some(_) if n.deleted => diffs.push(format!(
                    "database: node {id} deleted (acknowledged) but still stored"
                )),
                None if n.deleted || n.maybe_deleted => {}
                None => diffs.push(format!(
                    "database: node {id} registered (acknowledged) is missing"
                )),
                Some(row) => {
                    if let Some(r) = n.required
                        && row.required_status != r.as_str()
                    {
                        diffs.push(format!(
                            "database: node {id} required {}, acknowledged {}",
                            row.required_status,
                            r.as_str()
                        ));
                    }
                    if row.endpoint != format!("http://{}", n.slot.proxy.addr()) {
                        diffs.push(format!(
                            "database: node {id} endpoint {}, registered http://{}",
                            row.endpoint,
                            n.slot.proxy.addr()
                        ));
                    }
                }
            }
        }
        for (id, slot) in &expected.running {
            match nodes.get(id.as_str()) {
                Some(row) if row.required_status == "Running" => {}
                other => diffs.push(format!(
                    "database: node {id} (:{}) runs per the manager, stored as {:?}",
                    slot.vless,
                    other.map(|r| r.required_status.as_str())
                )),
            }
        }
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_its_node_by_port() {
        assert_eq!(
            link_port("vless://6a1f@127.0.0.1:4431?encryption=none&type=tcp#bob"),
            Some(4431)
        );
        assert_eq!(link_port("vless://6a1f@127.0.0.1:4431#bob"), Some(4431));
        assert_eq!(link_port("nonsense"), None);
    }

    #[test]
    fn an_acknowledgement_settles_only_after_a_failed_call_cannot_land() {
        let t = Instant::now();
        let settle = Duration::from_secs(5);
        assert!(settles(None, t, settle));
        assert!(!settles(Some(t), t + Duration::from_secs(1), settle));
        assert!(settles(Some(t), t + settle, settle));
    }

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("0x2a"), Some(42));
        assert_eq!(parse_u64("x"), None);
    }
}
