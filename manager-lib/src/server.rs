//! The composition root: the one place a manager is wired. [`Server::build`]
//! takes the backends and the settings and returns the parts (the manager,
//! its heartbeat, metrics and API state); [`Server::serve`] runs them on a
//! listener until a shutdown signal; [`serve`] does both.
//!
//! ```no_run
//! use std::sync::Arc;
//! use manager_lib::server::{self, Backends, ServerSettings};
//! use manager_lib::storage::memory::MemoryStorage;
//! use manager_lib::transport::simulated::SimulatedFleet;
//! # async fn run() -> Result<(), server::ServeError> {
//! let backends = Backends::new(Arc::new(MemoryStorage::new()), Arc::new(SimulatedFleet::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! server::serve(backends, ServerSettings::new("a-long-random-admin-token"), listener, shutdown).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use node_agent_lib::listener::ListenerSettings;
use node_agent_lib::tls::{ReloadingCertificate, TlsAcceptor, TlsSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::admin_auth::FailureLimit;
use crate::api::client_addr::TrustedProxies;
use crate::api::ratelimit::RateLimit;
use crate::api::{self, ApiState};
use crate::cache::{Cache, CachedStorage, CachedStorageSettings};
use crate::dashboard;
use crate::manager::{Manager, ManagerSettings};
use crate::metrics::{self, ManagerMetrics};
use crate::reconcile::{Reconciler, ReconcilerSettings};
use crate::settings::{ManagerConfig, Secret};
use crate::storage::Storage;
use crate::subscription::Subscriptions;
use crate::transport::NodeTransport;
use crate::webhook::{Deliverer, DeliverySettings, Endpoint, Routes};

/// Why the manager could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("metrics_listen on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS certificate: {0}")]
    Tls(#[source] std::io::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the manager runs on: the storage, the optional cache in front of
/// it, and the transport to the nodes.
#[derive(Clone, Debug)]
pub struct Backends {
    pub storage: Arc<dyn Storage>,
    /// With a cache, the storage is wrapped in a [`CachedStorage`] (and its
    /// counters are in the metrics).
    pub cache: Option<Arc<dyn Cache>>,
    pub transport: Arc<dyn NodeTransport>,
}

impl Backends {
    /// `storage` and `transport`, no cache.
    pub fn new(storage: Arc<dyn Storage>, transport: Arc<dyn NodeTransport>) -> Self {
        Self {
            storage,
            cache: None,
            transport,
        }
    }

    pub fn with_cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }
}

/// Everything [`Server::build`] and [`Server::serve`] read; from a
/// [`ManagerConfig`] with [`ServerSettings::from_config`].
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub admin_token: Secret,
    pub manager: ManagerSettings,
    pub reconciler: ReconcilerSettings,
    pub cache: CachedStorageSettings,
    /// The manager pushes each user change by itself ([`Manager::spawn`]);
    /// `false` leaves changes to the heartbeat (for tests that push by hand).
    pub push_on_change: bool,
    /// The per-client budget of failed admin calls; `None` turns it off.
    pub admin_failure_limit: Option<FailureLimit>,
    /// The per-client limit of the user's node-list call; `None` turns it off.
    pub node_list_limit: Option<RateLimit>,
    /// A second address serving only `GET /metrics`, without the token.
    pub metrics_listen: Option<SocketAddr>,
    /// Limits of the API and metrics listeners.
    pub http: ListenerSettings,
    /// HTTPS on the API listener (the metrics listener stays plain: keep it
    /// private); `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Subscriptions: titles, links, the User-Agent rule table.
    pub subscription: Subscriptions,
    /// Webhook endpoints (secrets read); none: no webhook is sent. Their
    /// routes must also be in `manager.webhooks` for events to be enqueued
    /// ([`ServerSettings::with_webhooks`] sets both).
    pub webhooks: Vec<Endpoint>,
    /// The webhook delivery worker's tuning.
    pub webhook_delivery: DeliverySettings,
}

impl ServerSettings {
    /// The defaults, behind `admin_token` (taken as given: see
    /// [`ApiState::new`]).
    pub fn new(admin_token: impl Into<String>) -> Self {
        Self {
            admin_token: Secret::new(admin_token),
            manager: ManagerSettings::default(),
            reconciler: ReconcilerSettings::default(),
            cache: CachedStorageSettings::default(),
            push_on_change: true,
            admin_failure_limit: Some(FailureLimit::default()),
            node_list_limit: Some(RateLimit::default()),
            metrics_listen: None,
            http: ListenerSettings::default(),
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            subscription: Subscriptions::default(),
            webhooks: Vec::new(),
            webhook_delivery: DeliverySettings::default(),
        }
    }

    /// Sends events to `endpoints`: their routes go to the manager, the
    /// endpoints themselves to the delivery worker.
    pub fn with_webhooks(mut self, endpoints: Vec<Endpoint>) -> Self {
        self.manager.webhooks = Routes::of(&endpoints);
        self.webhooks = endpoints;
        self
    }

    /// The settings of `cfg`. Without a configured admin token, one is
    /// generated into the data directory and only its path is printed.
    pub fn from_config(cfg: &ManagerConfig) -> Result<Self, String> {
        let (admin_token, generated) =
            cfg.admin_token().map_err(|e| format!("admin token: {e}"))?;
        if generated {
            // Where it is, never the token: stdout ends up in journald and
            // `docker logs`, readable by more people than the 0600 file.
            println!(
                "generated an admin token into {} (readable by this user only)",
                cfg.admin_token_file().display()
            );
        }
        let webhooks = cfg.webhooks.endpoints(&|k| std::env::var(k).ok())?;
        let mut settings = Self {
            admin_token,
            manager: ManagerSettings {
                concurrency: cfg.concurrency,
                usage_days_kept: cfg.usage_days_kept,
                audit_days_kept: cfg.audit_days_kept,
                usage_node_hours_kept: cfg.usage_node_hours_kept,
                expiring_within_days: cfg.webhooks.expiring_within_days,
                ..ManagerSettings::default()
            },
            reconciler: ReconcilerSettings {
                interval: cfg.heartbeat(),
                ..ReconcilerSettings::default()
            },
            // User rows stay cached until they change (every change is
            // marked, see `CachedStorage`); the node set and the change feed
            // are read again at least once a heartbeat.
            cache: CachedStorageSettings {
                nodes_ttl: cfg.heartbeat().min(std::time::Duration::from_secs(1)),
                ..CachedStorageSettings::default()
            },
            push_on_change: true,
            admin_failure_limit: cfg.admin_failure_limit(),
            node_list_limit: cfg.node_list_limit(),
            metrics_listen: cfg.metrics_listen,
            http: cfg.http.clone(),
            tls: cfg.tls.clone(),
            trusted_proxies: cfg.trusted_proxies.clone(),
            subscription: Subscriptions::new(cfg.subscription.clone())?,
            webhooks: Vec::new(),
            webhook_delivery: cfg.webhooks.delivery(),
        };
        // One name per replica in both kinds of lease.
        settings.webhook_delivery.owner = settings.reconciler.owner.clone();
        Ok(settings.with_webhooks(webhooks))
    }
}

/// The manager's parts, wired: drive them by hand in tests (e.g.
/// `reconciler.heartbeat()`, `router` with `oneshot`) or [`Server::serve`].
#[derive(Debug)]
pub struct Server {
    pub manager: Arc<Manager>,
    pub reconciler: Arc<Reconciler>,
    pub metrics: Arc<ManagerMetrics>,
    /// The API, each request in a span ([`request_trace_layer`]); what
    /// [`Server::serve`] serves (nest it or add layers before serving).
    pub router: Router,
    /// The webhook delivery worker; `None` without endpoints.
    pub deliverer: Option<Arc<Deliverer>>,
    metrics_listen: Option<SocketAddr>,
    http: ListenerSettings,
    tls: Option<TlsSettings>,
}

impl Server {
    /// Wires the parts. With `push_on_change`, call it inside a tokio
    /// runtime (the manager's push task starts here).
    pub fn build(backends: Backends, settings: ServerSettings) -> Self {
        let cached = backends.cache.map(|cache| {
            Arc::new(CachedStorage::new(
                backends.storage.clone(),
                cache,
                settings.cache,
            ))
        });
        let storage: Arc<dyn Storage> = match &cached {
            Some(cached) => cached.clone(),
            None => backends.storage,
        };
        let deliverer = (!settings.webhooks.is_empty()).then(|| {
            Arc::new(Deliverer::new(
                storage.clone(),
                settings.webhooks,
                settings.webhook_delivery,
            ))
        });
        let manager = if settings.push_on_change {
            Manager::spawn(storage, backends.transport, settings.manager)
        } else {
            Arc::new(Manager::new(storage, backends.transport, settings.manager))
        };
        let metrics = Arc::new(match cached {
            Some(cached) => ManagerMetrics::with_cache(manager.clone(), cached),
            None => ManagerMetrics::new(manager.clone()),
        });
        let reconciler = Arc::new(
            Reconciler::new(manager.clone(), settings.reconciler).with_metrics(metrics.clone()),
        );
        let state = ApiState::new(manager.clone(), settings.admin_token.expose())
            .with_admin_failure_limit(settings.admin_failure_limit)
            .with_rate_limit(settings.node_list_limit)
            .with_subscription(settings.subscription)
            .with_trusted_proxies(settings.trusted_proxies)
            .with_metrics(metrics.clone());
        let secure = settings.tls.is_some();
        let pages = state.clone();
        let router = api::router_with(state, |auth| dashboard::router(&pages, auth, secure));
        Self {
            manager,
            reconciler,
            metrics,
            router: router.layer(request_trace_layer()),
            deliverer,
            metrics_listen: settings.metrics_listen,
            http: settings.http,
            tls: settings.tls,
        }
    }

    /// Runs the heartbeat, the optional metrics listener and the API on
    /// `listener` (HTTPS with [`ServerSettings::tls`], its certificate
    /// re-read from disk every `reload_interval_secs`) until `shutdown`
    /// resolves; then gives up this replica's node leases. A certificate
    /// that does not load is an error before anything runs.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let stop = CancellationToken::new();
        let tls = match &self.tls {
            None => None,
            Some(tls) => {
                let certificate =
                    ReloadingCertificate::load(&tls.cert, &tls.key).map_err(ServeError::Tls)?;
                if let Some(every) = tls.reload_interval() {
                    tokio::spawn(certificate.clone().watch(every, stop.clone()));
                }
                Some(certificate.acceptor(self.http.http2))
            }
        };
        let heartbeat = tokio::spawn(self.reconciler.clone().run(stop.clone().cancelled_owned()));
        let webhooks = self
            .deliverer
            .clone()
            .map(|d| tokio::spawn(d.run(stop.clone())));
        let router = self.router.clone();
        let served = self
            .serve_api(listener, router, tls, stop.clone(), shutdown)
            .await;
        stop.cancel();
        let _ = heartbeat.await;
        if let Some(webhooks) = webhooks {
            let _ = webhooks.await;
        }
        served
    }

    async fn serve_api(
        &self,
        listener: TcpListener,
        router: Router,
        tls: Option<TlsAcceptor>,
        stop: CancellationToken,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if let Some(addr) = self.metrics_listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::MetricsListen { addr, source })?;
            tracing::info!(%addr, "metrics served without a token");
            let router = metrics::router(self.metrics.clone());
            let http = self.http.clone();
            let stop = stop.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) = api::serve_with(listener, router, &http, stop).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let shutdown = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, scheme, "API listening");
        Ok(node_agent_lib::listener::serve(listener, router, &self.http, tls, shutdown).await?)
    }
}

/// Builds the manager from `backends` and `settings` and serves it on
/// `listener` until `shutdown` resolves (atuin's `launch_with_tcp_listener`).
pub async fn serve(
    backends: Backends,
    settings: ServerSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::build(backends, settings)
        .serve(listener, shutdown)
        .await
}

/// The route template a request is for (`/user/{id_name}/nodes`), or
/// `unmatched`: never the raw path, which may hold a user's id and name
/// (they authorise the node-list call) even when malformed (`…/nodes/`,
/// `//user/…`), and which anyone can fill with text of their choice.
pub fn loggable_path(path: &str) -> &'static str {
    api::route_of(path)
        .or_else(|| dashboard::route_of(path))
        .unwrap_or(metrics::UNMATCHED_ROUTE)
}

/// A span per HTTP request (method, route with secrets left out, status and
/// latency on completion), for `axum::Router::layer`.
pub fn request_trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!(
                "request",
                method = %req.method(),
                route = loggable_path(req.uri().path()),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_list_paths_are_not_logged_verbatim() {
        let id = "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22";
        assert_eq!(
            super::loggable_path(&format!("/user/{id}-alice/nodes")),
            "/user/{id_name}/nodes"
        );
        let token = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        assert_eq!(
            super::loggable_path(&format!("/sub/{token}")),
            "/sub/{token}"
        );
        for malformed in [
            format!("/user/{id}-alice/nodes/"),
            format!("/user/{id}-alice"),
            format!("//user/{id}-alice/nodes"),
            format!("/user/{id}-alice/nodes/x"),
            format!("/user/{id}/alice/nodes"),
        ] {
            assert_eq!(super::loggable_path(&malformed), "unmatched", "{malformed}");
        }
        assert_eq!(super::loggable_path("/users"), "/users");
        assert_eq!(super::loggable_path("/docs/index.css"), "/docs");
    }
}
