//! The transport conformance suite against the simulated fleet (the
//! reference) and against `HttpTransport` talking to real agent routers on
//! 127.0.0.1 (a `MemoryService`, a core fake and a real usage journal
//! behind each); and a broken
//! transport the suite must fail.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use manager_lib::domain::usage::{UsageCursor, UsagePage};
use manager_lib::domain::{NewNode, Node, NodeUser, UserId};
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::conformance::{self, FleetFixture};
use manager_lib::transport::http::HttpTransport;
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::transport::{NodeReport, NodeTransport, TransportError};
use node_agent_lib::agent::{Agent, AgentOptions};
use node_agent_lib::api::{AppState, router};
use node_agent_lib::config::CoreConfig;
use node_agent_lib::core::{CoreApi, CoreError, CoreUser, Flavor};
use node_agent_lib::envelope::NodeKey;
use node_agent_lib::service::memory::MemoryService;
use node_agent_lib::usage::{Journal, Usage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Short, so the "does not answer" behaviour is quick to see.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Registers a node the way the manager does, for its id and fresh key.
async fn register(storage: &MemoryStorage, endpoint: &str) -> Node {
    storage
        .create_node(NewNode::new(endpoint).expect("valid endpoint"))
        .await
        .expect("create node")
}

/// The simulated fleet, called through `transport` (the fleet itself, or a
/// wrapper around it).
struct Simulated {
    fleet: Arc<SimulatedFleet>,
    transport: Arc<dyn NodeTransport>,
    storage: MemoryStorage,
    next: AtomicU32,
}

impl Simulated {
    fn new() -> Self {
        Self::through(|fleet| fleet)
    }

    fn through(wrap: impl FnOnce(Arc<SimulatedFleet>) -> Arc<dyn NodeTransport>) -> Self {
        let fleet = Arc::new(SimulatedFleet::new().with_timeout(TIMEOUT));
        Self {
            transport: wrap(fleet.clone()),
            fleet,
            storage: MemoryStorage::new(),
            next: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl FleetFixture for Simulated {
    fn transport(&self) -> &dyn NodeTransport {
        &*self.transport
    }

    async fn node(&self) -> Node {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let node = register(&self.storage, &format!("http://sim-{n}.test:8080")).await;
        self.fleet.add_node_with_key(&node.endpoint, &node.key);
        node
    }

    async fn make_unreachable(&self, node: &Node) {
        self.fleet.set_unreachable(&node.endpoint, true);
    }

    async fn make_silent(&self, node: &Node) {
        self.fleet
            .set_delay(&node.endpoint, Duration::from_secs(3600));
    }

    async fn record_usage(&self, node: &Node, usage: &[(UserId, u64, u64)]) {
        self.fleet.record_usage(&node.endpoint, usage);
    }

    async fn wipe_usage_journal(&self, node: &Node) {
        self.fleet.reset_usage_journal(&node.endpoint);
    }
}

mod simulated {
    manager_lib::transport_conformance_tests!(super::Simulated::new());
}

/// A base config with the API and two managed inbounds (VLESS, VMess).
const BASE_CONFIG: &str = r#"{"api":{"tag":"api","services":["HandlerService","StatsService"]},
 "stats":{},"inbounds":[
 {"tag":"api","listen":"127.0.0.1","port":9,"protocol":"dokodemo-door","settings":{"address":"127.0.0.1"}},
 {"tag":"vless-in","listen":"127.0.0.1","port":1,"protocol":"vless","settings":{"decryption":"none"}},
 {"tag":"vmess-in","listen":"127.0.0.1","port":2,"protocol":"vmess","settings":{}}],
 "outbounds":[{"protocol":"freedom"}]}"#;

/// A core whose API answers only while its service runs, and which, like a
/// real one, keeps its users per inbound, answers "exists"/"not found", and
/// starts each run with the users of the generated config.
#[derive(Debug)]
struct FakeCore {
    service: Arc<MemoryService>,
    config: PathBuf,
    users: Mutex<CoreRun>,
    /// Per-user (up, down) counters, read and zeroed by `take_user_traffic`.
    traffic: Mutex<HashMap<String, (u64, u64)>>,
}

/// The users of one run of the core.
#[derive(Debug, Default)]
struct CoreRun {
    run: u64,
    /// (inbound tag, email) pairs.
    users: HashSet<(String, String)>,
}

impl FakeCore {
    fn live(&self) -> Result<MutexGuard<'_, CoreRun>, CoreError> {
        if !self.service.is_running() {
            return Err(CoreError::Unavailable("connection refused".into()));
        }
        let mut current = self.users.lock().unwrap();
        let run = self.service.runs();
        if current.run != run {
            *current = CoreRun {
                run,
                users: self.read_config(),
            };
        }
        Ok(current)
    }

    fn read_config(&self) -> HashSet<(String, String)> {
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        let mut users = HashSet::new();
        for inbound in config["inbounds"].as_array().unwrap() {
            let tag = inbound["tag"].as_str().unwrap_or_default();
            let clients = inbound["settings"]["clients"].as_array();
            for client in clients.into_iter().flatten() {
                let email = client["email"].as_str().unwrap();
                users.insert((tag.to_owned(), email.to_owned()));
            }
        }
        users
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl CoreApi for FakeCore {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        let key = (inbound_tag.to_owned(), user.email.clone());
        if self.live()?.users.insert(key) {
            Ok(())
        } else {
            Err(CoreError::UserExists {
                email: user.email.clone(),
            })
        }
    }

    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        let key = (inbound_tag.to_owned(), email.to_owned());
        if self.live()?.users.remove(&key) {
            Ok(())
        } else {
            Err(CoreError::UserNotFound {
                email: email.to_owned(),
            })
        }
    }

    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError> {
        let current = self.live()?;
        let users = current.users.iter().filter(|(tag, _)| tag == inbound_tag);
        Ok(Some(users.count() as u64))
    }

    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        self.live().map(|_| 1)
    }

    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        let taken = std::mem::take(&mut *self.traffic.lock().unwrap());
        Ok(taken.into_iter().map(|(e, (u, d))| (e, u, d)).collect())
    }
}

/// One agent router served on 127.0.0.1.
struct Served {
    silent: Arc<AtomicBool>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    core: Arc<FakeCore>,
    usage: Arc<Usage>,
    dir: tempfile::TempDir,
}

impl Served {
    /// An agent holding `key` on `listener`, its files (generated config,
    /// usage journal under `state/`) in `dir`.
    fn start(listener: tokio::net::TcpListener, key: &NodeKey, dir: tempfile::TempDir) -> Self {
        let service = Arc::new(MemoryService::new());
        let core = Arc::new(FakeCore {
            service: service.clone(),
            config: dir.path().join("core.json"),
            users: Mutex::default(),
            traffic: Mutex::default(),
        });
        let (config, _) = CoreConfig::parse(BASE_CONFIG, Flavor::Xray, "").unwrap();
        let mut options = AgentOptions::new(dir.path().join("core.json"));
        options.user_config_template = "vless://{{.UserID}}@node.test:443#{{.UserName}}".into();
        options.start_timeout = Duration::from_secs(2);
        let journal = Journal::open(&dir.path().join("state"), 720).unwrap();
        let usage = Arc::new(Usage::new(core.clone(), journal));
        let agent =
            Arc::new(Agent::new(service, core.clone(), config, options).with_usage(usage.clone()));
        let silent = Arc::new(AtomicBool::new(false));
        let app = router(Arc::new(AppState::new(agent, key.clone())))
            .layer(middleware::from_fn_with_state(silent.clone(), maybe_silent));
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Served {
            silent,
            shutdown,
            task,
            core,
            usage,
            dir,
        }
    }

    /// Stops serving; gives back the agent's directory.
    async fn stop(self) -> tempfile::TempDir {
        let _ = self.shutdown.send(());
        // Graceful shutdown closes the idle pooled connections too.
        self.task.await.unwrap();
        self.dir
    }
}

/// While the flag is set, the agent takes calls and never answers.
async fn maybe_silent(State(silent): State<Arc<AtomicBool>>, req: Request, next: Next) -> Response {
    if silent.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    next.run(req).await
}

/// `HttpTransport` and the agents it calls.
struct Agents {
    transport: HttpTransport,
    storage: MemoryStorage,
    served: Mutex<HashMap<String, Served>>,
}

impl Agents {
    fn new() -> Self {
        Self {
            transport: HttpTransport::new(TIMEOUT),
            storage: MemoryStorage::new(),
            served: Mutex::default(),
        }
    }
}

#[async_trait]
impl FleetFixture for Agents {
    fn transport(&self) -> &dyn NodeTransport {
        &self.transport
    }

    async fn node(&self) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let node = register(&self.storage, &endpoint).await;

        let served = Served::start(listener, &node.key, tempfile::tempdir().unwrap());
        self.served
            .lock()
            .unwrap()
            .insert(node.endpoint.clone(), served);
        node
    }

    async fn make_unreachable(&self, node: &Node) {
        let served = self.served.lock().unwrap().remove(&node.endpoint);
        served.expect("a node of this fleet").stop().await;
    }

    async fn make_silent(&self, node: &Node) {
        let served = self.served.lock().unwrap();
        served[&node.endpoint].silent.store(true, Ordering::SeqCst);
    }

    async fn record_usage(&self, node: &Node, usage: &[(UserId, u64, u64)]) {
        let collector = {
            let served = self.served.lock().unwrap();
            let served = &served[&node.endpoint];
            let mut traffic = served.core.traffic.lock().unwrap();
            for (user, up, down) in usage {
                let slot = traffic.entry(user.to_string()).or_default();
                slot.0 += up;
                slot.1 += down;
            }
            served.usage.clone()
        };
        collector
            .collect()
            .await
            .expect("the agent journals the read");
    }

    async fn wipe_usage_journal(&self, node: &Node) {
        // The agent restarts on the same address with its state dir wiped.
        let served = self.served.lock().unwrap().remove(&node.endpoint);
        let dir = served.expect("a node of this fleet").stop().await;
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        let address = node.endpoint.trim_start_matches("http://");
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let served = Served::start(listener, &node.key, dir);
        self.served
            .lock()
            .unwrap()
            .insert(node.endpoint.clone(), served);
    }
}

mod http_agents {
    manager_lib::transport_conformance_tests!(super::Agents::new());
}

/// A transport whose edits forget the users to remove.
#[derive(Debug)]
struct IgnoresRemovals(Arc<SimulatedFleet>);

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl NodeTransport for IgnoresRemovals {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<manager_lib::transport::StartResponse, TransportError> {
        self.0.start(node, users).await
    }

    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.0.stop(node).await
    }

    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        self.0.status(node).await
    }

    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        _del: &[UserId],
    ) -> Result<manager_lib::transport::UserPorts, TransportError> {
        self.0.edit_users(node, add, &[]).await
    }
    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.0.usage(node, cursor, max_batches).await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &manager_lib::domain::NodeKey,
        grace: std::time::Duration,
    ) -> Result<(), TransportError> {
        self.0.rotate_key(node, new, grace).await
    }
}

#[tokio::test]
#[should_panic(expected = "(running, users)")]
async fn the_suite_fails_a_transport_that_ignores_removals() {
    let broken = Simulated::through(|fleet| Arc::new(IgnoresRemovals(fleet)));
    conformance::edit_adds_and_removes_users(&broken).await;
}

/// A transport that forgets the cursor: every pull starts from the first batch.
#[derive(Debug)]
struct IgnoresCursor(Arc<SimulatedFleet>);

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl NodeTransport for IgnoresCursor {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<manager_lib::transport::StartResponse, TransportError> {
        self.0.start(node, users).await
    }

    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.0.stop(node).await
    }

    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        self.0.status(node).await
    }

    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<manager_lib::transport::UserPorts, TransportError> {
        self.0.edit_users(node, add, del).await
    }

    async fn usage(
        &self,
        node: &Node,
        _cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.0
            .usage(node, &UsageCursor::default(), max_batches)
            .await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &manager_lib::domain::NodeKey,
        grace: std::time::Duration,
    ) -> Result<(), TransportError> {
        self.0.rotate_key(node, new, grace).await
    }
}

#[tokio::test]
#[should_panic(expected = "the pages never end")]
async fn the_suite_fails_a_transport_that_ignores_the_usage_cursor() {
    let broken = Simulated::through(|fleet| Arc::new(IgnoresCursor(fleet)));
    conformance::pages_follow_the_cursor_until_nothing_is_left(&broken).await;
}
