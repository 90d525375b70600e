//! Wiring the agent from [`Settings`] and serving its API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use xray_core_client::CoreClient;

use crate::agent::{Agent, AgentOptions};
use crate::api::{AppState, router};
use crate::config::{ConfigError, CoreConfig};
use crate::core::ports::{PortError, PortMap};
use crate::core::{CoreApi, CoreApiProbe, SsManagerClient};
use crate::keyring::{KEY_FILE, KeyRing};
use crate::listener;
use crate::service::{
    LaunchctlService, ProcessService, ProcessSettings, ServiceControl, SystemdService,
};
use crate::settings::{Backend, CoreKind, Settings, SettingsError};
use crate::tls::ReloadingCertificate;
use crate::usage::{CoreApiTraffic, Journal, TrafficReader, Usage};

/// The name of the supervised core's pid file in the state directory (the
/// `process` backend; see [`crate::service::orphan`]).
pub const CORE_PID_FILE: &str = "core.pid";

/// Why the agent could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("base config {path}: {source}")]
    BaseConfig {
        path: String,
        #[source]
        source: ConfigError,
    },
    #[error(transparent)]
    Journal(#[from] crate::usage::JournalError),
    #[error("core API client: {0}")]
    Core(#[from] xray_core_client::CoreError),
    #[error("users' ports: {0}")]
    Ports(#[from] PortError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// The agent's parts, wired from settings.
#[derive(Debug)]
pub struct Node {
    pub state: Arc<AppState>,
    pub agent: Arc<Agent>,
    pub service: Arc<dyn ServiceControl>,
    /// The supervised core, with the `process` backend.
    pub process: Option<Arc<ProcessService>>,
    /// The usage journal and its collector.
    pub usage: Arc<Usage>,
}

impl Node {
    /// Reads the base config, opens the usage journal in `state_dir` and
    /// builds the core client, the service backend and the agent. Logs (without secrets) which inbounds it manages.
    pub fn build(settings: &Settings) -> Result<Self, ServeError> {
        let key = settings.node_key()?;
        let (config, core, reader, user_ports) = core_of(settings)?;
        for inbound in config.inbounds() {
            tracing::info!(tag = %inbound.tag, protocol = ?inbound.protocol, "managed inbound");
        }
        for d in config.descriptions() {
            tracing::info!(
                tag = %d.tag,
                port = d.port,
                network = d.network.as_str(),
                security = d.security.as_str(),
                "inbound described to the manager"
            );
        }
        let mut process = None;
        let service: Arc<dyn ServiceControl> = match settings.service.backend {
            Backend::Process => {
                let mut process_settings =
                    ProcessSettings::new(&settings.core.binary, settings.core_args()?);
                process_settings.stop_timeout =
                    Duration::from_secs(settings.core.stop_timeout_secs);
                process_settings.pid_file = Some(settings.state_dir.join(CORE_PID_FILE));
                let service = Arc::new(
                    ProcessService::new(process_settings)
                        .with_readiness(Arc::new(CoreApiProbe(core.clone()))),
                );
                process = Some(service.clone());
                service
            }
            Backend::Systemd => Arc::new(SystemdService::new(&settings.service.unit)),
            Backend::Launchctl => Arc::new(LaunchctlService::new(
                &settings.service.label,
                &settings.service.domain,
                &settings.service.plist,
            )),
        };
        let mut options = AgentOptions::new(&settings.core.generated_config);
        options.user_config_template = settings.user_config_template.clone();
        options.start_timeout = settings.start_timeout();
        options.flush_delay = Duration::from_millis(settings.config_flush_ms);
        options.monitor_interval = Duration::from_secs(settings.monitor_interval_secs.max(1));
        options.verify_period = Duration::from_secs(settings.verify_period_secs);
        options.user_ports = user_ports;
        let max_batches = usize::try_from(settings.usage_journal_max_batches).unwrap_or(usize::MAX);
        let journal = Journal::open(&settings.state_dir, max_batches)?;
        tracing::info!(
            journal = journal.id(),
            batches = journal.len(),
            bytes = journal.bytes(),
            "usage journal open"
        );
        let mut usage = Usage::with_reader(reader, journal);
        if settings.stats_interval().is_none() {
            tracing::info!("traffic accounting off (stats_interval_secs = 0)");
            usage = usage.without_reads();
        }
        let usage = Arc::new(usage);
        // After the journal: it made the state directory.
        let keys = KeyRing::load(&settings.state_dir, key)?;
        if keys.persisted() {
            tracing::info!(
                file = %settings.state_dir.join(KEY_FILE).display(),
                "node key from a rotation (it takes precedence over the settings' key)"
            );
        }
        let agent =
            Arc::new(Agent::new(service.clone(), core, config, options).with_usage(usage.clone()));
        let state = Arc::new(
            AppState::new(agent.clone(), keys.current())
                .with_key_ring(Arc::new(keys))
                .with_body_limit(settings.body_limit),
        );
        Ok(Self {
            state,
            agent,
            service,
            process,
            usage,
        })
    }

    /// Serves the API on `listener` until `shutdown` resolves; then stops the
    /// background tasks and, with the `process` backend, the core.
    pub async fn serve(
        self,
        settings: &Settings,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if let Some(process) = &self.process {
            // Before anything starts a core: the orphan may hold its ports.
            if let Err(e) = process.stop_orphan().await {
                tracing::error!(error = %e, "cannot stop the core a killed agent left running");
            }
        }
        let background = CancellationToken::new();
        let tasks = self.agent.spawn_background(background.clone());
        let collector = settings
            .stats_interval()
            .map(|every| tokio::spawn(self.usage.clone().run(every, background.clone())));
        let app = router(self.state.clone());
        let address = listener.local_addr()?;
        let tls = match &settings.tls {
            None => {
                tracing::info!(%address, "node API listening (plain HTTP)");
                None
            }
            Some(tls) => {
                tracing::info!(%address, "node API listening (HTTPS)");
                let certificate = ReloadingCertificate::load(&tls.cert, &tls.key)?;
                if let Some(every) = tls.reload_interval() {
                    tokio::spawn(certificate.clone().watch(every, background.clone()));
                }
                Some(certificate.acceptor(settings.http.http2))
            }
        };
        let served = listener::serve(listener, app, &settings.http, tls, shutdown).await;
        background.cancel();
        let _ = tasks.await;
        // The collector's last read comes before the core stops.
        if let Some(collector) = collector {
            let _ = collector.await;
        }
        if let Some(process) = &self.process {
            if let Err(e) = process.stop().await {
                tracing::error!(error = %e, "cannot stop the core");
            }
        }
        served?;
        Ok(())
    }
}

/// What the agent drives a core through: the generated config, the core's
/// API and its traffic reader.
/// The config, the core's client, its traffic reader, and (a core with a
/// port per user) the users' ports.
type CoreParts = (
    CoreConfig,
    Arc<dyn CoreApi>,
    Arc<dyn TrafficReader>,
    Option<Arc<PortMap>>,
);

/// The [`CoreParts`] of the kind of core the settings name; logs the
/// config's warnings.
fn core_of(settings: &Settings) -> Result<CoreParts, ServeError> {
    let timeout = Duration::from_millis(settings.core.api_timeout_ms);
    let (config, warnings, core, reader, ports): (
        _,
        _,
        Arc<dyn CoreApi>,
        Arc<dyn TrafficReader>,
        _,
    ) = match settings.core_kind()? {
        CoreKind::Xray(flavor) => {
            let base_path = &settings.core.base_config;
            let base_error = |source| ServeError::BaseConfig {
                path: base_path.display().to_string(),
                source,
            };
            let base = std::fs::read_to_string(base_path).map_err(|e| base_error(e.into()))?;
            let (config, warnings) =
                CoreConfig::parse(&base, flavor, &settings.vless_flow).map_err(base_error)?;
            let client = CoreClient::new(&settings.core.api_address, flavor, timeout)?;
            // The client itself reads the counters: one answer summed as
            // it decodes, never held whole (see `TrafficReader for CoreClient`).
            (
                config,
                warnings,
                Arc::new(client.clone()),
                Arc::new(client),
                None,
            )
        }
        CoreKind::SsManager => {
            let (config, warnings) = CoreConfig::ss_manager(&settings.ss_manager_config()?)
                .map_err(|source| ServeError::BaseConfig {
                    path: "[ss_manager]".into(),
                    source,
                })?;
            let ports = Arc::new(PortMap::open(settings.ss_ports()?, &settings.state_dir)?);
            tracing::info!(range = %ports.range(), "ss-manager: one port per user");
            // Its servers' config files hold their passwords.
            let work = settings.ss_manager_work_dir();
            std::fs::create_dir_all(&work)?;
            private_dir(&work)?;
            let client = Arc::new(SsManagerClient::new(
                &settings.core.api_address,
                timeout,
                ports.clone(),
            ));
            let reader = Arc::new(CoreApiTraffic(client.clone()));
            (config, warnings, client, reader, Some(ports))
        }
    };
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok((config, core, reader, ports))
}

#[cfg(unix)]
fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn private_dir(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Builds the agent from `settings` and serves it on `listener` until
/// `shutdown` resolves. Requests issued before the agent is built are
/// refused (its replay cache starts empty): a caller that must not lose
/// the first requests builds with [`Node::build`] before it binds, then
/// calls [`Node::serve`].
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let node = Node::build(&settings)?;
    node.serve(&settings, listener, shutdown).await
}
